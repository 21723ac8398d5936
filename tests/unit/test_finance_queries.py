"""Every ```sql block of docs/finance.md runs on the golden warehouse, so the docs cannot rot."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from pipeline.warehouse import open_warehouse_readonly
from tests.fixtures.golden import golden_warehouse

REPO_ROOT = Path(__file__).resolve().parents[2]
FINANCE_MD = REPO_ROOT / "docs" / "finance.md"
BLOCKS = re.findall(
    r"^```sql\n(.*?)^```", FINANCE_MD.read_text(encoding="utf-8"), flags=re.S | re.M
)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """The session's shared golden warehouse (the queries only read it)."""
    _, settings = golden_warehouse(tmp_path_factory)
    return settings.warehouse


def test_finance_doc_has_at_least_ten_queries():
    """docs/finance.md carries at least 10 ad-hoc queries in ```sql blocks."""
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("sql", BLOCKS, ids=[f"query-{n + 1}" for n in range(len(BLOCKS))])
def test_every_documented_query_runs_read_only(warehouse, sql):
    """Each block runs on a read-only connection, as the doc tells finance to open the file."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(sql).fetchall()
    finally:
        con.close()
    con = open_warehouse_readonly(warehouse)
    try:
        con.execute(sql).fetchall()
    finally:
        con.close()


def test_month_to_date_spend_by_role_query_matches_the_golden_figures(warehouse):
    """Query 1 (month-to-date spend by role) sums June's calls; architect: 0.29625 + 0.009 + 20 x 0.0015."""
    con = open_warehouse_readonly(warehouse)
    rows = {r[0]: r for r in con.execute(BLOCKS[0]).fetchall()}
    con.close()
    # role, calls, escalated, unpriced, cost, baseline, savings, savings_pct
    assert rows["architect"][1:6] == (22, 22, 0, Decimal("0.33525"), Decimal("0.33525"))
    assert rows["critic"][3] == 1  # the unpriced glm-5-preview call
    assert rows["critic"][4] == Decimal("0.00233")


def test_what_if_query_reprices_with_the_proposed_prices(warehouse):
    """Query 6 prices June's glm-4.5 calls at the proposed 0.50/2.00/0.10 per million tokens."""
    block = next(b for b in BLOCKS if "proposed(provider" in b)
    con = open_warehouse_readonly(warehouse)
    rows = {
        (p, m): (calls, actual, proposed)
        for p, m, calls, actual, proposed in con.execute(block).fetchall()
    }
    con.close()
    calls, actual, proposed = rows[("zai", "glm-4.5")]
    # glm-4.5 calls: a-01 (1000 in, 200 out, 5000 cache read), a-03 (3000, 500), a-04 (3000, 500,
    # 2000 cache read), a-07 (500, 100), a-08 (100, 10), 19 x b (1050 in):
    # input 1000+3000+3000+500+100+19950 = 27550 x 0.50 = 13775
    # output 200+500+500+100+10 = 1310 x 2.00 = 2620; cache read 7000 x 0.10 = 700
    # = 17095 / 1e6
    assert calls == 24
    assert proposed == Decimal("0.017095")
    assert actual == Decimal("0.00159") + Decimal("0.0029") + Decimal("0.00312") + Decimal(
        "0.00052"
    ) + Decimal("0.000082") + 19 * Decimal("0.00063")
