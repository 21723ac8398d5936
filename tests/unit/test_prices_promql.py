"""The live-spend recording rules generated from the price book: they parse as a Prometheus
rule file, carry the book's prices exactly (the price in force at the given instant), and the
shipped ``ops/prometheus/modelmeter-spend.yml`` holds the prices in force now."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import yaml

from pipeline.prices import TOKEN_KINDS, load_price_book, parse_price_book
from pipeline.prices_promql import PRICE_SERIES, main, render_rules

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "ops" / "prometheus" / "modelmeter-spend.yml"
BOOK = """\
provider,model,effective_from,effective_to,usd_per_mtok_input,usd_per_mtok_output,usd_per_mtok_cache_read,usd_per_mtok_cache_write_5m,usd_per_mtok_cache_write_1h
zai,glm-4.5,2025-01-01T00:00:00Z,2026-01-01T00:00:00Z,0.60,2.20,0.11,0,0
zai,glm-4.5,2026-01-01T00:00:00Z,,0.555555,2.000001,0.1,0,0.000001
anthropic,claude-opus-4-1,2025-01-01T00:00:00Z,2026-08-05T00:00:00Z,15,75,1.50,18.75,30
"""


def prices_of(text: str) -> dict[tuple[str, str, str], Decimal]:
    """(provider, model, kind) -> price of the rule file's price series, parsed as Decimal
    from the expression's text (never through a float)."""
    doc = yaml.safe_load(text)
    (group,) = doc["groups"]
    out = {}
    for rule in group["rules"]:
        if rule["record"] != PRICE_SERIES:
            continue
        match = re.fullmatch(r"vector\(([0-9.]+)\)", rule["expr"])
        assert match, rule
        labels = rule["labels"]
        key = (labels["provider"], labels["model"], labels["kind"])
        assert key not in out, key
        out[key] = Decimal(match.group(1))
    return out


def test_rules_carry_the_price_in_force_exactly() -> None:
    book = parse_price_book(BOOK)
    at = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    text = render_rules(book, at)
    prices = prices_of(text)
    # the 2026 glm-4.5 row, digit for digit; claude-opus-4-1 ended before `at`: unpriced
    assert prices == {
        ("zai", "glm-4.5", kind): getattr(book.prices[1], f"usd_per_mtok_{kind}")
        for kind in TOKEN_KINDS
    }
    assert re.search(r"expr: vector\(0\.555555\)\n", text)
    assert re.search(r"expr: vector\(2\.000001\)\n", text)
    earlier = prices_of(render_rules(book, dt.datetime(2025, 6, 1, tzinfo=dt.UTC)))
    assert earlier[("zai", "glm-4.5", "input")] == Decimal("0.60")
    assert earlier[("anthropic", "claude-opus-4-1", "cache_write_1h")] == Decimal("30")


def test_spend_rules_price_the_token_counters() -> None:
    doc = yaml.safe_load(render_rules(parse_price_book(BOOK), dt.datetime.now(dt.UTC)))
    rules = {r["record"]: r["expr"] for r in doc["groups"][0]["rules"]}
    for name, fn, window in (
        ("modelmeter:spend_usd:increase1h", "increase", "1h"),
        ("modelmeter:spend_usd:increase1d", "increase", "1d"),
        ("modelmeter:spend_usd:rate1h", "rate", "1h"),
    ):
        expr = " ".join(rules[name].split())
        assert f"{fn}(modelmeter_consumer_tokens_total[{window}])" in expr, name
        assert f"on (provider, model, kind) group_left {PRICE_SERIES}" in expr, name
        assert expr.startswith("sum by (provider, model, role) (") and expr.endswith("/ 1e6")
    assert "unless on (provider, model, kind)" in rules["modelmeter:unpriced_tokens:increase1h"]
    # the price series come first: a group's rules are evaluated in order
    records = [r["record"] for r in doc["groups"][0]["rules"]]
    assert records.index("modelmeter:spend_usd:increase1h") > max(
        i for i, r in enumerate(records) if r == PRICE_SERIES
    )


def test_shipped_rules_hold_the_price_books_prices_in_force_now() -> None:
    """Fails when the price book changed and the rule file was not regenerated."""
    book = load_price_book(REPO / "schemas" / "prices.csv")
    now = dt.datetime.now(dt.UTC)
    expected = {}
    for provider, model in {(p.provider, p.model) for p in book.prices}:
        price = book.price_at(provider, model, now)
        if price is not None:
            for kind in TOKEN_KINDS:
                expected[(provider, model, kind)] = getattr(price, f"usd_per_mtok_{kind}")
    assert expected
    assert prices_of(SHIPPED.read_text(encoding="utf-8")) == expected


def test_command_writes_the_file_and_fails_cleanly_on_a_bad_book(tmp_path, capsys) -> None:
    good = tmp_path / "prices.csv"
    good.write_text(BOOK, encoding="utf-8")
    out = tmp_path / "spend.yml"
    assert main(["--prices", str(good), "--at", "2025-06-01T00:00:00Z", "--output", str(out)]) == 0
    assert prices_of(out.read_text())[("zai", "glm-4.5", "output")] == Decimal("2.20")
    bad = tmp_path / "bad.csv"
    bad.write_text(BOOK.replace("0.60", "-1"), encoding="utf-8")
    assert main(["--prices", str(bad)]) == 2
    assert "negative" in capsys.readouterr().err
