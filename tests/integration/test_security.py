"""Secured Kafka: SASL_SSL with SCRAM-SHA-512 and PLAIN against a real broker of our own.

The module starts its OWN broker (not the session one) with a SASL_SSL listener: a
throwaway CA and broker certificate generated here with ``cryptography``, a SCRAM-SHA-512
user created at storage-format time, a PLAIN user in the listener's JAAS config. A second,
unrelated CA stands in for "a certificate we do not trust".

Checked: right credentials land events end to end (SDK -> broker -> consumer -> lake);
a wrong password, an untrusted certificate and an unreachable broker each give one line
and exit 2 from ``pipeline.cli.main`` and consume nothing; the password never appears in
any output of any verb, in ``--help``, in DEBUG JSON logs or in ``repr(Settings())``.
"""

from __future__ import annotations

import datetime as dt
import gc
import io
import ipaddress
import os
import secrets
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.settings import Settings
from tests.kafka_broker import REPO_ROOT, LocalBroker, free_port

pytestmark = pytest.mark.kafka

SECURITY_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM",
                "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE",
                "MODELMETER_TOPIC", "MODELMETER_LAKE", "MODELMETER_WAREHOUSE",
                "MODELMETER_LOG_LEVEL", "MODELMETER_LOG_FORMAT", "MODELMETER_BOOTSTRAP_TIMEOUT")


# -- a throwaway PKI -------------------------------------------------------------------------
def _pem_ca(common_name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _pem_broker_cert(ca_key, ca_cert):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str  # the SASL_SSL listener
    plaintext: str  # the broker's own PLAINTEXT listener (test bookkeeping only)
    ca_file: Path
    untrusted_ca_file: Path
    scram_user: str
    scram_password: str
    plain_user: str
    plain_password: str

    def env(self, *, mechanism: str = "SCRAM-SHA-512", password: str | None = None,
            ca_file: Path | None = None) -> dict[str, str]:
        scram = mechanism.startswith("SCRAM")
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": self.scram_user if scram else self.plain_user,
            "KAFKA_SASL_PASSWORD": password if password is not None
            else (self.scram_password if scram else self.plain_password),
            "KAFKA_SSL_CAFILE": str(ca_file or self.ca_file),
        }


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    from cryptography.hazmat.primitives import serialization

    pem = serialization.Encoding.PEM
    root = tmp_path_factory.mktemp("secure-kafka")
    ca_key, ca_cert = _pem_ca("modelmeter test CA")
    key, cert = _pem_broker_cert(ca_key, ca_cert)
    _, other_ca = _pem_ca("some other CA")
    (root / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (root / "other-ca.pem").write_bytes(other_ca.public_bytes(pem))
    keystore = root / "broker.pem"
    keystore.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
                         + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    keystore.chmod(0o600)

    scram_password = f"scram-{secrets.token_hex(12)}"
    plain_password = f"plain-{secrets.token_hex(12)}"
    broker = LocalBroker(data_dir=root / "data",
                         format_args=f"--add-scram SCRAM-SHA-512=[name=alice,password={scram_password}]")
    sasl_port = free_port()
    extra = root / "secure.properties"
    extra.write_text(f"""\
listeners=PLAINTEXT://127.0.0.1:{broker.port},CONTROLLER://127.0.0.1:{broker.controller_port},SASL_SSL://127.0.0.1:{sasl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker.port},SASL_SSL://127.0.0.1:{sasl_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_bob="{plain_password}";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location={keystore}
""")
    broker.extra_config = extra
    broker.start()
    try:
        yield SecureBroker(bootstrap=f"127.0.0.1:{sasl_port}", plaintext=broker.bootstrap,
                           ca_file=root / "ca.pem", untrusted_ca_file=root / "other-ca.pem",
                           scram_user="alice", scram_password=scram_password,
                           plain_user="bob", plain_password=plain_password)
    finally:
        broker.stop()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in SECURITY_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    with warnings.catch_warnings():  # see tests/integration/test_sdk.py
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def secure_settings(broker: SecureBroker, tmp_path: Path, **env_kw) -> Settings:
    env = broker.env(**env_kw)
    return Settings(
        kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        kafka_security_protocol=env["KAFKA_SECURITY_PROTOCOL"],
        kafka_sasl_mechanism=env["KAFKA_SASL_MECHANISM"],
        kafka_sasl_username=env["KAFKA_SASL_USERNAME"],
        kafka_sasl_password=env["KAFKA_SASL_PASSWORD"],
        kafka_ssl_cafile=env["KAFKA_SSL_CAFILE"],
        topic=f"secure-{uuid.uuid4().hex[:10]}", lake=tmp_path / "lake",
        warehouse=tmp_path / "warehouse.duckdb",
        policy=REPO_ROOT / "schemas" / "routing_policy.yaml",
        prices=REPO_ROOT / "schemas" / "prices.csv", kafka_bootstrap_timeout=20)


def produce(settings: Settings, n: int) -> None:
    from pipeline.sdk import UsageProducer

    with UsageProducer(settings) as meter:
        for i in range(n):
            meter.llm_call(role="coder", agent_id="agent-1", task_id=f"T-{i}", provider="zai",
                           model="glm-4.5", input_tokens=100 + i, output_tokens=20)


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


def test_right_credentials_land_events_end_to_end(secure_broker: SecureBroker,
                                                  tmp_path: Path) -> None:
    """SDK produce over SASL_SSL + PLAIN -> broker -> consumer over SASL_SSL + SCRAM-SHA-512
    -> lake: every event lands and is committed, trusting only the test CA."""
    from pipeline.consumer import Consumer

    consumer_settings = secure_settings(secure_broker, tmp_path, mechanism="SCRAM-SHA-512")
    producer_settings = secure_settings(secure_broker, tmp_path, mechanism="PLAIN").with_overrides(
        topic=consumer_settings.topic)
    produce(producer_settings, 40)
    stats = Consumer(consumer_settings, group="secure-lake", until_idle=3, progress_seconds=0,
                     in_process=True, out=io.StringIO()).run()
    assert (stats.consumed, stats.landed, stats.rejected) == (40, 40, 0)
    assert lake_rows(consumer_settings.lake) == 40
    offsets = committed_offsets(secure_broker, "secure-lake")
    assert sum(meta.offset for tp, meta in offsets.items()
               if tp.topic == consumer_settings.topic) == 40


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", ["wrong password", "untrusted certificate"])
def test_bad_credentials_fail_fast_with_one_line_and_consume_nothing(
        secure_broker: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], case: str) -> None:
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
    for argv in (["consume", *common, "--until-idle", "1", "--group", group],
                 ["simulate", *common, "--events", "10", "--no-progress"]):
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
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listens at the bootstrap address: after the configured bootstrap timeout,
    consume exits 2 with one line naming the address and the timeout setting."""
    port = free_port()
    code, out, err = _cli(capsys, ["consume", "--bootstrap-servers", f"127.0.0.1:{port}",
                                   "--bootstrap-timeout", "2", "--lake", str(tmp_path / "lake"),
                                   "--until-idle", "1"])
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert f"cannot reach Kafka at 127.0.0.1:{port} within 2 s" in lines[0]
    assert "MODELMETER_BOOTSTRAP_TIMEOUT" in lines[0]


def test_the_password_never_appears_in_any_output(
        secure_broker: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """With the SASL password set: simulate and consume over SASL_SSL (separate processes,
    DEBUG logs in JSON), a consume with a wrong password given on the command line, every
    verb's --help, policy check, build and report, and repr(Settings()) never show a
    password."""
    env = secure_broker.env() | {
        "MODELMETER_TOPIC": f"secure-{uuid.uuid4().hex[:10]}",
        "MODELMETER_LAKE": str(tmp_path / "lake"),
        "MODELMETER_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "MODELMETER_LOG_LEVEL": "DEBUG", "MODELMETER_LOG_FORMAT": "json",
        "MODELMETER_BOOTSTRAP_TIMEOUT": "20",
    }
    wrong = f"cli-{secrets.token_hex(8)}"
    hidden = [secure_broker.scram_password, secure_broker.plain_password, wrong]
    outputs: list[tuple[list[str], int, str]] = []

    # the verbs that talk to Kafka, as an operator runs them
    proc_env = {k: v for k, v in os.environ.items() if k not in SECURITY_ENV} | env
    for argv in (["simulate", "--events", "30", "--days", "1", "--no-progress",
                  "--bad-fraction", "0.1"],
                 ["consume", "--until-idle", "2", "--progress-seconds", "1"],
                 ["consume", "--until-idle", "1", "--sasl-password", wrong]):
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], env=proc_env,
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
        outputs.append((argv, proc.returncode, proc.stdout + proc.stderr))
    assert [code for _, code, _ in outputs] == [0, 0, 2], outputs
    assert any('"level": "DEBUG"' in text for _, _, text in outputs)  # logs really were on

    # the rest in this process (same code path, without the interpreter start-up)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for argv in ([["--help"]] + [[verb, "--help"] for verb in
                                 ("simulate", "consume", "build", "report", "dq")]
                 + [["policy", "check"], ["build"], ["report", "--format", "json"]]):
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
