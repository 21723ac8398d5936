"""A lake in an S3 bucket: ``MODELMETER_LAKE=s3://BUCKET/PREFIX``.

The layout is the local lake's (:mod:`pipeline.lake_files`): object keys
``PREFIX/<table>/<partition>/<topic>+<partition>+<first>+<last>.parquet`` and the partition
indexes under ``PREFIX/_index/partitions/``. Objects are addressed as
:class:`~pathlib.PurePosixPath` ``BUCKET/PREFIX/...`` (pyarrow's S3 paths), so the code
that takes a lake file's table and partition from its path's parents works unchanged.

Differences from a local lake:

* a file is one PUT of the whole Parquet body (S3 makes an object visible only once its
  upload completed): no temporary object, no rename, so nothing for recovery to clean;
* a failed request is retried with back-off (0.2 s doubling to 5 s) for
  ``MODELMETER_LAKE_RETRY_SECONDS`` (default 120), then
  :class:`~pipeline.ObjectStoreUnavailableError` (exit 2):
  the consumer stops without committing and exits 2;
* the connection comes from the standard AWS settings: ``AWS_ENDPOINT_URL`` (an
  S3-compatible service; pyarrow does not read it itself), ``AWS_REGION`` /
  ``AWS_DEFAULT_REGION``, and credentials from the AWS SDK's chain (``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and the shared files, instance roles). None of
  them is ever printed.

pyarrow is imported on first use, not with this module (:mod:`pipeline.lake_files` imports
it and stays light for the consumer's poller).
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pipeline._exceptions import ConfigError, ObjectStoreUnavailableError

__all__ = ["ObjectLake", "is_object_url", "RETRY_SECONDS_ENV"]

RETRY_SECONDS_ENV = "MODELMETER_LAKE_RETRY_SECONDS"
_DEFAULT_RETRY_SECONDS = 120.0
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_T = TypeVar("_T")
#: Errors of the S3 API that retrying cannot cure (credentials, permissions, no bucket).
_REFUSED = (
    "ACCESS_DENIED",
    "AccessDenied",
    "InvalidAccessKeyId",
    "INVALID_ACCESS_KEY_ID",
    "SignatureDoesNotMatch",
    "SIGNATURE_DOES_NOT_MATCH",
    "NoSuchBucket",
    "NO_SUCH_BUCKET",
)
_FILESYSTEMS: dict[tuple[str, ...], Any] = {}


def _reason(text: str) -> str:
    """The telling part of an AWS SDK error: from "AWS Error" on, one line, bounded."""
    start = text.find("AWS Error")
    line = " ".join((text[start:] if start >= 0 else text).split())
    return (line[:240] + "...") if len(line) > 240 else (line or "no answer")


def is_object_url(value: object) -> bool:
    """True for a string that names a URL (``scheme://...``), supported or not."""
    return isinstance(value, str) and bool(_URL.match(value))


@dataclass(frozen=True, slots=True)
class ObjectLake:
    """The lake at ``s3://bucket/prefix``."""

    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> ObjectLake:
        """``s3://bucket[/prefix]``; anything else raises ValueError naming what is wrong."""
        parts = urlsplit(url)
        if "@" in parts.netloc:  # never echoed: it may hold a key and a secret
            raise ValueError(
                "the lake URL holds credentials (user:secret@); give them through the AWS"
                " settings (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE), never in"
                " the URL"
            )
        if parts.scheme != "s3":
            raise ValueError(
                f"{url!r}: only s3:// URLs are supported for the lake (any S3-compatible"
                " service, through AWS_ENDPOINT_URL)"
            )
        if parts.query or parts.fragment or parts.port:
            raise ValueError(f"{url!r}: expected s3://BUCKET/PREFIX, nothing else")
        if not _BUCKET.match(parts.netloc):  # lower case: never lowered silently
            raise ValueError(f"{url!r}: {parts.netloc!r} is not a valid S3 bucket name")
        prefix = parts.path.strip("/")
        if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
            raise ValueError(f"{url!r}: the prefix has an empty, '.' or '..' component")
        return cls(parts.netloc, prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def root(self) -> PurePosixPath:
        """The lake's root as a pyarrow S3 path, ``bucket/prefix``."""
        return (
            PurePosixPath(self.bucket, self.prefix) if self.prefix else PurePosixPath(self.bucket)
        )

    def path(self, *parts: str) -> PurePosixPath:
        return self.root.joinpath(*parts)

    def relative(self, path: PurePosixPath) -> str:
        return path.relative_to(self.root).as_posix()

    def _key(self, path: PurePosixPath) -> str:
        """``path`` as said in messages: relative to the lake when inside it."""
        try:
            return self.relative(path)
        except ValueError:
            return str(path)

    # -- connection ---------------------------------------------------------------------
    def filesystem(self) -> Any:
        """A pyarrow S3FileSystem from the AWS settings (one per process and settings)."""
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        key = (endpoint or "", region or "", os.environ.get("AWS_PROFILE", ""))
        fs = _FILESYSTEMS.get(key)
        if fs is None:
            from pyarrow import fs as pafs

            options: dict[str, Any] = {
                "connect_timeout": 5,
                "request_timeout": 30,
                # the back-off is ours (:meth:`_retry`): one attempt per call
                "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=1),
            }
            if region:
                options["region"] = region
            if endpoint:
                split = urlsplit(endpoint)
                if split.scheme not in ("http", "https") or not split.netloc:
                    raise ConfigError(
                        "AWS_ENDPOINT_URL must be http(s)://host[:port] (the endpoint of the S3 API)"
                    )
                options["endpoint_override"] = split.netloc
                options["scheme"] = split.scheme
                options.setdefault("region", "us-east-1")
            fs = _FILESYSTEMS[key] = pafs.S3FileSystem(**options)
        return fs

    def check(self) -> None:
        """Raise unless the bucket exists (:class:`~pipeline.ConfigError`) and answers
        (:class:`~pipeline.ObjectStoreUnavailableError`): both exit 2."""
        from pyarrow import fs as pafs

        info = self._retry(
            f"reach the bucket {self.bucket}", lambda: self.filesystem().get_file_info(self.bucket)
        )
        if info.type == pafs.FileType.NotFound:
            raise ConfigError(f"the bucket {self.bucket!r} does not exist (create it first)")

    def _retry(self, what: str, call: Callable[[], _T]) -> _T:
        """``call()``, retried with back-off while the store fails, for at most the retry time."""
        limit = float(os.environ.get(RETRY_SECONDS_ENV) or _DEFAULT_RETRY_SECONDS)
        deadline = time.monotonic() + limit
        pause = 0.2
        while True:
            try:
                return call()
            except FileNotFoundError:
                raise
            except OSError as exc:
                text = str(exc).strip()
                if any(word in text for word in _REFUSED):  # waiting will not help
                    raise ObjectStoreUnavailableError(
                        f"the object store refused to {what}: {_reason(text)}"
                    ) from None
                if time.monotonic() + pause > deadline:
                    raise ObjectStoreUnavailableError(
                        f"the object store did not answer for {limit:g} s while trying to"
                        f" {what}: {_reason(text)}"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    # -- objects ------------------------------------------------------------------------
    def put_bytes(self, path: PurePosixPath, body: bytes) -> None:
        """Store ``body`` as one object (visible whole or not at all)."""

        def put() -> None:
            with self.filesystem().open_output_stream(str(path)) as out:
                out.write(body)

        self._retry(f"write {self._key(path)}", put)

    def get_bytes(self, path: PurePosixPath) -> bytes | None:
        """The object's body, or None when there is none."""

        def get() -> bytes:
            with self.filesystem().open_input_stream(str(path)) as stream:
                return bytes(stream.read())

        try:
            return self._retry(f"read {self._key(path)}", get)
        except FileNotFoundError:
            return None

    def put_table(self, table: Any, path: PurePosixPath, write: Callable[[Any, Any], None]) -> None:
        """Encode ``table`` with ``write(table, sink)`` in memory, then one PUT."""
        buffer = io.BytesIO()
        write(table, buffer)
        self.put_bytes(path, buffer.getvalue())

    def read_table(self, path: PurePosixPath) -> Any:
        """The Parquet object at ``path``: fetched with retries, decoded after (a damaged file
        raises as on disk, it is not mistaken for an unreachable store)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        body = self.get_bytes(path)
        if body is None:
            raise FileNotFoundError(str(path))
        return pq.read_table(pa.BufferReader(body))

    def num_rows(self, path: PurePosixPath) -> int:
        """Rows of the Parquet object at ``path``; -1 when it is gone or not a Parquet file
        (then it is not part of a complete flush), as for a local file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        body = self.get_bytes(path)
        if body is None:
            return -1
        try:
            return int(pq.read_metadata(pa.BufferReader(body)).num_rows)
        except Exception:  # not a Parquet file: not a complete flush
            return -1

    def delete(self, path: PurePosixPath) -> None:
        def delete() -> None:
            self.filesystem().delete_file(str(path))

        with suppress(FileNotFoundError):  # gone already
            self._retry(f"delete {path}", delete)

    def files(self, relative: str = "") -> Iterator[tuple[PurePosixPath, int, int]]:
        """(path, bytes, mtime_ns) of the objects under ``relative`` (recursively); the
        directory markers some services list are skipped."""
        from pyarrow import fs as pafs

        base = self.path(relative) if relative else self.root
        selector = pafs.FileSelector(str(base), recursive=True, allow_not_found=True)
        infos = self._retry(f"list {base}", lambda: self.filesystem().get_file_info(selector))
        for info in infos:
            if info.type == pafs.FileType.File and not info.path.endswith("/"):
                yield PurePosixPath(info.path), int(info.size or 0), int(info.mtime_ns or 0)

    def partition_objects(self, relative: str = "") -> Iterator[tuple[PurePosixPath, int, int]]:
        """:meth:`files` under ``relative`` that lie directly in a partition directory
        ``<table>/<key>=<value>/`` of the lake (what a local lake's partition directories
        hold; an object deeper down, or beside them, is not a lake file)."""
        for path, size, mtime in self.files(relative):
            if path.parent.parent.parent == self.root and "=" in path.parent.name:
                yield path, size, mtime

    # -- added for compaction (pipeline.compaction_store) --------------------------------
    def exists(self, path: PurePosixPath) -> bool:
        """True when the object ``path`` exists (one HEAD request)."""
        from pyarrow import fs as pafs

        info = self._retry(
            f"look up {self._key(path)}", lambda: self.filesystem().get_file_info(str(path))
        )
        return bool(info.type == pafs.FileType.File)

    def copy(self, source: PurePosixPath, target: PurePosixPath) -> None:
        """Copy the object ``source`` to ``target`` on the server (S3 CopyObject: ``target``
        appears whole or not at all; no body goes through this process). FileNotFoundError
        when there is no ``source``."""
        if not self.exists(source):
            raise FileNotFoundError(str(source))
        self._retry(
            f"copy {self._key(source)} to {self._key(target)}",
            lambda: self.filesystem().copy_file(str(source), str(target)),
        )
