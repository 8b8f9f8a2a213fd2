"""The issue's closing journey through the local stack: connect GitHub by device flow and an Anthropic
API key, see both healthy; connect the sandbox OIDC provider, force its token to expire, and watch the
scheduled sweep refresh it exactly once (several sweeps racing); then disconnect, which revokes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.e2e.conftest import SEEN_SECRETS
from tests.e2e.test_providers import ANTHROPIC_KEY, providers, signed_in, wait_for_flow, write


class _Context:
    function_name = "relay-cloud-schedule-token-refresh"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:relay-cloud-schedule-token-refresh"
    aws_request_id = "e2e"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 120_000


def run_scheduled_sweep() -> dict:
    """What EventBridge does every 5 minutes (the dev server's ticker does the same)."""
    from functions.schedules.handler import refresh_sweep

    return refresh_sweep({"source": "aws.events", "detail-type": "Scheduled Event"}, _Context())


def connect_by_device_flow(stack, client, provider: str, sandbox: str) -> None:
    flow = write(client, "POST", f"/api/providers/{provider}/connect", json={"method": "device_flow"}).json()
    me = client.get("/api/auth/me").json()["github_login"]
    decided = httpx.post(f"{stack.url}/_sandbox/{sandbox}/device/approve", json={"user_code": flow["user_code"], "login": me})
    assert decided.status_code == 200, decided.text
    assert wait_for_flow(client, flow["flow_id"], {"connected", "error", "denied", "expired"})["status"] == "connected"


def test_connect_refresh_once_and_disconnect(local_stack):
    url = local_stack.url
    httpx.post(f"{url}/_sandbox/github/_config", json={"device_interval": 1})
    httpx.post(f"{url}/_sandbox/idp/_config", json={"device_interval": 1, "access_token_ttl": 2})
    client = signed_in(local_stack, "journey")
    SEEN_SECRETS.add(ANTHROPIC_KEY)

    connect_by_device_flow(local_stack, client, "github", "github")
    created = write(client, "POST", "/api/providers/anthropic/connect", json={"method": "api_key", "api_key": ANTHROPIC_KEY})
    assert created.status_code == 201
    listing = providers(client)
    assert listing["github"]["health"] == "valid" and listing["anthropic"]["health"] == "valid"

    # The OIDC provider issues a 2-second access token with a refresh token: it is soon due.
    connect_by_device_flow(local_stack, client, "sandbox-idp", "idp")
    connected = providers(client)["sandbox-idp"]
    assert connected["connection"]["last_refreshed_at"] is None
    httpx.post(f"{url}/_sandbox/idp/_config", json={"access_token_ttl": 3600})  # the refreshed token lasts
    httpx.delete(f"{url}/_sandbox/idp/_stats")
    time.sleep(2.2)
    assert providers(client)["sandbox-idp"]["health"] == "expiring"

    with ThreadPoolExecutor(max_workers=4) as pool:  # overlapping sweeps, as a late schedule would cause
        reports = list(pool.map(lambda _: run_scheduled_sweep(), range(4)))
    # Exactly one refresh upstream (the dev stack's own 5-minute ticker may be the one that wins).
    assert sum(r["refreshed"] for r in reports) <= 1
    stats = httpx.get(f"{url}/_sandbox/idp/_stats").json()
    assert stats["refresh_grants"] == 1 and stats["refresh_reuse_detected"] == 0
    refreshed = providers(client)["sandbox-idp"]
    assert refreshed["health"] == "valid" and refreshed["connection"]["last_refreshed_at"] is not None
    assert refreshed["connection"]["expires_at"] > time.time() + 3000

    assert run_scheduled_sweep()["refreshed"] == 0  # nothing due any more

    # Disconnect revokes upstream (the idp revokes the whole token family), then deletes.
    assert write(client, "DELETE", "/api/providers/sandbox-idp").status_code == 204
    assert httpx.get(f"{url}/_sandbox/idp/_stats").json()["revocations"] >= 1
    assert write(client, "DELETE", "/api/providers/github").status_code == 204
    assert write(client, "DELETE", "/api/providers/anthropic").status_code == 204
    assert {p["health"] for p in providers(client).values()} == {"not_connected"}
