"""Thresholds of the data-quality checks, read from ``schemas/dq.yaml``.

::

    config = load_dq_config(Path("schemas/dq.yaml"))
    config.max_rejected_rate          # a fraction: 0.01 = 1 % of the day's messages
    config.expectations_dir           # the great-expectations suite files

Anything wrong raises :class:`ConfigError` (exit 2) naming the file and the field; the file
is read by :func:`pipeline.config_files.read_yaml` (no anchors/aliases, no duplicate keys,
bounded numbers and nesting, never empty: see that module).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline._exceptions import ConfigError
from pipeline.config_files import read_yaml
from pipeline.resources import default_data_file

__all__ = ["DqConfig", "VolumeConfig", "FreshnessConfig", "load_dq_config", "default_config_path"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VolumeConfig(_Strict):
    trailing_days: int = Field(7, ge=1, le=366)
    min_history_days: int = Field(3, ge=1)
    min_ratio: float = Field(0.5, ge=0)
    max_ratio: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> VolumeConfig:
        if self.min_ratio > self.max_ratio:
            raise ValueError("min_ratio is above max_ratio")
        if self.min_history_days > self.trailing_days:
            raise ValueError("min_history_days is above trailing_days")
        return self


class FreshnessConfig(_Strict):
    max_age_minutes: float = Field(60, gt=0)


class DqConfig(_Strict):
    """The validated thresholds; ``expectations_dir`` is resolved against the file's directory."""

    expectations_dir: Path = Path("expectations")
    max_prompt_tokens: int = Field(2_000_000, gt=0)
    max_rejected_rate: float = Field(0.01, ge=0, le=1)
    volume: VolumeConfig = Field(default_factory=lambda: VolumeConfig.model_validate({}))
    freshness: FreshnessConfig = Field(default_factory=lambda: FreshnessConfig.model_validate({}))
    max_listed_values: int = Field(10, ge=1, le=1000)


def default_config_path() -> Path:
    """``schemas/dq.yaml`` of the working directory, else the one shipped with modelmeter."""
    return default_data_file("dq.yaml")


def load_dq_config(path: Path | str) -> DqConfig:
    """Read and validate the thresholds file at ``path``."""
    path = Path(path)
    raw = read_yaml(path, what="data-quality config").data
    try:
        config = DqConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<top>"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
    suites = config.expectations_dir
    if not suites.is_absolute():
        suites = path.parent / suites
    try:
        is_dir = suites.is_dir()
    except (OSError, ValueError):  # e.g. a name too long for the file system
        is_dir = False
    if not is_dir:
        raise ConfigError(f"{path}: expectations_dir {suites} is not a directory")
    return config.model_copy(update={"expectations_dir": suites})
