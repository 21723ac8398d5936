"""The acceptance of ``collect http``: independent senders through a broker outage.

An OTLP/HTTP sender POSTs 10,000 Claude Code-shaped ``claude_code.api_request`` log records
(protobuf bodies built with opentelemetry-proto, batches of 100, four roles, two models; 1%
of the records malformed, 1% of the batches sent twice) and a LiteLLM sender POSTs 5,000
calls (ndjson, batches of 100, one batch sent twice), both over real HTTP from their own
threads. Halfway through, the broker is stopped for 20 s: the collector answers 503 (or the
request fails) and the senders retry with back-off, as OTLP exporters do. Then ``consume``
and ``build``: fct_llm_calls holds exactly the distinct valid calls with the token sums sent
per role and model, each priced from the price book; every malformed record was refused with
its reason, in the answers and in the Prometheus counters.
"""

from __future__ import annotations

import csv
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal
from typing import Any

import duckdb
import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from prometheus_client.parser import text_string_to_metric_families

from pipeline.cli import setting_args
from tests.fixtures.collect_http import litellm_payload, post, start_collector
from tests.fixtures.consume import ENV, consume_and_build
from tests.fixtures.kafka_broker import REPO_ROOT

pytestmark = pytest.mark.kafka

ROLES = ("architect", "implementer", "critic", "orchestrator")
MODELS = ("glm-4.5", "claude-opus-4-1")
PROVIDERS = {"glm-4.5": "zai", "claude-opus-4-1": "anthropic"}
BATCH = 100
CC_BATCHES = 100  # 10,000 records
LL_BATCHES = 50  # 5,000 calls
MALFORMED_AT = 50  # one record of each Claude Code batch (1%)
OUTAGE_S = 20
# (what is wrong, the reason label the collector counts it under, a word of the reason)
MALFORMED = (
    ("input_tokens", "bad number", "input_tokens"),
    ("output_tokens", "bad number", "output_tokens"),
    ("model", "missing field", "model"),
    ("event.timestamp", "bad time", "event.timestamp"),
)


def _value(value: Any) -> AnyValue:
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=str(value))


def _kv(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in attrs.items()]


def _tokens(b: int, j: int) -> dict[str, int]:
    return {
        "input": 50 + (b * 7 + j) % 400,
        "output": 5 + (b + j * 3) % 90,
        "cache_read": (b * j) % 3000,
        "cache_write_5m": (j % 5) * 11,
    }


def claude_code_batches(expected: Counter) -> tuple[list[bytes], list[int]]:
    """The sender's 100 protobuf bodies; ``expected`` gets (role, model, kind) -> tokens of
    the valid records; per batch the number of malformed records."""
    bodies, malformed = [], []
    for b in range(CC_BATCHES):
        role = ROLES[b % len(ROLES)]
        records = []
        bad = 0
        for j in range(BATCH):
            model = MODELS[1] if (b + j) % 10 == 0 else MODELS[0]
            t = _tokens(b, j)
            as_text = j % 2 == 0  # Claude Code sends some numbers as strings
            attrs: dict[str, Any] = {
                "event.name": "api_request",
                "event.timestamp": f"2026-01-{5 + b % 20:02d}T{j % 24:02d}:{b % 60:02d}:00.000Z",
                "event.sequence": j,
                "session.id": f"sess-{b}",
                "prompt.id": f"prompt-{b}-{j // 10}",
                "model": model,
                "input_tokens": str(t["input"]) if as_text else t["input"],
                "output_tokens": str(t["output"]) if as_text else t["output"],
                "cache_read_tokens": str(t["cache_read"]) if as_text else t["cache_read"],
                "cache_creation_tokens": t["cache_write_5m"],
                "cost_usd": "999.99",  # never read
                "duration_ms": "1200",
                "request_id": f"req_{b}_{j}",
            }
            if j == MALFORMED_AT:
                field = MALFORMED[b % len(MALFORMED)][0]
                if field == "model":
                    del attrs["model"]
                elif field == "event.timestamp":
                    attrs[field] = "yesterday"
                elif field == "output_tokens":
                    attrs[field] = "-5"
                else:
                    attrs[field] = f"{t['input']} tokens"
                bad += 1
            else:
                for kind, n in t.items():
                    expected[(role, model, kind)] += n
            records.append(
                LogRecord(
                    time_unix_nano=1_767_607_200_000_000_000 + j,
                    severity_number=9,
                    body=AnyValue(string_value="claude_code.api_request"),
                    attributes=_kv(attrs),
                )
            )
        request = ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    resource=Resource(
                        attributes=_kv({"service.name": "claude-code", "modelmeter.role": role})
                    ),
                    scope_logs=[
                        ScopeLogs(
                            scope=InstrumentationScope(name="com.anthropic.claude_code.events"),
                            log_records=records,
                        )
                    ],
                )
            ]
        )
        bodies.append(request.SerializeToString())
        malformed.append(bad)
    return bodies, malformed


def litellm_batches(expected: Counter) -> list[bytes]:
    bodies = []
    for b in range(LL_BATCHES):
        lines = []
        for j in range(BATCH):
            role = ROLES[(b + j) % len(ROLES)]
            model = MODELS[1] if j % 7 == 0 else MODELS[0]
            prompt, completion, cached = 300 + (b * j) % 900, 10 + j, (j % 4) * 50
            payload = litellm_payload(
                f"chatcmpl-{b}-{j}",
                model=model,
                provider="anthropic" if model.startswith("claude") else "openai",
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached=cached,
                tags=[f"role:{role}"],
                start=1_767_607_200.25 + b * 60 + j,
            )
            lines.append(orjson.dumps(payload))
            expected[(role, model, "input")] += prompt - cached
            expected[(role, model, "output")] += completion
            expected[(role, model, "cache_read")] += cached
        bodies.append(b"\n".join(lines))
    return bodies


class Sender(threading.Thread):
    """POSTs its batches in order, one re-sent; halfway, it waits until the broker is down.

    A batch answered 503, or whose connection failed, is retried with exponential back-off
    (0.2 s doubling to 2 s), as the OTLP exporters retry."""

    def __init__(
        self,
        url: str,
        content_type: str,
        bodies: list[bytes],
        resend: int,
        halfway: threading.Event,
        outage: threading.Event,
        check: Any,
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.content_type = url, content_type
        self.order = [*range(len(bodies))]
        self.order.insert(len(bodies) * 3 // 4, resend)  # after the outage: a replay
        self.bodies, self.halfway, self.outage, self.check = bodies, halfway, outage, check
        self.answers: list[tuple[int, bytes]] = []  # (batch, 200 answer)
        self.unavailable = 0  # 503 answers
        self.unreachable = 0  # requests that failed to connect or timed out
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for n, batch in enumerate(self.order):
                if n == len(self.order) // 2:
                    self.halfway.set()
                    assert self.outage.wait(120), "the broker was not stopped"
                answer = self.post(self.bodies[batch])
                self.check(batch, answer)
                self.answers.append((batch, answer))
        except BaseException as exc:  # reported by the test
            self.error = exc

    def post(self, body: bytes) -> bytes:
        delay, deadline = 0.2, time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                status, answer = post(self.url, body, self.content_type)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                self.unreachable += 1
            else:
                if status == 200:
                    return answer
                assert status == 503, (status, answer[:300])
                self.unavailable += 1
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError(f"{self.url}: no 200 within 180 s")


def prices() -> dict[str, dict[str, Decimal]]:
    with (REPO_ROOT / "schemas" / "prices.csv").open() as fh:
        return {
            row["model"]: {
                kind: Decimal(row[f"usd_per_mtok_{kind}"])
                for kind in ("input", "output", "cache_read", "cache_write_5m")
            }
            for row in csv.DictReader(fh)
            if row["model"] in MODELS
        }


def metric_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_10k_otlp_records_and_5k_litellm_calls_through_a_broker_outage(
    kafka_broker, make_settings, tmp_path
):
    settings = make_settings()
    expected: Counter = Counter()
    cc_bodies, cc_malformed = claude_code_batches(expected)
    ll_bodies = litellm_batches(expected)
    proc, url = start_collector([*setting_args(settings), "--flush-timeout", "3"], tmp_path, ENV)

    def check_otlp(batch: int, answer: bytes) -> None:
        partial = ExportLogsServiceResponse.FromString(answer).partial_success
        assert partial.rejected_log_records == cc_malformed[batch], (batch, partial)
        _, _, word = MALFORMED[batch % len(MALFORMED)]
        assert f"#{MALFORMED_AT}: " in partial.error_message and word in partial.error_message

    def check_litellm(batch: int, answer: bytes) -> None:
        assert orjson.loads(answer) == {"accepted": BATCH, "refused": []}, batch

    halfway_cc, halfway_ll, outage = threading.Event(), threading.Event(), threading.Event()
    senders = [
        Sender(
            f"{url}/v1/logs",
            "application/x-protobuf",
            cc_bodies,
            37,
            halfway_cc,
            outage,
            check_otlp,
        ),
        Sender(
            f"{url}/v1/litellm",
            "application/x-ndjson",
            ll_bodies,
            11,
            halfway_ll,
            outage,
            check_litellm,
        ),
    ]
    try:
        for sender in senders:
            sender.start()
        assert halfway_cc.wait(120) and halfway_ll.wait(120)
        kafka_broker.stop()
        outage.set()
        time.sleep(OUTAGE_S)  # the outage the acceptance asks for
        kafka_broker.start()
        for sender in senders:
            sender.join(300)
            assert not sender.is_alive(), "a sender did not finish"
            assert sender.error is None, sender.error
        metrics = metric_samples(url)
    finally:
        outage.set()
        proc.terminate()
        proc.wait(timeout=30)
    cc, ll = senders

    # every batch answered 200 (the replay too), the outage was felt and retried through
    assert [b for b, _ in cc.answers] == cc.order and [b for b, _ in ll.answers] == ll.order
    for sender in senders:
        assert sender.unavailable + sender.unreachable > 0, "no retry during the outage"

    # the Prometheus counters: what the 200 answers said, by reason
    def counter(name: str, **labels: str) -> float:
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    records = "modelmeter_collect_records_total"
    refused_sent = sum(cc_malformed[b] for b in cc.order)
    by_reason: Counter = Counter()
    for b in cc.order:
        by_reason[MALFORMED[b % len(MALFORMED)][1]] += cc_malformed[b]
    for reason, n in by_reason.items():
        assert counter(records, source="otel_logs", outcome="refused", reason=reason) == n
    refused_counted = sum(
        v
        for (name, labels), v in metrics.items()
        if name == records and ("outcome", "refused") in labels
    )
    assert refused_counted == refused_sent == 101
    accepted = counter(records, source="otel_logs", outcome="accepted", reason="")
    assert accepted == len(cc.order) * BATCH - refused_sent
    assert counter(records, source="litellm", outcome="accepted", reason="") == len(ll.order) * 100
    requests = "modelmeter_collect_requests_total"
    assert counter(requests, source="otel_logs", code="200") == len(cc.order)
    assert counter(requests, source="otel_logs", code="503") == cc.unavailable
    assert counter(requests, source="litellm", code="503") == ll.unavailable

    consume_and_build(settings, timeout=300)
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        total, distinct = con.execute(
            "select count(*), count(distinct event_id) from fct_llm_calls"
        ).fetchone()
        rows = con.execute(
            "select role, model, provider, sum(input_tokens), sum(output_tokens),"
            " sum(cache_read_tokens), sum(cache_write_5m_tokens), count(*),"
            " bool_and(is_priced), sum(cost_usd)"
            " from fct_llm_calls group by role, model, provider"
        ).fetchall()
    finally:
        con.close()
    assert total == distinct == CC_BATCHES * (BATCH - 1) + LL_BATCHES * BATCH

    book = prices()
    got: Counter = Counter()
    for role, model, provider, inp, out, read, write, _n, priced, cost in rows:
        assert role in ROLES and model in MODELS, (role, model)
        assert provider == PROVIDERS[model] and priced, (role, model, provider)
        sums = {"input": inp, "output": out, "cache_read": read, "cache_write_5m": write}
        for kind, value in sums.items():
            got[(role, model, kind)] += int(value or 0)
        # priced from the price book, never from the source's cost
        want = sum(Decimal(int(v or 0)) * book[model][k] for k, v in sums.items()) / 10**6
        assert abs(Decimal(str(cost)) - want) < Decimal("0.01"), (role, model, cost, want)
    assert got == +expected
