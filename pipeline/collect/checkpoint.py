"""Per-file checkpoints of ``collect claude-code``: where to start reading each transcript.

A checkpoint is (device, inode, size, offset, SHA-256 of the first bytes up to 4 KiB); it
is trusted only when the file is still the same one (same device and inode, not shorter than
the offset, same first bytes). A file that shrank or was rewritten is read again from the
start: the calls' keys make that harmless. The state file (JSON) also keeps the role hints
learnt from files already read (subagent types, ``agent-setting`` names), and is replaced
atomically (:func:`pipeline.files.atomic_write`) only after the broker acknowledged the
calls it covers.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline._exceptions import ConfigError
from pipeline.files import atomic_write

__all__ = ["HEAD_BYTES", "Checkpoint", "State", "head_hash", "load_state", "save_state"]

#: How much of a file's start identifies it.
HEAD_BYTES = 4096
STATE_VERSION = 1


@dataclass(slots=True)
class Checkpoint:
    device: int
    inode: int
    size: int
    offset: int
    head_len: int
    head_sha256: str


@dataclass
class State:
    files: dict[str, Checkpoint] = field(default_factory=dict)
    agent_types: dict[str, str] = field(default_factory=dict)
    agent_settings: dict[str, str] = field(default_factory=dict)


def head_hash(fd: int, length: int) -> str:
    """SHA-256 of the first ``length`` bytes of the open file ``fd``."""
    return hashlib.sha256(os.pread(fd, length, 0)).hexdigest()


def resume_offset(checkpoint: Checkpoint | None, fd: int, st: os.stat_result) -> int | None:
    """Where to resume reading the open file: the checkpoint's offset when it is the same
    file; 0 for a file seen for the first time; None when it shrank or was rewritten (then
    read it from 0 again)."""
    if checkpoint is None:
        return 0
    if (
        checkpoint.device != st.st_dev
        or checkpoint.inode != st.st_ino
        or st.st_size < checkpoint.offset
        or head_hash(fd, checkpoint.head_len) != checkpoint.head_sha256
    ):
        return None
    return checkpoint.offset


def checkpoint_at(fd: int, st: os.stat_result, offset: int) -> Checkpoint:
    length = min(HEAD_BYTES, offset)
    return Checkpoint(st.st_dev, st.st_ino, st.st_size, offset, length, head_hash(fd, length))


def load_state(path: Path) -> State:
    """The state file, or an empty state when it does not exist; ConfigError when unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return State()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint file: {exc.strerror}") from None
    try:
        doc = orjson.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} checkpoint file")
        files = {name: Checkpoint(**cp) for name, cp in doc["files"].items()}
        return State(files, dict(doc["agent_types"]), dict(doc["agent_settings"]))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(
            f"{path}: bad checkpoint file ({exc}); move it away to read every transcript again"
        ) from None


def save_state(path: Path, state: State) -> None:
    doc: dict[str, Any] = {
        "version": STATE_VERSION,
        "files": {name: asdict(cp) for name, cp in sorted(state.files.items())},
        "agent_types": state.agent_types,
        "agent_settings": state.agent_settings,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
