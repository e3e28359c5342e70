"""/docs in a real browser: headless Chromium (Debian's chromium-headless-shell) renders every operation."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from imagebuild.http_calls import call

from .variants import default_and_pruned  # every test here: the default image and --prune's

pytestmark = pytest.mark.container

CHROMIUM = "chromium-headless-shell"
# No network but loopback matters here: nothing in the background, no updates, no first-run pages.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-default-apps", "--disable-sync", "--no-first-run",
         "--disable-extensions", "--enable-logging=stderr", "--v=0"]


def render(url: str, profile: Path) -> tuple[str, str]:
    """The DOM after the page's scripts ran (virtual time, so no sleep), and the browser's log."""
    binary = shutil.which(CHROMIUM)
    assert binary, f"{CHROMIUM} not found: run `bash scripts/bootstrap.sh`, which installs it"
    result = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                             "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def test_docs_page_renders_every_operation(served, tmp_path):
    _, _, spec = call("GET", served.url + "/openapi.json")
    document = json.loads(spec)
    dom, log = render(served.url + "/docs", tmp_path / "profile")

    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert rendered == set(document["paths"]), log[-2000:]
    methods = re.findall(r'opblock-summary-method">([A-Z]+)<', dom)
    expected = sum(len(operations) for operations in document["paths"].values())
    assert len(methods) == expected
    assert document["info"]["title"] in dom
    assert "Failed to load API definition" not in dom
    assert "Refused to" not in log, "the page broke its own Content-Security-Policy"


def test_docs_assets_come_from_the_image(served):
    status, headers, page = call("GET", served.url + "/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.decode())
    assert sources and all(not source.startswith(("http:", "https:", "//")) for source in sources)
    for source in sources:
        status, headers, body = call("GET", f"{served.url}/{source}")
        assert status == 200 and body, source
