"""A non-editable install provides runner_cache.* only — no generic top-level `tasks`, `flows`, `blocks` or
`deployments` — and the CLI runs from it, outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources (setuptools writes build/ next to what it builds)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in ("runner_cache", "flows", "tasks", "blocks", "deployments"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return next(out.glob("runner_cache-*.whl"))


def test_the_wheel_holds_only_runner_cache(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"runner_cache"}, tops
    for expected in ("runner_cache/tasks/keys/layout.py", "runner_cache/flows/setup.py",
                     "runner_cache/blocks/store.py", "runner_cache/deployments/prefect.yaml"):  # fmt: skip
        assert expected in names


def test_installed_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = """
import importlib, sys
for generic in ("tasks", "flows", "blocks", "deployments"):
    try:
        importlib.import_module(generic)
    except ModuleNotFoundError:
        continue
    sys.exit(f"{generic} is importable")
import runner_cache.flows.setup, runner_cache.tasks.store.bucket, runner_cache.deployments.serve
assert runner_cache.flows.setup.__file__.startswith(sys.argv[1]), runner_cache.flows.setup.__file__
print("ok")
"""
    run = subprocess.run(
        [sys.executable, "-c", probe, str(target)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
    cli = subprocess.run(
        [str(target / "bin" / "runner-cache"), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert cli.returncode == 0 and "usage: runner-cache" in cli.stdout, cli.stderr[-2000:]
