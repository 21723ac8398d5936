"""Where the SQL models (``sql/``) and the data files (``schemas/``) are.

Both directories live at the top of the repository. A wheel carries them inside the package
as ``pipeline/_data/sql`` and ``pipeline/_data/schemas`` (``setup.py`` copies them there at
build time); an editable install reads the repository's own directories. These functions are
the only way code finds them::

    sql_dir()                              # .../sql (repository) or .../pipeline/_data/sql (wheel)
    schemas_dir() / "prices.csv"
    default_data_file("routing_policy.yaml")   # ./schemas/routing_policy.yaml if present, else the shipped one
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pipeline._exceptions import ConfigError

__all__ = ["PACKAGED_DATA", "sql_dir", "schemas_dir", "default_data_file"]

#: Directory of the package that holds sql/ and schemas/ in a wheel (copied by setup.py).
PACKAGED_DATA = "_data"

# directory -> a file that must be in it (a directory without it is not the real one)
_MARKERS = {"sql": "_macros.sql", "schemas": "routing_policy.yaml"}


def _find(name: str) -> Path:
    marker = _MARKERS[name]
    packaged = resources.files("pipeline").joinpath(PACKAGED_DATA, name)
    if isinstance(packaged, Path) and (packaged / marker).is_file():
        return packaged
    repository = Path(__file__).resolve().parent.parent / name
    if (repository / marker).is_file():
        return repository
    raise ConfigError(
        f"modelmeter's {name}/ directory is missing: neither {packaged} (a wheel) "
        f"nor {repository} (a source tree) holds {marker}; reinstall modelmeter"
    )


def sql_dir() -> Path:
    """The SQL models: ``sql/`` of the repository, or the copy inside an installed wheel."""
    return _find("sql")


def schemas_dir() -> Path:
    """The data files (price book, policy, expectations): ``schemas/``, or the wheel's copy."""
    return _find("schemas")


def default_data_file(name: str) -> Path:
    """``schemas/<name>`` of the working directory when it exists, else the shipped one.

    The default of the ``--policy``, ``--prices`` and ``--dq-config`` settings: run from a
    checkout (or a directory with its own ``schemas/``) it is that file, given as the
    relative path; run from anywhere else it is the file shipped with modelmeter.
    """
    local = Path("schemas") / name
    if local.is_file():
        return local
    try:
        return schemas_dir() / name
    except ConfigError:  # reported, naming the path, by whatever reads the file
        return local
