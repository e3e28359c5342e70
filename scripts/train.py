"""Train the demo bundles (models/diabetes, models/iris) from data that ships with scikit-learn.
`--help` for options; the same as `sms-train` (pyproject.toml).
"""
import sys

from imagebuild.train import main

if __name__ == "__main__":
    sys.exit(main())
