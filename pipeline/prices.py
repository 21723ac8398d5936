"""The price book: effective-dated USD prices per million tokens (docs/finance.md, "Money").

``schemas/prices.csv`` has exactly the columns of the warehouse table ``dim_prices``::

    provider,model,effective_from,effective_to,usd_per_mtok_input,usd_per_mtok_output,...
    zai,glm-4.5,2025-01-01T00:00:00Z,,0.60,2.20,0.11,0,0

``effective_from`` is inclusive, ``effective_to`` exclusive and empty while the price is
still in force; both are timestamps with an offset (stored as UTC). Load and validate it::

    book = load_price_book(Path("schemas/prices.csv"))
    book.price_at("zai", "glm-4.5", datetime(2025, 6, 1, tzinfo=UTC)).usd_per_mtok_input

Anything wrong raises :class:`PriceBookError` naming ``file:line``, the column and the
problem (the CLI exits 2). A price is a plain decimal (digits and an optional point: no sign,
no exponent, no NaN) below 1,000,000 USD per million tokens with at most 6 decimal places, so
that it fits the DECIMAL(18,6) the SQL casts it to and ``tokens x price / 1e6`` is exact at the
warehouse's DECIMAL(38,12). Timestamps fall in the years 2000-9999, also in UTC. The file is
read by :func:`pipeline.config_files.read_bytes` (a regular file of at most 1 MiB, UTF-8, no
control characters).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyarrow as pa

from pipeline._exceptions import PriceBookError
from pipeline.config_files import decode_text, read_bytes
from pipeline.token_kinds import TOKEN_KINDS

__all__ = [
    "PRICE_COLUMNS",
    "PRICE_FIELDS",
    "TOKEN_KINDS",
    "MAX_PRICE_DECIMALS",
    "MAX_PRICE_INTEGER_DIGITS",
    "DIM_PRICES_SCHEMA",
    "Price",
    "PriceBook",
    "load_price_book",
    "parse_price_book",
]

#: The five billed token kinds, in the order of the event fields ``<kind>_tokens``.
#: Price columns, ``usd_per_mtok_<kind>``.
PRICE_FIELDS = tuple(f"usd_per_mtok_{kind}" for kind in TOKEN_KINDS)
#: The columns of the price book and of ``dim_prices``, in order.
PRICE_COLUMNS = ("provider", "model", "effective_from", "effective_to", *PRICE_FIELDS)
#: tokens (integer) x price / 1e6 stays exact at scale 12 when prices have <= 6 decimals.
MAX_PRICE_DECIMALS = 6
#: Digits before the decimal point of a price: below 1,000,000 USD per million tokens (a
#: typo beyond that; DECIMAL(18,6) in sql/ holds 12).
MAX_PRICE_INTEGER_DIGITS = 6
_MAX_PRICE = Decimal(10) ** MAX_PRICE_INTEGER_DIGITS
_PLAIN_DECIMAL = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
#: effective_from / effective_to: years of this range, in UTC too
MIN_YEAR, MAX_YEAR = 2000, 9999

_MONEY = pa.decimal128(38, 12)
_TS = pa.timestamp("us", tz="UTC")
DIM_PRICES_SCHEMA = pa.schema(
    [
        pa.field("provider", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("effective_from", _TS, nullable=False),
        pa.field("effective_to", _TS),
        *(pa.field(name, _MONEY, nullable=False) for name in PRICE_FIELDS),
    ]
)


@dataclass(frozen=True, slots=True)
class Price:
    """One row of the price book: the prices of (provider, model) in [effective_from, effective_to)."""

    provider: str
    model: str
    effective_from: dt.datetime
    effective_to: dt.datetime | None
    usd_per_mtok_input: Decimal
    usd_per_mtok_output: Decimal
    usd_per_mtok_cache_read: Decimal
    usd_per_mtok_cache_write_5m: Decimal
    usd_per_mtok_cache_write_1h: Decimal
    line: int = 0

    def in_force_at(self, at: dt.datetime) -> bool:
        """True when ``at`` (timezone-aware) falls in [effective_from, effective_to)."""
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)


@dataclass(frozen=True, slots=True)
class PriceBook:
    """A validated price book; ``sha256`` identifies the file's exact bytes."""

    path: Path
    sha256: str
    prices: tuple[Price, ...]

    def price_at(self, provider: str, model: str, at: dt.datetime) -> Price | None:
        """The price of (provider, model) in force at ``at``, or None (unpriced)."""
        for price in self.prices:
            if price.provider == provider and price.model == model and price.in_force_at(at):
                return price
        return None

    def to_arrow(self) -> pa.Table:
        """The rows as a table with the schema of ``dim_prices``."""
        columns = {name: [getattr(p, name) for p in self.prices] for name in PRICE_COLUMNS}
        return pa.table(columns, schema=DIM_PRICES_SCHEMA)


def load_price_book(path: Path | str) -> PriceBook:
    """Read and validate the price book at ``path``."""
    path = Path(path)

    def error(problem: str, line: int | None, field: str | None) -> PriceBookError:
        return PriceBookError(f"{path}{f':{line}' if line else ''}: {problem}")

    data = read_bytes(path, what="price book", error=error)
    text = decode_text(data, what="price book", error=error)
    return parse_price_book(text, path=path, sha256=hashlib.sha256(data).hexdigest())


def parse_price_book(
    text: str, *, path: Path | str = "<prices>", sha256: str | None = None
) -> PriceBook:
    """Validate price book CSV ``text``; ``path`` only names the source in errors."""
    where = str(path)
    rows = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    prices: list[Price] = []
    try:
        for line_no, row in enumerate(rows, start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            cells = [cell.strip() for cell in row]
            if header is None:
                header = _check_header(cells, where, line_no)
                continue
            if len(cells) != len(header):
                raise PriceBookError(
                    f"{where}:{line_no}: expected {len(header)} fields, found {len(cells)}"
                )
            prices.append(_parse_row(dict(zip(header, cells, strict=True)), where, line_no))
    except csv.Error as exc:  # a field beyond csv.field_size_limit(), a NUL...
        raise PriceBookError(f"{where}:{rows.line_num}: not valid CSV: {exc}") from None
    if header is None:
        raise PriceBookError(f"{where}: the price book is empty (no header line)")
    if not prices:
        raise PriceBookError(f"{where}: the price book has a header but no prices")
    _check_overlaps(prices, where)
    digest = sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest()
    return PriceBook(path=Path(path), sha256=digest, prices=tuple(prices))


def _check_header(cells: list[str], where: str, line_no: int) -> list[str]:
    unknown = [c for c in cells if c not in PRICE_COLUMNS]
    if unknown:
        raise PriceBookError(
            f"{where}:{line_no}: unknown column {unknown[0]!r} (columns are {', '.join(PRICE_COLUMNS)})"
        )
    duplicated = sorted({c for c in cells if cells.count(c) > 1})
    if duplicated:
        raise PriceBookError(f"{where}:{line_no}: column {duplicated[0]!r} appears twice")
    missing = [c for c in PRICE_COLUMNS if c not in cells]
    if missing:
        raise PriceBookError(f"{where}:{line_no}: missing column {missing[0]!r}")
    return cells


def _parse_row(row: dict[str, str], where: str, line_no: int) -> Price:
    def fail(problem: str) -> PriceBookError:
        return PriceBookError(f"{where}:{line_no}: {problem}")

    for name in ("provider", "model", "effective_from"):
        if not row[name]:
            raise fail(f"{name} is empty")
    effective_from = _timestamp(row["effective_from"], "effective_from", fail)
    effective_to = (
        _timestamp(row["effective_to"], "effective_to", fail) if row["effective_to"] else None
    )
    if effective_to is not None and effective_to <= effective_from:
        raise fail(
            f"effective_to {row['effective_to']} is not after effective_from "
            f"{row['effective_from']}"
        )
    amounts = {name: _price(row[name], name, fail) for name in PRICE_FIELDS}
    return Price(
        provider=row["provider"],
        model=row["model"],
        effective_from=effective_from,
        effective_to=effective_to,
        line=line_no,
        **amounts,
    )


_Fail = Callable[[str], PriceBookError]


def _timestamp(value: str, name: str, fail: _Fail) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise fail(
            f"{name} {_shown(value)} is not an RFC 3339 timestamp (e.g. 2025-01-01T00:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise fail(f"{name} {value!r} has no UTC offset (write it as e.g. {value}Z)")
    try:  # the offset may carry year 9999 past the end of the calendar, or 1 before its start
        utc = parsed.astimezone(dt.UTC) if MIN_YEAR <= parsed.year <= MAX_YEAR else None
    except OverflowError:
        utc = None
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise fail(f"{name} {value!r} is outside the years {MIN_YEAR}-{MAX_YEAR} (UTC)")
    return utc


def _price(value: str, name: str, fail: _Fail) -> Decimal:
    if not value:
        raise fail(f"{name} is empty (write 0 for a free token kind)")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise fail(f"{name} {_shown(value)} is not a number") from None
    if not amount.is_finite():
        raise fail(f"{name} {value!r} is not a finite number")
    if amount < 0:
        raise fail(f"{name} {_shown(value, quote=False)} is negative")
    plain = _PLAIN_DECIMAL.fullmatch(value)
    if plain is None:
        raise fail(
            f"{name} {_shown(value)} is not a plain decimal number (digits and an "
            "optional decimal point, e.g. 0.60: no sign, no exponent)"
        )
    whole, decimals = plain.group(1).lstrip("0"), (plain.group(2) or "").rstrip("0")
    if len(whole) > MAX_PRICE_INTEGER_DIGITS:
        raise fail(
            f"{name} {_shown(value, quote=False)} is implausibly large (at most "
            f"{MAX_PRICE_INTEGER_DIGITS} digits before the decimal point: below "
            f"{_MAX_PRICE:,} USD per million tokens)"
        )
    if len(decimals) > MAX_PRICE_DECIMALS:
        raise fail(
            f"{name} {_shown(value, quote=False)} has more than {MAX_PRICE_DECIMALS} decimal places"
        )
    # the value, without digits beyond what the text needs (so 0.600000000 is 0.600000)
    return Decimal(f"{whole or '0'}.{(plain.group(2) or '')[:MAX_PRICE_DECIMALS]}")


def _shown(value: str, *, quote: bool = True) -> str:
    """``value`` for a message: repr (or as is), cut to 40 characters."""
    cut = value if len(value) <= 40 else value[:37] + "..."
    return repr(cut) if quote else cut


def _check_overlaps(prices: Iterable[Price], where: str) -> None:
    by_model: dict[tuple[str, str], list[Price]] = {}
    for price in prices:
        by_model.setdefault((price.provider, price.model), []).append(price)
    far_future = dt.datetime.max.replace(tzinfo=dt.UTC)
    for (provider, model), rows in by_model.items():
        rows.sort(key=lambda p: p.effective_from)
        for earlier, later in zip(rows, rows[1:], strict=False):
            if (earlier.effective_to or far_future) > later.effective_from:
                raise PriceBookError(
                    f"{where}:{later.line}: price range of {provider}/{model} overlaps the one "
                    f"on line {earlier.line} (effective_to of line {earlier.line} must be <= "
                    f"{later.effective_from.isoformat().replace('+00:00', 'Z')})"
                )
