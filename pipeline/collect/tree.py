"""Reading a tree of Claude Code transcripts from where each file was left off.

::

    scanner = TreeScanner([Path("~/.claude/projects").expanduser()], reader, state)
    scanner.scan()                       # new lines of every *.jsonl (subagents' too)
    calls = list(reader.unemitted(scanner.pending_keys()))
    ...                                  # send them, then
    scanner.commit()                     # the checkpoints into the state (save it after)

A file's last call is *pending* while the file was written less than ``settle_seconds``
ago: a later line may still raise its counts. Its checkpoint then stays at the first line of
that call, so a restart reads it again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline._exceptions import ConfigError
from pipeline.collect.checkpoint import State, checkpoint_at, resume_offset
from pipeline.collect.claude_code import FileRead, Key, TranscriptReader

__all__ = ["TreeScanner", "transcript_files"]

_CHUNK = 16 * 1024 * 1024
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


@dataclass(slots=True)
class _Cursor:
    device: int
    inode: int
    read: FileRead
    mtime: float = 0.0


def transcript_files(root: Path) -> list[Path]:
    """The ``*.jsonl`` files under ``root``: main transcripts first, then subagents' (so that
    the parent's Agent/Task calls are known before the subagent's lines), each sorted."""
    found = sorted(p for p in root.rglob("*.jsonl") if p.is_file())
    return [p for p in found if p.parent.name != "subagents"] + [
        p for p in found if p.parent.name == "subagents"
    ]


class TreeScanner:
    def __init__(
        self,
        roots: Iterable[Path],
        reader: TranscriptReader,
        state: State,
        *,
        settle_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.roots = [Path(r) for r in roots]
        for root in self.roots:
            if not root.is_dir():
                raise ConfigError(f"{root}: no such directory (--path)")
        self.reader = reader
        self.state = state
        self.settle_seconds = settle_seconds
        self.clock = clock
        self.cursors: dict[str, _Cursor] = {}
        self.files_read = 0
        self.bytes_read = 0
        self.rewritten = 0
        reader.agent_types.update(state.agent_types)
        reader.agent_settings.update(state.agent_settings)

    def files(self) -> list[tuple[Path, Path]]:
        return [(root, path) for root in self.roots for path in transcript_files(root)]

    def scan(
        self, only: set[Path] | None = None, progress: Callable[[], None] | None = None
    ) -> int:
        """Read the new lines of every transcript (or of those in ``only``); the number of
        files looked at."""
        files = self.files()
        if only is not None:
            files = [(root, path) for root, path in files if path in only]
        for root, path in files:
            self._scan_file(root, path)
            if progress is not None:
                progress()
        return len(files)

    def _scan_file(self, root: Path, path: Path) -> None:
        reader = self.reader
        name = str(path)
        agent = None
        if path.parent.name == "subagents" and path.name.startswith("agent-"):
            agent = path.stem.removeprefix("agent-")
            meta = path.with_name(f"agent-{agent}.meta.json")
            if agent not in reader.agent_types and meta.is_file():
                try:
                    reader.agent_meta(agent, meta.read_bytes())
                except OSError:
                    reader.stats.unknown[("agent meta file unreadable", "?")] += 1
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the transcript: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            cursor = self.cursors.get(name)
            if (
                cursor is not None
                and (cursor.device, cursor.inode) == (st.st_dev, st.st_ino)
                and st.st_size >= cursor.read.end
            ):
                start, read = cursor.read.end, cursor.read
            else:
                offset = resume_offset(self.state.files.get(name), fd, st)
                if offset is None:
                    self.rewritten += 1
                    offset = 0
                start, read = offset, FileRead(end=offset)
            project = self._project(root, path)
            while start < st.st_size:
                data = os.pread(fd, min(_CHUNK, st.st_size - start), start)
                if not data:
                    break
                self.bytes_read += len(data)
                part = reader.read_lines(data, offset=start, project=project, agent=agent)
                if part.last_key is not None:
                    read.last_key, read.last_key_start = part.last_key, part.last_key_start
                read.incomplete_tail = part.incomplete_tail
                if part.end == start:  # one line longer than a chunk, or an incomplete tail
                    if len(data) == _CHUNK:
                        reader.stats.unknown[("line longer than 16 MiB", "?")] += 1
                    break
                start = read.end = part.end
            if read.incomplete_tail and st.st_mtime < self.clock() - self.settle_seconds:
                reader.stats.skipped["incomplete last line"] += 1
            self.cursors[name] = _Cursor(st.st_dev, st.st_ino, read, st.st_mtime)
            self.files_read += 1
        finally:
            os.close(fd)

    def _project(self, root: Path, path: Path) -> str:
        """The project directory's name (``-home-me-shop``): the first directory under the
        root, or the root itself when it holds transcripts directly."""
        parts = path.relative_to(root).parts
        if len(parts) > 1 and not any(root.glob("*.jsonl")):
            return parts[0]
        return root.name

    def pending_keys(self) -> set[Key]:
        """The last call of every file written to less than ``settle_seconds`` ago."""
        recent = self.clock() - self.settle_seconds
        return {
            c.read.last_key
            for c in self.cursors.values()
            if c.read.last_key is not None and c.mtime > recent
        }

    def commit(self) -> None:
        """Record each file's checkpoint in the state: after everything read, or at its
        pending call's first line."""
        calls = self.reader.calls
        for name, cursor in self.cursors.items():
            read = cursor.read
            offset = read.end
            last = calls.get(read.last_key) if read.last_key is not None else None
            if last is not None and not last.emitted:
                offset = read.last_key_start
            try:
                fd = os.open(name, _OPEN_FLAGS)
            except OSError:
                continue  # gone since: nothing to resume
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == (cursor.device, cursor.inode):
                    self.state.files[name] = checkpoint_at(fd, st, offset)
            finally:
                os.close(fd)
        self.state.agent_types.update(self.reader.agent_types)
        self.state.agent_settings.update(self.reader.agent_settings)
