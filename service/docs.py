"""/docs: Swagger UI rendering /openapi.json, served from the swagger-ui-bundle-v2 package (no CDN).

In the image the two large assets are stored gzipped (build/trim.py: 1.2 MB less): a client that accepts gzip gets
the stored bytes with Content-Encoding: gzip, any other client the inflated file.
"""
from __future__ import annotations

import gzip
import html
import mimetypes
from pathlib import Path

from flask import Blueprint, Response, abort, request, send_file, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from .state import state

# The only Swagger UI files the page loads; build/trim.py removes the rest of the package's assets.
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
ASSET_MAX_AGE = 86400
# No inline script: the page's own set-up code is /docs/init.js. Swagger UI sets inline style attributes.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
          "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""

# Relative URLs, so the page also works behind a proxy that mounts the service under a prefix.
INIT = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""

docs = Blueprint("docs", __name__)


@docs.after_request
def _with_policy(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    return response


@docs.get("/docs")
def page() -> Response:
    title = html.escape(state().bundle.card["title"])
    return Response(PAGE.format(title=title), mimetype="text/html")


@docs.get("/docs/init.js")
def init_script() -> Response:
    return Response(INIT, mimetype="text/javascript")


@docs.get("/docs/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    stored = Path(swagger_ui_path) / f"{name}.gz"
    if not stored.is_file():
        return send_from_directory(swagger_ui_path, name, max_age=ASSET_MAX_AGE)
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if "gzip" in request.accept_encodings:
        response = send_file(stored, mimetype=mimetype, max_age=ASSET_MAX_AGE, conditional=True, etag=True)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(gzip.decompress(stored.read_bytes()), mimetype=mimetype)
        response.cache_control.public, response.cache_control.max_age = True, ASSET_MAX_AGE
    response.vary.add("Accept-Encoding")
    return response

