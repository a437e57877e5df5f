"""Errors users see. Their text never carries a submitted value, so secrets cannot leak through them."""

from __future__ import annotations

from pydantic import ValidationError


class ConfigError(ValueError):
    """Configuration is invalid; the message lists every problem by its setting name."""

    @classmethod
    def from_validation(cls, error: ValidationError, env_prefix: str | None = None) -> "ConfigError":
        """Name each failing setting as its environment variable (with ``env_prefix``) or its dotted field path."""
        lines = []
        for item in error.errors(include_input=False, include_url=False, include_context=False):
            parts = [str(part) for part in item["loc"]]
            where = env_prefix + "__".join(parts).upper() if env_prefix else ".".join(parts)
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"  {where or 'settings'}: {message}")
        return cls("invalid configuration:\n" + "\n".join(lines))
