"""Build hook: the wheel carries the top-level ``sql/`` and ``schemas/`` inside the package.

Both directories stay at the top of the repository; building a wheel copies them to
``pipeline/_data/sql`` and ``pipeline/_data/schemas``, where ``pipeline.resources`` finds
them with importlib.resources. An editable install copies nothing: the code reads the
repository's own directories. Everything else is in ``pyproject.toml``.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: top-level directory -> the files of it that ship (glob patterns, relative to it)
DATA = {
    "sql": ("*.sql", "*/*.sql", "README.md"),
    "schemas": ("*.csv", "*.yaml", "*.json", "expectations/*.json"),
}
PACKAGED_DATA = Path("pipeline") / "_data"  # pipeline.resources.PACKAGED_DATA


class BuildPyWithData(build_py):
    """``build_py`` that also copies ``sql/`` and ``schemas/`` into ``pipeline/_data/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name, patterns in DATA.items():
            source = ROOT / name
            files = sorted({p for pattern in patterns for p in source.glob(pattern) if p.is_file()})
            if not files:
                raise SystemExit(f"setup.py: {source} has none of {', '.join(patterns)}")
            for path in files:
                target = Path(self.build_lib) / PACKAGED_DATA / name / path.relative_to(source)
                self.mkpath(str(target.parent))
                self.copy_file(str(path), str(target))


setup(cmdclass={"build_py": BuildPyWithData})
