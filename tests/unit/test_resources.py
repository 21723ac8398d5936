"""pipeline.resources: the one way code finds sql/ and schemas/ (here, an editable install:
the repository's own directories; tests/integration/test_wheel.py covers an installed wheel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import resources
from pipeline._exceptions import ConfigError
from pipeline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_an_editable_install_reads_the_repository():
    assert resources.sql_dir() == REPO_ROOT / "sql"
    assert resources.schemas_dir() == REPO_ROOT / "schemas"


def test_the_default_data_files_are_the_working_directorys_else_the_shipped_ones(
    tmp_path, monkeypatch
):
    for name in ("MODELMETER_POLICY", "MODELMETER_PRICES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(REPO_ROOT)
    assert resources.default_data_file("prices.csv") == Path("schemas/prices.csv")
    assert Settings().policy == Path("schemas/routing_policy.yaml")
    monkeypatch.chdir(tmp_path)
    assert resources.default_data_file("prices.csv") == REPO_ROOT / "schemas" / "prices.csv"
    settings = Settings()
    assert (settings.policy, settings.prices) == (
        REPO_ROOT / "schemas" / "routing_policy.yaml",
        REPO_ROOT / "schemas" / "prices.csv",
    )
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "prices.csv").write_text("provider,model\n")
    assert Settings().prices == Path("schemas/prices.csv")


def test_a_missing_directory_is_one_clear_error(tmp_path, monkeypatch):
    """Neither the package's copy nor a repository beside it: ConfigError naming both places."""
    monkeypatch.setattr(resources, "__file__", str(tmp_path / "pipeline" / "resources.py"))
    monkeypatch.setitem(resources._MARKERS, "sql", "no_such_marker.sql")
    with pytest.raises(
        ConfigError, match=r"sql/ directory is missing: neither .*_data/sql \(a wheel\)"
    ):
        resources.sql_dir()
