"""Logging for every verb: plain text or one JSON object per line, secrets redacted.

``--log-format json`` (or ``MODELMETER_LOG_FORMAT=json``) gives lines such as::

    {"ts": "2026-01-01T00:00:00.123Z", "level": "INFO", "logger": "pipeline.metrics",
     "message": "metrics on http://127.0.0.1:9108/metrics, health on /healthz"}

for log shippers; ``text`` (the default) is for people. Both go to standard error, and both
pass through :class:`RedactFilter`, which replaces the settings' secrets (the SASL password)
wherever they would appear - a last line of defence behind SecretStr, since a library
logging raw protocol bytes at DEBUG would otherwise print a PLAIN password.
Libraries log from WARNING only (kafka-python also at DEBUG, for connection
troubleshooting, but never its byte-level protocol dumps).

A message may quote data (a role, a model, a Kafka message): both formats show it through
:func:`~pipeline.safe_text.visible`, so a record is one printable line and no control, bidi
or zero-width character reaches a terminal or a log file; a traceback keeps its line breaks
and each of its lines is made visible too. JSON lines are ASCII (``ensure_ascii``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from pipeline.safe_text import visible
from pipeline.settings import Settings

__all__ = ["configure_logging", "RedactFilter", "JsonFormatter", "TextFormatter", "REDACTED"]

REDACTED = "**********"

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord attributes that are not "extra" fields.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_HANDLER_NAME = "modelmeter"


class RedactFilter(logging.Filter):
    """Replaces each secret in a record's message (and exception text) by ``**********``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        variants: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            # as is, and as it shows inside the repr of bytes or of a str
            variants |= {secret, repr(secret.encode())[2:-1], repr(secret)[1:-1]}
        self.variants = sorted(variants, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for variant in self.variants:
            text = text.replace(variant, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.variants:
            return True
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def _visible_lines(text: str) -> str:
    """A multi-line text (a traceback) with each line made visible, the line breaks kept."""
    return "\n".join(visible(line) for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    """``_TEXT_FORMAT`` with the message made visible, and each line of a traceback (also
    one :class:`RedactFilter` already rendered into ``exc_text``)."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = visible(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + _visible_lines(record.exc_text)
        if record.stack_info:
            text += "\n" + _visible_lines(self.formatStack(record.stack_info))
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, RFC 3339), level, logger, message, any ``extra``
    fields, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": visible(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = _visible_lines(record.exc_text)
        return json.dumps(out, default=str, ensure_ascii=True)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it per test)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Install modelmeter's handler on the root logger (replacing one installed before) and
    return it. ``stream`` defaults to standard error."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        JsonFormatter() if settings.log_format == "json" else TextFormatter(_TEXT_FORMAT)
    )
    handler.addFilter(RedactFilter(settings.secret_values()))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    level = logging.getLevelName(settings.log_level)
    # modelmeter's own loggers at the asked level; libraries (great-expectations, kafka-python)
    # only from WARNING, except kafka-python at DEBUG for connection troubleshooting.
    root.setLevel(max(level, logging.WARNING))
    logging.getLogger("pipeline").setLevel(level)
    logging.getLogger("kafka").setLevel(level if level == logging.DEBUG else logging.NOTSET)
    logging.getLogger("kafka.protocol").setLevel(max(level, logging.INFO))
    return handler
