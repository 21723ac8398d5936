"""great-expectations glue: suites from JSON files, validation of pandas frames, data docs.

great-expectations takes ~2.3 s to import, so it is imported here only, and this module
only when ``modelmeter dq`` runs. The context is ephemeral (nothing is written but the
HTML data docs), with analytics and progress bars off::

    runner = GxRunner(docs_dir=Path("data/dq/data_docs"), run_name="dq-2025-06-01")
    suite = load_suite(Path("schemas/expectations/llm_call.json"))
    outcomes = runner.validate("llm_call", frame, suite, parameters={...}, index_column="event_id")
    index_html = runner.build_docs()

Each expectation in a suite file carries ``meta.check`` (the named check it belongs to) and
``meta.explain`` (how a failure reads in the summary, e.g. ``unpriced``); ``meta.unit``
names what a row is (``calls``, ``flushes``...); ``meta.show`` picks how failing values are
listed (``values`` with their counts, ``index`` by the frame's key column, ``observed`` for a
one-row frame, with the ``meta.context`` columns alongside).

great-expectations writes the values it shows (unexpected values, value sets, index
values) into the data-docs HTML unescaped. So every string of a validated frame, and every
string of a value set (a list in an expectation's kwargs or in the parameters), is handed
to it as :func:`_for_docs` - :func:`~pipeline.safe_text.html_text` with backslashes
doubled, an injective map, so membership, uniqueness and counts are those of the original
values (and a string with nothing to escape is unchanged). The suites compare strings for
equality only (in set, unique, null); a check of a string's length, pattern or order would
see the escaped form of a value holding ``<>&"'\\`` or a non-printable character. The
summary lines (:func:`_describe`) show the original values, through
:func:`~pipeline.safe_text.visible`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline._exceptions import ConfigError
from pipeline.config_files import read_json
from pipeline.safe_text import html_text, visible

__all__ = ["Suite", "Outcome", "GxRunner", "load_suite"]


@dataclass(frozen=True)
class Suite:
    """An expectation suite file, as JSON (turned into a great-expectations suite per run)."""

    path: Path
    name: str
    data: dict[str, Any]

    @property
    def checks(self) -> set[str]:
        return {e["meta"]["check"] for e in self.data["expectations"]}

    def without(self, skipped: set[str]) -> Suite:
        """The suite minus the expectations of ``skipped`` checks."""
        kept = [e for e in self.data["expectations"] if e["meta"]["check"] not in skipped]
        return Suite(self.path, self.name, {**self.data, "expectations": kept})


@dataclass(frozen=True)
class Outcome:
    """The result of one expectation, reduced to what the summary and the JSON file need."""

    check: str
    suite: str
    expectation: str
    column: str | None
    success: bool
    message: str | None  # one line naming the failing values; None on success


def load_suite(path: Path) -> Suite:
    """Read a suite file; its structure is checked here, its expectations by great-expectations."""
    data = read_json(path, what="expectation suite")  # bounded, no NaN, no duplicate keys
    if not isinstance(data.get("name"), str) or not isinstance(data.get("expectations"), list):
        raise ConfigError(f"{path}: an expectation suite needs a name and a list of expectations")
    for i, expectation in enumerate(data["expectations"]):
        meta = expectation.get("meta") if isinstance(expectation, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("check"), str):
            raise ConfigError(f"{path}: expectations[{i}]: meta.check (the named check) is missing")
    data.pop("id", None)
    return Suite(path=path, name=data["name"], data=data)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep great-expectations' prints, warnings and log lines off the one-screen summary."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _for_docs(value: str) -> str:
    """``value`` as great-expectations gets it (it writes values into the data docs
    unescaped): :func:`~pipeline.safe_text.html_text`, after doubling every backslash so
    that the escapes ``visible`` writes (``\\x1b``) cannot be taken for a literal backslash
    in another value. Injective, and the identity on a printable string without
    ``<>&"'\\``."""
    return html_text(value.replace("\\", "\\\\"))


def _fmt(value: Any) -> str:
    """A value on one printable line (:func:`~pipeline.safe_text.visible`)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    if hasattr(value, "isoformat"):
        return visible(value.isoformat())
    return visible(value)


def _range(kwargs: dict[str, Any]) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        return ""
    if low is not None and high is not None and low == high:
        return f" (expected {_fmt(low)})"
    if low is None:
        return f" (max {_fmt(high)})"
    if high is None:
        return f" (min {_fmt(low)})"
    return (
        f" (expected {_fmt(low)}..{_fmt(high)}{' exclusive' if kwargs.get('strict_max') else ''})"
    )


def _exact_counts(frame: pd.DataFrame, config: Any) -> list[dict[str, Any]] | None:
    """Every unexpected value with its count, for the expectations whose unexpected values
    are plain to name (great-expectations samples at most 200 of them); None otherwise."""
    kwargs = config.kwargs
    column = kwargs.get("column")
    if column not in frame.columns:
        return None
    data = frame
    if kwargs.get("row_condition"):
        if kwargs.get("condition_parser") != "pandas":
            return None
        data = frame.query(kwargs["row_condition"])
    values = data[column].dropna()
    if config.type == "expect_column_values_to_be_null":
        bad = values
    elif config.type == "expect_column_values_to_be_in_set":
        bad = values[~values.isin(list(kwargs["value_set"]))]
    else:
        return None
    counts = bad.astype(object).value_counts()
    return [
        {"value": v, "count": int(n)}
        for v, n in sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    ]


def _describe(
    result: Any,
    frame: pd.DataFrame,
    index_column: str | None,
    limit: int,
    original: Callable[[Any], Any] = lambda value: value,
) -> str:
    """``<explain>: <values>`` for a failed expectation, on one printable line.

    ``frame`` and ``result`` hold the values great-expectations was given; ``original``
    turns one of them back into the value of the data, which is what the line shows.
    """
    return visible(_message(result, frame, index_column, limit, original))


def _message(
    result: Any,
    frame: pd.DataFrame,
    index_column: str | None,
    limit: int,
    original: Callable[[Any], Any],
) -> str:
    def shown_value(value: Any) -> str:
        return _fmt(original(value))

    config = result.expectation_config
    meta = config.meta or {}
    explain = meta.get("explain") or config.type
    unit = meta.get("unit", "rows")
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"{explain}: could not evaluate: {result.exception_info.get('exception_message')}"
    res = result.result or {}
    kwargs = config.kwargs
    column = kwargs.get("column")
    count = res.get("unexpected_count")
    counts = [c for c in res.get("partial_unexpected_counts") or [] if c.get("value") is not None]
    if count and sum(c["count"] for c in counts) != count:  # a sample: count them all
        exact = _exact_counts(frame, config)
        counts = exact if exact is not None and sum(c["count"] for c in exact) == count else []
    by_index = res.get("partial_unexpected_index_list") or []
    show = meta.get("show", "values")
    if show == "observed":  # a one-row frame of day-level numbers
        if config.type == "expect_column_values_to_not_be_null":
            return explain
        values = res.get("partial_unexpected_list") or []
        shown = shown_value(values[0]) if values else "none"
        context = ", ".join(
            f"{c}={shown_value(frame[c].iloc[0])}"
            for c in meta.get("context", [])
            if c in frame.columns and len(frame) == 1
        )
        return f"{explain} {shown}{_range(kwargs)}" + (f" [{context}]" if context else "")
    if show == "values" and counts:
        listed = ", ".join(
            f"{shown_value(c['value'])} ({c['count']} {unit})" for c in counts[:limit]
        )
        more = " ..." if len(counts) > limit else ""
        return f"{explain}: {listed}{more}{_range(kwargs)}"
    if by_index and index_column:
        listed = ", ".join(
            shown_value(row.get(index_column))
            + (
                f" ({column}={shown_value(row[column])})"
                if column in row and column != index_column and row[column] is not None
                else ""
            )
            for row in by_index[:limit]
        )
        more = " ..." if (count or 0) > limit else ""
        return f"{explain}: {count} {unit}: {listed}{more}{_range(kwargs)}"
    if count:
        return f"{explain}: {count} {unit}{_range(kwargs)}"
    observed = res.get("observed_value")
    if observed is not None:
        return f"{explain}: observed {shown_value(observed)}{_range(kwargs)}"
    return explain


class GxRunner:
    """An ephemeral great-expectations context whose results build one data-docs site."""

    SITE = "modelmeter_dq"

    def __init__(
        self, *, docs_dir: Path | None, run_name: str, max_listed_values: int = 10
    ) -> None:
        with _quiet():
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )
        logging.getLogger("great_expectations").setLevel(logging.CRITICAL)
        self._gx = gx
        #: value given to great-expectations (``_for_docs``) -> the value of the data
        self._originals: dict[str, str] = {}
        self.docs_dir = docs_dir
        self.run_name = run_name
        self.limit = max_listed_values
        sites = {}
        if docs_dir is not None:
            sites[self.SITE] = {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        config = DataContextConfig(
            analytics_enabled=False,
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            data_docs_sites=sites,
        )
        with _quiet():
            self.context = gx.get_context(mode="ephemeral", project_config=config)
            self._source = self.context.data_sources.add_pandas("modelmeter")

    def _suite(self, suite: Suite, name: str) -> Any:
        # Built one expectation at a time: ExpectationSuite(**data) only logs an invalid
        # expectation and drops it, which would silently switch a check off.
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )

        expectations = []
        for i, item in enumerate(suite.data["expectations"]):
            kwargs = item.get("kwargs")
            if isinstance(kwargs, dict):  # value sets as great-expectations will show them
                item = {**item, "kwargs": {k: self._value_set(v) for k, v in kwargs.items()}}
            try:
                with _quiet():
                    expectations.append(ExpectationConfiguration(**item).to_domain_obj())
            except Exception as exc:  # great-expectations raises many types for a bad expectation
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ConfigError(
                    f"{suite.path}: invalid expectation suite: expectations[{i}] "
                    f"({item.get('type')}): {message}"
                ) from None
        data = {k: v for k, v in suite.data.items() if k != "expectations"} | {"name": name}
        with _quiet():
            return self.context.suites.add(
                self._gx.ExpectationSuite(expectations=expectations, **data)
            )

    def _for_docs(self, value: str) -> str:
        shown = _for_docs(value)
        if shown != value:
            self._originals[shown] = value
        return shown

    def _original(self, value: Any) -> Any:
        """The value of the data that great-expectations got as ``value``."""
        return self._originals.get(value, value) if isinstance(value, str) else value

    def _value_set(self, value: Any) -> Any:
        """The strings of a list (a value set) through :func:`_for_docs`; anything else -
        column names, conditions, bounds, ``$PARAMETER`` references - as it is."""
        if isinstance(value, list | tuple):
            return [self._for_docs(v) if isinstance(v, str) else v for v in value]
        return value

    def _frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with every string value through :func:`_for_docs` (the same frame when
        no value needs escaping)."""
        changed: dict[str, pd.Series] = {}
        for name in frame.columns:
            column = frame[name]
            if not (column.dtype == object or pd.api.types.is_string_dtype(column.dtype)):
                continue
            try:
                values = column.dropna().unique()
            except TypeError:  # unhashable cells: escape one by one
                changed[name] = column.map(lambda v: self._for_docs(v) if isinstance(v, str) else v)
                continue
            shown = {v: self._for_docs(v) for v in values if isinstance(v, str)}
            shown = {v: s for v, s in shown.items() if s != v}
            if shown:
                changed[name] = column.map(
                    lambda v, shown=shown: shown.get(v, v) if isinstance(v, str) else v
                )
        return frame.assign(**changed) if changed else frame

    def validate(
        self,
        asset: str,
        frame: pd.DataFrame,
        suite: Suite,
        *,
        parameters: dict[str, Any],
        index_column: str | None = None,
    ) -> list[Outcome]:
        """Validate ``frame`` (named ``asset`` in the data docs) against ``suite``."""
        if not suite.data["expectations"]:
            return []
        frame = self._frame(frame)
        parameters = {k: self._value_set(v) for k, v in parameters.items()}
        gx_suite = self._suite(
            suite, f"{suite.name}.{asset}" if asset != suite.name else suite.name
        )
        result_format: dict[str, Any] = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": max(self.limit, 20),
        }
        if index_column:
            result_format["unexpected_index_column_names"] = [index_column]
        with _quiet():
            data_asset = self._source.add_dataframe_asset(asset)
            definition = data_asset.add_batch_definition_whole_dataframe("day")
            validation = self.context.validation_definitions.add(
                self._gx.ValidationDefinition(
                    name=f"{asset}-{self.run_name}", data=definition, suite=gx_suite
                )
            )
            run_id = self._gx.RunIdentifier(run_name=self.run_name)
            result = validation.run(
                batch_parameters={"dataframe": frame},
                expectation_parameters=parameters,
                result_format=result_format,
                run_id=run_id,
            )
        outcomes = []
        for item in result.results:
            config = item.expectation_config
            assert config is not None  # always set by ValidationDefinition.run
            outcomes.append(
                Outcome(
                    check=config.meta["check"],
                    suite=suite.name,
                    expectation=config.type,
                    column=config.kwargs.get("column"),
                    success=bool(item.success),
                    message=None
                    if item.success
                    else _describe(item, frame, index_column, self.limit, self._original),
                )
            )
        return outcomes

    def build_docs(self) -> Path | None:
        """Build the HTML data docs; returns their index.html (None without a docs dir)."""
        if self.docs_dir is None:
            return None
        with _quiet():
            self.context.build_data_docs(site_names=[self.SITE])
        return Path(self.docs_dir).resolve() / "index.html"
