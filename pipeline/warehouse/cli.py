"""``modelmeter build [--if-stale] [--full]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline._exceptions import PipelineError, WarehouseError
from pipeline.warehouse.build import build_warehouse, is_stale

__all__ = ["run_cli"]


def run_cli(args: argparse.Namespace, settings: Any) -> int:
    """``modelmeter build [--if-stale] [--full]``: progress on stderr, exit 0 or an error."""

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    settings.apply_umask()  # the warehouse's mode: MODELMETER_UMASK (default 027)
    if getattr(args, "if_stale", False) and not is_stale(settings):
        say(f"build: {settings.warehouse} is newer than the lake, price book and policy; skipped")
        return 0
    try:
        build_warehouse(settings, progress=say, full=getattr(args, "full", False))
    except PipelineError:
        raise
    except OSError as exc:
        raise WarehouseError(f"building {settings.warehouse} failed: {exc}") from None
    return 0
