"""The workspace workflows (SPEC C6, docs/design/workspaces.md) executed for real: moto runs
workflows/provision_workspace.asl.json and workflows/delete_workspace.asl.json, whose Lambda tasks the
local runtime serves with functions/workflows/handler.py, against the Fly sandbox the local stack serves
over HTTP. Success (resources recorded, an event for every step), a 4xx injected at each step (status
error with the step, nothing left in the sandbox, the plan slot released), a transient 503 retried
without creating anything twice, and teardown leaving nothing behind.

The secrets step's values never reach the sandbox (it keeps digests only) nor the execution history, so
the daemon key is checked at the service level: the same service and repositories, with the real Fly
client wrapped to keep what it sends."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import boto3
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from relay_cloud.adapters.dns import DomainChecker
from relay_cloud.adapters.dynamo.daemons import DaemonRepository, LinkRepository
from relay_cloud.adapters.dynamo.domains import DomainRepository
from relay_cloud.adapters.dynamo.usage import UsageRepository
from relay_cloud.adapters.dynamo.workspaces import WorkspaceRepository
from relay_cloud.adapters.fly import FlyProvisioner
from relay_cloud.adapters.workflows import StepFunctionsWorkflow
from relay_cloud.domain.auth import Principal
from relay_cloud.domain.compute import app_name_for, parse_sizes
from relay_cloud.domain.errors import Unauthenticated
from relay_cloud.domain.sealing import b64url, b64url_decode
from relay_cloud.domain.workspaces import DELETING, ERROR, PROVISIONING, RUNNING, Workspace, new_workspace_id
from relay_cloud.services.daemons import DaemonService
from relay_cloud.services.domains import DomainService
from relay_cloud.services.provisioning import SECRET_NAMES, ProvisioningService, workspace_daemon_id
from relay_cloud.services.workspaces import WorkspaceService

FAST = {"launch_ms": 40, "boot_ms": 120, "stop_ms": 80, "certificate_ms": 150}
TIMING = {"poll_seconds": 1, "deadline_seconds": 30, "wait_seconds": 10}
WAIT_S = 60.0
STEPS = ("app", "ips", "volume", "secrets", "machine", "wait", "health", "finish")


@pytest.fixture
def stack(local_stack):
    """The local stack with a fast Fly sandbox; its settings restored and faults cleared afterwards."""
    base = f"{local_stack.url}/_sandbox/fly"
    saved = httpx.get(f"{base}/_config").json()
    assert httpx.post(f"{base}/_config", json=FAST).status_code == 200
    httpx.delete(f"{base}/_faults")
    yield local_stack
    httpx.delete(f"{base}/_faults")
    httpx.post(f"{base}/_config", json=saved)


@pytest.fixture
def sfn(stack):
    return boto3.client("stepfunctions", endpoint_url=stack.moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def new_workspace(user_id: str | None = None, *, providers=("anthropic",)) -> Workspace:
    """A workspace as the API creates it: provisioning, its plan slot reserved (Free: one)."""
    user_id = user_id or f"usr_{uuid.uuid4().hex[:12]}"
    workspace_id = new_workspace_id()
    now = int(time.time())
    workspace = Workspace(workspace_id=workspace_id, user_id=user_id, name="dev box", status=PROVISIONING,
                          compute="fly", region="iad", size="small", app_name=app_name_for(workspace_id),
                          created_at=now, updated_at=now, providers=tuple(providers))
    WorkspaceRepository().create(workspace, limit=1)
    return workspace


def start(sfn, stack, setting: str, workspace: Workspace, **extra) -> str:
    return sfn.start_execution(
        stateMachineArn=stack.env[setting], name=f"{workspace.workspace_id}-{uuid.uuid4().hex[:6]}",
        input=json.dumps({"workspace_id": workspace.workspace_id, "user_id": workspace.user_id, **extra}),
    )["executionArn"]


def provision(sfn, stack, workspace: Workspace) -> dict:
    arn = start(sfn, stack, "RELAY_PROVISION_STATE_MACHINE_ARN", workspace, timing=TIMING)
    return wait_for_execution(sfn, arn)


def teardown(sfn, stack, workspace: Workspace) -> dict:
    WorkspaceRepository().update(workspace.workspace_id, expected_status=(RUNNING, ERROR), now=int(time.time()),
                                 status=DELETING)  # what DELETE /api/workspaces/{id} does first
    return wait_for_execution(sfn, start(sfn, stack, "RELAY_TEARDOWN_STATE_MACHINE_ARN", workspace))


def wait_for_execution(sfn, arn: str, timeout_s: float = WAIT_S) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            described["history"] = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            return described
        time.sleep(0.2)
    raise AssertionError(f"execution {arn} still running after {timeout_s} s")


def task_failures(described: dict) -> list[str]:
    return [e["lambdaFunctionFailedEventDetails"]["error"] for e in described["history"]
            if e["type"] == "LambdaFunctionFailed"]


def inventory(stack, app: str) -> dict:
    """What the Fly sandbox holds for one app (other tests of the session share the sandbox)."""
    everything = httpx.get(f"{stack.url}/_sandbox/fly/_inventory").json()
    return {kind: [entry for entry in everything[kind] if entry.get("app", entry.get("name")) == app]
            for kind in ("apps", "machines", "volumes", "ips", "certificates", "secrets")}


def counts(stack, app: str) -> dict:
    return {kind: len(entries) for kind, entries in inventory(stack, app).items()}


def nothing_left(stack, app: str) -> bool:
    return all(count == 0 for count in counts(stack, app).values())


def events(workspace_id: str) -> list[tuple[str, str]]:
    found, _ = WorkspaceRepository().events(workspace_id, limit=500)
    return [(event.step, event.state) for event in found]


def slots(user_id: str) -> int:
    return UsageRepository().used(user_id, "workspaces")


def fault(stack, path_contains: str, status: int | None, count: int = 1) -> None:
    body = {"path_contains": path_contains, "count": count}
    if status is not None:
        body["status"] = status
    assert httpx.post(f"{stack.url}/_sandbox/fly/_faults", json=body).status_code == 201


# -- success ----------------------------------------------------------------------------------------


def test_provisioning_runs_every_step_and_the_workspace_is_running(stack, sfn):
    workspace = new_workspace()
    described = provision(sfn, stack, workspace)
    assert described["status"] == "SUCCEEDED", described["history"][-3:]

    stored = WorkspaceRepository().get(workspace.workspace_id)
    assert stored.status == RUNNING and stored.error is None and stored.running_since
    assert stored.host == f"{workspace.app_name}.fly.dev"
    app = workspace.app_name
    held = inventory(stack, app)
    (machine,) = held["machines"]
    (volume,) = held["volumes"]
    assert stored.resources["app"] == app
    assert stored.resources["machine_id"] == machine["id"] and machine["state"] == "started"
    assert machine["name"] == "agent-host" and machine["metadata"] == {"workspace_id": workspace.workspace_id}
    assert stored.resources["volume_id"] == volume["id"] and volume["attached_machine_id"] == machine["id"]
    assert volume["name"] == "data" and volume["size_gb"] == 10  # the "small" size's volume
    assert sorted(ip["type"] for ip in stored.resources["ips"]) == ["shared_v4", "v6"] == sorted(
        ip["type"] for ip in held["ips"])
    assert stored.resources["daemon_id"] == workspace_daemon_id(workspace.workspace_id)
    assert sorted(secret["name"] for secret in held["secrets"]) == sorted(SECRET_NAMES)
    assert slots(workspace.user_id) == 1  # the slot stays held while the workspace lives

    recorded = events(workspace.workspace_id)
    for step in STEPS:
        assert (step, "started") in recorded and (step, "succeeded") in recorded, step
    assert not [e for e in recorded if e[1] in ("failed", "compensating")]

    daemon = DaemonRepository().get(stored.resources["daemon_id"])
    assert daemon.user_id == workspace.user_id and daemon.machine_id == workspace.workspace_id
    assert daemon.allowed_providers == ("anthropic",) and daemon.active

    # Nothing secret in what Step Functions keeps: no key, no private key, only ids.
    history = json.dumps(described["history"], default=str)
    assert "rly_" not in history and "RELAY_DAEMON" not in history and daemon.key_hash not in history


# -- a 4xx at each step: compensation ---------------------------------------------------------------------


def inject_at(stack, step: str, app: str) -> None:
    """A 422 (a provider refusal: never retried) at the first request of ``step``."""
    if step == "health":
        # The health check reads the machine (…/machines/<id>), a prefix of the wait step's path
        # (…/machines/<id>/wait): let the wait through first, then refuse the next machine read.
        fault(stack, "/wait", None)
        fault(stack, "/machines/", 422)
        return
    fault(stack, {"app": f"/v1/apps/{app}", "ips": "/ip_assignments", "volume": "/volumes", "secrets": "/secrets",
                  "machine": "/machines", "wait": "/wait"}[step], 422)


@pytest.mark.parametrize("step", ["app", "ips", "volume", "secrets", "machine", "wait", "health"])
def test_a_refusal_at_any_step_compensates_releases_the_slot_and_records_the_step(stack, sfn, step):
    workspace = new_workspace()
    assert slots(workspace.user_id) == 1
    inject_at(stack, step, workspace.app_name)

    described = provision(sfn, stack, workspace)
    assert described["status"] == "FAILED" and described["error"] == "WorkspaceProvisioningFailed"
    assert task_failures(described) == ["ProviderRejected"]  # a 4xx is never retried

    stored = WorkspaceRepository().get(workspace.workspace_id)
    assert stored.status == ERROR
    assert stored.error["step"] == step and stored.error["code"] == "COMPUTE_PROVIDER_REJECTED"
    assert "Fly.io refused" in stored.error["message"] and "cleanup" not in stored.error
    assert nothing_left(stack, workspace.app_name), counts(stack, workspace.app_name)
    assert slots(workspace.user_id) == 0
    recorded = events(workspace.workspace_id)
    assert (step, "failed") in recorded
    assert ("compensate", "compensating") in recorded and ("compensate", "compensated") in recorded
    daemon = DaemonRepository().get(workspace_daemon_id(workspace.workspace_id))
    assert daemon is None or daemon.revoked_at is not None  # minted at `secrets`, revoked by compensation


def wait_states(described: dict) -> int:
    return len([e for e in described["history"] if e["type"] == "WaitStateEntered"])


def test_the_wait_loop_polls_until_the_machine_has_started(stack, sfn):
    httpx.post(f"{stack.url}/_sandbox/fly/_config", json={"boot_ms": 2500})
    workspace = new_workspace()
    arn = start(sfn, stack, "RELAY_PROVISION_STATE_MACHINE_ARN", workspace,
                timing={"poll_seconds": 1, "deadline_seconds": 30, "wait_seconds": 1})
    described = wait_for_execution(sfn, arn)

    assert described["status"] == "SUCCEEDED"
    assert wait_states(described) >= 1  # 1 s waits and 1 s Wait states until the 2.5 s boot is over
    assert WorkspaceRepository().get(workspace.workspace_id).status == RUNNING
    recorded = events(workspace.workspace_id)
    assert recorded.count(("wait", "started")) == 1 and recorded.count(("wait", "succeeded")) == 1


def test_a_start_deadline_fails_start_timeout_and_compensates(stack, sfn):
    httpx.post(f"{stack.url}/_sandbox/fly/_config", json={"boot_ms": 60_000})  # never starts in time
    workspace = new_workspace()
    arn = start(sfn, stack, "RELAY_PROVISION_STATE_MACHINE_ARN", workspace,
                timing={"poll_seconds": 1, "deadline_seconds": 4, "wait_seconds": 1})
    described = wait_for_execution(sfn, arn)

    assert described["status"] == "FAILED"
    assert wait_states(described) >= 1
    stored = WorkspaceRepository().get(workspace.workspace_id)
    assert stored.error["code"] == "START_TIMEOUT" and stored.error["step"] == "wait"
    assert stored.error["message"] == "The machine did not start before the deadline"
    assert nothing_left(stack, workspace.app_name) and slots(workspace.user_id) == 0


# -- transient errors: Retry, nothing created twice ----------------------------------------------------------


def test_a_transient_503_is_retried_and_nothing_is_created_twice(stack, sfn):
    workspace = new_workspace()
    # Three 503s exhaust the client's own retries of the machine listing: the step fails
    # UpstreamUnavailable and the workflow's Retry runs it again, which finds nothing and creates once.
    fault(stack, "/machines", 503, count=3)

    described = provision(sfn, stack, workspace)
    assert described["status"] == "SUCCEEDED"
    assert task_failures(described) == ["UpstreamUnavailable"]
    assert WorkspaceRepository().get(workspace.workspace_id).status == RUNNING
    assert counts(stack, workspace.app_name) == {"apps": 1, "machines": 1, "volumes": 1, "ips": 2,
                                                 "certificates": 0, "secrets": len(SECRET_NAMES)}


def test_a_redriven_provisioning_adopts_what_exists(stack, sfn):
    """Every step runs twice (a second execution over the same workspace): still one of everything."""
    workspace = new_workspace()
    provision(sfn, stack, workspace)
    WorkspaceRepository().update(workspace.workspace_id, expected_status=RUNNING, now=int(time.time()),
                                 status=PROVISIONING)
    assert provision(sfn, stack, workspace)["status"] == "SUCCEEDED"
    assert counts(stack, workspace.app_name) == {"apps": 1, "machines": 1, "volumes": 1, "ips": 2,
                                                 "certificates": 0, "secrets": len(SECRET_NAMES)}


# -- teardown ---------------------------------------------------------------------------------------------------


def test_teardown_leaves_nothing_in_the_sandbox_and_no_items(stack, sfn):
    workspace = new_workspace()
    assert provision(sfn, stack, workspace)["status"] == "SUCCEEDED"
    daemon_id = workspace_daemon_id(workspace.workspace_id)

    described = teardown(sfn, stack, workspace)
    assert described["status"] == "SUCCEEDED", described["history"][-3:]
    assert nothing_left(stack, workspace.app_name)
    assert WorkspaceRepository().get(workspace.workspace_id) is None
    assert events(workspace.workspace_id) == []
    assert slots(workspace.user_id) == 0
    assert DaemonRepository().get(daemon_id).revoked_at is not None


def test_teardown_of_a_failed_workspace_does_not_release_the_slot_twice(stack, sfn):
    first = new_workspace()
    inject_at(stack, "volume", first.app_name)
    assert provision(sfn, stack, first)["status"] == "FAILED"
    second = new_workspace(first.user_id)  # the released slot was taken again
    assert slots(first.user_id) == 1

    assert teardown(sfn, stack, first)["status"] == "SUCCEEDED"
    assert WorkspaceRepository().get(first.workspace_id) is None
    assert slots(first.user_id) == 1  # still the second workspace's
    assert WorkspaceRepository().get(second.workspace_id).status == PROVISIONING


def test_a_teardown_step_that_keeps_failing_records_the_error_and_a_rerun_finishes(stack, sfn):
    workspace = new_workspace()
    assert provision(sfn, stack, workspace)["status"] == "SUCCEEDED"
    fault(stack, "/volumes/", 422)

    described = teardown(sfn, stack, workspace)
    assert described["status"] == "FAILED" and described["error"] == "WorkspaceTeardownFailed"
    stored = WorkspaceRepository().get(workspace.workspace_id)
    assert stored.status == DELETING and stored.error["step"] == "teardown.volume"
    assert counts(stack, workspace.app_name)["apps"] == 1 and slots(workspace.user_id) == 1

    arn = start(sfn, stack, "RELAY_TEARDOWN_STATE_MACHINE_ARN", workspace)
    assert wait_for_execution(sfn, arn)["status"] == "SUCCEEDED"
    assert nothing_left(stack, workspace.app_name) and WorkspaceRepository().get(workspace.workspace_id) is None
    assert slots(workspace.user_id) == 0


def workspace_service(stack, sfn) -> WorkspaceService:
    """What DELETE /api/workspaces/{id} runs: the real repositories and Step Functions (moto)."""
    return WorkspaceService(
        workspaces=WorkspaceRepository(), users=None, usage=UsageRepository(),
        compute_for={}.__getitem__,  # DELETE asks no provider: the teardown workflow does
        provisioning=StepFunctionsWorkflow(sfn, stack.env["RELAY_PROVISION_STATE_MACHINE_ARN"]),
        teardown=StepFunctionsWorkflow(sfn, stack.env["RELAY_TEARDOWN_STATE_MACHINE_ARN"]),
        registry=None, sizes=parse_sizes(""), region="iad", public_url=stack.url)


def teardown_arn(stack, workspace: Workspace, attempt: int) -> str:
    """The ARN of a teardown attempt the service started (read from the name: the items may be gone)."""
    machine = stack.env["RELAY_TEARDOWN_STATE_MACHINE_ARN"]
    return machine.replace(":stateMachine:", ":execution:") + f":{workspace.workspace_id}-teardown-{attempt}"


def owner_of(workspace: Workspace) -> Principal:
    return Principal(user_id=workspace.user_id, session_id="s", csrf_token="c")


def test_deleting_again_after_a_failed_teardown_starts_the_next_attempt(stack, sfn):
    """A Standard execution's name cannot be used again once it closed: the second DELETE names attempt 2."""
    workspace = new_workspace()
    assert provision(sfn, stack, workspace)["status"] == "SUCCEEDED"
    service, owner = workspace_service(stack, sfn), owner_of(workspace)
    fault(stack, "/volumes/", 422)

    service.delete(owner, workspace.workspace_id)
    first = teardown_arn(stack, workspace, 1)
    assert WorkspaceRepository().get(workspace.workspace_id).execution_arn == first
    assert wait_for_execution(sfn, first)["status"] == "FAILED"
    assert WorkspaceRepository().get(workspace.workspace_id).error["step"] == "teardown.volume"

    again = service.delete(owner, workspace.workspace_id)
    assert again["status"] == DELETING and again["error"] is None
    assert wait_for_execution(sfn, teardown_arn(stack, workspace, 2))["status"] == "SUCCEEDED"
    assert nothing_left(stack, workspace.app_name) and WorkspaceRepository().get(workspace.workspace_id) is None
    assert slots(workspace.user_id) == 0


# -- the custom domain goes with the workspace ------------------------------------------------------------------


class TeamPlan:
    """The plan lookup of DomainService: every user of this test is on Team (custom domains)."""

    @staticmethod
    def get(user_id):
        return type("User", (), {"plan": "team", "user_id": user_id})()


def domain_service(stack) -> DomainService:
    fly = FlyProvisioner(api_url=stack.env["RELAY_FLY_API_URL"], token=stack.env["RELAY_FLY_API_TOKEN"],
                         org=stack.env["RELAY_FLY_ORG"])
    return DomainService(workspaces=WorkspaceRepository(), guards=DomainRepository(),
                         checker=DomainChecker(stack.env["RELAY_DNS_RESOLVER"], timeout=5),
                         compute_for={"fly": fly}.__getitem__, users=TeamPlan())


def publish_records(stack, view: dict) -> None:
    """What the user does at their DNS host: the TXT token and the CNAME (replacing an earlier one)."""
    txt, cname = view["records"]
    httpx.request("DELETE", f"{stack.url}/_sandbox/dns/records", params={"name": cname["name"], "type": "CNAME"})
    for record in (txt, cname):
        answer = httpx.post(f"{stack.url}/_sandbox/dns/records",
                            json={"name": record["name"], "type": record["type"], "value": record["value"]})
        assert answer.status_code in (200, 201), answer.text


def certificates_for(stack, hostname: str) -> list[dict]:
    everything = httpx.get(f"{stack.url}/_sandbox/fly/_inventory").json()["certificates"]
    return [cert for cert in everything if cert["hostname"] == hostname]


def test_teardown_releases_the_custom_domain_and_another_user_can_claim_and_verify_it(stack, sfn):
    domain = f"agents-{uuid.uuid4().hex[:8]}.acme-corp.dev"
    domains = domain_service(stack)
    first = new_workspace()
    assert provision(sfn, stack, first)["status"] == "SUCCEEDED"
    publish_records(stack, domains.claim(owner_of(first), first.workspace_id, {"domain": domain}))
    assert domains.verify(owner_of(first), first.workspace_id)["status"] in ("issuing", "active")
    assert [c["app"] for c in certificates_for(stack, domain)] == [first.app_name]
    assert DomainRepository().get(domain).verified

    workspace_service(stack, sfn).delete(owner_of(first), first.workspace_id)
    described = wait_for_execution(sfn, teardown_arn(stack, first, 1))
    assert described["status"] == "SUCCEEDED", described["history"][-3:]
    entered = [e["stateEnteredEventDetails"]["name"] for e in described["history"] if e["type"] == "TaskStateEntered"]
    assert entered[:2] == ["ReleaseDomain", "DeleteMachine"]  # the name is freed before anything else goes
    assert certificates_for(stack, domain) == [] and nothing_left(stack, first.app_name)
    assert DomainRepository().get(domain) is None  # the guard went with the workspace
    assert WorkspaceRepository().get(first.workspace_id) is None

    second = new_workspace()  # another user's
    assert provision(sfn, stack, second)["status"] == "SUCCEEDED"
    view = domains.claim(owner_of(second), second.workspace_id, {"domain": domain})
    assert view["status"] == "pending"
    publish_records(stack, view)
    assert domains.verify(owner_of(second), second.workspace_id)["status"] in ("issuing", "active")
    guard = DomainRepository().get(domain)
    assert guard.verified and guard.workspace_id == second.workspace_id
    assert [c["app"] for c in certificates_for(stack, domain)] == [second.app_name]

    workspace_service(stack, sfn).delete(owner_of(second), second.workspace_id)
    assert wait_for_execution(sfn, teardown_arn(stack, second, 1))["status"] == "SUCCEEDED"
    assert certificates_for(stack, domain) == [] and DomainRepository().get(domain) is None


# -- the secrets step, at the service level --------------------------------------------------------------------


class KeepingSecrets:
    """The real Fly client; what ``set_secrets`` sends is kept for the test to inspect."""

    def __init__(self, fly: FlyProvisioner):
        self._fly = fly
        self.sent: list[dict] = []

    def set_secrets(self, app_name: str, values: dict) -> int:
        self.sent.append(dict(values))
        return self._fly.set_secrets(app_name, values)

    def __getattr__(self, name):
        return getattr(self._fly, name)


def test_the_secrets_step_sends_only_the_daemon_key_and_the_key_authenticates(stack):
    workspace = new_workspace(providers=("anthropic", "openai"))
    fly = KeepingSecrets(FlyProvisioner(api_url=stack.env["RELAY_FLY_API_URL"], token=stack.env["RELAY_FLY_API_TOKEN"],
                                        org=stack.env["RELAY_FLY_ORG"]))
    service = ProvisioningService(workspaces=WorkspaceRepository(), compute_for={"fly": fly}.__getitem__,
                                  daemons=DaemonRepository(), cloud_url=stack.url,
                                  image="registry.fly.io/relay-workspace:test", region="iad", sizes=parse_sizes(""))
    daemons = DaemonService(links=LinkRepository(), daemons=DaemonRepository(), audit=None, registry=None,
                            public_url=stack.url)
    service.app(workspace.workspace_id, workspace.user_id)
    service.secrets(workspace.workspace_id, workspace.user_id)

    (sent,) = fly.sent
    assert set(sent) == set(SECRET_NAMES)  # no provider token, nothing else
    assert sent["RELAY_CLOUD_URL"] == stack.url and sent["RELAY_WORKSPACE_ID"] == workspace.workspace_id
    daemon_id = workspace_daemon_id(workspace.workspace_id)
    principal = daemons.authenticate(f"Bearer {sent['RELAY_DAEMON_KEY']}")
    assert principal.daemon_id == daemon_id and principal.user_id == workspace.user_id
    assert principal.allowed_providers == ("anthropic", "openai")
    # The private key is the one whose public half the daemon item holds (leases are sealed to it).
    private = X25519PrivateKey.from_private_bytes(b64url_decode(sent["RELAY_DAEMON_PRIVATE_KEY"]))
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert principal.public_key == b64url(public)
    # What the sandbox holds (digests only) is what was sent.
    digests = {s["name"]: s["digest"] for s in httpx.get(
        f"{stack.env['RELAY_FLY_API_URL']}/v1/apps/{workspace.app_name}/secrets",
        headers={"Authorization": f"Bearer {stack.env['RELAY_FLY_API_TOKEN']}"}).json()["secrets"]}
    assert digests["RELAY_DAEMON_KEY"] == hashlib.sha256(sent["RELAY_DAEMON_KEY"].encode()).hexdigest()[:16]
    # Nothing of it is stored on the workspace or the daemon item.
    stored = json.dumps(WorkspaceRepository().get(workspace.workspace_id).__dict__, default=str)
    stored += json.dumps(DaemonRepository().get(daemon_id).__dict__, default=str)
    assert sent["RELAY_DAEMON_KEY"] not in stored and sent["RELAY_DAEMON_PRIVATE_KEY"] not in stored

    # A re-run rotates the key of the same daemon: the old key stops working.
    service.secrets(workspace.workspace_id, workspace.user_id)
    rotated = fly.sent[-1]["RELAY_DAEMON_KEY"]
    assert rotated != sent["RELAY_DAEMON_KEY"]
    assert daemons.authenticate(f"Bearer {rotated}").daemon_id == daemon_id
    with pytest.raises(Unauthenticated):
        daemons.authenticate(f"Bearer {sent['RELAY_DAEMON_KEY']}")
    assert [d.daemon_id for d in DaemonRepository().owned_by(workspace.user_id)] == [daemon_id]

    # Compensation revokes it; the app (and its secrets) are gone.
    service.compensate(workspace.workspace_id, workspace.user_id, "secrets")
    with pytest.raises(Unauthenticated):
        daemons.authenticate(f"Bearer {rotated}")
    assert nothing_left(stack, workspace.app_name)
