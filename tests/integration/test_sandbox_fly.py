"""The Fly sandbox over HTTP: auth, app-name uniqueness, machine state transitions in time, the blocking
wait, volumes attached to one machine, secrets kept as digests, IPs and certificates over REST and
GraphQL, the inventory and fault injection."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import pytest

from tests.integration.fly_support import ORG, OTHER_ORG, serve_fly

IMAGE = "registry.fly.io/relay-workspace:test"
GUEST = {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024}


@pytest.fixture
def fly():
    with serve_fly() as (sandbox, base, token, other):
        with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"}) as client, \
                httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {other}"}) as stranger:
            client.sandbox, client.stranger = sandbox, stranger
            yield client


def create_app(client, name="ws-abc123", org=ORG):
    return client.post("/v1/apps", json={"app_name": name, "org_slug": org})


def create_machine(client, app="ws-abc123", **body):
    body.setdefault("config", {"image": IMAGE, "guest": GUEST})
    body.setdefault("region", "iad")
    return client.post(f"/v1/apps/{app}/machines", json=body)


def states_until(client, app, machine_id, final, limit_s=5.0):
    seen = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        state = client.get(f"/v1/apps/{app}/machines/{machine_id}").json()["state"]
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == final:
            return seen
        time.sleep(0.01)
    raise AssertionError(f"never reached {final}: {seen}")


def inventory(client):
    return client.get("/_inventory").json()


# -- auth ------------------------------------------------------------------------------------------


def test_every_api_path_needs_a_registered_token(fly):
    anonymous = httpx.get(f"{fly.base_url}v1/apps", params={"org_slug": ORG})
    assert anonymous.status_code == 401 and anonymous.json() == {"error": "Authenticate: token validation error"}
    wrong = fly.get("/v1/apps", params={"org_slug": ORG}, headers={"Authorization": "Bearer fo1_nope"})
    assert wrong.status_code == 401
    graphql = httpx.post(f"{fly.base_url}graphql", json={"query": "{ app(name: \"x\") { name } }"})
    assert graphql.status_code == 401
    flyv1 = fly.get("/v1/apps", params={"org_slug": ORG},
                    headers={"Authorization": fly.headers["authorization"].replace("Bearer", "FlyV1")})
    assert flyv1.status_code == 200 and flyv1.json() == {"total_apps": 0, "apps": []}


# -- apps --------------------------------------------------------------------------------------------


def test_app_names_are_unique_across_every_organization(fly):
    created = create_app(fly)
    assert created.status_code == 201 and set(created.json()) == {"id", "created_at"}
    again = create_app(fly)
    assert again.status_code == 422
    assert again.json() == {"error": "Validation failed: Name has already been taken", "status": "name_taken"}
    elsewhere = create_app(fly.stranger, org=OTHER_ORG)
    assert elsewhere.status_code == 422 and elsewhere.json()["status"] == "name_taken"

    ours = fly.get("/v1/apps/ws-abc123").json()
    assert ours["organization"]["slug"] == ORG and ours["status"] == "pending"
    assert fly.stranger.get("/v1/apps/ws-abc123").json() == {"error": "unauthorized"}
    assert fly.stranger.get("/v1/apps/ws-abc123").status_code == 403
    assert fly.get("/v1/apps/ws-missing").status_code == 404
    assert fly.get("/v1/apps/ws-missing").json() == {"error": "app not found"}
    assert fly.stranger.get("/v1/apps/ws-abc123/machines").status_code == 403
    assert fly.stranger.delete("/v1/apps/ws-abc123").status_code == 403
    assert fly.get("/v1/apps/ws-abc123").status_code == 200  # still there
    assert fly.delete("/v1/apps/ws-missing").status_code == 404
    assert fly.get("/v1/apps", params={"org_slug": ORG}).json()["total_apps"] == 1


def test_bad_app_requests_are_refused(fly):
    assert create_app(fly, name="Not_Valid").status_code == 422
    assert create_app(fly, org=OTHER_ORG).status_code == 403
    assert fly.post("/v1/apps", json={"app_name": "x"}).status_code == 400


# -- machines ----------------------------------------------------------------------------------------


def test_a_machine_boots_through_created_and_starting_and_stops_through_stopping(fly):
    create_app(fly)
    machine = create_machine(fly, name="workspace", config={"image": IMAGE, "guest": GUEST,
                                                             "metadata": {"workspace_id": "abc123"}})
    assert machine.status_code == 200
    body = machine.json()
    assert body["state"] == "created" and body["name"] == "workspace" and body["region"] == "iad"
    assert body["config"]["metadata"] == {"workspace_id": "abc123"} and body["instance_id"]
    assert states_until(fly, "ws-abc123", body["id"], "started") == ["created", "starting", "started"]
    assert fly.get("/v1/apps/ws-abc123").json()["status"] == "deployed"

    assert fly.post(f"/v1/apps/ws-abc123/machines/{body['id']}/start").status_code == 412
    assert fly.post(f"/v1/apps/ws-abc123/machines/{body['id']}/stop").json() == {"ok": True}
    assert states_until(fly, "ws-abc123", body["id"], "stopped") == ["stopping", "stopped"]
    started = fly.post(f"/v1/apps/ws-abc123/machines/{body['id']}/start")
    assert started.json() == {"previous_state": "stopped", "migrated": False, "new_host": ""}
    assert states_until(fly, "ws-abc123", body["id"], "started")[-1] == "started"

    assert fly.post(f"/v1/apps/ws-abc123/machines/{body['id']}/restart").json() == {"ok": True}
    assert states_until(fly, "ws-abc123", body["id"], "started") == ["stopping", "starting", "started"]

    listed = fly.get("/v1/apps/ws-abc123/machines", params={"metadata.workspace_id": "abc123"}).json()
    assert [m["id"] for m in listed] == [body["id"]]
    assert fly.get("/v1/apps/ws-abc123/machines", params={"metadata.workspace_id": "other"}).json() == []


def test_wait_blocks_until_the_state_or_answers_408_at_the_timeout(fly):
    create_app(fly)
    machine = create_machine(fly).json()
    started = time.monotonic()
    waited = fly.get(f"/v1/apps/ws-abc123/machines/{machine['id']}/wait", params={"state": "started", "timeout": 5})
    assert waited.status_code == 200 and waited.json() == {"ok": True}
    assert time.monotonic() - started < 2  # returned when the machine got there, not at the timeout

    parked = create_machine(fly, skip_launch=True).json()
    started = time.monotonic()
    timed_out = fly.get(f"/v1/apps/ws-abc123/machines/{parked['id']}/wait", params={"state": "started", "timeout": 1})
    assert timed_out.status_code == 408 and timed_out.json()["error"].startswith("deadline_exceeded")
    assert 0.9 <= time.monotonic() - started < 3
    assert fly.get(f"/v1/apps/ws-abc123/machines/{parked['id']}/wait", params={"state": "running"}).status_code == 400

    assert fly.delete(f"/v1/apps/ws-abc123/machines/{machine['id']}", params={"force": "true"}).status_code == 200
    gone = fly.get(f"/v1/apps/ws-abc123/machines/{machine['id']}/wait", params={"state": "destroyed", "timeout": 1})
    assert gone.status_code == 200


def test_machine_configs_are_validated_like_fly_sizes(fly):
    create_app(fly)
    assert create_machine(fly, config={"guest": GUEST}).status_code == 422
    assert create_machine(fly, config={"image": IMAGE, "guest": {"cpu_kind": "shared", "cpus": 1,
                                                                 "memory_mb": 1000}}).status_code == 422
    assert create_machine(fly, config={"image": IMAGE, "guest": {"cpu_kind": "shared", "cpus": 1,
                                                                 "memory_mb": 4096}}).status_code == 422
    assert create_machine(fly, region="mars").status_code == 422
    assert fly.post("/v1/apps/ws-abc123/machines", content=b"nope").status_code == 400
    assert inventory(fly)["counts"]["machines"] == 0


# -- volumes -----------------------------------------------------------------------------------------


def test_a_volume_is_attached_to_one_live_machine_and_freed_when_it_is_destroyed(fly):
    create_app(fly)
    volume = fly.post("/v1/apps/ws-abc123/volumes", json={"name": "workspace_data", "region": "iad", "size_gb": 10})
    assert volume.status_code == 200
    vol = volume.json()
    assert vol["id"].startswith("vol_") and vol["state"] == "created" and vol["attached_machine_id"] is None
    config = {"image": IMAGE, "guest": GUEST, "mounts": [{"volume": vol["id"], "path": "/data"}]}
    first = create_machine(fly, config=config).json()
    assert fly.get(f"/v1/apps/ws-abc123/volumes/{vol['id']}").json()["attached_machine_id"] == first["id"]

    second = create_machine(fly, config=config)
    assert second.status_code == 409 and "already attached" in second.json()["error"]
    assert create_machine(fly, config=config, region="ams").status_code == 422  # not the volume's region
    assert fly.delete(f"/v1/apps/ws-abc123/volumes/{vol['id']}").status_code == 409

    states_until(fly, "ws-abc123", first["id"], "started")
    refused = fly.delete(f"/v1/apps/ws-abc123/machines/{first['id']}")
    assert refused.status_code == 412
    assert fly.delete(f"/v1/apps/ws-abc123/machines/{first['id']}", params={"force": "true"}).json() == {"ok": True}
    assert fly.get(f"/v1/apps/ws-abc123/machines/{first['id']}").status_code == 404
    deleted = fly.delete(f"/v1/apps/ws-abc123/volumes/{vol['id']}")
    assert deleted.status_code == 200 and deleted.json()["state"] == "destroyed"
    assert fly.delete(f"/v1/apps/ws-abc123/volumes/{vol['id']}").status_code == 404
    assert fly.post("/v1/apps/ws-abc123/volumes", json={"name": "Bad-Name", "size_gb": 1}).status_code == 422
    assert fly.post("/v1/apps/ws-abc123/volumes", json={"name": "ok", "size_gb": 0}).status_code == 422


# -- secrets, IPs, certificates --------------------------------------------------------------------


def test_secrets_are_kept_as_digests_and_the_inventory_shows_names_only(fly):
    create_app(fly)
    value = "rly_daemonkey_" + "s3cr3t" * 5
    answer = fly.post("/v1/apps/ws-abc123/secrets", json={"values": {"RELAY_DAEMON_KEY": value, "RELAY_URL": "x"}})
    assert answer.status_code == 200 and answer.json()["version"] == 1
    listed = fly.get("/v1/apps/ws-abc123/secrets").json()["secrets"]
    assert [s["name"] for s in listed] == ["RELAY_DAEMON_KEY", "RELAY_URL"]
    assert all(set(s) == {"name", "digest", "created_at", "updated_at"} for s in listed)
    raw = fly.get("/_inventory").text
    assert value not in raw and "s3cr3t" not in raw
    assert {s["name"] for s in inventory(fly)["secrets"]} == {"RELAY_DAEMON_KEY", "RELAY_URL"}

    assert fly.post("/v1/apps/ws-abc123/secrets", json={"values": {"RELAY_URL": None}}).json()["version"] == 2
    assert fly.post("/v1/apps/ws-abc123/secrets/ONE", json={"value": "1"}).status_code == 201
    assert fly.delete("/v1/apps/ws-abc123/secrets/ONE").status_code == 200
    assert fly.delete("/v1/apps/ws-abc123/secrets/ONE").status_code == 404
    assert fly.post("/v1/apps/ws-abc123/secrets", json={"values": {"bad-name": "v"}}).status_code == 422
    assert [s["name"] for s in fly.get("/v1/apps/ws-abc123/secrets").json()["secrets"]] == ["RELAY_DAEMON_KEY"]


def test_ip_assignments_over_rest_and_graphql(fly):
    create_app(fly)
    v6 = fly.post("/v1/apps/ws-abc123/ip_assignments", json={"type": "v6"}).json()
    assert ":" in v6["ip"] and v6["shared"] is False
    shared = fly.post("/v1/apps/ws-abc123/ip_assignments", json={"type": "shared_v4"}).json()
    assert shared["shared"] is True
    assert fly.post("/v1/apps/ws-abc123/ip_assignments", json={"type": "shared_v4"}).status_code == 422
    assert len(fly.get("/v1/apps/ws-abc123/ip_assignments").json()["ips"]) == 2
    assert fly.delete(f"/v1/apps/ws-abc123/ip_assignments/{quote(v6['ip'], safe='')}").status_code == 204
    assert fly.delete(f"/v1/apps/ws-abc123/ip_assignments/{quote(v6['ip'], safe='')}").status_code == 404

    gql = fly.post("/graphql", json={
        "query": "mutation($input: AllocateIPAddressInput!) { allocateIpAddress(input: $input) "
                 "{ ipAddress { id address type } } }",
        "variables": {"input": {"appId": "ws-abc123", "type": "v4"}},
    }).json()
    ip = gql["data"]["allocateIpAddress"]["ipAddress"]
    assert set(ip) == {"id", "address", "type"} and ip["type"] == "v4"  # exactly the selected fields
    listed = fly.post("/graphql", json={"query": '{ app(name: "ws-abc123") { ipAddresses { nodes { type } } } }'})
    assert {"type": "v4"} in listed.json()["data"]["app"]["ipAddresses"]["nodes"]
    released = fly.post("/graphql", json={
        "query": "mutation($input: ReleaseIPAddressInput!) { releaseIpAddress(input: $input) { app { name } } }",
        "variables": {"input": {"appId": "ws-abc123", "ipAddressId": ip["id"]}},
    }).json()
    assert released == {"data": {"releaseIpAddress": {"app": {"name": "ws-abc123"}}}}
    missing = fly.post("/graphql", json={"query": '{ app(name: "ws-nope") { name } }'}).json()
    assert missing["data"]["app"] is None and missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_certificates_turn_active_after_validation_time(fly):
    create_app(fly)
    create_app(fly, name="ws-other")
    requested = fly.post("/v1/apps/ws-abc123/certificates/acme", json={"hostname": "dev.example.com"})
    assert requested.status_code == 201
    body = requested.json()
    assert body["status"] == "pending_validation" and body["configured"] is False
    assert body["dns_requirements"]["cname"] == "ws-abc123.fly.dev"
    taken = fly.post("/v1/apps/ws-other/certificates/acme", json={"hostname": "dev.example.com"})
    assert taken.status_code == 422
    query = {"query": "query($app: String!, $host: String!) { app(name: $app) { certificate(hostname: $host) "
                      "{ hostname clientStatus configured } } }",
             "variables": {"app": "ws-abc123", "host": "dev.example.com"}}
    assert fly.post("/graphql", json=query).json()["data"]["app"]["certificate"]["clientStatus"] == "Awaiting configuration"
    time.sleep(0.2)
    assert fly.get("/v1/apps/ws-abc123/certificates/dev.example.com").json()["status"] == "active"
    assert fly.post("/graphql", json=query).json()["data"]["app"]["certificate"] == {
        "hostname": "dev.example.com", "clientStatus": "Ready", "configured": True}
    deleted = fly.post("/graphql", json={
        "query": 'mutation { deleteCertificate(appId: "ws-abc123", hostname: "dev.example.com") '
                 "{ certificate { hostname } } }"}).json()
    assert deleted == {"data": {"deleteCertificate": {"certificate": {"hostname": "dev.example.com"}}}}
    assert fly.delete("/v1/apps/ws-abc123/certificates/dev.example.com").status_code == 404


# -- inventory, teardown and faults ----------------------------------------------------------------


def test_inventory_lists_everything_and_deleting_the_app_takes_it_all(fly):
    create_app(fly)
    vol = fly.post("/v1/apps/ws-abc123/volumes", json={"name": "data", "region": "iad", "size_gb": 3}).json()
    create_machine(fly, config={"image": IMAGE, "guest": GUEST, "mounts": [{"volume": vol["id"], "path": "/data"}]})
    fly.post("/v1/apps/ws-abc123/ip_assignments", json={"type": "v6"})
    fly.post("/v1/apps/ws-abc123/secrets", json={"values": {"A": "1"}})
    fly.post("/v1/apps/ws-abc123/certificates/acme", json={"hostname": "a.example.com"})
    seen = inventory(fly)
    assert seen["counts"] == {"apps": 1, "machines": 1, "volumes": 1, "ips": 1, "certificates": 1, "secrets": 1}
    assert seen["machines"][0]["state"] in ("created", "starting", "started")
    assert seen["machines"][0]["volume_ids"] == [vol["id"]]
    assert seen["volumes"][0]["attached_machine_id"] == seen["machines"][0]["id"]

    assert fly.delete("/v1/apps/ws-abc123", params={"force": "true"}).status_code == 202
    assert set(inventory(fly)["counts"].values()) == {0}
    assert fly.delete("/v1/apps/ws-abc123").status_code == 404
    assert create_app(fly).status_code == 201  # the name is free again


def test_faults_hit_matching_api_calls_only_and_never_the_control_surface(fly):
    create_app(fly)
    queued = fly.post("/_faults", json={"path_contains": "/machines", "status": 503, "count": 2})
    assert queued.status_code == 201
    assert create_machine(fly).status_code == 503
    assert fly.get("/_inventory").status_code == 200  # control path: untouched, fault still queued
    assert fly.get("/v1/apps/ws-abc123/machines").status_code == 503
    assert fly.get("/v1/apps/ws-abc123/machines").status_code == 200
    assert inventory(fly)["counts"]["machines"] == 0

    fly.post("/_faults", json={"path_contains": "/v1/apps", "delay_ms": 300})
    started = time.monotonic()
    assert fly.get("/v1/apps/ws-abc123").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_config_and_reset(fly):
    assert fly.post("/_config", json={"boot_ms": 0}).json()["boot_ms"] == 0
    assert fly.post("/_config", json={"boot_secs": 1}).status_code == 400
    create_app(fly)
    assert fly.post("/_reset").status_code == 204
    assert inventory(fly)["counts"]["apps"] == 0


# -- mounted in the local stack ----------------------------------------------------------------------


def test_the_local_stack_mounts_the_fly_sandbox_and_points_the_cloud_at_it(local_stack, http):
    from relay_cloud import config

    settings = config.settings()
    assert settings.fly_api_url == f"{local_stack.url}/_sandbox/fly"
    assert settings.fly_graphql_url == f"{local_stack.url}/_sandbox/fly/graphql"
    token = local_stack.env["RELAY_FLY_API_TOKEN"]
    apps = http.get("/_sandbox/fly/v1/apps", params={"org_slug": settings.fly_org},
                    headers={"Authorization": f"Bearer {token}"})
    assert apps.status_code == 200 and "apps" in apps.json()
    assert http.get("/_sandbox/fly/_inventory").json()["counts"].keys() >= {"apps", "machines", "volumes"}
    assert http.get("/_sandbox/fly/v1/apps", params={"org_slug": settings.fly_org}).status_code == 401
