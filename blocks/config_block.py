"""The Prefect block that stores a runner-cache configuration (secrets encrypted by Prefect)."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import ValidationError

from runner_cache import redaction
from runner_cache.blocks.settings import RunnerCacheSections, load_settings
from runner_cache.errors import ConfigError


class RunnerCacheConfig(Block, RunnerCacheSections):
    """Store connection, runner cache layout, release and GitLab settings, saved under a name.

    Save one from the environment with ``runner-cache blocks save NAME``; flows take its name as ``config``.
    """

    _block_type_name = "Runner Cache Config"
    _block_type_slug = "runner-cache-config"
    _description = "GitLab Runner S3 cache: store, layout, Helm release and verification project."

    @classmethod
    def from_environment(cls) -> RunnerCacheConfig:
        """Build (unsaved) from ``RUNNER_CACHE_*``, ``.env`` and the TOML file."""
        settings = load_settings()
        try:
            return cls(**{name: getattr(settings, name) for name in RunnerCacheSections.model_fields})
        except ValidationError as error:
            raise ConfigError.from_validation(error) from None


def resolve_config(config: str | None) -> RunnerCacheSections:
    """The saved block named ``config``, or the environment when ``config`` is empty; its secrets are redacted from logs."""
    sections = _load(config)
    redaction.register_model(sections)
    return sections


def _load(config: str | None) -> RunnerCacheSections:
    if not config:
        return load_settings()
    try:
        return RunnerCacheConfig.load(config)
    except ValidationError as error:
        raise ConfigError.from_validation(error) from None
    except RuntimeError as error:  # Prefect wraps the block's ValidationError, whose text quotes the stored values
        if isinstance(error.__cause__, ValidationError):
            invalid = ConfigError.from_validation(error.__cause__)
            raise ConfigError(f"--config: the saved Runner Cache Config block is invalid: {invalid}") from None
        raise ConfigError(f"--config: could not load the Runner Cache Config block ({type(error).__name__})") from None
    except ValueError:
        # The name is not echoed: a secret pasted in the wrong place must not reach a log.
        raise ConfigError(
            "--config: no Runner Cache Config block by that name (`prefect block ls` lists the saved ones; "
            "`runner-cache blocks save NAME` saves one)"
        ) from None
