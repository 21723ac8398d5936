"""Every error modelmeter raises on purpose derives from :class:`PipelineError`.

The tree::

    PipelineError                    exit_code 1 unless a subclass says otherwise
    ├── ConfigError                  exit 2: bad usage or unusable input (settings, files, options)
    │   ├── PolicyError              routing policy file invalid (names file, line, field)
    │   ├── PriceBookError           price book invalid (overlaps, negative prices, bad columns)
    │   └── NoDataError              the asked-for day/partition has no data
    ├── ContractError                an event breaks the v1 contract (raised at the agent by the SDK)
    ├── KafkaError                   talking to the broker failed
    │   ├── KafkaUnavailableError    Transient: broker unreachable (bootstrap timeout), exit 2
    │   └── KafkaAuthError           Terminal: wrong credentials / untrusted certificate, exit 2
    ├── ProducerBufferFullError      Transient: the SDK's bounded buffer is full and the broker is slow/away
    ├── LakeWriteError               Terminal: the lake cannot be written (permissions, disk full)
    │   └── ObjectStoreUnavailableError  the lake's bucket did not answer in time, exit 2
    └── WarehouseError               the warehouse cannot be built or opened

Errors carry their context as attributes and build their own one-line message, so the CLI
can print ``modelmeter: error: <message>`` and exit with ``exit_code`` - never a traceback.
"""

from __future__ import annotations

__all__ = [
    "PipelineError",
    "ConfigError",
    "PolicyError",
    "PriceBookError",
    "NoDataError",
    "ContractError",
    "KafkaError",
    "KafkaUnavailableError",
    "KafkaAuthError",
    "ProducerBufferFullError",
    "LakeWriteError",
    "ObjectStoreUnavailableError",
    "WarehouseError",
    "Transient",
    "Terminal",
]


class Transient:
    """Mixin: retrying the same operation later may succeed."""


class Terminal:
    """Mixin: retrying will not help until something outside the process changes."""


class PipelineError(Exception):
    """Root of modelmeter's errors."""

    exit_code: int = 1


class ConfigError(PipelineError):
    """Bad usage or unusable input; the CLI exits 2."""

    exit_code = 2


class PolicyError(ConfigError):
    """The routing policy file is invalid."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path, self.line, self.field = path, line, field
        where = path or "<policy>"
        if line is not None:
            where += f":{line}"
        if field:
            where += f": {field}"
        super().__init__(f"{where}: {message}")


class PriceBookError(ConfigError):
    """The price book is invalid."""


class NoDataError(ConfigError):
    """There is no data for what was asked."""


class ContractError(PipelineError):
    """An event does not satisfy the v1 event contract; ``field`` names the offending field."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class KafkaError(PipelineError):
    """Talking to Kafka failed."""


class KafkaUnavailableError(Transient, KafkaError):
    """The broker could not be reached in time."""

    exit_code = 2


class KafkaAuthError(Terminal, KafkaError):
    """Authentication or TLS verification with the broker failed."""

    exit_code = 2


class ProducerBufferFullError(Transient, PipelineError):
    """The SDK's bounded send buffer is full."""


class LakeWriteError(Terminal, PipelineError):
    """The lake cannot be written; the consumer stops committing and exits non-zero."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{message}" + (f" ({path})" if path else ""))


class ObjectStoreUnavailableError(LakeWriteError):
    """The S3 service holding the lake did not answer within the retry time (or refused the
    credentials); like a broker that cannot be reached, exit 2."""

    exit_code = 2


class WarehouseError(PipelineError):
    """The warehouse cannot be built or opened."""
