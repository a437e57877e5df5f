"""scripts/get-helm.sh is idempotent: with the pinned helm and kubectl in place it touches nothing (no network)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "get-helm.sh"
PROJECT_HELM = REPO / ".tools" / "bin" / "helm"


def test_second_run_changes_nothing() -> None:
    if not (PROJECT_HELM.is_file() and (PROJECT_HELM.parent / "kubectl").is_file()):
        pytest.skip("scripts/get-helm.sh has not installed helm into .tools/bin yet")
    before = {path.name: path.stat().st_mtime_ns for path in PROJECT_HELM.parent.iterdir()}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"helm v4.1.4 and kubectl v1.35.2 already in {PROJECT_HELM.parent}: nothing to do"
    assert {path.name: path.stat().st_mtime_ns for path in PROJECT_HELM.parent.iterdir()} == before
