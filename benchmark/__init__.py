"""The side-by-side serving benchmark behind `python scripts/bench.py` (not a test: nothing here asserts speed)."""
