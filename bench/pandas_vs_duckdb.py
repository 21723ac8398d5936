"""DuckDB vs pandas computing ``daily_cost_by_role`` from the same Parquet lake.

    .venv/bin/python bench/pandas_vs_duckdb.py --lake /tmp/lake [--rounds 3]

Both sides do the same work from the same files: read the llm_call table, keep one row per
event_id (the earliest (partition, offset), as the staging model does), look up the price in
force at ``occurred_at`` for the call's (provider, model) and for the policy's baseline model,
and sum calls, escalated calls, tokens, cost, baseline cost and savings per (event_date, role).
Each side is written the way its engine is fast: pandas prices every call in int64 numpy
arrays; DuckDB, whose exact DECIMAL arithmetic costs more per value, sums the tokens per
(day, role, prices in force) and prices those sums (cost is linear in the tokens, so the
totals are the same to the last digit).
Money is exact on both sides: DECIMAL(38,12) in DuckDB; integer pico-dollars in pandas (prices
have at most 6 decimals, so tokens x micro-dollars-per-Mtok is an exact integer). The two
results are compared row by row before any time is reported. Runs alternate (duckdb, pandas,
duckdb, ...) and the best of ``--rounds`` each is kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pandas as pd
import pyarrow.dataset as ds

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.policy import load_policy  # noqa: E402
from pipeline.prices import PRICE_FIELDS, TOKEN_KINDS, load_price_book  # noqa: E402

__all__ = ["duckdb_daily_cost_by_role", "pandas_daily_cost_by_role", "compare"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_TOKENS = [f"{kind}_tokens" for kind in TOKEN_KINDS]
_PICO = 10**12


def _prices_frame(prices: Path) -> pd.DataFrame:
    book = load_price_book(prices)
    rows = []
    for p in book.prices:
        row = {
            "provider": p.provider,
            "model": p.model,
            "effective_from": p.effective_from,
            "effective_to": p.effective_to,
        }
        for name in PRICE_FIELDS:  # micro-USD per Mtok: exact, <= 6 decimals
            row[name] = int(getattr(p, name) * 1_000_000)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("effective_from", "effective_to"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    return frame


def duckdb_daily_cost_by_role(lake: Path, prices: Path, policy: Path) -> list[tuple]:
    pol = load_policy(policy)
    base = pol.baseline_model
    con = duckdb.connect()
    try:
        con.register("price_book", load_price_book(prices).to_arrow())
        # the warehouse's own exact-money macros (token_cost): same arithmetic as the build
        con.execute((REPO_ROOT / "sql" / "_macros.sql").read_text())
        sums = ", ".join(f"sum({t}) as {t}" for t in _TOKENS)
        sql = f"""
        with dim_prices as (
            -- cast the (few) prices to the macro's DECIMAL(24,6) once, not once per call:
            -- a per-row DECIMAL(38,12) -> (24,6) cast costs ~1 us per value
            select row_number() over () as price_id, provider, model, effective_from,
                   effective_to,
                   {", ".join(f"cast({f} as decimal(24, 6)) as {f}" for f in PRICE_FIELDS)}
            from price_book
        ),
        -- read twice (not materialized: a copy of every row would cost more than the scan)
        landed as not materialized (
            select event_id, event_date, occurred_at, role, provider, model, escalated,
                   {", ".join(_TOKENS)},
                   kafka_partition::bigint * 1000000000000 + kafka_offset as position
            from read_parquet('{lake}/llm_call/*/*.parquet', hive_partitioning = true,
                              hive_types = {{'event_date': DATE}})
        ),
        -- producer retries are rare: find the duplicated ids and drop their later copies
        -- (earliest (partition, offset) kept). Equal neighbours among the sorted 64-bit
        -- hashes of the ids are the candidates (cheaper than an aggregate with one group
        -- per id); the candidates' real ids confirm them, so a hash collision is never
        -- taken for a retry
        suspects as (
            select h from (select h, lag(h) over (order by h) as prev
                           from (select hash(event_id) as h from landed))
            where h = prev
        ),
        retried as (
            select event_id, min(position) as first_position
            from landed semi join suspects on hash(landed.event_id) = suspects.h
            group by event_id having count(*) > 1
        ),
        calls as (
            select landed.* from landed
            anti join retried on landed.event_id = retried.event_id
                and landed.position <> retried.first_position
        ),
        -- a call's cost is linear in its tokens: sum the tokens per (day, role, price in
        -- force, baseline price in force), then price those few hundred sums exactly with
        -- the warehouse's token_cost (the same totals as pricing every call)
        grouped as (
            select c.event_date, c.role, p.price_id, b.price_id as base_id,
                   count(*) as calls, count(*) filter (where c.escalated) as escalated_calls,
                   {sums}
            from calls c
            left join dim_prices p on p.provider = c.provider and p.model = c.model
                 and p.effective_from <= c.occurred_at
                 and (p.effective_to is null or c.occurred_at < p.effective_to)
            left join dim_prices b on b.provider = $bp and b.model = $bm
                 and b.effective_from <= c.occurred_at
                 and (b.effective_to is null or c.occurred_at < b.effective_to)
            group by all
        ),
        priced as (
            select g.*,
                   token_cost({", ".join("g." + t for t in _TOKENS)},
                              {", ".join("p." + f for f in PRICE_FIELDS)}) as cost_usd,
                   token_cost({", ".join("g." + t for t in _TOKENS)},
                              {", ".join("b." + f for f in PRICE_FIELDS)}) as baseline_cost_usd
            from grouped g
            left join dim_prices p on p.price_id = g.price_id
            left join dim_prices b on b.price_id = g.base_id
        )
        select event_date, role, sum(calls) as calls, sum(escalated_calls) as escalated_calls,
               sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens,
               sum(cost_usd) as cost_usd, sum(baseline_cost_usd) as baseline_cost_usd,
               sum(baseline_cost_usd - cost_usd) as savings_usd
        from priced group by event_date, role order by event_date, role
        """
        return con.execute(sql, {"bp": base.provider, "bm": base.model}).fetchall()
    finally:
        con.close()


def pandas_daily_cost_by_role(lake: Path, prices: Path, policy: Path) -> pd.DataFrame:
    pol = load_policy(policy)
    base = pol.baseline_model
    columns = [
        "event_id",
        "occurred_at",
        "role",
        "provider",
        "model",
        "escalated",
        *_TOKENS,
        "kafka_partition",
        "kafka_offset",
    ]
    dataset = ds.dataset(Path(lake) / "llm_call", format="parquet", partitioning="hive")
    calls = dataset.to_table(columns=columns).to_pandas()
    calls = calls.sort_values(["kafka_partition", "kafka_offset"], kind="stable")
    calls = calls.drop_duplicates("event_id", keep="first")
    calls["event_date"] = calls["occurred_at"].dt.tz_convert("UTC").dt.date
    book = _prices_frame(prices)

    def lookup(frame: pd.DataFrame, prices_: pd.DataFrame, suffix: str) -> pd.DataFrame:
        # (provider, model) has few effective ranges: join on the key, keep the one in force
        frame = frame.reset_index(drop=True)
        frame["_row"] = np.arange(len(frame))
        merged = frame[["_row", "provider", "model", "occurred_at"]].merge(
            prices_, on=["provider", "model"], how="inner"
        )
        in_force = (merged["effective_from"] <= merged["occurred_at"]) & (
            merged["effective_to"].isna() | (merged["occurred_at"] < merged["effective_to"])
        )
        merged = merged[in_force]
        cost = np.zeros(len(frame), dtype=np.int64)
        found = np.zeros(len(frame), dtype=bool)
        pico = sum(
            frame[t].to_numpy()[merged["_row"].to_numpy()] * merged[f].to_numpy()
            for t, f in zip(_TOKENS, PRICE_FIELDS, strict=True)
        )
        cost[merged["_row"].to_numpy()] = pico
        found[merged["_row"].to_numpy()] = True
        frame[f"cost{suffix}"] = np.where(found, cost, 0)
        frame[f"priced{suffix}"] = found
        return frame.drop(columns="_row")

    _check_int64(calls, book)
    calls = lookup(calls, book, "")
    baseline = book[(book.provider == base.provider) & (book.model == base.model)].drop(
        columns=["provider", "model"]
    )
    as_base = calls[["occurred_at", *_TOKENS]].assign(provider=base.provider, model=base.model)
    calls["baseline"] = lookup(
        as_base, baseline.assign(provider=base.provider, model=base.model), ""
    )["cost"].to_numpy()
    calls["savings"] = calls["baseline"] - calls["cost"]
    out = (
        calls.groupby(["event_date", "role"], sort=True)
        .agg(
            calls=("event_id", "size"),
            escalated_calls=("escalated", "sum"),
            input_tokens=("input_tokens", "sum"),
            output_tokens=("output_tokens", "sum"),
            cost_pico=("cost", "sum"),
            baseline_pico=("baseline", "sum"),
            savings_pico=("savings", "sum"),
        )
        .reset_index()
    )
    return out


def _check_int64(calls: pd.DataFrame, book: pd.DataFrame) -> None:
    """pandas sums pico-dollars in int64: refuse a lake whose total could overflow it."""
    top = max(int(book[f].max()) for f in PRICE_FIELDS)
    tokens = sum(int(calls[t].sum()) for t in _TOKENS)
    if tokens * top >= 2**63:
        raise SystemExit("pandas_vs_duckdb: the lake's token total overflows int64 pico-dollars")


def _same(duck: list[tuple], pand: pd.DataFrame) -> bool:
    """Row by row, exactly: DuckDB's Decimals x 1e12 against pandas' integer pico-dollars."""
    if len(duck) != len(pand):
        return False
    for d, p in zip(duck, pand.itertuples(index=False), strict=True):
        ints = (p.event_date, p.role, p.calls, p.escalated_calls, p.input_tokens, p.output_tokens)
        if tuple(d[:6]) != tuple(x if i < 2 else int(x) for i, x in enumerate(ints)):
            return False
        if [Decimal(x) * _PICO for x in d[6:9]] != [
            Decimal(int(x)) for x in (p.cost_pico, p.baseline_pico, p.savings_pico)
        ]:
            return False
    return True


def compare(
    lake: Path,
    *,
    prices: Path = REPO_ROOT / "schemas" / "prices.csv",
    policy: Path = REPO_ROOT / "schemas" / "routing_policy.yaml",
    rounds: int = 3,
) -> dict:
    """Time both (alternating), check they agree exactly; the ``daily_cost_by_role`` figure."""
    duck_s, pandas_s = [], []
    duck = pand = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        duck = duckdb_daily_cost_by_role(lake, prices, policy)
        duck_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pand = pandas_daily_cost_by_role(lake, prices, policy)
        pandas_s.append(time.perf_counter() - t0)
    assert duck is not None and pand is not None
    same = _same(duck, pand)
    speedup = min(pandas_s) / min(duck_s)
    return {
        "duckdb_s": round(min(duck_s), 3),
        "pandas_s": round(min(pandas_s), 3),
        "duckdb_runs_s": [round(x, 3) for x in duck_s],
        "pandas_runs_s": [round(x, 3) for x in pandas_s],
        "groups": len(duck),
        "results_identical": same,
        "speedup": round(speedup, 2),
        "goal": ">= 5x",
        "met": bool(same and speedup >= 5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--prices", type=Path, default=REPO_ROOT / "schemas" / "prices.csv")
    parser.add_argument(
        "--policy", type=Path, default=REPO_ROOT / "schemas" / "routing_policy.yaml"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    result = compare(args.lake, prices=args.prices, policy=args.policy, rounds=args.rounds)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
