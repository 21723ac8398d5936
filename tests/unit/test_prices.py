"""The price book loader accepts the shipped book and rejects every malformed one with file:line."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline._exceptions import ConfigError, PriceBookError
from pipeline.prices import PRICE_COLUMNS, load_price_book, parse_price_book

REPO_ROOT = Path(__file__).resolve().parents[2]
HEADER = ",".join(PRICE_COLUMNS)
UTC = dt.UTC


def book(*rows: str, header: str = HEADER):
    return parse_price_book("\n".join([header, *rows]) + "\n", path="p.csv")


def test_shipped_price_book_has_todays_list_prices():
    """schemas/prices.csv loads and carries the providers' list prices, open-ended from 2025-01-01."""
    prices = load_price_book(REPO_ROOT / "schemas" / "prices.csv")
    at = dt.datetime(2026, 1, 1, tzinfo=UTC)
    expected = {
        ("zai", "glm-4.5"): ("0.60", "2.20", "0.11", "0", "0"),
        ("zai", "glm-4.5-air"): ("0.20", "1.10", "0.03", "0", "0"),
        ("anthropic", "claude-opus-4-1"): ("15", "75", "1.50", "18.75", "30"),
        ("anthropic", "claude-sonnet-4-5"): ("3", "15", "0.30", "3.75", "6"),
        ("anthropic", "claude-opus-4-5"): ("5", "25", "0.50", "6.25", "10"),
    }
    assert len(prices.prices) == len(expected)
    for (provider, model), values in expected.items():
        price = prices.price_at(provider, model, at)
        assert price is not None
        assert price.effective_from == dt.datetime(2025, 1, 1, tzinfo=UTC)
        assert price.effective_to is None
        got = (
            price.usd_per_mtok_input,
            price.usd_per_mtok_output,
            price.usd_per_mtok_cache_read,
            price.usd_per_mtok_cache_write_5m,
            price.usd_per_mtok_cache_write_1h,
        )
        assert got == tuple(Decimal(v) for v in values)
        assert all(isinstance(v, Decimal) for v in got)
    assert len(prices.sha256) == 64


def test_price_in_force_uses_inclusive_from_and_exclusive_to():
    """A row closing at 12:00 prices 11:59:59.999999; the next row prices 12:00:00 exactly."""
    prices = book(
        "zai,glm-4.5,2025-01-01T00:00:00Z,2025-06-01T12:00:00Z,1,2,0,0,0",
        "zai,glm-4.5,2025-06-01T12:00:00Z,,3,4,0,0,0",
    )
    before = prices.price_at(
        "zai", "glm-4.5", dt.datetime(2025, 6, 1, 11, 59, 59, 999999, tzinfo=UTC)
    )
    at = prices.price_at("zai", "glm-4.5", dt.datetime(2025, 6, 1, 12, tzinfo=UTC))
    assert before is not None and before.usd_per_mtok_input == 1
    assert at is not None and at.usd_per_mtok_input == 3
    assert prices.price_at("zai", "glm-4.5", dt.datetime(2024, 12, 31, 23, 59, tzinfo=UTC)) is None
    assert prices.price_at("zai", "other", dt.datetime(2025, 6, 1, tzinfo=UTC)) is None


def test_offsets_are_converted_to_utc():
    """effective_from written with +02:00 is stored as the same instant in UTC."""
    prices = book("zai,glm-4.5,2025-01-01T02:00:00+02:00,,1,2,0,0,0")
    assert prices.prices[0].effective_from == dt.datetime(2025, 1, 1, tzinfo=UTC)
    assert prices.prices[0].effective_from.tzinfo == UTC


def test_columns_may_come_in_any_order():
    """The header is matched by name, not position."""
    header = ",".join(reversed(PRICE_COLUMNS))
    prices = book("0,0,0,2,1,,2025-01-01T00:00:00Z,glm-4.5,zai", header=header)
    assert prices.prices[0].usd_per_mtok_input == 1
    assert prices.prices[0].usd_per_mtok_output == 2


def test_to_arrow_has_dim_prices_columns_as_decimals():
    """The Arrow table of the book has dim_prices' columns, with DECIMAL(38,12) prices."""
    table = load_price_book(REPO_ROOT / "schemas" / "prices.csv").to_arrow()
    assert tuple(table.column_names) == PRICE_COLUMNS
    assert str(table.schema.field("usd_per_mtok_input").type) == "decimal128(38, 12)"
    assert table.column("usd_per_mtok_cache_write_5m").to_pylist()[2] == Decimal("18.75")


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (
            ["zai,glm-4.5,2025-01-01T00:00:00Z,,1,2,0,0,0,9"],
            HEADER,
            "p.csv:2: expected 9 fields, found 10",
        ),
        (["zai,glm-4.5,2025-01-01T00:00:00Z,,1"], HEADER, "p.csv:2: expected 9 fields, found 5"),
        ([], HEADER + ",currency", "p.csv:1: unknown column 'currency'"),
        (
            [],
            HEADER.replace(",usd_per_mtok_cache_write_1h", ""),
            "p.csv:1: missing column 'usd_per_mtok_cache_write_1h'",
        ),
        ([], HEADER.replace("provider", "model"), "p.csv:1: column 'model' appears twice"),
        ([], HEADER, "p.csv: the price book has a header but no prices"),
        (
            ["zai,glm-4.5,2025-01-01T00:00:00Z,,-0.01,2,0,0,0"],
            HEADER,
            "p.csv:2: usd_per_mtok_input -0.01 is negative",
        ),
        (
            ["zai,glm-4.5,2025-01-01T00:00:00Z,,1,2,0,,0"],
            HEADER,
            "p.csv:2: usd_per_mtok_cache_write_5m is empty",
        ),
        (
            ["zai,glm-4.5,2025-01-01T00:00:00Z,,1,two,0,0,0"],
            HEADER,
            "p.csv:2: usd_per_mtok_output 'two' is not a number",
        ),
        (
            ["zai,glm-4.5,2025-01-01T00:00:00Z,,NaN,2,0,0,0"],
            HEADER,
            "p.csv:2: usd_per_mtok_input 'NaN' is not a finite number",
        ),
        (
            ["zai,glm-4.5,2025-01-01T00:00:00Z,,0.0000001,2,0,0,0"],
            HEADER,
            "more than 6 decimal places",
        ),
        (
            ["zai,glm-4.5,2025-01-01,,1,2,0,0,0"],
            HEADER,
            "p.csv:2: effective_from '2025-01-01' has no UTC offset",
        ),
        (
            ["zai,glm-4.5,yesterday,,1,2,0,0,0"],
            HEADER,
            "p.csv:2: effective_from 'yesterday' is not an RFC 3339 timestamp",
        ),
        ([",glm-4.5,2025-01-01T00:00:00Z,,1,2,0,0,0"], HEADER, "p.csv:2: provider is empty"),
        (
            ["zai,glm-4.5,2025-02-01T00:00:00Z,2025-02-01T00:00:00Z,1,2,0,0,0"],
            HEADER,
            "p.csv:2: effective_to 2025-02-01T00:00:00Z is not after effective_from",
        ),
        (
            [
                "zai,glm-4.5,2025-01-01T00:00:00Z,,1,2,0,0,0",
                "zai,glm-4.5,2025-06-01T00:00:00Z,,3,4,0,0,0",
            ],
            HEADER,
            "p.csv:3: price range of zai/glm-4.5 overlaps the one on line 2",
        ),
        (
            [
                "zai,glm-4.5,2025-01-01T00:00:00Z,2025-06-01T00:00:01Z,1,2,0,0,0",
                "zai,glm-4.5,2025-06-01T00:00:00Z,,3,4,0,0,0",
            ],
            HEADER,
            "p.csv:3: price range of zai/glm-4.5 overlaps the one on line 2",
        ),
        (
            [
                "zai,glm-4.5,2025-06-01T00:00:00Z,,3,4,0,0,0",
                "zai,glm-4.5,2025-01-01T00:00:00Z,2025-07-01T00:00:00Z,1,2,0,0,0",
            ],
            HEADER,
            "p.csv:2: price range of zai/glm-4.5 overlaps the one on line 3",
        ),
    ],
)
def test_invalid_price_books_are_rejected_with_file_line_and_problem(rows, header, message):
    """Each malformed book raises PriceBookError (a ConfigError: exit 2) naming file:line and problem."""
    with pytest.raises(PriceBookError) as info:
        book(*rows, header=header)
    assert message in str(info.value)
    assert isinstance(info.value, ConfigError) and info.value.exit_code == 2


def test_abutting_ranges_and_other_models_do_not_overlap():
    """A range ending exactly where the next starts is fine; the same dates on another model too."""
    prices = book(
        "zai,glm-4.5,2025-01-01T00:00:00Z,2025-06-01T00:00:00Z,1,2,0,0,0",
        "zai,glm-4.5,2025-06-01T00:00:00Z,,3,4,0,0,0",
        "zai,glm-4.5-air,2025-01-01T00:00:00Z,,1,2,0,0,0",
    )
    assert len(prices.prices) == 3


def test_missing_file_is_a_price_book_error(tmp_path):
    """A price book path that does not exist names the path."""
    with pytest.raises(PriceBookError, match="nope.csv: cannot read the price book"):
        load_price_book(tmp_path / "nope.csv")


def test_empty_file_is_rejected(tmp_path):
    """An empty file is not a price book."""
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(PriceBookError, match="empty.csv: the price book is empty"):
        load_price_book(path)
