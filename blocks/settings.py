"""One configuration model, filled from the environment (``RUNNER_CACHE_*``), a ``.env`` file and a TOML file."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from runner_cache.blocks.cache import CacheSettings
from runner_cache.blocks.gitlab import GitLabSettings
from runner_cache.blocks.release import ReleaseSettings
from runner_cache.blocks.store import StoreSettings
from runner_cache.errors import ConfigError

CONFIG_FILE_ENV = "RUNNER_CACHE_CONFIG_FILE"
DEFAULT_CONFIG_FILE = "runner-cache.toml"


class RunnerCacheSections(BaseModel):
    """The sections shared by the environment settings and the saved Prefect block."""

    store: StoreSettings = StoreSettings()
    cache: CacheSettings = CacheSettings()
    release: ReleaseSettings = ReleaseSettings()
    gitlab: GitLabSettings = GitLabSettings()


class Settings(BaseSettings, RunnerCacheSections):
    """Precedence: init arguments > environment > ``.env`` > TOML file (``$RUNNER_CACHE_CONFIG_FILE`` or ``./runner-cache.toml``)."""

    model_config = SettingsConfigDict(
        env_prefix="RUNNER_CACHE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        if CONFIG_FILE_ENV in os.environ and not toml_file.is_file():
            raise ConfigError(f"{CONFIG_FILE_ENV} names {toml_file}, which is not a file")
        return init_settings, env_settings, dotenv_settings, TomlConfigSettingsSource(settings_cls, toml_file)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into a :class:`ConfigError` that never echoes a value."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError.from_validation(error, env_prefix="RUNNER_CACHE_") from None
    except ValueError as error:  # pydantic-settings' own parse errors (e.g. malformed JSON/TOML) quote input
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"invalid configuration: {type(error).__name__} while reading the settings sources") from None
