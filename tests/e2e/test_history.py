"""What ``runner-cache history`` reads out of a run: its masked parameters and what changed."""

from __future__ import annotations

from runner_cache.commands.history import _changes, _summary, mask
from runner_cache.flows.reporting import steps_markdown
from runner_cache.tasks.results import StepResult


def test_changes_are_the_changed_and_failed_steps_of_the_summary_artifact() -> None:
    markdown = steps_markdown(
        "setup-runner-cache",
        [
            StepResult(step="store", status="unchanged", detail="store answers"),
            StepResult(step="bucket", status="changed", detail="created bucket 'runner' | rule runner-cache-expire"),
            StepResult(step="release", status="skipped", detail="not configured"),
            StepResult(step="pipeline", status="failed", detail="the second job found no cache"),
        ],
    )
    assert _summary(markdown) == "Failed: pipeline"
    assert _changes(markdown) == [
        "bucket: created bucket 'runner' | rule runner-cache-expire",
        "pipeline: the second job found no cache",
    ]
    assert _changes(None) == [] and _changes("# prune\n\n| a | b |\n|---|---|\n| 1 | 2 |\n") == []


def test_secret_looking_parameters_are_masked_also_when_nested() -> None:
    parameters = {
        "config": "prod",
        "api_token": "t0ps3cret",
        "parameters": {"chart_version": "0.71.0", "secret_key": "abc"},
        "key": None,
    }
    assert mask(parameters) == {
        "config": "prod",
        "api_token": "***",
        "parameters": {"chart_version": "0.71.0", "secret_key": "***"},
        "key": None,
    }
