"""Hostile input files fail safe, and configured paths are literals.

Every configuration file (routing policy, dq.yaml, expectation suites, price book) refuses
what could hang, exhaust memory, crash or be misread - YAML anchors/aliases, duplicate keys,
deep nesting, unbounded numbers, bad bytes, things that are not files - with one line
naming ``file:line`` (ConfigError, exit 2), never ``internal error``. Paths of the lake and
the warehouse reach DuckDB and pyarrow as literals: no glob, no hive ``key=value`` parsing of
the lake's own location, no URI.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import pipeline.config_files as config_files
from pipeline._exceptions import ConfigError, PolicyError, PriceBookError
from pipeline.cli import main
from pipeline.config_files import read_json, read_yaml
from pipeline.dq.config import load_dq_config
from pipeline.dq.gx import load_suite
from pipeline.dq.lakeday import load_lake_day
from pipeline.lake import SCHEMAS
from pipeline.policy import load_policy
from pipeline.prices import load_price_book
from pipeline.settings import Settings
from pipeline.warehouse import build_warehouse, open_warehouse_readonly
from tests.fixtures.golden import llm_call, write_events_lake

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY = REPO_ROOT / "schemas" / "routing_policy.yaml"
PRICES = REPO_ROOT / "schemas" / "prices.csv"
SUITE = REPO_ROOT / "schemas" / "expectations" / "llm_call.json"
POLICY_TEXT = POLICY.read_text(encoding="utf-8")
PRICES_TEXT = PRICES.read_text(encoding="utf-8")
UTC = dt.UTC


def _dq_text() -> str:
    return f"expectations_dir: {REPO_ROOT / 'schemas' / 'expectations'}\nmax_rejected_rate: 0.01\n"


def _bomb(levels: int = 9, indent: str = "  ") -> str:
    """The billion laughs: each level a list of 9 aliases of the level below (9**9 leaves)."""
    lines = [f'{indent}a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [
        f"{indent}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)
    ]
    return "\n".join(lines) + "\n"


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _refused(load: Callable[[Path], Any], path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(path)
    error = info.value
    assert error.exit_code == 2 and "\n" not in str(error), str(error)
    assert str(error).startswith(str(path)), str(error)
    return error


# ---------------------------------------------------------------------------------------------
# YAML: anchors and aliases are refused by the parser, never expanded
# ---------------------------------------------------------------------------------------------


def test_policy_alias_bomb_exits_2_at_the_first_anchor_in_no_time(tmp_path, capsys):
    """`modelmeter policy check` on a billion-laughs policy: exit 2, one line, the anchor's line."""
    text = POLICY_TEXT + "extra:\n" + _bomb()
    path = _write(tmp_path / "bomb.yaml", text)
    started = time.monotonic()
    assert main(["policy", "check", str(path)]) == 2
    assert time.monotonic() - started < 2  # generous: the refusal happens before composing
    line = _line_of(text, "&a0")
    assert capsys.readouterr().err == (
        f"modelmeter: error: {path}:{line}: YAML anchors (&a0) are not allowed\n"
    )


def test_policy_alias_bomb_through_the_console_script_within_2_seconds(tmp_path):
    text = POLICY_TEXT + "extra:\n" + _bomb()
    path = _write(tmp_path / "bomb.yaml", text)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "policy", "check", "--policy", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"modelmeter: error: {path}:{_line_of(text, '&a0')}: YAML anchors (&a0) are not allowed\n"
    )
    assert elapsed < 2 + 3  # 2 s of work; the interpreter's start-up on a busy machine on top


def test_no_alias_is_ever_resolved(tmp_path):
    """The refusal comes from the parser's event: the composer never registers an anchor, so no
    alias can be looked up, and nothing after the first anchor is composed or indexed."""
    text = "first: 1\nextra:\n" + _bomb()
    loader = config_files._Loader(text)
    with pytest.raises(config_files._Refused) as info:
        loader.get_single_node()
    assert (info.value.line, info.value.problem) == (3, "YAML anchors (&a0) are not allowed")
    assert loader.anchors == {}
    loader.dispose()
    path = _write(tmp_path / "bomb.yaml", text)
    assert str(_refused(read_yaml, path)) == f"{path}:3: YAML anchors (&a0) are not allowed"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("a: &a [*a]\n", 1, "YAML anchors (&a) are not allowed"),  # RecursionError before
        ("a: 1\nb: *a\n", 2, "YAML aliases (*a) are not allowed"),
        ("a:\n  - &x 1\n", 2, "YAML anchors (&x) are not allowed"),
        ("a: {b: 1}\nc:\n  <<: {b: 2}\n", 3, "c: YAML merge keys (<<) are not allowed"),
        ("? [a, b]\n: 1\n", 1, "a key must be a plain value, not a list or a mapping"),
        ("a: 1\nb:\n  c: 1\n  c: 2\n", 4, "b.c: duplicate key"),
        ("a: " + "[" * 40 + "]" * 40 + "\n", 1, "nested more than 32 levels deep"),
        (
            "a: " + "[" * 200_000 + "\n",
            1,
            "nested more than 32 levels deep",
        ),  # RecursionError before
        ("a: " + "9" * 5000 + "\n", 1, "is too large (at most 18 digits)"),  # ValueError before
        (
            "a: 1.0e+999999999\n",
            1,
            "1.0e+999999999 is too large (at most 15 digits before the decimal point)",
        ),
        ("a: 1.0e-999999999\n", 1, "1.0e-999999999 has more than 12 decimal places"),
        ("a: !!float 1e99999999999999999999\n", 1, "is not a plain decimal number"),
        ("a: .nan\n", 1, ".nan is not a finite number"),
        ("a: -.inf\n", 1, "-.inf is not a finite number"),
        ("a: 1:30.5\n", 1, "'1:30.5' is not a plain decimal number"),
        ("a: !!float abc\n", 1, "'abc' is not a plain decimal number"),
        ("a: 0000-01-01\n", 1, "invalid timestamp '0000-01-01': year 0 is out of range"),
        (
            "a: !!python/object:os.system {}\n",
            1,
            "YAML syntax error: could not determine a constructor",
        ),
        ("a: 1\n---\nb: 2\n", 2, "YAML syntax error: but found another document"),
        ("- 1\n", 1, "expected a mapping at the top level"),
        ("a: [1\n", 2, "YAML syntax error"),
    ],
)
def test_every_yaml_file_refuses_the_same_way(tmp_path, text, line, problem):
    """The policy and dq.yaml share one reader: the same refusal, `file:line: problem`."""
    path = _write(tmp_path / "hostile.yaml", text)
    for load in (read_yaml, load_policy, load_dq_config):
        error = _refused(load, path)
        assert str(error).startswith(f"{path}:{line}: "), str(error)
        assert problem in str(error), str(error)
    assert isinstance(_refused(load_policy, path), PolicyError)


def test_dq_config_alias_bomb_and_duplicate_keys_are_refused(tmp_path):
    """dq.yaml refused a bomb only by luck (an unknown key); now by the reader, and a duplicate
    key, silently last-wins before, is refused too."""
    text = _dq_text() + "volume: &v\n  min_ratio: 0.5\nfreshness: *v\n"
    path = _write(tmp_path / "dq.yaml", text)
    assert str(_refused(load_dq_config, path)) == f"{path}:3: YAML anchors (&v) are not allowed"
    path = _write(tmp_path / "dq.yaml", _dq_text() + "max_rejected_rate: 0.5\n")
    assert str(_refused(load_dq_config, path)) == f"{path}:3: max_rejected_rate: duplicate key"


def _roi_cost(tmp_path: Path, value: str) -> tuple[Path, str]:
    old = "implementation_cost_usd: 45000.00"
    assert old in POLICY_TEXT
    text = POLICY_TEXT.replace(old, f"implementation_cost_usd: {value}")
    return _write(tmp_path / "policy.yaml", text), text


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "1.0e+999999999",
            "1.0e+999999999 is too large (at most 15 digits before the decimal point)",
        ),
        ("1.0E-1000000000", "1.0E-1000000000 has more than 12 decimal places"),
        ("0.1234567890123", "0.1234567890123 has more than 12 decimal places"),
        (
            "!!float 0E-1000000000",
            "roi.implementation_cost_usd: input should be greater than or equal to 0.01",
        ),
        (".nan", ".nan is not a finite number"),
    ],
)
def test_policy_decimals_are_bounded(tmp_path, value, problem):
    """The policy's floats are Decimals from their text that fit DECIMAL(38,12) (dim_policy,
    dim_kpi_targets, mart_roi): never an exponent pyarrow or Decimal arithmetic chokes on."""
    path, text = _roi_cost(tmp_path, value)
    error = _refused(load_policy, path)
    assert isinstance(error, PolicyError) and error.line == _line_of(
        text, "implementation_cost_usd:"
    )
    assert str(error).endswith(problem), str(error)


def test_policy_decimal_with_an_exponent_is_read_exactly(tmp_path):
    path, _ = _roi_cost(tmp_path, "1.50000000000000000000e+3")
    cost = load_policy(path).roi.implementation_cost_usd
    assert cost == Decimal(1500) and cost.as_tuple().exponent == 0
    path, _ = _roi_cost(tmp_path, "45000.00")
    assert str(load_policy(path).roi.implementation_cost_usd) == "45000.00"


# ---------------------------------------------------------------------------------------------
# Bytes, sizes and kinds of file: every reader
# ---------------------------------------------------------------------------------------------

_READERS: dict[str, Callable[[Path], Any]] = {
    "policy": load_policy,
    "dq": load_dq_config,
    "suite": load_suite,
    "prices": load_price_book,
}


@pytest.mark.parametrize("reader", sorted(_READERS))
@pytest.mark.parametrize(
    ("content", "problem", "line"),
    [
        (b"", "is empty", None),
        (b"a,b\n\x00\n", "control character U+0000 is not allowed", 2),
        (b"ok\ncaf\xe9\n", "is not UTF-8 text (byte 0xe9)", 2),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff", "is not UTF-8 text (byte 0x89)", 1),
        (b"x" * (1024 * 1024 + 1), "is larger than 1024 KiB", None),
    ],
)
def test_bad_bytes_are_one_line_errors_with_the_line(tmp_path, reader, content, problem, line):
    path = _write(tmp_path / "hostile", content)
    error = _refused(_READERS[reader], path)
    assert problem in str(error)
    if line is not None:
        assert str(error).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("reader", sorted(_READERS))
def test_a_directory_or_a_device_is_not_read(tmp_path, reader):
    """A directory is named as such; /dev/zero would never end, a FIFO would block."""
    (tmp_path / "adir").mkdir()
    assert str(_refused(_READERS[reader], tmp_path / "adir")).endswith(": it is a directory")
    assert "not a regular file" in str(_refused(_READERS[reader], Path("/dev/zero")))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in str(_refused(_READERS[reader], fifo))
    assert "no such file" in str(_refused(_READERS[reader], tmp_path / "missing"))


def test_a_leading_bom_is_accepted_everywhere(tmp_path):
    """Editors on Windows write one; it is not content."""
    bom = b"\xef\xbb\xbf"
    assert load_policy(_write(tmp_path / "p.yaml", bom + POLICY_TEXT.encode())).version
    assert (
        load_dq_config(_write(tmp_path / "dq.yaml", bom + _dq_text().encode())).max_rejected_rate
        == 0.01
    )
    assert load_suite(_write(tmp_path / "s.json", bom + SUITE.read_bytes())).name
    assert load_price_book(_write(tmp_path / "p.csv", bom + PRICES.read_bytes())).prices


# ---------------------------------------------------------------------------------------------
# JSON expectation suites
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('{"name": "s",\n "expectations": [],\n "v": NaN}', 3, "NaN is not a finite number"),
        (
            '{"name": "s", "expectations": [\n {"kwargs": {"max_value": -Infinity}}]}',
            2,
            "-Infinity is not a finite number",
        ),
        (
            '{"name": "s", "expectations": [], "v": ' + "9" * 5000 + "}",
            1,
            "is too large (at most 18 digits)",
        ),
        ('{"name": "s", "expectations": [], "v": 1e999}', 1, "1e999 is out of range"),
        (
            '{"name": "s",\n "expectations": [],\n "name": "t"}',
            1,
            "duplicate key 'name' in the object",
        ),
        (
            "[" * 100_000 + "]" * 100_000,
            1,
            "nested more than 32 levels deep",
        ),  # RecursionError before
        ('{"name": "s",\n "expectations": [] x', 2, "JSON syntax error"),
        ("[]", 1, "expected an object at the top level"),
    ],
)
def test_expectation_suites_refuse_hostile_json(tmp_path, text, line, problem):
    path = _write(tmp_path / "suite.json", text)
    for load in (read_json, load_suite):
        error = _refused(load, path)
        assert str(error).startswith(f"{path}:{line}: ") and problem in str(error), str(error)


# ---------------------------------------------------------------------------------------------
# Price book
# ---------------------------------------------------------------------------------------------


def _book(tmp_path: Path, old: str, new: str) -> tuple[Path, str]:
    assert old in PRICES_TEXT
    text = PRICES_TEXT.replace(old, new, 1)
    return _write(tmp_path / "prices.csv", text), text


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        (
            "0E-1000000000",
            "usd_per_mtok_input '0E-1000000000' is not a plain decimal number",
        ),  # segfault before
        ("1e3", "usd_per_mtok_input '1e3' is not a plain decimal number"),
        ("+1", "usd_per_mtok_input '+1' is not a plain decimal number"),
        ("Infinity", "usd_per_mtok_input 'Infinity' is not a finite number"),
        ("1000000", "usd_per_mtok_input 1000000 is implausibly large"),
        ("0.0000001", "usd_per_mtok_input 0.0000001 has more than 6 decimal places"),
        ("0." + "0" * 100 + "1", "has more than 6 decimal places"),
        ("9" * 5000, "is implausibly large"),
    ],
)
def test_price_numbers_are_plain_bounded_decimals(tmp_path, cell, problem):
    path, text = _book(
        tmp_path,
        "zai,glm-4.5,2025-01-01T00:00:00Z,,0.60,",
        f"zai,glm-4.5,2025-01-01T00:00:00Z,,{cell},",
    )
    error = _refused(load_price_book, path)
    assert isinstance(error, PriceBookError)
    assert str(error).startswith(f"{path}:2: usd_per_mtok_input ") and problem in str(error), str(
        error
    )


def test_prices_at_the_bounds_are_exact_and_small(tmp_path):
    path, _ = _book(tmp_path, ",0.60,2.20,", ",999999.999999,0.600000000000000000000000,")
    price = load_price_book(path).prices[0]
    assert price.usd_per_mtok_input == Decimal("999999.999999")
    assert (
        price.usd_per_mtok_output == Decimal("0.6")
        and price.usd_per_mtok_output.as_tuple().exponent == -6
    )
    load_price_book(path).to_arrow()  # fits DECIMAL(38,12)


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "1999-12-31T23:59:59Z",
        "2000-01-01T00:30:00+01:00",
    ],
)
def test_timestamps_outside_2000_9999_utc_are_refused(tmp_path, stamp):
    """OverflowError before for the first two; the range is also checked in UTC."""
    path, _ = _book(tmp_path, "zai,glm-4.5,2025-01-01T00:00:00Z,", f"zai,glm-4.5,{stamp},")
    error = _refused(load_price_book, path)
    assert str(error) == f"{path}:2: effective_from {stamp!r} is outside the years 2000-9999 (UTC)"


def test_a_field_beyond_the_csv_limit_is_a_line_error(tmp_path):
    path = _write(
        tmp_path / "prices.csv",
        PRICES_TEXT + "zai," + "m" * 200_000 + ",2025-01-01T00:00:00Z,,1,1,1,1,1\n",
    )
    error = _refused(load_price_book, path)
    assert "not valid CSV: field larger than field limit" in str(error)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_build_with_a_hostile_price_book_exits_2_not_139(tmp_path):
    """`modelmeter build` with 0E-1000000000 segfaulted in pyarrow; now one line and exit 2."""
    path, _ = _book(tmp_path, ",0.60,", ",0E-1000000000,")
    proc = _cli(
        "build",
        "--lake",
        str(tmp_path / "lake"),
        "--warehouse",
        str(tmp_path / "wh.duckdb"),
        "--prices",
        str(path),
        "--policy",
        str(POLICY),
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"modelmeter: error: {path}:2: usd_per_mtok_input '0E-1000000000' is not a plain decimal "
        "number (digits and an optional decimal point, e.g. 0.60: no sign, no exponent)"
    )
    assert not (tmp_path / "wh.duckdb").exists()


# ---------------------------------------------------------------------------------------------
# Paths are literals
# ---------------------------------------------------------------------------------------------

DAY = dt.date(2025, 6, 2)


def _lake(lake: Path, prefix: str, calls: int) -> set[str]:
    at = dt.datetime(2025, 6, 2, 10, tzinfo=UTC)
    events = [
        llm_call(
            f"{prefix}-{i}",
            at + dt.timedelta(minutes=i),
            "implementer",
            "zai",
            "glm-4.5",
            input_tokens=1000,
            output_tokens=100,
        )
        for i in range(calls)
    ]
    write_events_lake(lake, events)
    return {e["event_id"] for e in events}


def _built(lake: Path, warehouse: Path) -> tuple[set[str], set[tuple[Any, ...]]]:
    """(event ids, distinct (event_date, kafka_offset)) of the warehouse built from ``lake``."""
    build_warehouse(Settings(lake=lake, warehouse=warehouse, policy=POLICY, prices=PRICES))
    con = open_warehouse_readonly(warehouse)
    try:
        ids = {r[0] for r in con.execute("select event_id from fct_llm_calls").fetchall()}
        rows = set(
            con.execute("select distinct event_date, kafka_offset from fct_llm_calls").fetchall()
        )
    finally:
        con.close()
    return ids, rows


@pytest.mark.parametrize(
    ("name", "decoys"),
    [
        ("lake[1]", ["lake1"]),  # DuckDB globbed [1] to 1: read lake1, silently
        ("lake*", ["lake-other", "lakeX"]),
        ("lake?", ["lakeQ"]),
        ("lake[!x]", ["lakey"]),
        ("lake{1,2}", ["lake1", "lake2"]),
        ("o'lake", []),
        ("kafka_offset=7/event_date=2001-01-01/lake", []),  # hive key=value above the lake
    ],
)
def test_build_reads_the_configured_lake_and_nothing_else(tmp_path, name, decoys):
    for decoy in decoys:
        _lake(tmp_path / decoy, f"decoy-{decoy}", 5)
    lake = tmp_path / name
    expected = _lake(lake, "real", 3)
    ids, rows = _built(lake, tmp_path / f"wh-{len(decoys)}.duckdb")
    assert ids == expected
    assert {event_date for event_date, _ in rows} == {DAY}  # not 2001-01-01
    assert max(offset for _, offset in rows) < len(expected)  # not 7


def test_incremental_build_of_a_lake_with_glob_characters(tmp_path):
    lake, decoy = tmp_path / "lake[1]", tmp_path / "lake1"
    _lake(decoy, "decoy", 5)
    expected = _lake(lake, "real", 3)
    warehouse = tmp_path / "wh.duckdb"
    assert _built(lake, warehouse)[0] == expected
    later = [
        llm_call(
            "real-late", dt.datetime(2025, 6, 3, 9, tzinfo=UTC), "implementer", "zai", "glm-4.5"
        )
    ]
    write_events_lake(lake, later, partitions=1)
    result = build_warehouse(Settings(lake=lake, warehouse=warehouse, policy=POLICY, prices=PRICES))
    assert result.mode == "incremental"
    con = open_warehouse_readonly(warehouse)
    try:
        assert {
            r[0] for r in con.execute("select event_id from fct_llm_calls").fetchall()
        } == expected | {"real-late"}
    finally:
        con.close()


@pytest.mark.parametrize(
    "name",
    [
        "wh[1].duckdb",
        "wh*.duckdb",
        "wh?.duckdb",
        "wh{a,b}.duckdb",
        "o'wh.duckdb",
        "md:wh.duckdb",
        ":memory:",
    ],
)
def test_the_warehouse_path_is_a_literal(tmp_path, name, monkeypatch):
    """Written and read at exactly that name, also relative (md: and :memory: are DuckDB's
    prefixes); a neighbour a glob would match is neither read nor cleaned up."""
    monkeypatch.chdir(tmp_path)
    expected = _lake(tmp_path / "lake", "real", 2)
    neighbour = tmp_path / "wh1.duckdb"
    _built(tmp_path / "lake", neighbour)
    dead_build = tmp_path / "wh1.duckdb.building-999999999"
    dead_build.write_bytes(b"")
    ids, _ = _built(tmp_path / "lake", Path(name))
    assert ids == expected and (tmp_path / name).is_file()
    assert dead_build.exists()


def test_backslashes_duckdb_cannot_take_literally_are_refused(tmp_path):
    """DuckDB reads a backslash as a directory separator: refused with exit 2, not misread."""
    _lake(tmp_path / "lake", "real", 1)
    with pytest.raises(ConfigError, match=r"warehouse .*: DuckDB takes a backslash"):
        build_warehouse(
            Settings(
                lake=tmp_path / "lake",
                warehouse=tmp_path / "w\\h.duckdb",
                policy=POLICY,
                prices=PRICES,
            )
        )
    lake = tmp_path / "a\\b[1]"
    _lake(lake, "real", 1)
    with pytest.raises(ConfigError, match=r"lake file .*: DuckDB cannot read a path with both"):
        build_warehouse(
            Settings(lake=lake, warehouse=tmp_path / "wh.duckdb", policy=POLICY, prices=PRICES)
        )
    assert not (tmp_path / "wh.duckdb").exists()


def test_data_quality_reads_the_lake_path_literally(tmp_path, monkeypatch):
    """pyarrow took a relative ``s3:...`` path for a URI and key=value directories are not
    columns: the day's rows are exactly the lake's."""
    monkeypatch.chdir(tmp_path)
    lake = Path("s3:") / "kafka_offset=7" / "lake[1]"
    expected = _lake(lake, "real", 3)
    _lake(Path("s3:") / "kafka_offset=7" / "lake1", "decoy", 4)
    day = load_lake_day(lake, DAY)
    calls = day.tables["llm_call"]
    assert set(calls["event_id"]) == expected
    assert day.files["schema_problem"].isna().all() and len(day.files) > 0
    assert list(calls.columns) == SCHEMAS["llm_call"].names
    assert max(calls["kafka_offset"]) < len(expected)  # not 7
