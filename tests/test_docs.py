"""/docs in process: the page, its set-up script and the Swagger UI files, nothing else from the package."""
from __future__ import annotations

import pytest

from service import docs


def test_page_loads_only_local_scripts_under_a_strict_policy(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert "<script>" not in response.text  # no inline script: the policy forbids it
    assert 'src="docs/swagger-ui-bundle.js"' in response.text and 'src="docs/init.js"' in response.text
    assert response.headers["Cache-Control"] == "no-store"


def test_set_up_script_points_at_our_openapi_document(client):
    response = client.get("/docs/init.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    assert 'url: "openapi.json"' in response.text


@pytest.mark.parametrize("name", docs.ASSETS)
def test_swagger_ui_assets_are_served_and_cacheable(client, name):
    response = client.get(f"/docs/{name}")
    assert response.status_code == 200 and len(response.data) > 100
    assert response.headers["Cache-Control"] == f"public, max-age={docs.ASSET_MAX_AGE}"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("name", ["swagger-ui-bundle.js.map", "index.html", "..%2F__init__.py", "swagger-ui.js"])
def test_nothing_else_from_the_package_is_served(client, name):
    response = client.get(f"/docs/{name}")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_title_is_escaped(app):
    card = app.extensions["model_service"].bundle.card
    original = card["title"]
    card["title"] = "<script>x</script>"
    try:
        text = app.test_client().get("/docs").text
    finally:
        card["title"] = original
    assert "<script>x</script>" not in text and "&lt;script&gt;" in text
