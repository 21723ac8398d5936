"""The layout of the test suite: shared test code lives in ``tests/fixtures/``.

A test module (``test_*.py``) or a ``conftest.py`` imported by another module drags that
module's tests, fixtures and import-time work into the importer (pytest may even collect its
tests twice): helpers shared by several test modules belong in ``tests/fixtures/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)


def _imported_modules(path: Path, source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` (the text of ``path``), at
    any depth (function-level imports included); ``from a import b`` yields ``a`` and ``a.b``."""
    package = _module_name(path).rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _is_test_module(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def _offences(sources: dict[Path, str]) -> list[str]:
    return [
        f"{path.relative_to(TESTS.parent)}:{line} imports {module}"
        for path, source in sources.items()
        for line, module in _imported_modules(path, source)
        if _is_test_module(module)
    ]


def test_no_module_of_the_suite_imports_a_test_module_or_a_conftest():
    sources = {path: path.read_text(encoding="utf-8") for path in sorted(TESTS.rglob("*.py"))}
    assert len(sources) > 30  # the walk really found the suite
    assert _offences(sources) == [], "move shared helpers to tests/fixtures/"


@pytest.mark.parametrize(
    "source",
    [
        "from tests.unit.test_consumer_validate import enc\n",
        "import tests.integration.test_consume\n",
        "def f():\n    from tests.unit.test_dq import Lake\n",
        "from tests.unit import test_report\n",
        "from .test_dq import Lake\n",
        "from tests.conftest import REPO_ROOT\n",
    ],
)
def test_the_layout_check_catches_every_spelling_of_such_an_import(source):
    assert _offences({TESTS / "unit" / "test_example_importer.py": source}) != []


def test_the_layout_check_lets_fixtures_and_the_project_through():
    source = (
        "from tests.fixtures.events import enc\nimport tests.fixtures.golden\n"
        "from pipeline.contract import parse_event\nfrom .. import fixtures\n"
        "import pytest\n"
    )
    assert _offences({TESTS / "unit" / "test_example_importer.py": source}) == []


def test_a_test_that_may_start_the_broker_is_deselected_by_not_kafka_or_fails(pytester):
    """``-m "not kafka"`` (``make test-unit``) never starts a broker: a test asking for a
    broker fixture by name is marked ``kafka`` at collection; one that asks
    ``make_settings()`` for the broker without the marker fails before starting it."""
    pytester.makeconftest('pytest_plugins = ["tests.fixtures.broker"]\n')
    pytester.makepyfile(
        test_example="""
        import pytest

        def test_broker_by_name(kafka_broker):
            raise AssertionError("never runs")

        def test_topic_by_name(topic_factory):
            raise AssertionError("never runs")

        def test_broker_through_make_settings(make_settings):
            make_settings()

        def test_no_broker(make_settings):
            assert make_settings(kafka=False).kafka_bootstrap_servers

        @pytest.mark.kafka
        def test_marked(make_settings):
            raise AssertionError("never runs")
        """
    )
    result = pytester.runpytest_inprocess("-m", "not kafka", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, deselected=3)
    result.stdout.fnmatch_lines(["*make_settings() starts the Kafka broker: mark the test*"])
