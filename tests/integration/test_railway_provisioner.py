"""RailwayProvisioner against the Railway sandbox over real HTTP: the full create sequence, every step
repeated (and repeated after its answer was lost) creating nothing twice, teardown after a partial
create leaving the inventory empty, "not found" on delete as success, error translation, and stop/start
keeping the volume."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from relay_cloud.adapters.providers import UpstreamUnavailable
from relay_cloud.adapters.railway import RailwayProvisioner
from relay_cloud.domain.compute import MachineSpec, ProviderRejected, app_name_for, parse_sizes
from relay_cloud.domain.errors import ValidationFailed
from tests.integration.railway_support import WORKSPACE, serve_railway

IMAGE = "ghcr.io/relay/workspace:test"
SIZE = parse_sizes("")["small"]
WORKSPACE_ID = "w0rkspace01"
APP = app_name_for(WORKSPACE_ID)
DAEMON_KEY = "rly_d1_" + "k" * 40
EMPTY = {"projects": 0, "services": 0, "volumes": 0, "deployments": 0, "domains": 0, "custom_domains": 0,
         "variables": 0}


class LosingTransport(httpx.HTTPTransport):
    """Delivers each request whose body names one of ``operations`` to the server, then loses its answer
    once (as a timeout would)."""

    def __init__(self, *operations: str):
        super().__init__()
        self.pending = set(operations)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        body = request.content.decode()
        operation = next((op for op in self.pending if f'"operationName":"{op}"' in body), None)
        if operation is not None:
            self.pending.discard(operation)
            response.read()
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


@pytest.fixture
def railway():
    with serve_railway() as (sandbox, base, token, other):
        control = httpx.Client(base_url=base, timeout=10)
        env = {"url": f"{base}/graphql/v2", "token": token, "other": other, "control": control, "sandbox": sandbox}
        env["provisioner"] = make(env)
        yield env
        env["provisioner"].close()
        control.close()


def make(env, **kwargs) -> RailwayProvisioner:
    kwargs.setdefault("token", env["token"])
    return RailwayProvisioner(api_url=env["url"], workspace_id=WORKSPACE, backoff_s=0.01, poll_s=0.02, **kwargs)


def inventory(env) -> dict:
    return env["control"].get("/_inventory").json()


def counts(env) -> dict:
    return inventory(env)["counts"]


def spec(**overrides) -> MachineSpec:
    return MachineSpec(image=overrides.pop("image", IMAGE), size=SIZE, region=overrides.pop("region", "iad"),
                       env={"RELAY_WORKSPACE_ID": WORKSPACE_ID}, metadata={"workspace_id": WORKSPACE_ID}, **overrides)


def provision(p: RailwayProvisioner, *, repeat: int = 1):
    """The workflow's create steps in order, each run ``repeat`` times (a retried step)."""
    for _ in range(repeat):
        app = p.ensure_app(APP)
    for _ in range(repeat):
        ips = p.ensure_ips(APP)
    for _ in range(repeat):
        volume = p.ensure_volume(APP, "workspace_data", "iad", SIZE.volume_gb)
    for _ in range(repeat):
        p.set_secrets(APP, {"RELAY_DAEMON_KEY": DAEMON_KEY, "RELAY_WORKSPACE_ID": WORKSPACE_ID})
    machines = [p.ensure_machine(APP, "agent-host", spec(volume_id=volume.id)) for _ in range(repeat)]
    for _ in range(repeat):
        assert p.wait_started(APP, machines[0].id, timeout_s=10)
    return app, ips, volume, machines


def teardown(p: RailwayProvisioner, machine_id: str, volume_id: str) -> None:
    """Compensation, in reverse creation order."""
    p.delete_machine(APP, machine_id)
    p.delete_volume(APP, volume_id)
    p.release_ips(APP)
    p.delete_app(APP)


def wait_for_state(p, machine_id, wanted, limit_s=5.0) -> None:
    deadline = time.monotonic() + limit_s
    while p.machine_state(APP, machine_id) != wanted:
        assert time.monotonic() < deadline, f"never {wanted}"
        time.sleep(0.02)


def test_the_full_create_sequence_leaves_one_of_everything_running(railway):
    app, ips, volume, (machine,) = provision(railway["provisioner"])
    assert app.created and app.org == WORKSPACE and app.name == "ws-w0rkspace01"
    (domain,) = ips
    assert domain.type == "domain" and domain.address.endswith(".up.railway.app")
    assert volume.name == "workspace_data" and volume.size_gb == 5  # Railway sizes volumes by plan
    assert volume.attached_machine_id == machine.id and machine.volume_id == volume.id
    assert machine.name == "agent-host" and machine.region == "us-east4-eqdc4a" and machine.instance_id
    assert railway["provisioner"].machine_state(APP, machine.id) == "started"

    seen = inventory(railway)
    assert seen["counts"] == {"projects": 1, "services": 1, "volumes": 1, "deployments": 1, "domains": 1,
                              "custom_domains": 0, "variables": 3}
    assert seen["environments"][0]["name"] == "production"
    (service,) = seen["services"]
    assert (service["image"], service["region"], service["vcpus"], service["memory_gb"]) == \
        (IMAGE, "us-east4-eqdc4a", 1, 1.0)
    assert seen["volumes"][0]["mount_path"] == "/data" and seen["volumes"][0]["service_id"] == machine.id
    assert seen["deployments"][0]["status"] == "SUCCESS" and seen["deployments"][0]["id"] == machine.instance_id
    assert {v["name"] for v in seen["variables"]} == {"RELAY_DAEMON_KEY", "RELAY_WORKSPACE_ID", "PORT"}


def test_every_step_retried_twice_creates_nothing_twice(railway):
    first = provision(railway["provisioner"])
    before = counts(railway)
    app, ips, volume, machines = provision(railway["provisioner"], repeat=3)
    assert counts(railway) == before
    assert before["projects"] == before["services"] == before["deployments"] == before["volumes"] == 1
    assert not app.created  # adopted: the project is ours
    assert volume.id == first[2].id and {m.id for m in machines} == {first[3][0].id}
    assert {m.instance_id for m in machines} == {first[3][0].instance_id}
    assert [ip.address for ip in ips] == [ip.address for ip in first[1]]

    # A fresh process (no cached ids) finds the same things by name.
    again = make(railway)
    assert again.ensure_app(APP).created is False
    assert again.ensure_volume(APP, "workspace_data", "iad", 10).id == volume.id
    assert again.ensure_machine(APP, "agent-host", spec()).instance_id == first[3][0].instance_id
    assert counts(railway) == before
    again.close()


def test_a_step_whose_answer_was_lost_is_retried_without_a_duplicate(railway):
    """The create reached Railway but the answer never came back: the retried step finds what it made."""
    p = make(railway, transport=LosingTransport("projectCreate", "serviceCreate", "serviceDomainCreate",
                                                "volumeCreate", "serviceInstanceDeployV2"))
    with pytest.raises(UpstreamUnavailable):
        p.ensure_app(APP)
    assert p.ensure_app(APP).created is False
    with pytest.raises(UpstreamUnavailable):
        p.ensure_ips(APP)  # the service's create answer is lost
    with pytest.raises(UpstreamUnavailable):
        p.ensure_ips(APP)  # then the domain's
    assert len(p.ensure_ips(APP)) == 1
    with pytest.raises(UpstreamUnavailable):
        p.ensure_volume(APP, "workspace_data", "iad", 10)
    volume = p.ensure_volume(APP, "workspace_data", "iad", 10)  # found on the service, then named
    assert volume.name == "workspace_data"
    with pytest.raises(UpstreamUnavailable):
        p.ensure_machine(APP, "agent-host", spec())
    machine = p.ensure_machine(APP, "agent-host", spec())
    assert machine.volume_id == volume.id
    assert counts(railway) == {"projects": 1, "services": 1, "volumes": 1, "deployments": 1, "domains": 1,
                               "custom_domains": 0, "variables": 2}
    assert inventory(railway)["volumes"][0]["name"] == "workspace_data"
    p.close()


def test_two_racing_creates_leave_one_project(railway):
    """Both attempts saw no project and both created one: the later one deletes its own and adopts."""
    other = make(railway)
    first = other.ensure_app(APP)
    p = railway["provisioner"]
    p._projects.clear()
    # This attempt's look-first missed the other's project (it did not exist yet when it looked).
    p._lookup = _miss_once(p._lookup)
    assert p.ensure_app(APP).created is False and first.created is True
    assert counts(railway)["projects"] == 1
    other.close()


def _miss_once(lookup):
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        return None if calls["n"] == 1 else lookup(*args, **kwargs)
    return wrapped


def test_teardown_after_a_partial_create_leaves_the_inventory_empty(railway):
    p = railway["provisioner"]
    p.ensure_app(APP)
    p.ensure_ips(APP)
    volume = p.ensure_volume(APP, "workspace_data", "iad", 10)
    # The machine step failed before it began: compensation still runs every delete.
    teardown(p, "00000000-0000-0000-0000-000000000000", volume.id)
    assert counts(railway) == EMPTY

    _, _, volume, (machine,) = provision(p)
    teardown(p, machine.id, volume.id)  # a running service is deleted with its deployments and domain
    assert counts(railway) == EMPTY


def test_deleting_what_is_already_gone_is_success(railway):
    p = railway["provisioner"]
    for _ in range(2):
        teardown(p, "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000001")
    _, _, volume, (machine,) = provision(p)
    p.ensure_app(APP)
    p.delete_machine(APP, machine.id)
    p.delete_machine(APP, machine.id)  # "Service not found": done
    p.delete_volume(APP, volume.id)
    p.delete_volume(APP, volume.id)  # "Volume not found": done
    for _ in range(2):
        teardown(p, machine.id, volume.id)
    assert p.machine_state(APP, machine.id) is None
    assert counts(railway) == EMPTY


def test_503_is_upstream_unavailable_and_a_read_is_retried_through_one(railway):
    p = railway["provisioner"]
    p.ensure_app(APP)
    railway["control"].post("/_faults", json={"path_contains": "/graphql", "status": 503, "count": 1})
    volume = p.ensure_volume(APP, "workspace_data", "iad", 10)  # the first read is retried past the 503
    assert volume.id

    railway["control"].post("/_faults", json={"path_contains": "/graphql", "status": 503, "count": 3})
    with pytest.raises(UpstreamUnavailable) as unavailable:
        p.ensure_machine(APP, "agent-host", spec())  # the project read + 2 retries, all 503
    assert unavailable.value.code == "UPSTREAM_UNAVAILABLE" and unavailable.value.status == 503
    assert counts(railway)["deployments"] == 0

    railway["control"].post("/_faults", json={"path_contains": "/graphql", "status": 429, "count": 4})
    with pytest.raises(UpstreamUnavailable):
        p.ensure_ips(APP)
    railway["control"].delete("/_faults")


def test_a_network_failure_is_upstream_unavailable():
    p = RailwayProvisioner(api_url="http://127.0.0.1:9/graphql/v2", token="t", workspace_id=WORKSPACE, retries=1,
                           backoff_s=0.01, timeout=1)
    with pytest.raises(UpstreamUnavailable):
        p.ensure_app(APP)


def test_a_graphql_error_is_provider_rejected_with_railway_s_message_and_never_the_token(railway):
    p = railway["provisioner"]
    p.ensure_app(APP)
    with pytest.raises(ProviderRejected) as rejected:
        p.ensure_volume(APP, "workspace data!", "iad", 10)  # Railway refuses the volume's name
    error = rejected.value
    assert error.code == "COMPUTE_PROVIDER_REJECTED" and error.details["upstream_status"] == 200
    assert error.details["provider"] == "railway"
    assert error.details["upstream_error"] == "Invalid volume name"
    assert "Invalid volume name" in error.message and railway["token"] not in str(error.body())

    with pytest.raises(ProviderRejected) as region:
        p.ensure_machine(APP, "agent-host", spec(region="xyz"))
    assert region.value.details["upstream_error"] == "Invalid region xyz"

    # A token of another workspace is refused on every call: "Not Authorized".
    stranger = make(railway, token=railway["other"])
    with pytest.raises(ProviderRejected) as refused:
        stranger.ensure_app(APP)
    assert refused.value.details["upstream_error"] == "Not Authorized"
    bad_token = make(railway, token="not-a-token")
    with pytest.raises(ProviderRejected) as unauthenticated:
        bad_token.ensure_app(APP)
    assert unauthenticated.value.details["upstream_status"] == 401
    assert counts(railway)["projects"] == 1
    stranger.close()
    bad_token.close()


def test_a_crashing_deployment_is_refused_rather_than_waited_for(railway):
    p = railway["provisioner"]
    p.ensure_app(APP)
    machine = p.ensure_machine(APP, "agent-host", spec(image="ghcr.io/relay/workspace:crash"))
    with pytest.raises(ProviderRejected) as crashed:
        p.wait_started(APP, machine.id, timeout_s=10)
    assert crashed.value.details["upstream_error"] == "CRASHED"
    assert p.machine_state(APP, machine.id) == "failed"
    assert p.restart(APP, machine.id) == "starting"  # a new deployment of the (same) image


def test_stop_then_start_keeps_the_volume(railway):
    p = railway["provisioner"]
    _, _, volume, (machine,) = provision(p)
    assert p.stop(APP, machine.id) in ("stopping", "stopped")
    assert p.stop(APP, machine.id) in ("stopping", "stopped")  # repeated: a no-op
    wait_for_state(p, machine.id, "stopped")
    assert p.wait_started(APP, machine.id, timeout_s=1) is False
    stopped = inventory(railway)
    assert [(v["id"], v["name"], v["service_id"]) for v in stopped["volumes"]] == \
        [(volume.id, "workspace_data", machine.id)]
    assert [d["status"] for d in stopped["deployments"]] == ["REMOVED"]

    assert p.start(APP, machine.id) in ("starting", "started")
    assert p.start(APP, machine.id) in ("starting", "started")  # repeated: no second deployment
    assert p.wait_started(APP, machine.id, timeout_s=10)
    after = inventory(railway)
    assert [(v["id"], v["service_id"]) for v in after["volumes"]] == [(volume.id, machine.id)]
    assert [d["status"] for d in after["deployments"]] == ["REMOVED", "SUCCESS"]
    assert after["counts"]["volumes"] == 1 and after["counts"]["services"] == 1

    assert p.restart(APP, machine.id) in ("starting", "started")
    assert inventory(railway)["deployments"][-1]["restarts"] == 1
    assert p.wait_started(APP, machine.id, timeout_s=10)
    p.stop(APP, machine.id)
    wait_for_state(p, machine.id, "stopped")
    assert p.restart(APP, machine.id) in ("starting", "started")  # restarting a stopped service starts it
    assert p.wait_started(APP, machine.id, timeout_s=10)
    assert counts(railway)["volumes"] == 1


def test_secret_values_and_the_token_never_reach_a_log_line(railway, caplog):
    caplog.set_level(logging.DEBUG)
    provision(railway["provisioner"])
    assert caplog.records  # the client does log its calls
    assert DAEMON_KEY not in caplog.text and railway["token"] not in caplog.text
    assert railway["provisioner"].secret_names(APP) == ["PORT", "RELAY_DAEMON_KEY", "RELAY_WORKSPACE_ID"]


def test_a_machine_without_an_image_or_under_another_name_is_refused_before_any_call(railway):
    p = railway["provisioner"]
    p.ensure_app(APP)
    with pytest.raises(ValidationFailed) as refused:
        p.ensure_machine(APP, "agent-host", spec(image=""))
    assert refused.value.code == "COMPUTE_NOT_CONFIGURED"
    with pytest.raises(ValidationFailed):
        p.ensure_machine(APP, "workspace", spec())
    assert counts(railway)["services"] == 0 and counts(railway)["deployments"] == 0


def test_a_custom_domain_s_certificate_is_requested_once_and_removed(railway):
    p = railway["provisioner"]
    provision(p)
    assert p.certificate_status(APP, "agents.example.com") is None
    assert p.add_certificate(APP, "agents.example.com") == "pending"
    assert p.add_certificate(APP, "Agents.Example.com.") == "pending"  # looked up first: not added twice
    assert counts(railway)["custom_domains"] == 1
    time.sleep(0.2)
    assert p.certificate_status(APP, "agents.example.com") == "active"
    p.delete_certificate(APP, "agents.example.com")
    p.delete_certificate(APP, "agents.example.com")  # already gone: done
    assert counts(railway)["custom_domains"] == 0
