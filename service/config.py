"""Settings from environment variables, each with a documented default."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from collections.abc import Mapping

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "diabetes"

# name -> (environment variable, default, type, meaning). The README's "Configuration" table mirrors this, and
# `python -m service --help` prints it. Numbers must be greater than zero, except those named in ZERO_ALLOWED.
SETTINGS: dict[str, tuple[str, Any, type, str]] = {
    "MODEL_DIR": ("MODEL_DIR", str(DEFAULT_MODEL_DIR), str, "the bundle to serve (card.json and the model file)"),
    "HOST": ("SERVICE_HOST", "127.0.0.1", str, "listen address"),
    "PORT": ("SERVICE_PORT", 8080, int, "listen port"),
    "GRPC_PORT": ("SERVICE_GRPC_PORT", 0, int,
                  "Open Inference Protocol over gRPC on this port (images built with --grpc: 8081); 0: off"),
    "WORKERS": ("SERVICE_WORKERS", 0, int,
                "worker processes sharing the port; 0: one per usable CPU (affinity and CPU quota)"),
    "PIN_CPUS": ("SERVICE_PIN_CPUS", 1, int, "1: each worker bound to its own CPU; 0: left to the kernel"),
    "THREADS": ("SERVICE_THREADS", 16, int, "waitress threads per worker"),
    "BATCH_MAX_ROWS": ("SERVICE_BATCH_MAX_ROWS", 64, int, "micro-batching: rows per estimator call; 0: off"),
    "BATCH_MAX_WAIT_MS": ("SERVICE_BATCH_MAX_WAIT_MS", 2.0, float,
                          "micro-batching: longest wait of a batch for requests already on their way"),
    "FAST_PATH": ("SERVICE_FAST_PATH", 1, int,
                  "1: scikit-learn's compiled routines where they reproduce model.predict bit for bit at start-up; "
                  "0: always model.predict"),
    "CONNECTION_LIMIT": ("SERVICE_CONNECTION_LIMIT", 1500, int, "open connections per worker"),
    "CHANNEL_TIMEOUT": ("SERVICE_CHANNEL_TIMEOUT", 30, int,
                        "seconds a connection is kept without traffic (idle or not)"),
    "REQUEST_TIMEOUT": ("SERVICE_REQUEST_TIMEOUT", 10.0, float,
                        "seconds a client has to send a whole request (headers and body) once it has begun"),
    "MAX_BODY_BYTES": ("SERVICE_MAX_BODY_BYTES", 1_048_576, int, "larger request bodies get the JSON 413"),
    "MAX_ROWS": ("SERVICE_MAX_ROWS", 1000, int, "rows per request"),
    "DRAIN_SECONDS": ("SERVICE_DRAIN_SECONDS", 5.0, float,
                      "on SIGTERM: readiness 503 at once, in-flight requests finish, exit within this time"),
    "LOG_LEVEL": ("SERVICE_LOG_LEVEL", "INFO", str, "DEBUG, INFO, WARNING or ERROR (DEBUG also logs probes)"),
    "PLATFORM": ("SERVICE_PLATFORM", "", str,
                 "sagemaker or vertex: its port variable and request limits (`serve` sets sagemaker, AIP_HTTP_PORT "
                 "vertex)"),
}
# Where a platform runs the image: the variable naming the port it sends traffic to (it wins over SERVICE_PORT,
# which the image sets), and its request limits where they differ (SageMaker: MaxPayloadInMB, 6 MB by default,
# for batch transform's mini-batches; Vertex AI: 1.5 MB per request) and as many rows as such bodies hold, unless
# set explicitly.
PLATFORMS: dict[str, tuple[str, dict[str, Any]]] = {
    "sagemaker": ("SAGEMAKER_BIND_TO_PORT", {"MAX_BODY_BYTES": 6 << 20, "MAX_ROWS": 100_000}),
    "vertex": ("AIP_HTTP_PORT", {"MAX_BODY_BYTES": 3 << 19, "MAX_ROWS": 100_000}),
}
ZERO_ALLOWED = {"GRPC_PORT", "WORKERS", "PIN_CPUS", "BATCH_MAX_ROWS", "BATCH_MAX_WAIT_MS", "FAST_PATH"}
SWITCHES = {"PIN_CPUS", "FAST_PATH"}  # 0 or 1
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """A setting has a value the service cannot use."""


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from `environ` (default: os.environ), falling back to its default."""
    environ = os.environ if environ is None else environ
    platform = environ.get("SERVICE_PLATFORM") or ("vertex" if environ.get("AIP_HTTP_PORT") else "")
    if platform and platform not in PLATFORMS:
        raise ConfigError(f"SERVICE_PLATFORM={platform!r} is not one of {', '.join(PLATFORMS)}")
    port_variable, defaults = PLATFORMS.get(platform, ("", {}))
    settings: dict[str, Any] = {}
    for key, (variable, default, kind, _) in SETTINGS.items():
        raw = environ.get(variable)
        if key == "PORT" and environ.get(port_variable):
            variable, raw = port_variable, environ[port_variable]
        if key == "PLATFORM":
            raw = platform
        if raw is None or raw == "":
            settings[key] = defaults.get(key, default)
            continue
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{variable}={raw!r} is not a valid {kind.__name__}") from None
        if kind is not str and key in ZERO_ALLOWED and value < 0:
            raise ConfigError(f"{variable}={raw!r} must be zero or more")
        if kind is not str and key not in ZERO_ALLOWED and value <= 0:
            raise ConfigError(f"{variable}={raw!r} must be greater than zero")
        if key in SWITCHES and value not in (0, 1):
            raise ConfigError(f"{variable}={raw!r} must be 0 or 1")
        if key == "LOG_LEVEL" and value.upper() not in LOG_LEVELS:
            raise ConfigError(f"{variable}={raw!r} is not one of {', '.join(LOG_LEVELS)}")
        settings[key] = value
    return settings


def rows() -> list[tuple[str, str, str]]:
    """(variable, default as text, meaning) for each setting, as `--help` and the README's table show them."""
    def text(default: Any) -> str:
        if isinstance(default, float) and default.is_integer():
            return str(int(default))
        if default == str(DEFAULT_MODEL_DIR):
            return "models/diabetes"
        if default == "":
            return "unset"
        return str(default)
    return [(variable, text(default), meaning) for variable, default, _, meaning in SETTINGS.values()]


def describe() -> str:
    """The settings as a table: variable, meaning, default."""
    table = rows()
    width = max(len(variable) for variable, _, _ in table)
    return "\n".join(f"  {variable:<{width}}  {meaning} (default: {default})" for variable, default, meaning in table)


def worker_count(settings: Mapping[str, Any], usable: int) -> int:
    """SERVICE_WORKERS, or with 0 the usable CPUs (service/cpus.py: affinity and cgroup quota)."""
    return settings["WORKERS"] or usable
