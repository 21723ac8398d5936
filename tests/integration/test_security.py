"""Secured Kafka: SASL_SSL with SCRAM-SHA-512 and PLAIN against a real broker of our own.

The tests use their OWN broker (``secure_broker`` of tests/fixtures/secure_kafka.py, not the
session one) with a SASL_SSL listener: a throwaway CA and broker certificate, a SCRAM-SHA-512
user, a PLAIN user, and a second, unrelated CA that stands in for "a certificate we do not
trust".

Checked: right credentials land events end to end (SDK -> broker -> consumer -> lake);
a wrong password, an untrusted certificate and an unreachable broker each give one line
and exit 2 from ``pipeline.cli.main`` and consume nothing; the password never appears in
any output of any verb, in ``--help``, in DEBUG JSON logs or in ``repr(Settings())``.
"""

from __future__ import annotations

import gc
import io
import os
import secrets
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.settings import Settings
from tests.fixtures.kafka_broker import REPO_ROOT, free_port
from tests.fixtures.secure_kafka import SECURITY_ENV, SecureBroker, secure_settings

pytestmark = pytest.mark.kafka


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in SECURITY_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    with warnings.catch_warnings():  # see tests/integration/test_sdk.py
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def produce(settings: Settings, n: int) -> None:
    from pipeline.sdk import UsageProducer

    with UsageProducer(settings) as meter:
        for i in range(n):
            meter.llm_call(
                role="coder",
                agent_id="agent-1",
                task_id=f"T-{i}",
                provider="zai",
                model="glm-4.5",
                input_tokens=100 + i,
                output_tokens=20,
            )


def lake_rows(lake: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in lake.glob("llm_call/*/*.parquet"))


def committed_offsets(broker: SecureBroker, group: str) -> dict:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.plaintext, client_id="tests-admin")
    try:
        return dict(admin.list_group_offsets({group: None}).get(group, {}))
    finally:
        admin.close()


def test_right_credentials_land_events_end_to_end(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    """SDK produce over SASL_SSL + PLAIN -> broker -> consumer over SASL_SSL + SCRAM-SHA-512
    -> lake: every event lands and is committed, trusting only the test CA."""
    from pipeline.consumer import Consumer

    consumer_settings = secure_settings(secure_broker, tmp_path, mechanism="SCRAM-SHA-512")
    producer_settings = secure_settings(secure_broker, tmp_path, mechanism="PLAIN").with_overrides(
        topic=consumer_settings.topic
    )
    produce(producer_settings, 40)
    stats = Consumer(
        consumer_settings,
        group="secure-lake",
        until_idle=3,
        progress_seconds=0,
        in_process=True,
        out=io.StringIO(),
    ).run()
    assert (stats.consumed, stats.landed, stats.rejected) == (40, 40, 0)
    assert lake_rows(consumer_settings.lake) == 40
    offsets = committed_offsets(secure_broker, "secure-lake")
    assert (
        sum(meta.offset for tp, meta in offsets.items() if tp.topic == consumer_settings.topic)
        == 40
    )


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", ["wrong password", "untrusted certificate"])
def test_bad_credentials_fail_fast_with_one_line_and_consume_nothing(
    secure_broker: SecureBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    """A wrong password or a broker certificate signed by a CA we do not trust: consume and
    simulate exit 2 with one line naming the problem; nothing is consumed or written."""
    wrong = f"wrong-{secrets.token_hex(8)}"
    if case == "wrong password":
        env = secure_broker.env(password=wrong)
        expected = "authentication failed"
    else:
        env = secure_broker.env(ca_file=secure_broker.untrusted_ca_file)
        expected = "not trusted"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    topic = f"secure-{uuid.uuid4().hex[:10]}"
    lake = tmp_path / "lake"
    group = f"g-{uuid.uuid4().hex[:8]}"
    common = ["--topic", topic, "--lake", str(lake), "--bootstrap-timeout", "60"]
    for argv in (
        ["consume", *common, "--until-idle", "1", "--group", group],
        ["simulate", *common, "--events", "10", "--no-progress"],
    ):
        code, out, err = _cli(capsys, argv)
        assert code == 2, (argv[0], out, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert lines[0].startswith("modelmeter: error: ") and expected in lines[0]
        for secret in (wrong, secure_broker.scram_password):
            assert secret not in out + err
    assert not list(lake.rglob("*.parquet"))
    assert committed_offsets(secure_broker, group) == {}


def test_unreachable_broker_at_start_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens at the bootstrap address: after the configured bootstrap timeout,
    consume exits 2 with one line naming the address and the timeout setting."""
    port = free_port()
    code, out, err = _cli(
        capsys,
        [
            "consume",
            "--bootstrap-servers",
            f"127.0.0.1:{port}",
            "--bootstrap-timeout",
            "2",
            "--lake",
            str(tmp_path / "lake"),
            "--until-idle",
            "1",
        ],
    )
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert f"cannot reach Kafka at 127.0.0.1:{port} within 2 s" in lines[0]
    assert "MODELMETER_BOOTSTRAP_TIMEOUT" in lines[0]


def test_the_password_never_appears_in_any_output(
    secure_broker: SecureBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With the SASL password set: simulate and consume over SASL_SSL (separate processes,
    DEBUG logs in JSON), a consume with a wrong password in KAFKA_SASL_PASSWORD_FILE and one
    given with the refused --sasl-password option, every
    verb's --help, policy check, build and report, and repr(Settings()) never show a
    password."""
    env = secure_broker.env() | {
        "MODELMETER_TOPIC": f"secure-{uuid.uuid4().hex[:10]}",
        "MODELMETER_LAKE": str(tmp_path / "lake"),
        "MODELMETER_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "MODELMETER_LOG_LEVEL": "DEBUG",
        "MODELMETER_LOG_FORMAT": "json",
        "MODELMETER_BOOTSTRAP_TIMEOUT": "20",
    }
    wrong = f"cli-{secrets.token_hex(8)}"
    hidden = [secure_broker.scram_password, secure_broker.plain_password, wrong]
    outputs: list[tuple[list[str], int, str]] = []

    # the verbs that talk to Kafka, as an operator runs them
    proc_env = {k: v for k, v in os.environ.items() if k not in SECURITY_ENV} | env
    # a wrong password in KAFKA_SASL_PASSWORD_FILE (authentication fails, exit 2), and one
    # given with the --sasl-password option older releases had (refused, exit 2)
    wrong_file = tmp_path / "wrong-password"
    wrong_file.write_text(wrong + "\n")
    file_env = {k: v for k, v in proc_env.items() if k != "KAFKA_SASL_PASSWORD"} | {
        "KAFKA_SASL_PASSWORD_FILE": str(wrong_file)
    }
    for argv, run_env in (
        (
            ["simulate", "--events", "30", "--days", "1", "--no-progress", "--bad-fraction", "0.1"],
            proc_env,
        ),
        (["consume", "--until-idle", "2", "--progress-seconds", "1"], proc_env),
        (["consume", "--until-idle", "1"], file_env),
        (["consume", "--until-idle", "1", "--sasl-password", wrong], proc_env),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *argv],
            env=run_env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        outputs.append((argv, proc.returncode, proc.stdout + proc.stderr))
    assert [code for _, code, _ in outputs] == [0, 0, 2, 2], outputs
    assert "authentication failed" in outputs[2][2], outputs[2]
    assert any('"level": "DEBUG"' in text for _, _, text in outputs)  # logs really were on

    # the rest in this process (same code path, without the interpreter start-up)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for argv in (
        [["--help"]]
        + [[verb, "--help"] for verb in ("simulate", "consume", "build", "report", "dq")]
        + [["policy", "check"], ["build"], ["report", "--format", "json"]]
    ):
        try:
            code = main(argv)
        except SystemExit as exit_:  # --help
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        outputs.append((argv, code, out + err))
    for argv, _, text in outputs:
        for secret in hidden:
            assert secret not in text, f"a password is shown by modelmeter {' '.join(argv)}"
    settings = Settings()
    assert settings.kafka_sasl_password is not None  # it was set, and is hidden:
    assert secure_broker.scram_password not in repr(settings) + str(settings)
