"""Least privilege: the read side never opens the warehouse for writing.

DuckDB locks a database file: a read-only opener takes a shared lock, a read-write opener an
exclusive one. With another process holding the warehouse open read-only (as finance's
tools do), a read-write open fails; ``report`` and ``dq`` must still work - so they open it
read-only. (File permissions cannot show this here: the tests may run as root.)
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipeline.cli import main
from tests.fixtures.golden import write_golden_lake
from tests.fixtures.kafka_broker import REPO_ROOT

DAY = dt.date(2025, 6, 2)

HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def test_report_and_dq_work_while_finance_holds_the_warehouse_read_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only holder in another process blocks writers (checked), yet report and dq
    run: they never ask for write access."""
    lake, warehouse = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    write_golden_lake(lake)
    settings = [
        "--lake",
        str(lake),
        "--warehouse",
        str(warehouse),
        "--policy",
        str(REPO_ROOT / "schemas" / "routing_policy.yaml"),
        "--prices",
        str(REPO_ROOT / "schemas" / "prices.csv"),
    ]
    assert main(["build", *settings]) == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(warehouse))  # a writer is locked out...
        capsys.readouterr()
        assert main(["report", "--date", DAY.isoformat(), "--format", "json", *settings]) == 0
        code = main(
            [
                "dq",
                "--date",
                DAY.isoformat(),
                "--no-data-docs",
                "--output",
                str(tmp_path / "dq.json"),
                *settings,
            ]
        )
        out, err = capsys.readouterr()
        assert code in (0, 1), err  # ...but the readers ran (2 = could not run)
        assert "lock" not in err.lower()
    finally:
        holder.communicate(input="", timeout=30)
