"""The finance warehouse: ``modelmeter build`` runs ``sql/`` over the lake into a DuckDB file.

    result = build_warehouse(settings)            # new file, swapped in atomically
    con = open_warehouse_readonly(settings.warehouse)
    con.sql("select * from kpi_daily").fetchall()

The models live in ``sql/`` (:func:`pipeline.resources.sql_dir`), one ``select`` per file
named as its table, each stating in its header the tables it depends on; ``sql/README.md``
describes the layers and lists the tables built in Python. Modules, by concern:

- :mod:`~pipeline.warehouse.models`: discovering the models, reading their headers
  (``depends on``, ``incremental``), the order they run in;
- :mod:`~pipeline.warehouse.runner`: running them into a connection;
- :mod:`~pipeline.warehouse.python_tables`: the tables made in Python (price book and
  policy dims, ROI, lake manifest, build info);
- :mod:`~pipeline.warehouse.lake_sources`: the lake's files and the ``lake_*`` views;
- :mod:`~pipeline.warehouse.incremental`: what changed since the last build, and the
  per-partition update;
- :mod:`~pipeline.warehouse.build`: the build and the atomic swap; staleness;
- :mod:`~pipeline.warehouse.readonly`: read-only access for the report, dq and finance;
- :mod:`~pipeline.warehouse.cli`: the ``modelmeter build`` verb.
"""

from pipeline.warehouse.build import build_warehouse, is_stale
from pipeline.warehouse.duckdb_helpers import parquet_literal
from pipeline.warehouse.lake_sources import LakeFile, lake_files
from pipeline.warehouse.models import LAYERS, Model, discover_models, ordered_models
from pipeline.warehouse.python_tables import PYTHON_TABLES, PythonTable
from pipeline.warehouse.readonly import open_warehouse_readonly
from pipeline.warehouse.runner import BuildResult

__all__ = [
    "LAYERS",
    "PYTHON_TABLES",
    "BuildResult",
    "LakeFile",
    "Model",
    "PythonTable",
    "build_warehouse",
    "discover_models",
    "is_stale",
    "lake_files",
    "open_warehouse_readonly",
    "ordered_models",
    "parquet_literal",
]
