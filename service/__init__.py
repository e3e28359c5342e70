"""A scikit-learn model served over HTTP: predict, examples, metadata and health, on waitress."""

__version__ = "0.1.0"
