"""Files that appear atomically, with the mode the process umask gives (no pyarrow here).

::

    with atomic_write(Path("reports/daily.html")) as fh:   # a binary file object
        fh.write(html.encode())

The content goes to a temporary name in the target's directory, created like ``open()``
creates a file (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode ``0o666`` less the process umask:
``rw-r-----`` under modelmeter's default ``MODELMETER_UMASK=027``, applied at start by
:meth:`pipeline.settings.Settings.apply_umask`), fsynced, renamed over the target, and the
directory fsynced. Readers see the old file or the whole new one; a failure leaves the old
file and no temporary. Never ``tempfile.mkstemp`` (always ``0600``) plus a fixed chmod: the
file's mode is the umask's business.

A file another library creates itself (DuckDB's warehouse) is swapped in with
:func:`replace_file`. The lake (:mod:`pipeline.lake`) passes ``dir_fd``, a directory it
opened without following symbolic links, so nothing here follows a link out of it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "replace_file", "fsync_path", "NEW_FILE_FLAGS"]

#: How a new file is opened: never an existing name, never through a symbolic link.
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a directory (a directory after a rename makes the new name durable)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(
    path: str | os.PathLike[str], *, dir_fd: int | None = None, temp_name: str | None = None
) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces ``path`` when the block ends without error.

    ``dir_fd``: a directory opened by the caller; ``path`` is then a bare name in it.
    ``temp_name``: the temporary name (default ``.<name>.<random>.tmp``), in the same
    directory. The new file's mode is ``0o666`` less the process umask.
    """
    name = os.fspath(path)
    own_fd = None
    if dir_fd is None:
        parent, name = os.path.split(name)
        own_fd = dir_fd = os.open(parent or ".", _DIR_FLAGS)
    elif os.sep in name:
        raise ValueError(f"with dir_fd, {name!r} must be a name, not a path")
    try:
        tmp = temp_name or f".{name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, NEW_FILE_FLAGS, 0o666, dir_fd=dir_fd)  # the umask applies
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        if own_fd is not None:
            os.close(own_fd)


def replace_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Swap the finished file ``source`` in as ``target`` durably: fsync it, rename it over
    ``target`` (same directory), fsync the directory. For files a library created itself
    (it keeps the mode the umask gave them)."""
    fsync_path(source)
    os.replace(source, target)
    fsync_path(Path(target).parent)
