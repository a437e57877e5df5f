"""The package map in pyproject.toml covers every package folder, and no generic top-level name is installed."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAPPED = {"runner_cache": "runner_cache", "runner_cache.flows": "flows", "runner_cache.tasks": "tasks",
          "runner_cache.blocks": "blocks", "runner_cache.deployments": "deployments"}  # fmt: skip


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_package_dir_maps_the_top_level_folders_under_runner_cache() -> None:
    assert _setuptools()["package-dir"] == MAPPED


def test_every_folder_with_an_init_is_a_listed_package() -> None:
    found = set()
    for package, folder in MAPPED.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *relative.parts]))
    assert set(_setuptools()["packages"]) == found
    assert all(name.startswith("runner_cache") for name in _setuptools()["packages"])
