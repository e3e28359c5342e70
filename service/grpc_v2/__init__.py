"""The Open Inference Protocol over gRPC (KServe's and MLServer's port 8081, `tritonclient.grpc`, the kserve SDK's
InferenceGRPCClient), beside the REST routes and onto the same parsing, validation and prediction (service/v2.py).

This folder exists for one rule: its imports (grpcio, protobuf: 20.0 MB in the image) are installed only in
images built with `scripts/build.py --grpc`. Nothing outside it imports grpc; the requirements scan (pipreqs)
skips it, and the build adds the packages pinned in requirements.in here (imagebuild/bundle_requirements.py).
`available()` says whether this image has them.
"""
from __future__ import annotations

import importlib.util


def available() -> bool:
    """Whether grpcio and protobuf are installed (the image was built with --grpc)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("grpc", "google.protobuf"))
    except ModuleNotFoundError:  # no `google` package at all
        return False
