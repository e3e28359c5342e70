"""Benchmark this image, the service from source, MLServer and the book-style app side by side.
`--help` for options; the same as `sms-bench` (pyproject.toml).
"""
import sys

from benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
