"""schemathesis against /openapi.json, in process, with a fixed example budget: no 5xx, no response that breaks
the document (status codes, content types, bodies)."""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                              status_code_conformance)

from service.app import create_app

from .conftest import BUNDLES

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25  # per operation; fixed so CI time stays bounded

diabetes = schemathesis.openapi.from_wsgi("/openapi.json", create_app({"MODEL_DIR": str(BUNDLES["diabetes"])}))
iris = schemathesis.openapi.from_wsgi("/openapi.json", create_app({"MODEL_DIR": str(BUNDLES["iris"])}))


@diabetes.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
def test_regressor_api_keeps_its_document(case):
    case.call_and_validate(checks=CHECKS)


@iris.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
def test_classifier_api_keeps_its_document(case):
    case.call_and_validate(checks=CHECKS)
