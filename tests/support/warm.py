"""Stopping the warm processes (tasks/warm_process.py) that commands started under a runtime dir of a test session
or a benchmark: whoever started them stops them."""

from __future__ import annotations

from pathlib import Path

from runner_cache.tasks import warm_process


def stop_warm_processes(runtime: Path) -> None:
    """Stop every warm process whose files are in ``runtime`` (an ``XDG_RUNTIME_DIR``), whatever interpreter."""
    for pid_file in (runtime / "runner-cache").glob("warm-*.pid"):
        warm_process.stop(warm_process.WarmFiles(pid_file.parent, pid_file.stem))
