"""Settings from environment variables, each with a documented default."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "diabetes"

# name -> (environment variable, default, type). The README's "Configuration" table mirrors this.
SETTINGS: dict[str, tuple[str, Any, type]] = {
    "MODEL_DIR": ("MODEL_DIR", str(DEFAULT_MODEL_DIR), str),
    "HOST": ("SERVICE_HOST", "127.0.0.1", str),
    "PORT": ("SERVICE_PORT", 8080, int),
    "THREADS": ("SERVICE_THREADS", 4, int),
    "CONNECTION_LIMIT": ("SERVICE_CONNECTION_LIMIT", 100, int),
    "CHANNEL_TIMEOUT": ("SERVICE_CHANNEL_TIMEOUT", 30, int),
    "MAX_BODY_BYTES": ("SERVICE_MAX_BODY_BYTES", 1_048_576, int),
    "MAX_ROWS": ("SERVICE_MAX_ROWS", 1000, int),
    "DRAIN_SECONDS": ("SERVICE_DRAIN_SECONDS", 5.0, float),
    "LOG_LEVEL": ("SERVICE_LOG_LEVEL", "INFO", str),
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """A setting has a value the service cannot use."""


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from `environ` (default: os.environ), falling back to its default."""
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    for key, (variable, default, kind) in SETTINGS.items():
        raw = environ.get(variable)
        if raw is None or raw == "":
            settings[key] = default
            continue
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{variable}={raw!r} is not a valid {kind.__name__}") from None
        if kind is not str and value <= 0:
            raise ConfigError(f"{variable}={raw!r} must be greater than zero")
        if key == "LOG_LEVEL" and value.upper() not in LOG_LEVELS:
            raise ConfigError(f"{variable}={raw!r} is not one of {', '.join(LOG_LEVELS)}")
        settings[key] = value
    return settings
