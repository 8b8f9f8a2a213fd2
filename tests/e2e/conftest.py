"""Every e2e module runs under a log capture; when the module ends, none of the secrets its journeys
saw (OAuth codes, states, PKCE challenges, cookie values, CSRF tokens, GitHub tokens) may appear in
anything logged during it."""

from __future__ import annotations

import re

import pytest

from tests.logcapture import all_log_output

SEEN_SECRETS: set[str] = set()
GITHUB_TOKEN = re.compile(r"gh[opsu]_[A-Za-z0-9]{8,}")


@pytest.fixture(scope="module", autouse=True)
def no_secret_in_logs():
    SEEN_SECRETS.clear()
    with all_log_output() as logs:
        yield
    captured = logs.getvalue()
    leaked = sorted(secret[:6] + "…" for secret in SEEN_SECRETS if secret and secret in captured)
    assert leaked == [], f"secrets found in the logs of this module: {leaked}"
    assert not GITHUB_TOKEN.search(captured), "a GitHub token was logged"
