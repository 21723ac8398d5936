"""Reading configuration files that may be hostile: YAML (routing policy, dq.yaml), JSON
(expectation suites) and the text under both (also the price book's CSV).

::

    doc = read_yaml("schemas/dq.yaml")              # ConfigError "dq.yaml:7: <problem>"
    doc.data                                         # the top-level mapping (floats as Decimal)
    doc.lines[("volume", "min_ratio")]               # the line of a key, for messages
    suite = read_json("schemas/expectations/llm_call.json")
    text = read_text("schemas/prices.csv", what="price book")

Everything below is refused with one :class:`ConfigError` line naming ``file:line`` (exit 2),
before any structure is built from the text, so a hostile file costs no more than reading it:

* a missing file, a directory or anything but a regular file, more than :data:`MAX_BYTES`,
  bytes that are not UTF-8, control characters (NUL...); an empty file (no document);
* YAML anchors (``&name``) and aliases (``*name``), refused at the parser's event, so an
  alias bomb or a self-reference is never expanded; merge keys (``<<``), keys that are not
  plain scalars, duplicate keys; nesting deeper than :data:`MAX_DEPTH`; several documents;
* numbers beyond :data:`MAX_INT_DIGITS` digits, and YAML floats that are not plain finite
  decimals with at most 15 digits before the point and 12 after (they are read as
  :class:`~decimal.Decimal` from their text, never through a binary float); JSON
  ``NaN``/``Infinity``, non-finite or out-of-range numbers, duplicate object keys;
* a top level that is not a mapping (YAML) or an object (JSON).

A caller that raises its own ConfigError subclass passes ``error=`` (problem, line, field)
-> exception; by default the message is ``<file>:<line>: <field>: <problem>``.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, NodeEvent

from pipeline._exceptions import ConfigError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "ErrorFactory",
    "YamlDocument",
    "decode_text",
    "read_bytes",
    "read_json",
    "read_text",
    "read_yaml",
]

#: Configuration files are small; anything bigger is a mistake (or an attack).
MAX_BYTES = 1024 * 1024
#: Nesting of mappings/lists (YAML) or objects/arrays (JSON).
MAX_DEPTH = 32
#: Integers: at most this many digits (fits a signed 64-bit integer).
MAX_INT_DIGITS = 18
_MAX_FLOAT_INT_DIGITS, _MAX_FLOAT_DECIMALS = 15, 12

#: (problem, line or None, dotted field or None) -> the exception to raise
ErrorFactory = Callable[[str, int | None, str | None], ConfigError]
_Path = tuple[str | int, ...]

# Not allowed anywhere in a configuration file: C0/C1 controls but tab, LF, CR (and NEL,
# which YAML treats as a line break), DEL, the non-characters U+FFFE/U+FFFF.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]")


def _default_error(path: str | Path) -> ErrorFactory:
    def make(problem: str, line: int | None, field: str | None) -> ConfigError:
        where = (
            str(path) + (f":{line}" if line is not None else "") + (f": {field}" if field else "")
        )
        return ConfigError(f"{where}: {problem}")

    return make


def _line_at(text: str, index: int) -> int:
    return text.count("\n", 0, max(index, 0)) + 1


def _dotted(at: tuple[str | int, ...] | list[str | int]) -> str:
    """``("roles", "architect", "triggers", 0)`` -> ``roles.architect.triggers[0]``."""
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------


def read_text(path: str | Path, *, what: str = "file", error: ErrorFactory | None = None) -> str:
    """The UTF-8 text of the regular file ``path`` (a leading BOM dropped), or ConfigError."""
    fail = error or _default_error(path)
    return decode_text(read_bytes(path, what=what, error=fail), what=what, error=fail)


def read_bytes(path: str | Path, *, what: str = "file", error: ErrorFactory | None = None) -> bytes:
    """The bytes of the regular file ``path``, at most :data:`MAX_BYTES` of them, or ConfigError."""
    fail = error or _default_error(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise fail(f"cannot read the {what}: no such file", None, None) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise fail(f"cannot read the {what}: {_reason(exc)}", None, None) from None
    data, problem = b"", None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            problem = "it is a directory"
        elif not stat.S_ISREG(mode):  # a FIFO or a device could block or never end
            problem = "not a regular file"
        else:
            with os.fdopen(os.dup(fd), "rb") as stream:
                data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        problem = _reason(exc)
    finally:
        os.close(fd)
    if problem:
        raise fail(f"cannot read the {what}: {problem}", None, None)
    if len(data) > MAX_BYTES:
        raise fail(f"the {what} is larger than {MAX_BYTES // 1024} KiB", None, None)
    return data


def decode_text(data: bytes, *, what: str, error: ErrorFactory) -> str:
    """``data`` as UTF-8 (a leading BOM dropped) without control characters, or ConfigError."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"the {what} is not UTF-8 text (byte 0x{data[exc.start]:02x})", line, None
        ) from None
    bad = _CONTROL.search(text)
    if bad:
        raise error(
            f"control character U+{ord(bad.group()):04X} is not allowed",
            _line_at(text, bad.start()),
            None,
        )
    return text


def _reason(exc: OSError | ValueError) -> str:
    strerror = getattr(exc, "strerror", None)
    return strerror.lower() if strerror else str(exc)


# ---------------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class YamlDocument:
    """A YAML file's top-level mapping and the line of every key (and list item) in it."""

    path: str
    data: dict[Any, Any]
    lines: dict[_Path, int]


class _Refused(Exception):
    def __init__(self, problem: str, line: int | None, field: _Path | None = None) -> None:
        super().__init__(problem)
        self.problem, self.line, self.field = problem, line, field


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases and deep nesting as the parser meets them."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, AliasEvent):
            raise _Refused(f"YAML aliases (*{event.anchor}) are not allowed", line)
        if isinstance(event, NodeEvent) and event.anchor is not None:
            raise _Refused(f"YAML anchors (&{event.anchor}) are not allowed", line)
        if not isinstance(event, CollectionStartEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", line)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, ArithmeticError) as exc:  # e.g. a timestamp in year 0
            raise _Refused(
                f"invalid {node.tag.rsplit(':', 1)[-1]} {_short(node)}: {exc}",
                node.start_mark.line + 1,
            ) from None


def _short(node: yaml.Node) -> str:
    value = node.value if isinstance(node, yaml.ScalarNode) else ""
    return repr(value if len(value) <= 40 else value[:37] + "...")


_PLAIN_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_FLOAT_QUANTUM = Decimal(1).scaleb(-_MAX_FLOAT_DECIMALS)


def _yaml_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    """A YAML float as the Decimal of its text, if it is a plain, bounded, finite decimal."""
    text = str(loader.construct_scalar(node))
    line = node.start_mark.line + 1
    clean = text.replace("_", "")
    if clean.lower().lstrip("+-") in (".inf", ".nan"):
        raise _Refused(f"{text} is not a finite number", line)
    try:
        value = Decimal(clean) if len(clean) <= 64 and _PLAIN_FLOAT.fullmatch(clean) else None
    except InvalidOperation:  # an exponent beyond what Decimal represents
        value = None
    if value is None:
        raise _Refused(f"{_short(node)} is not a plain decimal number", line)
    if value and value.adjusted() >= _MAX_FLOAT_INT_DIGITS:
        raise _Refused(
            f"{text} is too large (at most {_MAX_FLOAT_INT_DIGITS} digits before the "
            "decimal point)",
            line,
        )
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and (exponent > 0 or exponent < -_MAX_FLOAT_DECIMALS):
        scaled = value.quantize(_FLOAT_QUANTUM)
        if scaled != value:
            raise _Refused(f"{text} has more than {_MAX_FLOAT_DECIMALS} decimal places", line)
        value = scaled.normalize() if scaled != scaled.to_integral_value() else scaled.quantize(1)
    return value


def _yaml_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if len(text.replace("_", "").lstrip("+-")) > MAX_INT_DIGITS + 2:  # 0x / 0b / 0o prefixes
        raise _Refused(
            f"{_short(node)} is too large (at most {MAX_INT_DIGITS} digits)",
            node.start_mark.line + 1,
        )
    value = yaml.SafeLoader.construct_yaml_int(loader, node)  # type: ignore[no-untyped-call]
    if abs(value) >= 10**MAX_INT_DIGITS:
        raise _Refused(
            f"{text} is too large (at most {MAX_INT_DIGITS} digits)", node.start_mark.line + 1
        )
    return int(value)


_Loader.add_constructor("tag:yaml.org,2002:float", _yaml_float)  # type: ignore[arg-type]
_Loader.add_constructor("tag:yaml.org,2002:int", _yaml_int)  # type: ignore[arg-type]


def read_yaml(
    path: str | Path, *, what: str = "file", error: ErrorFactory | None = None
) -> YamlDocument:
    """Read the YAML mapping at ``path``; anything unsafe or malformed raises ConfigError."""
    fail = error or _default_error(path)
    text = read_text(path, what=what, error=fail)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise fail(f"the {what} is empty (no YAML document)", None, None)
        if not isinstance(node, yaml.MappingNode):
            raise fail("expected a mapping at the top level", node.start_mark.line + 1, None)
        lines: dict[_Path, int] = {}
        _index(node, (), lines)
        data = loader.construct_document(node)
    except _Refused as exc:
        problem = exc.problem.splitlines()[0] if exc.problem.strip() else "invalid value"
        raise fail(problem, exc.line, _dotted(exc.field) if exc.field else None) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise fail(f"YAML syntax error: {problem}", mark.line + 1 if mark else None, None) from None
    except yaml.YAMLError as exc:
        raise fail(f"YAML syntax error: {str(exc).splitlines()[0]}", None, None) from None
    finally:
        loader.dispose()
    return YamlDocument(str(path), data, lines)


def _index(root: yaml.Node, at: _Path, lines: dict[_Path, int]) -> None:
    """Record the line of every key and item; refuse merge keys, complex and duplicate keys
    (the first in the file when there are several). Iterative: the depth is bounded anyway."""
    first: _Refused | None = None

    def refuse(problem: str, line: int, field: _Path | None) -> None:
        nonlocal first
        if first is None or line < (first.line or 0):
            first = _Refused(problem, line, field)

    stack: list[tuple[yaml.Node, _Path]] = [(root, at)]
    while stack:
        node, at = stack.pop()
        lines.setdefault(at, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if key_node.tag == "tag:yaml.org,2002:merge":
                    refuse("YAML merge keys (<<) are not allowed", line, at or None)
                elif not isinstance(key_node, yaml.ScalarNode):
                    refuse("a key must be a plain value, not a list or a mapping", line, at or None)
                elif key_node.value in seen:
                    refuse("duplicate key", line, (*at, key_node.value))
                else:
                    seen.add(key_node.value)
                    lines[(*at, key_node.value)] = line
                    stack.append((value_node, (*at, key_node.value)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*at, i)) for i, item in enumerate(node.value))
    if first is not None:
        raise first


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


class _JsonRefused(Exception):
    """``index``: where in the text; else ``token`` (a number's text) is looked up from the
    start of the innermost object or array."""

    def __init__(self, problem: str, index: int | None = None, token: str | None = None) -> None:
        super().__init__(problem)
        self.problem, self.index, self.token = problem, index, token

    def located(self, text: str, start: int) -> _JsonRefused:
        if self.index is None:
            found = text.find(self.token, start) if self.token else -1
            self.index = found if found >= 0 else start
        return self


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _JsonRefused(
            f"{text[:24]}... is too large (at most {MAX_INT_DIGITS} digits)", token=text
        )
    return int(text)


def _json_float(text: str) -> float:
    value = float(text) if len(text) <= 64 else float("inf")
    if not abs(value) < 10.0**_MAX_FLOAT_INT_DIGITS:
        raise _JsonRefused(
            f"{text[:24]} is out of range (at most {_MAX_FLOAT_INT_DIGITS} digits "
            "before the decimal point)",
            token=text,
        )
    return value


def _json_constant(text: str) -> float:
    raise _JsonRefused(f"{text} is not a finite number", token=text)


class _Decoder(json.JSONDecoder):
    """A pure-Python decoder that knows where each object and array starts (for lines)."""

    def __init__(self) -> None:
        super().__init__(
            parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant, strict=True
        )
        self.depth = 0
        self.parse_object = self._object  # type: ignore[assignment]
        self.parse_array = self._array  # type: ignore[assignment]
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]

    def _enter(self, start: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _JsonRefused(f"nested more than {MAX_DEPTH} levels deep", start)

    def _object(
        self,
        s_and_end: tuple[str, int],
        strict: bool,
        scan_once: Any,
        object_hook: Any,
        object_pairs_hook: Any,
        memo: Any = None,
    ) -> tuple[dict[str, Any], int]:
        start = s_and_end[1] - 1
        self._enter(start)
        try:
            pairs, end = json.decoder.JSONObject(  # type: ignore[attr-defined]
                s_and_end, strict, scan_once, None, lambda p: p, memo
            )
        except _JsonRefused as exc:
            raise exc.located(s_and_end[0], start) from None
        finally:
            self.depth -= 1
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise _JsonRefused(f"duplicate key {key!r} in the object", start)
            result[key] = value
        return result, end

    def _array(self, s_and_end: tuple[str, int], scan_once: Any) -> tuple[list[Any], int]:
        start = s_and_end[1] - 1
        self._enter(start)
        try:
            return json.decoder.JSONArray(s_and_end, scan_once)  # type: ignore[attr-defined,no-any-return]
        except _JsonRefused as exc:
            raise exc.located(s_and_end[0], start) from None
        finally:
            self.depth -= 1


def read_json(
    path: str | Path, *, what: str = "file", error: ErrorFactory | None = None
) -> dict[str, Any]:
    """Read the JSON object at ``path``; anything unsafe or malformed raises ConfigError."""
    fail = error or _default_error(path)
    text = read_text(path, what=what, error=fail)
    if not text.strip():
        raise fail(f"the {what} is empty (no JSON document)", None, None)
    try:
        data = _Decoder().decode(text)
    except _JsonRefused as exc:
        raise fail(
            exc.problem, None if exc.index is None else _line_at(text, exc.index), None
        ) from None
    except json.JSONDecodeError as exc:
        raise fail(f"JSON syntax error: {exc.msg}", exc.lineno, None) from None
    except RecursionError:  # unreachable with MAX_DEPTH, kept as a last guard
        raise fail(f"nested more than {MAX_DEPTH} levels deep", None, None) from None
    if not isinstance(data, dict):
        raise fail("expected an object at the top level", 1, None)
    return data
