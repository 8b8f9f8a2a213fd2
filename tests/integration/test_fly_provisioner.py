"""FlyProvisioner against the Fly sandbox over real HTTP: the full create sequence, every step repeated
(and repeated after its answer was lost) creating nothing twice, teardown after a partial create leaving
the inventory empty, 404 on delete as success, error translation, and stop/start keeping the volume."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from relay_cloud.adapters.fly import FlyProvisioner
from relay_cloud.adapters.providers import UpstreamUnavailable
from relay_cloud.domain.compute import (
    AppNameTaken,
    MachineSpec,
    ProviderRejected,
    app_name_for,
    parse_sizes,
)
from tests.integration.fly_support import ORG, OTHER_ORG, serve_fly

IMAGE = "registry.fly.io/relay-workspace:test"
SIZE = parse_sizes("")["small"]
WORKSPACE = "w0rkspace01"
APP = app_name_for(WORKSPACE)
DAEMON_KEY = "rly_d1_" + "k" * 40


class LosingTransport(httpx.HTTPTransport):
    """Delivers each matching request to the server, then loses its answer once (as a timeout would)."""

    def __init__(self, *, method: str, path_suffixes: tuple[str, ...]):
        super().__init__()
        self.method, self.pending = method, set(path_suffixes)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        suffix = next((s for s in self.pending if request.url.path.endswith(s)), None)
        if request.method == self.method and suffix is not None:
            self.pending.discard(suffix)
            response.read()
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


@pytest.fixture
def fly():
    with serve_fly() as (sandbox, base, token, other):
        control = httpx.Client(base_url=base, timeout=10)
        stranger = httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {other}"})
        env = {"base": base, "token": token, "control": control, "stranger": stranger, "sandbox": sandbox}
        env["provisioner"] = make(env)
        yield env
        env["provisioner"].close()
        control.close()
        stranger.close()


def make(env, **kwargs) -> FlyProvisioner:
    return FlyProvisioner(api_url=env["base"], token=env["token"], org=ORG, backoff_s=0.01, **kwargs)


def counts(env) -> dict:
    return env["control"].get("/_inventory").json()["counts"]


def inventory(env) -> dict:
    return env["control"].get("/_inventory").json()


def spec(volume_id: str | None) -> MachineSpec:
    return MachineSpec(image=IMAGE, size=SIZE, region="iad", volume_id=volume_id,
                       env={"RELAY_WORKSPACE_ID": WORKSPACE}, metadata={"workspace_id": WORKSPACE})


def provision(p: FlyProvisioner, *, repeat: int = 1):
    """The workflow's create steps in order, each run ``repeat`` times (a retried step)."""
    for _ in range(repeat):
        app = p.ensure_app(APP)
    for _ in range(repeat):
        ips = p.ensure_ips(APP)
    for _ in range(repeat):
        volume = p.ensure_volume(APP, "workspace_data", "iad", SIZE.volume_gb)
    for _ in range(repeat):
        p.set_secrets(APP, {"RELAY_DAEMON_KEY": DAEMON_KEY, "RELAY_WORKSPACE_ID": WORKSPACE})
    machines = [p.ensure_machine(APP, "workspace", spec(volume.id)) for _ in range(repeat)]
    for _ in range(repeat):
        assert p.wait_started(APP, machines[0].id, timeout_s=10)
    return app, ips, volume, machines


def teardown(p: FlyProvisioner, machine_id: str, volume_id: str) -> None:
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


def test_the_full_create_sequence_leaves_one_of_everything_running(fly):
    app, ips, volume, (machine,) = provision(fly["provisioner"])
    assert app.created and app.org == ORG and app.name == "ws-w0rkspace01"
    assert sorted(ip.type for ip in ips) == ["shared_v4", "v6"]
    assert volume.id.startswith("vol_") and volume.size_gb == SIZE.volume_gb
    assert machine.name == "workspace" and machine.volume_id == volume.id
    assert fly["provisioner"].machine_state(APP, machine.id) == "started"

    seen = inventory(fly)
    assert seen["counts"] == {"apps": 1, "machines": 1, "volumes": 1, "ips": 2, "certificates": 0, "secrets": 2}
    assert seen["machines"][0]["metadata"] == {"workspace_id": WORKSPACE}
    assert seen["volumes"][0]["attached_machine_id"] == machine.id
    raw = httpx.get(f"{fly['base']}/v1/apps/{APP}/machines/{machine.id}",
                    headers={"Authorization": f"Bearer {fly['token']}"}).json()
    assert raw["config"]["guest"] == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024}
    assert raw["config"]["mounts"] == [{"volume": volume.id, "path": "/data"}]
    assert raw["config"]["image"] == IMAGE and raw["config"]["env"] == {"RELAY_WORKSPACE_ID": WORKSPACE}
    assert "RELAY_DAEMON_KEY" not in raw["config"]["env"]  # the daemon key travels as a secret only


def test_every_step_retried_twice_creates_nothing_twice(fly):
    first = provision(fly["provisioner"])
    before = counts(fly)
    app, ips, volume, machines = provision(fly["provisioner"], repeat=3)
    assert counts(fly) == before == {"apps": 1, "machines": 1, "volumes": 1, "ips": 2, "certificates": 0,
                                     "secrets": 2}
    assert not app.created  # adopted: the app is ours
    assert volume.id == first[2].id and {m.id for m in machines} == {first[3][0].id}
    assert sorted(ip.address for ip in ips) == sorted(ip.address for ip in first[1])


def test_a_step_whose_answer_was_lost_is_retried_without_a_duplicate(fly):
    """The POST reached Fly but the answer never came back: the retried step finds what it made."""
    losing = LosingTransport(method="POST", path_suffixes=("/v1/apps", "/ip_assignments", "/volumes", "/machines"))
    p = make(fly, transport=losing)
    with pytest.raises(UpstreamUnavailable):
        p.ensure_app(APP)
    assert p.ensure_app(APP).created is False
    with pytest.raises(UpstreamUnavailable):
        p.ensure_ips(APP)
    assert len(p.ensure_ips(APP)) == 2
    with pytest.raises(UpstreamUnavailable):
        p.ensure_volume(APP, "workspace_data", "iad", 10)
    volume = p.ensure_volume(APP, "workspace_data", "iad", 10)
    with pytest.raises(UpstreamUnavailable):
        p.ensure_machine(APP, "workspace", spec(volume.id))
    machine = p.ensure_machine(APP, "workspace", spec(volume.id))
    assert machine.volume_id == volume.id
    assert counts(fly) == {"apps": 1, "machines": 1, "volumes": 1, "ips": 2, "certificates": 0, "secrets": 0}
    p.close()


def test_teardown_after_a_partial_create_leaves_the_inventory_empty(fly):
    p = fly["provisioner"]
    p.ensure_app(APP)
    p.ensure_ips(APP)
    volume = p.ensure_volume(APP, "workspace_data", "iad", 10)
    # The machine step failed: compensation still runs every delete (the machine's is a 404).
    teardown(p, "0000000000dead", volume.id)
    assert set(counts(fly).values()) == {0}

    _, _, volume, (machine,) = provision(p)
    teardown(p, machine.id, volume.id)  # a running machine is force-deleted, freeing its volume
    assert set(counts(fly).values()) == {0}


def test_deleting_what_is_already_gone_is_success(fly):
    p = fly["provisioner"]
    for _ in range(2):
        p.delete_machine(APP, "0000000000dead")
        p.delete_volume(APP, "vol_gone")
        p.release_ips(APP)
        p.delete_app(APP)
    _, _, volume, (machine,) = provision(p)
    for _ in range(2):
        teardown(p, machine.id, volume.id)
    assert p.machine_state(APP, machine.id) is None
    assert set(counts(fly).values()) == {0}


def test_503_is_upstream_unavailable_and_a_read_is_retried_through_one(fly):
    p = fly["provisioner"]
    p.ensure_app(APP)
    fly["control"].post("/_faults", json={"path_contains": "/volumes", "status": 503, "count": 1})
    volume = p.ensure_volume(APP, "workspace_data", "iad", 10)  # the list GET is retried past the 503
    assert volume.id

    fly["control"].post("/_faults", json={"path_contains": "/machines", "status": 503, "count": 3})
    with pytest.raises(UpstreamUnavailable) as unavailable:
        p.ensure_machine(APP, "workspace", spec(volume.id))  # GET + 2 retries, all 503
    assert unavailable.value.code == "UPSTREAM_UNAVAILABLE" and unavailable.value.status == 503
    assert counts(fly)["machines"] == 0

    fly["control"].post("/_faults", json={"path_contains": f"/apps/{APP}/ip_assignments", "status": 429, "count": 4})
    with pytest.raises(UpstreamUnavailable):
        p.ensure_ips(APP)
    fly["control"].delete("/_faults")


def test_a_network_failure_is_upstream_unavailable():
    p = FlyProvisioner(api_url="http://127.0.0.1:9", token="fo1_x", org=ORG, retries=1, backoff_s=0.01, timeout=1)
    with pytest.raises(UpstreamUnavailable):
        p.ensure_app(APP)


def test_a_4xx_is_a_domain_error_with_fly_s_message_and_never_the_token(fly):
    p = fly["provisioner"]
    p.ensure_app(APP)
    with pytest.raises(ProviderRejected) as rejected:
        p.ensure_volume(APP, "workspace_data", "iad", 0)
    error = rejected.value
    assert error.code == "COMPUTE_PROVIDER_REJECTED" and error.details["upstream_status"] == 422
    assert error.details["upstream_error"] == "size_gb must be between 1 and 500"
    assert "size_gb must be between 1 and 500" in error.message
    assert fly["token"] not in str(error.body())

    with pytest.raises(ProviderRejected) as bad_name:
        p.ensure_app("Not_A_Valid_Name")
    assert bad_name.value.details["upstream_status"] == 422

    fly["stranger"].post("/v1/apps", json={"app_name": "ws-taken", "org_slug": OTHER_ORG})
    with pytest.raises(AppNameTaken) as taken:
        p.ensure_app("ws-taken")
    assert taken.value.code == "APP_NAME_TAKEN"
    assert counts(fly)["apps"] == 2  # ours and the stranger's: nothing adopted, nothing deleted


def test_a_name_taken_race_is_adopted_when_the_app_is_ours(fly):
    p = fly["provisioner"]
    p.ensure_app(APP)
    # Our GET sees no app (the racing attempt had not created it yet); our POST then hits name_taken.
    fly["control"].post("/_faults", json={"path_contains": f"/v1/apps/{APP}", "status": 404, "count": 1})
    adopted = p.ensure_app(APP)
    assert adopted.created is False and counts(fly)["apps"] == 1


def test_stop_then_start_keeps_the_volume(fly):
    p = fly["provisioner"]
    _, _, volume, (machine,) = provision(p)
    assert p.stop(APP, machine.id) in ("stopping", "stopped")
    assert p.stop(APP, machine.id) in ("stopping", "stopped")  # repeated: a no-op
    wait_for_state(p, machine.id, "stopped")
    assert p.wait_started(APP, machine.id, timeout_s=1) is False
    stopped = inventory(fly)
    assert stopped["volumes"] == [{"app": APP, "id": volume.id, "name": "workspace_data", "size_gb": 10,
                                   "region": "iad", "attached_machine_id": machine.id}]

    assert p.start(APP, machine.id) in ("starting", "started")
    assert p.start(APP, machine.id) in ("starting", "started")
    assert p.wait_started(APP, machine.id, timeout_s=10)
    after = inventory(fly)
    assert after["volumes"][0]["id"] == volume.id and after["volumes"][0]["attached_machine_id"] == machine.id
    assert after["counts"]["volumes"] == 1 and after["counts"]["machines"] == 1

    assert p.restart(APP, machine.id) in ("stopping", "starting", "started")
    assert p.wait_started(APP, machine.id, timeout_s=10)
    p.stop(APP, machine.id)
    wait_for_state(p, machine.id, "stopped")
    assert p.restart(APP, machine.id) in ("starting", "started")  # restarting a stopped machine starts it
    assert p.wait_started(APP, machine.id, timeout_s=10)


def test_secret_values_and_the_token_never_reach_a_log_line(fly, caplog):
    caplog.set_level(logging.DEBUG)
    provision(fly["provisioner"])
    assert caplog.records  # the client does log its calls
    assert DAEMON_KEY not in caplog.text and fly["token"] not in caplog.text
    assert fly["provisioner"].secret_names(APP) == ["RELAY_DAEMON_KEY", "RELAY_WORKSPACE_ID"]


def test_a_machine_without_a_configured_image_is_refused_before_any_call(fly):
    from relay_cloud.domain.errors import ValidationFailed

    p = fly["provisioner"]
    p.ensure_app(APP)
    with pytest.raises(ValidationFailed) as refused:
        p.ensure_machine(APP, "workspace", MachineSpec(image="", size=SIZE, region="iad"))
    assert refused.value.code == "COMPUTE_NOT_CONFIGURED" and counts(fly)["machines"] == 0
