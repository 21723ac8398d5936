"""A real Kafka broker for the tests, run by the project's own ops/kafka/kafka.sh.

The same script that `make kafka-up` uses starts a broker on free loopback ports with its
own data directory, so tests never touch a developer's broker on 9092.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO_ROOT / "ops" / "kafka" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalBroker:
    """A broker process managed through ops/kafka/kafka.sh."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    extra_config: Path | None = None
    format_args: str = ""
    heap: str = "-Xms128m -Xmx512m"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(KAFKA_PORT=str(self.port), KAFKA_CONTROLLER_PORT=str(self.controller_port),
                   KAFKA_DATA_DIR=str(self.data_dir), KAFKA_HEAP_OPTS=self.heap,
                   KAFKA_FORMAT_ARGS=self.format_args)
        if self.extra_config:
            env["KAFKA_EXTRA_CONFIG"] = str(self.extra_config)
        return env

    def _run(self, verb: str) -> None:
        proc = subprocess.run(["bash", str(KAFKA_SH), verb], env=self._env(),
                              capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"kafka.sh {verb} failed ({proc.returncode}): {proc.stderr.strip()}")

    def start(self) -> None:
        self._run("up")

    def stop(self) -> None:
        self._run("down")

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"


@dataclass
class ExternalBroker:
    """A broker someone else runs (KAFKA_BOOTSTRAP_SERVERS set): it cannot be restarted."""

    bootstrap: str

    def start(self) -> None:  # pragma: no cover - nothing to do
        pass

    def stop(self) -> None:
        import pytest

        pytest.skip("the broker in KAFKA_BOOTSTRAP_SERVERS is not ours to stop")

    restart = stop
