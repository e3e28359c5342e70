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


@pytest.fixture
def gzipped_assets(tmp_path, monkeypatch):
    """The assets as the image stores them (build/trim.py): the large two gzipped, the originals gone."""
    import gzip
    import shutil
    from swagger_ui_bundle import swagger_ui_path
    for name in docs.ASSETS:
        shutil.copy(f"{swagger_ui_path}/{name}", tmp_path / name)
    originals = {}
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        originals[name] = (tmp_path / name).read_bytes()
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(originals[name]))
        (tmp_path / name).unlink()
    monkeypatch.setattr(docs, "swagger_ui_path", str(tmp_path))
    return originals


@pytest.mark.parametrize("name", ["swagger-ui-bundle.js", "swagger-ui.css"])
def test_stored_gzip_goes_as_is_to_clients_that_accept_it(client, gzipped_assets, name):
    import gzip
    response = client.get(f"/docs/{name}", headers={"Accept-Encoding": "gzip, deflate"})
    assert response.status_code == 200 and response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(response.data) == gzipped_assets[name]
    assert response.mimetype == ("text/javascript" if name.endswith(".js") else "text/css")
    assert response.headers["Vary"] == "Accept-Encoding"
    assert response.headers["Cache-Control"] == f"public, max-age={docs.ASSET_MAX_AGE}"
    again = client.get(f"/docs/{name}", headers={"Accept-Encoding": "gzip", "If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_stored_gzip_is_inflated_for_clients_without_it(client, gzipped_assets):
    response = client.get("/docs/swagger-ui-bundle.js", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200 and "Content-Encoding" not in response.headers
    assert response.data == gzipped_assets["swagger-ui-bundle.js"]
    assert response.headers["Cache-Control"] == f"public, max-age={docs.ASSET_MAX_AGE}"
