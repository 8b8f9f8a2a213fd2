"""The CloudFront viewer-request function, executed with node (CloudFront JS 2.0 is ES5.1+ compatible)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from relay_cloud_infra.web import PRETTY_URLS_JS

CASES = {
    "/": "/index.html",
    "/pricing": "/pricing.html",
    "/dashboard": "/dashboard.html",
    "/dashboard/anything": "/dashboard.html",
    "/dashboard/workspaces/ws_1": "/dashboard.html",
    "/assets/app.js": "/assets/app.js",
    "/index.html": "/index.html",
    "/docs/": "/docs/index.html",
}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_extensionless_paths_map_to_html_pages():
    script = PRETTY_URLS_JS + (
        f"var cases = {json.dumps(list(CASES))};"
        "console.log(JSON.stringify(cases.map(function (u) { return handler({request: {uri: u}}).uri; })));"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout
    assert dict(zip(CASES, json.loads(out))) == CASES
