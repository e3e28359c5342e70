"""`python -m derivecard MODEL --out DIR ...`: see derivecard/derive.py."""
import sys

from .derive import main

sys.exit(main(sys.argv[1:]))
