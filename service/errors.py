"""One JSON error envelope for every error status: {"error": {"code", "message", "field"?}, "request_id"}.

Under /v2 the Open Inference Protocol's own shape is used instead: {"error": "message"}.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from modelcard.features import ValueProblem

log = logging.getLogger(__name__)

# Stable codes for the statuses Flask/werkzeug raise on their own.
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    431: "headers_too_large",
    501: "not_implemented",
}


class ApiError(Exception):
    """A client mistake, answered with `status` and a stable `code`."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


CLIENT_ERRORS = (ApiError, ValueProblem)


def as_api_error(exc: ApiError | ValueProblem) -> ApiError:
    """A client mistake with its status: a value the card refuses (ValueProblem) is a 422."""
    return exc if isinstance(exc, ApiError) else ApiError(422, exc.code, exc.message, exc.field)


MLFLOW_CODES = {"not_found": "ENDPOINT_NOT_FOUND", "unsupported_media_type": "BAD_REQUEST"}


def error_body(path: str, code: str, message: str, field: str | None = None,
               request_id: str | None = None) -> dict[str, Any]:
    """The error envelope for a request to `path`: the protocol's own shape under /v2 and /v1 (KServe, Vertex AI's
    default routes) and on /invocations (MLflow's scoring server), else this service's."""
    if path in ("/v2", "/v1") or path.startswith(("/v2/", "/v1/")):
        return {"error": message}
    if path == "/invocations":
        return {"error_code": MLFLOW_CODES.get(code, "BAD_REQUEST" if code != "internal_error" else "INTERNAL_ERROR"),
                "message": message}
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error, "request_id": request_id}


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    response = jsonify(error_body(request.path, code, message, field, g.get("request_id")))
    response.status_code = status
    return response


def _http_message(exc: HTTPException) -> str:
    if exc.code == 404:
        return f"no endpoint at {request.path}: GET / lists the endpoints"
    if exc.code == 405:
        allowed = ", ".join(sorted(exc.valid_methods or [])) if hasattr(exc, "valid_methods") else ""
        return f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
    if exc.code == 413:
        limit = request.max_content_length
        return f"the request body is larger than the limit of {limit} bytes"
    return exc.description or exc.name


def register_error_handlers(app: Flask) -> None:
    """Every error leaves as the envelope; an unexpected one is logged with its traceback, never sent."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.errorhandler(ValueProblem)
    def value_problem(exc: ValueProblem) -> Response:
        return api_error(as_api_error(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = error_response(status, HTTP_CODES.get(status, "http_error"), _http_message(exc))
        allowed = getattr(exc, "valid_methods", None)  # MethodNotAllowed's
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        return error_response(500, "internal_error", unexpected_logged(request.method, request.path,
                                                                       g.get("request_id")))


def unexpected_logged(method: str, path: str, request_id: str | None) -> str:
    """Log the exception being handled with its traceback; the message the client gets instead."""
    log.exception("unhandled error on %s %s (request %s)", method, path, request_id)
    return "the server failed to answer; the request id is in its log"
