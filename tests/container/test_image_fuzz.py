"""schemathesis against the built image's /openapi.json: the same checks and budget as in process
(tests/test_openapi.py), over real HTTP through waitress, under the container's production restrictions."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from ..test_openapi import CHECKS, EXAMPLES

from .variants import default_and_pruned  # every test here: the default image and --prune's

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def image_schema(served):
    return schemathesis.openapi.from_url(served.url + "/openapi.json", timeout=10)


schema = schemathesis.pytest.from_fixture("image_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
def test_image_keeps_its_document(case):
    case.call_and_validate(checks=CHECKS)
