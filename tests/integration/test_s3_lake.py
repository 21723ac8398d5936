"""A lake in an S3 bucket (S3Proxy, the tests' own server): two consumer processes with
separate working directories (as on two machines) land one topic into one bucket while one of
them is SIGKILLed twice and the S3 server is restarted once; then ``build`` reads the bucket.
Every event is in the warehouse exactly once and every cost equals a Decimal computation made
here from the price book file.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyarrow import fs as pafs

from pipeline.object_lake import ObjectLake
from pipeline.warehouse import open_warehouse_readonly
from tests.fixtures.consume import (
    ENV,
    Progress,
    cli,
    committed,
    modelmeter,
    produce_librdkafka,
    run_cli,
)
from tests.fixtures.events import enc, llm_call
from tests.fixtures.kafka_broker import REPO_ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MODELS = [("zai", "glm-4.5"), ("anthropic", "claude-opus-4-1"), ("zai", "glm-4.5-air")]
GROUP = "s3-lake"
#: land what is left on the topic, then exit
DRAIN = ("--group", GROUP, "--until-idle", "2", "--flush-seconds", "1")


def _events(start: int, n: int, day: dt.date) -> list[dict]:
    rng = random.Random(start)
    out = []
    for i in range(start, start + n):
        provider, model = MODELS[i % len(MODELS)]
        occurred = dt.datetime.combine(day, dt.time(i % 24, i % 60), dt.UTC)
        out.append(
            llm_call(
                i,
                occurred_at=occurred.isoformat(),
                provider=provider,
                model=model,
                input_tokens=rng.randrange(0, 200_000),
                output_tokens=rng.randrange(0, 20_000),
                cache_read_tokens=rng.randrange(0, 50_000),
                escalated=model.startswith("claude"),
                escalation_trigger="security_implications" if model.startswith("claude") else None,
                role="architect" if model.startswith("claude") else "implementer",
            )
        )
    return out


def _expected_cost(events: list[dict]) -> Decimal:
    """Tokens x USD per million tokens, from schemas/prices.csv read here (one price per model
    over the test's days)."""
    with (REPO_ROOT / "schemas" / "prices.csv").open() as fh:
        prices = {(r["provider"], r["model"]): r for r in csv.DictReader(fh)}
    total = Decimal(0)
    for e in events:
        price = prices[(e["provider"], e["model"])]
        for kind in ("input", "output", "cache_read"):
            total += Decimal(e[f"{kind}_tokens"]) * Decimal(price[f"usd_per_mtok_{kind}"])
    return total / Decimal(1_000_000)


def _objects(s3_server, bucket: str) -> int:
    from pyarrow import fs as pafs

    infos = s3_server.filesystem().get_file_info(
        pafs.FileSelector(f"{bucket}/lake/llm_call", recursive=True, allow_not_found=True)
    )
    return sum(1 for i in infos if i.type == pafs.FileType.File)


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_two_consumers_land_one_bucket_exactly_once_through_kills_and_a_restart(
    make_settings, s3_server, s3_bucket, tmp_path
):
    settings = make_settings(lake=s3_bucket.url)
    assert isinstance(settings.lake, ObjectLake)
    env = {**ENV, **s3_server.env(), "MODELMETER_LAKE_RETRY_SECONDS": "90"}
    day = dt.date.today() - dt.timedelta(days=1)
    sent: list[dict] = []

    def produce(n: int) -> None:
        batch = _events(len(sent), n, day)
        produce_librdkafka(
            settings.kafka_bootstrap_servers, settings.topic, [enc(e) for e in batch]
        )
        sent.extend(batch)

    def start(machine: str, instance: str) -> tuple[subprocess.Popen, Progress]:
        workdir = tmp_path / machine  # its own working directory, as on another machine
        workdir.mkdir(exist_ok=True)
        args = cli(settings, "--group", GROUP, "--instance-id", instance)
        args += ["--flush-seconds", "0.5", "--flush-events", "400", "--progress-seconds", "0.5"]
        proc = subprocess.Popen(
            args, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        return proc, Progress(proc)

    produce(3000)
    a, a_progress = start("a", "machine-a")
    b, b_progress = start("b", "machine-b")
    _wait(lambda: _objects(s3_server, s3_bucket.name) >= 4, 90, "first files in the bucket")

    a.send_signal(signal.SIGKILL)  # mid-stream
    a_progress.wait(timeout=30)
    produce(3000)
    a, a_progress = start("a", "machine-a")
    landed = _objects(s3_server, s3_bucket.name)
    _wait(lambda: _objects(s3_server, s3_bucket.name) > landed, 90, "files after the kill")

    s3_server.stop()  # the object store goes away under both consumers ...
    produce(2000)
    time.sleep(2)  # ... for a while (they retry with back-off, nothing is committed)
    s3_server.start()
    landed = _objects(s3_server, s3_bucket.name)
    _wait(lambda: _objects(s3_server, s3_bucket.name) > landed, 90, "files after the restart")

    a.send_signal(signal.SIGKILL)
    a_progress.wait(timeout=30)
    a, a_progress = start("a", "machine-a")
    produce(2000)
    # SIGTERM once the new process polls: before its handlers are installed (imports,
    # on a loaded machine more than a second) the signal's default action would end it
    _wait(
        lambda: any(line.startswith("consume progress") for line in a_progress.lines),
        90,
        "the restarted consumer's first progress line",
    )
    for proc, progress in ((a, a_progress), (b, b_progress)):
        proc.send_signal(signal.SIGTERM)
        try:
            code = progress.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        assert code == 0, "".join(progress.lines[-30:])

    # each machine drains what is left under its own id: a static member takes its partitions
    # back at once (a new member would wait for both stopped members' sessions to expire)
    drains = {}
    for machine, instance in (("a", "machine-a"), ("b", "machine-b")):
        with (tmp_path / machine / "drain.log").open("w") as log:
            drains[machine] = subprocess.Popen(
                cli(settings, *DRAIN, "--instance-id", instance),
                cwd=tmp_path / machine,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
    for machine, drain in drains.items():
        try:
            code = drain.wait(timeout=240)
        finally:
            drain.kill()  # nothing when it exited
        assert code == 0, (tmp_path / machine / "drain.log").read_text()[-3000:]
    built = modelmeter(settings, "build", "--full", timeout=240, env=env)
    assert built.returncode == 0, built.stderr[-3000:]

    con = open_warehouse_readonly(Path(settings.warehouse))
    try:
        ids = [r[0] for r in con.execute("select event_id from fct_llm_calls").fetchall()]
        cost, calls, tokens = con.execute(
            "select sum(cost_usd), count(*), sum(input_tokens) from fct_llm_calls"
        ).fetchone()
        copies = con.execute("select sum(landed_copies) from fct_llm_calls").fetchone()[0]
        per_model = dict(
            con.execute("select model, count(*) from fct_llm_calls group by model").fetchall()
        )
    finally:
        con.close()
    assert len(ids) == len(set(ids)) == len(sent)
    assert set(ids) == {e["event_id"] for e in sent}
    assert copies == len(sent), "an event landed in two files"
    assert calls == len(sent)
    assert tokens == sum(e["input_tokens"] for e in sent)
    assert cost == _expected_cost(sent)
    assert per_model == {m: sum(1 for e in sent if e["model"] == m) for _, m in MODELS}


def test_an_unreachable_object_store_stops_commits_then_exit_2_and_nothing_is_lost(
    make_settings, tmp_path, s3_server, s3_bucket
):
    """The store goes away under a running consumer: it retries for
    MODELMETER_LAKE_RETRY_SECONDS, commits nothing meanwhile, exits 2 with one line; started
    again once the store is back, it lands every event exactly once."""
    server = s3_server  # stopped and started here, as the test above does; up again at the end
    try:
        bucket = s3_bucket.name
        settings = make_settings(lake=s3_bucket.url)
        env = {**ENV, **server.env(), "MODELMETER_LAKE_RETRY_SECONDS": "2"}
        day = dt.date.today() - dt.timedelta(days=1)
        first, second = _events(0, 500, day), _events(500, 500, day)
        produce_librdkafka(
            settings.kafka_bootstrap_servers, settings.topic, [enc(e) for e in first]
        )
        args = [
            *cli(settings, "--group", GROUP),
            "--flush-seconds",
            "0.5",
            "--progress-seconds",
            "0.5",
        ]
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        progress = Progress(proc)
        progress.wait_consumed(len(first), timeout=90, name="landed")
        _wait(lambda: sum(committed(settings, GROUP).values()) == len(first), 60, "the commit")

        server.stop()
        produce_librdkafka(
            settings.kafka_bootstrap_servers, settings.topic, [enc(e) for e in second]
        )
        assert progress.wait(timeout=90) == 2, "".join(progress.lines[-15:])
        errors = [line for line in progress.lines if line.startswith("modelmeter: error:")]
        assert (
            len(errors) == 1
            and "object store did not answer for 2 s while trying to write llm_call/" in errors[0]
        ), errors
        assert "modelmeter-secret" not in "".join(progress.lines)
        assert sum(committed(settings, GROUP).values()) == len(first)  # nothing more committed

        server.start()
        drained = run_cli(settings, *DRAIN, timeout=180, env=env, cwd=tmp_path)
        assert drained.returncode == 0, drained.stderr[-3000:]
        fs = server.filesystem()
        rows = []
        for info in fs.get_file_info(pafs.FileSelector(f"{bucket}/lake/llm_call", recursive=True)):
            if info.type == pafs.FileType.File:
                rows += pq.read_table(info.path, filesystem=fs).column("event_id").to_pylist()
        assert sorted(rows) == sorted(e["event_id"] for e in first + second)
    finally:
        server.start()  # nothing when it is up: the next tests need it
