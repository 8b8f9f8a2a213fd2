"""FlyProvisioner's certificate methods against the Fly sandbox over real HTTP: request (once, however often
asked), status from pending to active once the sandbox's DNS check passes, a hostname held by another app
refused with Fly's message, delete with 404 as done, and a 5xx as UpstreamUnavailable."""

from __future__ import annotations

import time

import httpx
import pytest

from relay_cloud.adapters.fly import FlyProvisioner
from relay_cloud.adapters.providers import UpstreamUnavailable
from relay_cloud.domain.compute import ProviderRejected, app_name_for
from tests.integration.fly_support import ORG, serve_fly

APP = app_name_for("w0rkspacecert")
OTHER_APP = app_name_for("w0rkspaceother")
HOST = "app.customer.dev"


@pytest.fixture
def fly():
    pointed = set()  # the hostnames whose DNS "points here" (the local stack asks the DNS sandbox)
    with serve_fly() as (sandbox, base, token, _other):
        sandbox.dns_configured = lambda hostname, _app: hostname in pointed
        control = httpx.Client(base_url=base, timeout=10)
        provisioner = FlyProvisioner(api_url=base, token=token, org=ORG, backoff_s=0.01)
        provisioner.ensure_app(APP)
        yield {"p": provisioner, "control": control, "pointed": pointed, "sandbox": sandbox}
        provisioner.close()
        control.close()


def certificates(fly) -> list[dict]:
    return fly["control"].get("/_inventory").json()["certificates"]


def test_a_certificate_is_requested_once_and_turns_active_when_dns_points_at_the_app(fly):
    p = fly["p"]
    assert p.certificate_status(APP, HOST) is None
    assert p.add_certificate(APP, HOST) == "pending"
    assert p.add_certificate(APP, HOST) == "pending"  # a repeated verify looks first
    assert certificates(fly) == [{"app": APP, "hostname": HOST, "status": "pending_validation"}]

    time.sleep(0.2)  # past certificate_ms, but DNS does not point here yet
    assert p.certificate_status(APP, HOST) == "pending"
    fly["pointed"].add(HOST)
    assert p.certificate_status(APP, HOST) == "active"
    assert p.add_certificate(APP, HOST) == "active"
    assert len(certificates(fly)) == 1


def test_a_hostname_held_by_another_app_is_refused_with_fly_s_message(fly):
    p = fly["p"]
    p.ensure_app(OTHER_APP)
    p.add_certificate(OTHER_APP, HOST)
    with pytest.raises(ProviderRejected) as caught:
        p.add_certificate(APP, HOST)
    assert caught.value.details["upstream_status"] == 422
    assert "another app" in caught.value.details["upstream_error"]
    assert [c["app"] for c in certificates(fly)] == [OTHER_APP]


def test_delete_removes_the_certificate_and_404_is_done(fly):
    p = fly["p"]
    p.add_certificate(APP, HOST)
    p.delete_certificate(APP, HOST)
    assert certificates(fly) == []
    assert p.certificate_status(APP, HOST) is None
    p.delete_certificate(APP, HOST)  # already gone
    p.delete_app(APP)
    p.delete_certificate(APP, HOST)  # the app is gone too


def test_a_5xx_is_upstream_unavailable_and_reads_are_retried_through_one(fly):
    p = fly["p"]
    p.add_certificate(APP, HOST)
    fly["control"].post("/_faults", json={"path_contains": "/certificates/", "status": 503, "count": 1})
    assert p.certificate_status(APP, HOST) == "pending"  # one 503, then the retry answers
    fly["control"].post("/_faults", json={"path_contains": "/certificates/", "status": 503, "count": 5})
    with pytest.raises(UpstreamUnavailable):
        p.certificate_status(APP, HOST)
    fly["control"].delete("/_faults")
