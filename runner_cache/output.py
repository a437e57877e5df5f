"""How commands print: ``--json`` puts exactly one JSON document on stdout; everything else goes to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(document: Any, *, as_json: bool, text: str) -> None:
    """Print ``document`` as JSON, or ``text`` for people."""
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()
