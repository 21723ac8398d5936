"""Files modelmeter writes get the mode the process umask gives (0o666 less the umask), never
a fixed one: report --output, the dq result, the warehouse, lake files and directories.
``modelmeter build`` applies MODELMETER_UMASK itself."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.dq.output import DqReport, write_json
from pipeline.files import atomic_write, replace_file
from pipeline.lake import FileName, partition_dir, write_table_atomic
from pipeline.report import write_atomic
from pipeline.settings import Settings
from pipeline.warehouse import build_warehouse
from tests.fixtures.golden import write_golden_lake

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 1, 1)
# umask -> mode of a new file
MODES = [(0o077, 0o600), (0o022, 0o644), (0o027, 0o640)]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


@pytest.mark.parametrize(("mask", "expected"), MODES)
def test_report_output_follows_the_umask_new_or_replaced(tmp_path: Path, mask: int, expected: int):
    """report --output: a new file and a replaced one (previously 0o644 whatever the umask)."""
    target = tmp_path / "daily.md"
    with umask(mask):
        write_atomic(target, "first\n")
        assert mode(target) == expected
        target.chmod(0o666)  # a replaced file does not keep a looser mode either
        write_atomic(target, "second\n")
    assert mode(target) == expected
    assert target.read_text() == "second\n"
    assert leftovers(tmp_path, {"daily.md"}) == []


@pytest.mark.parametrize(("mask", "expected"), MODES)
def test_dq_result_file_follows_the_umask(tmp_path: Path, mask: int, expected: int):
    report = DqReport(
        day=DAY,
        generated_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        lake=tmp_path / "lake",
        warehouse=tmp_path / "w.duckdb",
        results=[],
    )
    path = tmp_path / "dq" / f"dq-{DAY}.json"
    with umask(mask):
        write_json(report, path)
    assert mode(path) == expected
    assert mode(path.parent) == 0o777 & ~mask
    assert '"status": "pass"' in path.read_text()


@pytest.mark.parametrize(("mask", "expected"), MODES)
def test_lake_files_and_directories_follow_the_umask(tmp_path: Path, mask: int, expected: int):
    table = pa.table({"x": [1, 2]})
    path = partition_dir(tmp_path / "lake", "llm_call", DAY) / str(FileName("t", 0, 0, 1))
    with umask(mask):
        write_table_atomic(table, path)
    assert mode(path) == expected
    for directory in (path.parent, path.parent.parent, tmp_path / "lake"):
        assert mode(directory) == 0o777 & ~mask, directory
    assert leftovers(path.parent, {path.name}) == []


def test_warehouse_follows_the_umask_in_full_and_incremental_builds(tmp_path: Path):
    """The first build is full (DuckDB creates the file), the second incremental (a copy of
    the old warehouse): each gets the umask in force, not the old file's mode."""
    write_golden_lake(tmp_path / "lake")
    settings = Settings(
        lake=tmp_path / "lake",
        warehouse=tmp_path / "warehouse.duckdb",
        policy=REPO_ROOT / "schemas" / "routing_policy.yaml",
        prices=REPO_ROOT / "schemas" / "prices.csv",
    )
    with umask(0o077):
        assert build_warehouse(settings).mode == "full"
    assert mode(settings.warehouse) == 0o600
    with umask(0o022):
        assert build_warehouse(settings).mode == "incremental"
    assert mode(settings.warehouse) == 0o644
    assert leftovers(tmp_path, {"lake", "warehouse.duckdb"}) == []


def test_build_command_applies_modelmeter_umask(tmp_path: Path):
    """`modelmeter build` sets its umask from MODELMETER_UMASK, whatever the caller's is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELMETER_")}
    env["MODELMETER_UMASK"] = "077"
    with umask(0o022):  # the child inherits 022; the setting must win
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "build",
                "--lake",
                str(tmp_path / "lake"),
                "--warehouse",
                str(tmp_path / "warehouse.duckdb"),
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    assert mode(tmp_path / "warehouse.duckdb") == 0o600


def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write(b"half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert leftovers(tmp_path, {"out.json"}) == []


def test_atomic_write_replaces_a_symlink_never_writes_through_it(tmp_path: Path):
    """The target name being a link: the link is replaced by the file, its target untouched."""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "report.md"
    link.symlink_to(outside)
    with umask(0o077):
        write_atomic(link, "report")
    assert not link.is_symlink() and link.read_text() == "report" and mode(link) == 0o600
    assert outside.read_text() == "precious"


def test_replace_file_keeps_the_mode_the_creator_gave(tmp_path: Path):
    source, target = tmp_path / "new.building", tmp_path / "current"
    target.write_text("old")
    with umask(0o077):
        source.write_text("new")
    replace_file(source, target)
    assert target.read_text() == "new" and mode(target) == 0o600 and not source.exists()
