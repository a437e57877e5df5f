"""One logger rule for every task module."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside a flow or task run (its lines reach the Prefect UI), else the module's logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)
