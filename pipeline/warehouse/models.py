"""The SQL models of ``sql/``: discovery, their stated dependencies, the order they run in.

A model is ``sql/<layer>/<name>.sql``, one ``select`` named as its table. Its header (the
comment lines before the SQL) states what it reads and whether it is built per partition::

    -- fct_llm_calls: one row per distinct llm_call event_id, priced.
    -- depends on: stg_llm_calls, dim_prices, dim_policy, dim_roles, dim_triggers
    -- incremental: partition event_date, key event_id

``depends on`` (required, one or more lines) names every table the select reads: other
models, the tables the build makes in Python before the models (``dim_prices``,
``dim_policy``, ... listed in ``sql/README.md``), or the lake views (``lake_llm_call``,
``lake_task_feedback``, ``lake_rejected``). The runner orders the models by these lists
and nothing else; a name that is none of those is an error, as is a cycle. A test checks
each list against the tables DuckDB's parser finds in the select.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from pipeline._exceptions import WarehouseError
from pipeline.warehouse.lake_sources import LAKE_VIEWS

__all__ = [
    "BUILD_ONLY_LAYERS",
    "LAYERS",
    "MACROS_FILE",
    "Model",
    "discover_models",
    "lake_sources",
    "ordered_models",
]

#: Folders of sql/, in the order their models run when dependencies allow. sql/dims/ derives
#: dimensions from the facts (dim_dates spans them), so it runs after sql/facts/.
LAYERS = ("staging", "facts", "dims", "marts")
#: Layers created as temporary views: read by the build, not stored in the warehouse (staging
#: is the lake typed and deduplicated; materialising it would cost a pass and memory for nothing).
BUILD_ONLY_LAYERS = frozenset({"staging"})
#: Macros shared by the models, run before them.
MACROS_FILE = "_macros.sql"

_DIRECTIVE = re.compile(r"--\s*(depends on|incremental)\s*:(.*)")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_INCREMENTAL = re.compile(r"partition\s+(\w+)(?:\s*,\s*key\s+(\w+))?")


@dataclass(frozen=True, slots=True)
class Model:
    """One SQL model: ``sql/<layer>/<name>.sql``.

    A model whose header has ``-- incremental: partition <column>[, key <column>]`` is
    rebuilt per partition in incremental builds: its rows of the changed partitions are
    deleted and recomputed (its select, restricted to those partitions). With a key, a key
    value also present in an unchanged partition makes the build fall back to a full one.
    """

    layer: str
    name: str
    path: Path
    sql: str
    depends_on: tuple[str, ...] = ()
    partition_column: str | None = None
    key_column: str | None = None

    @property
    def where(self) -> str:
        """``sql/<layer>/<name>.sql``: how errors name the model."""
        return f"sql/{self.layer}/{self.name}.sql"


def discover_models(sql_dir: Path) -> dict[str, list[Model]]:
    """The models of each layer (``sql/<layer>/*.sql``), by name, with their headers read."""
    if not (sql_dir / MACROS_FILE).is_file():
        raise WarehouseError(f"the SQL models are not in {sql_dir}: no {MACROS_FILE}")
    models: dict[str, list[Model]] = {}
    for layer in LAYERS:
        found = []
        for path in sorted((sql_dir / layer).glob("*.sql")):
            sql = path.read_text(encoding="utf-8")
            found.append(_model(layer, path, sql))
        models[layer] = found
    return models


def _model(layer: str, path: Path, sql: str) -> Model:
    where = f"sql/{layer}/{path.name}"
    depends: list[str] = []
    stated = False
    partition = key = None
    for number, line in enumerate(sql.splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        if not text.startswith("--"):
            break  # the header ends at the first line of SQL
        directive = _DIRECTIVE.fullmatch(text)
        if directive is None:
            continue
        kind, value = directive.group(1), directive.group(2).strip()
        if kind == "depends on":
            stated = True
            names = [n.strip() for n in value.split(",") if n.strip()]
            bad = [n for n in names if not _NAME.fullmatch(n)]
            if bad or not names:
                raise WarehouseError(
                    f"{where}:{number}: 'depends on:' takes table names "
                    f"separated by commas, not {value!r}"
                )
            depends.extend(n for n in names if n not in depends)
        else:
            match = _INCREMENTAL.fullmatch(value)
            if match is None:
                raise WarehouseError(
                    f"{where}:{number}: expected 'incremental: partition "
                    f"<column>[, key <column>]', not {value!r}"
                )
            partition, key = match.groups()
    if not stated:
        raise WarehouseError(
            f"{where}: the header has no '-- depends on:' line naming the tables the model reads"
        )
    return Model(layer, path.stem, path, sql, tuple(depends), partition, key)


def ordered_models(models: dict[str, list[Model]], inputs: Collection[str]) -> list[Model]:
    """Every model after the models it depends on; otherwise in layer order, then by name.

    ``inputs`` are the tables that exist before any model runs (the Python-built dims);
    the lake views are always there. WarehouseError for an unknown dependency or a cycle.
    """
    by_name = {m.name: m for found in models.values() for m in found}
    known = set(by_name) | set(inputs) | set(LAKE_VIEWS)
    for model in by_name.values():
        for name in model.depends_on:
            if name == model.name:
                raise WarehouseError(f"{model.where}: depends on itself")
            if name not in known:
                raise WarehouseError(
                    f"{model.where}: depends on {name!r}, which is not a model, a table built "
                    f"before the models ({', '.join(sorted(inputs))}) or a lake view "
                    f"({', '.join(sorted(LAKE_VIEWS))})"
                )
    graph = {m.name: {n for n in m.depends_on if n in by_name} for m in by_name.values()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        raise WarehouseError(
            f"sql/: models depend on each other in a cycle: {exc.args[1]}"
        ) from None
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    order: list[Model] = []
    done: set[str] = set()
    remaining = sorted(by_name.values(), key=lambda m: (rank[m.layer], m.name))
    while remaining:
        chosen = next(m for m in remaining if graph[m.name] <= done)
        order.append(chosen)
        done.add(chosen.name)
        remaining.remove(chosen)
    return order


def lake_sources(model: Model, by_name: dict[str, Model]) -> set[str]:
    """The lake tables ``model`` reads, directly or through the models it depends on."""
    found: set[str] = set()
    seen: set[str] = set()
    stack = [model]
    while stack:
        current = stack.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        found |= {LAKE_VIEWS[n] for n in current.depends_on if n in LAKE_VIEWS}
        stack.extend(by_name[n] for n in current.depends_on if n in by_name)
    return found
