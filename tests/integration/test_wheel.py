"""The wheel carries sql/ and schemas/: built from a clean copy of the repository, installed
(not editable) into a fresh virtualenv, run from a directory outside the repository, the
``modelmeter`` command checks the policy, builds a warehouse, reports and runs the
data-quality checks with the files shipped inside the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from tests.fixtures.golden import DAY_B, write_golden_lake

# one worker runs the module: its module-scoped fixture is made once, not once per worker
pytestmark = [pytest.mark.wheel, pytest.mark.xdist_group("wheel")]

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120


def _run(
    argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if check:
        assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _clean_copy(target: Path) -> None:
    """The files git would commit (tracked or new, not ignored), as they are on disk."""
    listed = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if not source.is_file():  # deleted in the working tree
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(source.read_bytes())


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, fresh venv's modelmeter, its python, its site-packages, a clean environment)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    _clean_copy(source)
    dist = root / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--disable-pip-version-check",
            "-w",
            str(dist),
            str(source),
        ],
        cwd=root,
    )
    (wheel,) = dist.glob("modelmeter-*.whl")

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--disable-pip-version-check",
            str(wheel),
        ],
        cwd=root,
    )
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=root,
        ).stdout.strip()
    )
    # The dependencies come from the test's own environment, after the fresh site-packages:
    # the installed pipeline shadows the repository's editable one (whose finder this .pth
    # line does not load: .pth files of an added directory are not processed).
    (site / "zz_modelmeter_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MODELMETER_", "KAFKA_", "PYTHON"))
    }
    return wheel, venv / "bin" / "modelmeter", python, site, env


def test_the_wheel_holds_sql_and_schemas_inside_the_package(installed):
    wheel = installed[0]
    names = zipfile.ZipFile(wheel).namelist()
    for path in sorted((REPO_ROOT / "sql").rglob("*.sql")):
        assert f"pipeline/_data/sql/{path.relative_to(REPO_ROOT / 'sql').as_posix()}" in names
    for name in ("routing_policy.yaml", "prices.csv", "dq.yaml", "expectations/llm_call.json"):
        assert f"pipeline/_data/schemas/{name}" in names
    assert not [n for n in names if n.startswith(("sql/", "schemas/"))]  # nothing at the top


def test_the_installed_modelmeter_runs_on_its_packaged_files(installed, tmp_path):
    wheel, modelmeter, python, site, env = installed
    work = tmp_path / "elsewhere"  # outside the repository, no schemas/ here
    work.mkdir()

    where = _run(
        [
            str(python),
            "-c",
            "import pipeline, pipeline.resources as r; "
            "print(pipeline.__file__); print(r.sql_dir()); print(r.schemas_dir())",
        ],
        cwd=work,
        env=env,
    ).stdout.split()
    packaged = site / "pipeline"
    assert where == [
        str(packaged / "__init__.py"),
        str(packaged / "_data" / "sql"),
        str(packaged / "_data" / "schemas"),
    ]

    check = _run([str(modelmeter), "policy", "check"], cwd=work, env=env)
    assert check.stdout.startswith(
        f"ok: {packaged / '_data' / 'schemas' / 'routing_policy.yaml'} (version "
    )

    expected = write_golden_lake(work / "lake")
    options = ["--lake", "lake", "--warehouse", "warehouse.duckdb"]
    build = _run([str(modelmeter), "build", *options], cwd=work, env=env)
    assert "build: marts:" in build.stderr
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    try:
        kpis = {
            (d, k): (a, s)
            for d, k, a, s in con.execute(
                "select event_date, kpi, actual, status from kpi_daily"
            ).fetchall()
        }
        policy_path, prices_path = con.execute(
            "select policy_path, prices_path from mart_build_info"
        ).fetchone()
    finally:
        con.close()
    assert kpis == expected.kpi_daily
    assert Path(policy_path).parent == Path(prices_path).parent == packaged / "_data" / "schemas"

    report = _run(
        [str(modelmeter), "report", *options, "--date", DAY_B.isoformat(), "--format", "json"],
        cwd=work,
        env=env,
    )
    headline = json.loads(report.stdout)["headline"]
    assert (headline["calls"], Decimal(headline["savings_pct"])) == (20, Decimal("0.35"))

    dq = _run(
        [
            str(modelmeter),
            "dq",
            *options,
            "--date",
            DAY_B.isoformat(),
            "--output",
            "dq.json",
            "--no-data-docs",
        ],
        cwd=work,
        env=env,
        check=False,
    )
    result = json.loads((work / "dq.json").read_text())
    assert (dq.returncode, result["status"]) == (0, "pass"), dq.stdout + dq.stderr
    assert result["counts"]["pass"] >= 10
    assert not (work / "schemas").exists()
