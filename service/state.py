"""What lives as long as the app, kept in app.extensions[EXTENSION]."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from .bundle import ModelBundle
from .predictor import Predictor

EXTENSION = "model_service"


@dataclass
class ServiceState:
    """The bundle, its predictor, the examples, and readiness."""

    bundle: ModelBundle
    predictor: Predictor
    examples: list[dict[str, Any]]
    ready: threading.Event = field(default_factory=threading.Event)


def state() -> ServiceState:
    return current_app.extensions[EXTENSION]
