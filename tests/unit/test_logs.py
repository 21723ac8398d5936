"""Structured logs and secret redaction."""

from __future__ import annotations

import io
import json
import logging

import pytest

from pipeline.logs import REDACTED, configure_logging
from pipeline.settings import Settings

SECRET = "pa$$-w0rd-\u00e9-redact-me"


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in saved[0]:
            root.removeHandler(h)
    root.setLevel(saved[1])


def settings(**kw) -> Settings:
    return Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="bob",
        kafka_sasl_password=SECRET,
        **kw,
    )


def test_json_format_one_object_per_line_with_extra_fields(restore_root) -> None:
    """--log-format json: each record is one JSON object with ts, level, logger, message
    and the record's extra fields."""
    out = io.StringIO()
    configure_logging(settings(log_format="json"), stream=out)
    logging.getLogger("pipeline.test").info("landed %d events", 5, extra={"partition": 3})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "INFO" and record["logger"] == "pipeline.test"
    assert record["message"] == "landed 5 events" and record["partition"] == 3
    assert record["ts"].endswith("Z")


def test_password_is_redacted_in_messages_args_bytes_and_tracebacks(restore_root) -> None:
    """The password never reaches the log: not as text, an argument, inside bytes, or in
    an exception's traceback; in text and in JSON format."""
    for fmt in ("text", "json"):
        out = io.StringIO()
        configure_logging(settings(log_format=fmt, log_level="DEBUG"), stream=out)
        log = logging.getLogger("pipeline.test")
        log.info("password is " + SECRET)
        log.warning("args %s", SECRET)
        log.debug("bytes %r", b"\x00bob\x00" + SECRET.encode())
        try:
            raise RuntimeError(f"boom {SECRET}")
        except RuntimeError:
            log.exception("failed")
        text = out.getvalue()
        assert SECRET not in text
        assert repr(SECRET.encode())[2:-1] not in text
        assert text.count(REDACTED) >= 4


def test_configure_twice_keeps_one_handler(restore_root) -> None:
    """Configuring again replaces modelmeter's handler instead of doubling every line."""
    out = io.StringIO()
    configure_logging(Settings(), stream=io.StringIO())
    configure_logging(Settings(), stream=out)
    logging.getLogger("pipeline.test").warning("once")
    assert out.getvalue().count("once") == 1


def test_kafka_library_chatter_is_kept_at_warning(restore_root) -> None:
    """At INFO, kafka-python's INFO lines are dropped; at DEBUG its protocol byte dumps
    still are."""
    out = io.StringIO()
    configure_logging(Settings(), stream=out)
    logging.getLogger("kafka.net.manager").info("bootstrap attempt")
    configure_logging(Settings(log_level="DEBUG"), stream=out)
    logging.getLogger("kafka.protocol.parser").debug("Send: bytes")
    assert out.getvalue() == ""


def test_messages_quoting_data_are_one_printable_line_in_text_and_json(restore_root) -> None:
    """A message quoting a HOSTILE value (a role from a Kafka message, say) is one printable
    line: every control, bidi or zero-width character shown as its escape; JSON is ASCII.
    A traceback keeps its line breaks, each of its lines made visible."""
    from pipeline.safe_text import visible
    from tests.fixtures.hostile_text import HOSTILE, RAW, only_printable

    for fmt in ("text", "json"):
        out = io.StringIO()
        configure_logging(settings(log_format=fmt), stream=out)
        log = logging.getLogger("pipeline.test")
        for value in HOSTILE:
            log.warning("unknown role %s", value)
        try:
            raise ValueError("bad role \x1b[2J\u202e")
        except ValueError:
            log.exception("failed on %r", "x")
        text = out.getvalue()
        assert only_printable(text) and not RAW.search(text), fmt
        lines = text.splitlines()
        assert len([line for line in lines if "unknown role" in line]) == len(HOSTILE)
        if fmt == "json":
            assert text.isascii()
            records = [json.loads(line) for line in lines]
            assert [r["message"] for r in records[: len(HOSTILE)]] == [
                f"unknown role {visible(v)}" for v in HOSTILE
            ]
            assert "ValueError: bad role \\x1b[2J\\u202e" in records[-1]["exception"]
        else:
            for line, value in zip(lines, HOSTILE, strict=False):
                assert line.endswith(f"pipeline.test: unknown role {visible(value)}")
            assert "ValueError: bad role \\x1b[2J\\u202e" in lines
            assert lines[len(HOSTILE)].endswith("failed on 'x'")
            assert lines[len(HOSTILE) + 1] == "Traceback (most recent call last):"
