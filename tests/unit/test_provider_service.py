"""Provider connections with fakes: methods allowed by the registry, API keys validated before anything
is stored, device-flow polling outcomes (RFC 8628), cancel, disconnect, and the vault_allowed guard."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from relay_cloud.adapters.dynamo.connections import connection_item
from relay_cloud.adapters.providers import DeviceAuthorization, PollResult, TokenSet, UpstreamUnavailable
from relay_cloud.domain.auth import Principal
from relay_cloud.domain.errors import Conflict, Forbidden, NotFound, ValidationFailed
from relay_cloud.domain.providers import ProviderSpec, Registry, built_in_providers
from relay_cloud.services.machine_logins import MachineLoginService
from relay_cloud.services.providers import ProviderService
from tests.fakes import Clock, FakeAudit

ME = Principal("usr_me", "sid", "csrf")
OTHER = Principal("usr_other", "sid2", "csrf2")


class Vault:
    def __init__(self):
        self.sealed = []

    def seal(self, ctx, plaintext):
        self.sealed.append(ctx)
        from tests.fakes import Sealed

        return Sealed(b"rv1\x00\x00\x00\x01" + plaintext[::-1], 1, None)

    def encrypt(self, ctx, plaintext):
        return self.seal(ctx, plaintext).ciphertext

    def decrypt(self, ctx, ciphertext, *, actor, reason):
        return ciphertext[7:][::-1]


class Connections:
    def __init__(self):
        self.items = {}

    def get(self, user_id, provider):
        return self.items.get((user_id, provider))

    def all(self, user_id):
        return {p: item for (u, p), item in self.items.items() if u == user_id}

    def save(self, connection, *, now, new_data_key, complete_flow=None):
        if complete_flow is not None:
            flow = self.flows.get(connection.user_id, complete_flow)
            if flow.status != "pending":
                raise Conflict("race", code="CONNECTION_RACE")
            flow.status = "connected"
        self.items[(connection.user_id, connection.provider)] = connection_item(connection, now=now, generation=1)

    def delete(self, user_id, provider):
        return self.items.pop((user_id, provider), None) is not None


class Flows:
    def __init__(self):
        self.items = {}

    def create(self, flow, *, now):
        from types import SimpleNamespace

        self.items[(flow.user_id, flow.flow_id)] = SimpleNamespace(
            **flow.__dict__, status="pending", error=None, execution_arn=None)

    def get(self, user_id, flow_id):
        return self.items.get((user_id, flow_id))

    def update(self, user_id, flow_id, *, now, status=None, interval=None, error=None, execution_arn=None,
               only_if_pending=True):
        flow = self.items.get((user_id, flow_id))
        if flow is None or (only_if_pending and flow.status != "pending"):
            return False
        for name, value in (("status", status), ("interval", interval), ("error", error),
                            ("execution_arn", execution_arn)):
            if value is not None:
                setattr(flow, name, value)
        return True


class Upstream:
    def __init__(self):
        self.valid_keys = {"sk-ant-good"}
        self.polls = []  # queued PollResults
        self.revoked = []
        self.unreachable = False

    def validate_api_key(self, spec, key):
        if self.unreachable:
            raise UpstreamUnavailable(spec.id)
        if key not in self.valid_keys:
            raise ValidationFailed("rejected", code="INVALID_CREDENTIAL")

    def start_device_authorization(self, spec):
        return DeviceAuthorization("device-secret", "ABCD-EFGH", "https://github.test/login/device", None, 900, 5)

    def poll_device_token(self, spec, device_code):
        assert device_code == "device-secret"
        result = self.polls.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    def identity(self, spec, token):
        return "octocat"

    def revoke(self, spec, tokens):
        self.revoked.append(tokens)
        return True


class Workflow:
    def __init__(self):
        self.started, self.stopped = {}, []

    def start(self, name, payload):
        self.started[name] = payload
        return f"arn:aws:states:us-east-1:0:execution:device-flow:{name}"

    def stop(self, arn, *, cause):
        self.stopped.append(arn)


class NoMachines:
    """A user who has linked no machine yet (workspace_login is tested in test_workspace_login.py)."""

    def owned_by(self, user_id):
        return []


def registry(*extra: ProviderSpec) -> Registry:
    return Registry(built_in_providers(anthropic_url="https://a.test", openai_url="https://o.test",
                                       google_url="https://g.test", github_oauth_url="https://github.test",
                                       github_client_id="cid", github_client_secret="secret") + list(extra))


@pytest.fixture
def svc():
    connections, flows = Connections(), Flows()
    connections.flows = flows
    clock, audit = Clock(), FakeAudit()
    machine_logins = MachineLoginService(logins=None, machines=NoMachines(), commands=None, connections=connections,
                                         audit=audit, clock=clock)
    return ProviderService(registry=registry(), connections=connections, flows=flows, vault=Vault(),
                           upstream=Upstream(), workflow=Workflow(), audit=audit, clock=clock,
                           machine_logins=machine_logins)


def by_id(listing):
    return {p["id"]: p for p in listing["providers"]}


def test_listing_shows_every_provider_not_connected(svc):
    listing = by_id(svc.list(ME))
    assert set(listing) == {"anthropic", "openai", "google", "github"}
    assert all(p["health"] == "not_connected" and p["connection"] is None for p in listing.values())
    assert listing["anthropic"]["methods"] == ["api_key", "workspace_login"]
    assert listing["github"]["methods"] == ["device_flow"]


def test_api_key_is_validated_then_sealed(svc):
    status, body = svc.connect(ME, "anthropic", {"method": "api_key", "api_key": " sk-ant-good "})
    assert status == 201 and body["provider"]["health"] == "valid"
    stored = svc.connections.get("usr_me", "anthropic")
    assert b"sk-ant-good" not in stored.ciphertext
    assert json.loads(svc.vault.decrypt(None, stored.ciphertext, actor="t", reason="t")) == {"api_key": "sk-ant-good"}
    assert by_id(svc.list(OTHER))["anthropic"]["health"] == "not_connected"


def test_rejected_or_unreachable_key_stores_nothing(svc):
    with pytest.raises(ValidationFailed) as err:
        svc.connect(ME, "anthropic", {"method": "api_key", "api_key": "sk-ant-bad"})
    assert err.value.code == "INVALID_CREDENTIAL"
    svc.upstream.unreachable = True
    with pytest.raises(UpstreamUnavailable) as err:
        svc.connect(ME, "anthropic", {"method": "api_key", "api_key": "sk-ant-good"})
    assert err.value.status == 503
    assert svc.connections.items == {} and svc.vault.sealed == []


@pytest.mark.parametrize("body,code", [
    ({"method": "device_flow"}, "METHOD_NOT_ALLOWED"),
    ({"method": "api_key"}, "VALIDATION_FAILED"),
    ({"method": "api_key", "api_key": 42}, "VALIDATION_FAILED"),
    ({"method": "telepathy"}, "METHOD_NOT_ALLOWED"),
    ({}, "METHOD_NOT_ALLOWED"),
])
def test_bad_connect_requests(svc, body, code):
    with pytest.raises(ValidationFailed) as err:
        svc.connect(ME, "anthropic", body)
    assert err.value.code == code


def test_unknown_provider_is_404(svc):
    with pytest.raises(NotFound):
        svc.connect(ME, "nope", {"method": "api_key", "api_key": "x"})


def test_workspace_login_needs_a_linked_machine(svc):
    with pytest.raises(Conflict) as err:
        svc.connect(ME, "anthropic", {"method": "workspace_login"})
    assert err.value.code == "NO_MACHINE_LINKED"


def start_flow(svc):
    status, body = svc.connect(ME, "github", {"method": "device_flow"})
    assert status == 202
    return body


def test_device_flow_start_keeps_the_device_code_out_of_the_workflow(svc):
    body = start_flow(svc)
    assert body["user_code"] == "ABCD-EFGH" and body["status"] == "pending" and body["interval"] == 5
    assert body["verification_uri_complete"] == "https://github.test/login/device"
    payload = svc.workflow.started[body["flow_id"]]
    assert payload == {"flow_id": body["flow_id"], "user_id": "usr_me", "interval": 5}
    assert "device-secret" not in json.dumps(payload) and "device-secret" not in json.dumps(body)


def test_poll_pending_slow_down_then_connected(svc):
    flow_id = start_flow(svc)["flow_id"]
    svc.upstream.polls = [PollResult("pending"), PollResult("slow_down"), PollResult("pending"),
                          PollResult("tokens", tokens=TokenSet("gho_abc", "ghr_def", 28800, "repo"))]
    assert svc.poll_flow("usr_me", flow_id) == {"status": "pending", "interval": 5}
    assert svc.poll_flow("usr_me", flow_id) == {"status": "pending", "interval": 10}  # +5 s
    assert svc.poll_flow("usr_me", flow_id) == {"status": "pending", "interval": 10}  # ...for every later poll
    assert svc.poll_flow("usr_me", flow_id)["status"] == "connected"
    assert svc.flow_status(ME, flow_id)["status"] == "connected"
    github = by_id(svc.list(ME))["github"]
    assert github["health"] == "valid" and github["connection"]["account"] == "octocat"
    item = svc.connections.get("usr_me", "github")
    assert item.refresh_due_at == item.token_issued_at + 28800 - 2880  # refresh at 10 % lifetime left
    assert item.gsi2pk.startswith("REFRESH#")


@pytest.mark.parametrize("outcome", ["denied", "expired", "error"])
def test_poll_terminal_outcomes_are_recorded(svc, outcome):
    flow_id = start_flow(svc)["flow_id"]
    svc.upstream.polls = [PollResult(outcome, error="boom" if outcome == "error" else None)]
    assert svc.poll_flow("usr_me", flow_id)["status"] == outcome
    assert svc.flow_status(ME, flow_id)["status"] == outcome
    assert svc.connections.items == {}


def test_device_code_expiry_is_enforced_without_asking_the_provider(svc):
    flow_id = start_flow(svc)["flow_id"]
    svc.clock.advance(901)
    assert svc.flow_status(ME, flow_id)["status"] == "expired"
    assert svc.poll_flow("usr_me", flow_id)["status"] == "expired"


def test_network_errors_propagate_for_the_workflow_to_retry(svc):
    flow_id = start_flow(svc)["flow_id"]
    svc.upstream.polls = [UpstreamUnavailable("github")]
    with pytest.raises(UpstreamUnavailable):
        svc.poll_flow("usr_me", flow_id)
    assert svc.flow_status(ME, flow_id)["status"] == "pending"


def test_cancel_stops_the_execution(svc):
    flow_id = start_flow(svc)["flow_id"]
    svc.cancel_flow(ME, flow_id)
    assert svc.workflow.stopped and svc.flow_status(ME, flow_id)["status"] == "cancelled"
    assert svc.poll_flow("usr_me", flow_id)["status"] == "cancelled"


def test_tokens_arriving_after_a_cancel_are_revoked_not_kept(svc):
    flow_id = start_flow(svc)["flow_id"]
    svc.upstream.polls = [PollResult("tokens", tokens=TokenSet("gho_late"))]
    flow, save = svc.flows.get("usr_me", flow_id), svc.connections.save

    def cancelled_while_the_provider_answered(*args, **kwargs):
        flow.status = "cancelled"
        return save(*args, **kwargs)

    svc.connections.save = cancelled_while_the_provider_answered
    assert svc.poll_flow("usr_me", flow_id)["status"] == "cancelled"
    assert [t["access_token"] for t in svc.upstream.revoked] == ["gho_late"]
    assert svc.connections.items == {}


def test_other_users_flows_are_404(svc):
    flow_id = start_flow(svc)["flow_id"]
    with pytest.raises(NotFound):
        svc.flow_status(OTHER, flow_id)
    with pytest.raises(NotFound):
        svc.cancel_flow(OTHER, flow_id)
    assert svc.flow_status(ME, flow_id)["status"] == "pending"


def test_disconnect_revokes_then_deletes(svc):
    flow_id = start_flow(svc)["flow_id"]
    svc.upstream.polls = [PollResult("tokens", tokens=TokenSet("gho_abc", "ghr_def", 3600))]
    svc.poll_flow("usr_me", flow_id)
    with pytest.raises(NotFound):
        svc.disconnect(OTHER, "github")
    svc.disconnect(ME, "github")
    assert svc.upstream.revoked[0]["access_token"] == "gho_abc"
    assert by_id(svc.list(ME))["github"]["health"] == "not_connected"
    with pytest.raises(NotFound):
        svc.disconnect(ME, "github")


def test_a_provider_the_cloud_may_not_hold_never_reaches_the_vault(svc):
    from relay_cloud.domain.providers import RegistryError

    local_only = ProviderSpec("claude-max", "Claude Max", "#000", "subscription", methods=("workspace_login",),
                              vault_allowed=False)
    svc.registry = registry(local_only)
    for body in ({"method": "api_key", "api_key": "sk-ant-good"}, {"method": "device_flow"}):
        with pytest.raises(ValidationFailed):
            svc.connect(ME, "claude-max", body)
    # Even if a configuration tried to open a vault method for it, the registry refuses to load.
    with pytest.raises(RegistryError):
        registry(replace(local_only, methods=("api_key",)))
    # And the service's own guard refuses, whatever the registry says.
    with pytest.raises(Forbidden):
        svc._seal(replace(local_only, methods=("api_key",)), "usr_me", "default", "api_key", {"api_key": "x"})
    assert svc.vault.sealed == []
