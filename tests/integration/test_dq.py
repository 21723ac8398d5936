"""``modelmeter dq`` on an independent event set: simulated traffic through the real broker,
the real consumer and the real warehouse build."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from kafka import KafkaProducer

from pipeline.cli import main
from tests.fixtures.events import enc, llm_call

pytestmark = pytest.mark.kafka

LAST_DAY = dt.date(2026, 10, 31)
CHECKED = LAST_DAY - dt.timedelta(days=1)  # a past day with 4 earlier days of history


def _consume_and_build(settings) -> None:
    common = [
        "--bootstrap-servers",
        settings.kafka_bootstrap_servers,
        "--topic",
        settings.topic,
        "--lake",
        str(settings.lake),
    ]
    assert (
        main(
            [
                "consume",
                *common,
                "--group",
                "dq-test",
                "--until-idle",
                "1",
                "--progress-seconds",
                "0",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "build",
                "--lake",
                str(settings.lake),
                "--warehouse",
                str(settings.warehouse),
                "--policy",
                str(settings.policy),
                "--prices",
                str(settings.prices),
            ]
        )
        == 0
    )


def _dq(settings, tmp_path, capsys) -> tuple[int, str, dict]:
    capsys.readouterr()
    code = main(
        [
            "dq",
            "--date",
            CHECKED.isoformat(),
            "--lake",
            str(settings.lake),
            "--warehouse",
            str(settings.warehouse),
            "--policy",
            str(settings.policy),
            "--prices",
            str(settings.prices),
            "--output",
            str(tmp_path / "dq.json"),
            "--no-data-docs",
        ]
    )
    return code, capsys.readouterr().out, json.loads((tmp_path / "dq.json").read_text())


def test_simulated_clean_day_passes_then_unpriced_calls_fail_naming_the_model(
    make_settings, tmp_path, capsys
):
    """simulate -> consume -> build -> dq: a clean past day exits 0 (volume checked against
    real history); after 12 calls to a model without a price land on that day, dq exits 1
    and names the model and the number of calls."""
    settings = make_settings()
    assert (
        main(
            [
                "simulate",
                "--bootstrap-servers",
                settings.kafka_bootstrap_servers,
                "--topic",
                settings.topic,
                "--policy",
                str(settings.policy),
                "--events",
                "6000",
                "--days",
                "6",
                "--end-date",
                LAST_DAY.isoformat(),
                "--seed",
                "5",
                "--bad-fraction",
                "0.002",
                "--duplicate-fraction",
                "0.01",
                "--no-progress",
            ]
        )
        == 0
    )
    _consume_and_build(settings)
    code, out, result = _dq(settings, tmp_path, capsys)
    assert code == 0, out
    statuses = {c["name"]: c["status"] for c in result["checks"]}
    assert statuses == {name: "pass" for name in statuses} | {"freshness": "skip"}, out

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    for i in range(12):
        event = llm_call(
            900_000 + i,
            provider="anthropic",
            model="claude-opus-9",
            occurred_at=f"{CHECKED.isoformat()}T12:00:{i:02d}Z",
            policy_version="2026.11.1",
        )
        producer.send(settings.topic, key=event["task_id"].encode(), value=enc(event))
    producer.flush(30)
    producer.close()
    _consume_and_build(settings)
    code, out, result = _dq(settings, tmp_path, capsys)
    assert code == 1, out
    assert result["failed"] == ["every_call_priced"], out
    assert "unpriced: anthropic/claude-opus-9 (12 calls)" in out
