"""The token-refresh sweep on moto (DynamoDB + KMS) against an in-process OAuth token endpoint (respx)
that rotates single-use refresh tokens and detects their reuse, as real providers do."""

from __future__ import annotations

import json
import threading
from collections import Counter
from urllib.parse import parse_qs

import boto3
import httpx
import pytest

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.connections import ConnectionRepository, NewConnection, connection_item
from relay_cloud.adapters.dynamo.models import CredentialItem
from relay_cloud.adapters.dynamo.refresh_store import DynamoRefreshStore
from relay_cloud.adapters.dynamo.vault_store import DynamoVaultStore
from relay_cloud.adapters.providers import ProviderClient
from relay_cloud.adapters.vault import Vault, VaultContext
from relay_cloud.domain.providers import DEVICE_FLOW, ProviderSpec, Registry, refresh_due_at
from relay_cloud.services import refresh as r
from relay_cloud.services.providers import ProviderService
from relay_cloud.services.refresh import RefreshService
from tests.fakes import Clock

from .conftest import REGION

NOW = 1_800_000_000
TOKEN_URL = "https://idp.test/oauth/token"
ACME = ProviderSpec("acme", "Acme", "#000", "test IdP", methods=(DEVICE_FLOW,), vault_allowed=True,
                    token_url=TOKEN_URL, client_id="relay-client", client_secret="relay-secret")


class FakeIdp:
    """RFC 6749 refresh grants with rotation and reuse detection (like coder's oidctest fake IdP)."""

    def __init__(self, *, rotate: bool = True, delay_s: float = 0.0):
        self.rotate, self.delay_s = rotate, delay_s
        self.lock = threading.Lock()
        self.live: set[str] = set()
        self.spent: set[str] = set()
        self.refresh_grants = 0
        self.refresh_reuse_detected = 0
        self.fail_next: list[int] = []  # statuses to answer with before behaving
        self.serial = 0

    def issue(self, user: str) -> str:
        token = f"rt-{user}-0"
        self.live.add(token)
        return token

    def handle(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["grant_type"] == "refresh_token" and form["client_id"] == "relay-client"
        if self.delay_s:
            threading.Event().wait(self.delay_s)  # widen any race window
        with self.lock:
            if self.fail_next:
                return httpx.Response(self.fail_next.pop(0), json={"error": "temporarily_unavailable"})
            token = form["refresh_token"]
            if token in self.spent:
                self.refresh_reuse_detected += 1
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "refresh token reused"})
            if token not in self.live:
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "unknown refresh token"})
            self.refresh_grants += 1
            self.serial += 1
            body = {"access_token": f"at-{self.serial}", "token_type": "bearer", "expires_in": 3600, "scope": "read"}
            if self.rotate:
                self.live.discard(token)
                self.spent.add(token)
                new = f"{token.rsplit('-', 1)[0]}-{self.serial}"
                self.live.add(new)
                body["refresh_token"] = new
            return httpx.Response(200, json=body)


class DynamoProbe:
    """Sees every DynamoDB request moto answers (whatever client sent it): counts operations and the
    items each read returned, classified by what was read, and serializes request handling. Real
    DynamoDB applies each conditional write atomically; moto has no lock, so two threads could
    interleave between a condition check and its write (or a transaction's rollback snapshot)."""

    def __init__(self, monkeypatch):
        from moto.core.models import botocore_stubber

        self.operations: Counter[str] = Counter()
        self.items: Counter[str] = Counter()  # by "<what>.<operation>": credential | cursor | data_key | other
        self._lock = threading.RLock()
        process = botocore_stubber.process_request  # the bound method of moto's one stubber instance

        def serialized(request):
            with self._lock:
                response = process(request)
            target = request.headers.get("X-Amz-Target", b"")
            target = target.decode() if isinstance(target, bytes) else str(target)
            if response is not None and target.startswith("DynamoDB_"):
                self._count(target.split(".", 1)[1], json.loads(request.body or b"{}"), response)
            return response

        monkeypatch.setattr(botocore_stubber, "process_request", serialized)

    def _count(self, operation: str, body: dict, response) -> None:
        self.operations[operation] += 1
        if operation not in ("Query", "GetItem", "Scan", "BatchGetItem", "TransactGetItems"):
            return
        status, _, payload = response
        parsed = json.loads(payload or b"{}") if status == 200 else {}
        read = len(parsed.get("Items", [])) if "Items" in parsed else int("Item" in parsed)
        sk = body.get("Key", {}).get("sk", {}).get("S", "")
        values = json.dumps(body.get("ExpressionAttributeValues", {}))
        if body.get("IndexName") == "gsi2" or sk.startswith(keys.CREDENTIAL_PREFIX):
            what = "credential"
        elif sk.startswith("CURSOR"):
            what = "cursor"
        elif sk.startswith(keys.DATA_KEY_PREFIX) or keys.DATA_KEY_PREFIX in values:
            what = "data_key"
        else:
            what = "other"
        self.items[f"{what}.{operation}"] += read

    def reset(self):
        self.operations.clear()
        self.items.clear()

    def read(self, what: str) -> int:
        return sum(n for key, n in self.items.items() if key.startswith(f"{what}."))


@pytest.fixture
def probe(table, monkeypatch):
    return DynamoProbe(monkeypatch)


@pytest.fixture
def vault(table, kms_key):
    return Vault(kms=boto3.client("kms", region_name=REGION), kms_key_id=kms_key, store=DynamoVaultStore())


@pytest.fixture
def idp(respx_mock):
    idp = FakeIdp()
    respx_mock.post(TOKEN_URL).mock(side_effect=idp.handle)
    return idp


@pytest.fixture
def clock():
    return Clock(NOW)


def refresher(vault, clock, *, retry_budget_s=r.RETRY_BUDGET_SECONDS, workers=1) -> RefreshService:
    return RefreshService(Registry([ACME]), DynamoRefreshStore(), vault, ProviderClient(github_api_url="https://gh.test"),
                          clock, lambda s: clock.advance(s), "it", workers=workers, retry_budget_s=retry_budget_s)


def connect(vault, idp, user: str, *, issued: int, lifetime: int = 3600) -> int:
    """A device-flow connection as ProviderService stores it; returns its refresh due time."""
    payload = {"access_token": f"at-{user}", "refresh_token": idp.issue(user), "token_type": "bearer", "scope": "read"}
    sealed = vault.seal(VaultContext(user, "acme", "default", "oauth_tokens"), json.dumps(payload).encode())
    due = refresh_due_at(issued, issued + lifetime)
    ConnectionRepository().save(
        NewConnection(user, "acme", DEVICE_FLOW, "oauth_tokens", sealed.ciphertext, sealed.key_version, account=user,
                      issued_at=issued, token_expires_at=issued + lifetime, refresh_due_at=due),
        now=issued, new_data_key=sealed.new_data_key,
    )
    return due


def opaque_connection(user: str, due: int) -> None:
    """A connection not due now; its ciphertext is junk, so touching it would show as a failure."""
    connection_item(NewConnection(user, "acme", DEVICE_FLOW, "oauth_tokens", b"junk", 1, account=user,
                                  issued_at=due - 3240, token_expires_at=due + 360, refresh_due_at=due),
                    now=due - 3240, generation=1).save()


def stored_tokens(vault, user: str) -> dict:
    item = ConnectionRepository().get(user, "acme")
    return json.loads(vault.decrypt(VaultContext(user, "acme", "default", "oauth_tokens"), item.ciphertext,
                                    actor="test", reason="assert"))


def raw_item(table: str, user: str) -> dict:
    client = boto3.client("dynamodb", region_name=REGION)
    key = {"pk": {"S": keys.user_pk(user)}, "sk": {"S": keys.credential_sk("acme", keys.CONNECTION_ID)}}
    return client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]


# ---------------------------------------------------------------------------------------------------


def test_twenty_concurrent_refreshes_of_one_credential_reach_the_provider_once(table, vault, idp, clock, probe):
    idp.delay_s = 0.05
    connect(vault, idp, "alice", issued=NOW - 3300)  # due at NOW - 60
    service = refresher(vault, clock)
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def attempt():
        barrier.wait()
        outcomes.append(service.refresh_one("alice", "acme"))

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(outcomes) == 20
    assert Counter(outcomes)[r.REFRESHED] == 1
    assert set(outcomes) <= {r.REFRESHED, r.BUSY, r.NOT_DUE}
    assert (idp.refresh_grants, idp.refresh_reuse_detected) == (1, 0)
    tokens = stored_tokens(vault, "alice")  # the rotation was persisted and decrypts
    assert tokens["refresh_token"] == "rt-alice-1" and tokens["refresh_token"] in idp.live
    assert tokens["access_token"] == "at-1"
    item = ConnectionRepository().get("alice", "acme")
    assert (item.generation, item.status, item.lease_owner, item.lease_until) == (2, "valid", None, None)
    assert item.token_expires_at == NOW + 3600 and item.refresh_due_at == NOW + 3240
    assert item.gsi2pk == keys.refresh_gsi_pk(keys.refresh_bucket(NOW + 3240))
    assert probe.operations["Scan"] == 0

    # The next refresh uses the rotated token: no reuse, ever.
    clock.advance(3300)
    assert service.refresh_one("alice", "acme") == r.REFRESHED
    assert (idp.refresh_grants, idp.refresh_reuse_detected) == (2, 0)


def test_the_sweep_reads_only_due_items_and_never_scans(table, vault, idp, clock, probe):
    due_users = [f"due{n}" for n in range(6)]
    for n, user in enumerate(due_users):  # due across the current bucket and five earlier ones
        connect(vault, idp, user, issued=NOW - 3240 - n * 300 - 7)
    for n in range(60):  # not due: later today, and later in the current bucket
        opaque_connection(f"later{n}", NOW + 90 + n * 600)
    probe.reset()

    report = refresher(vault, clock, workers=4).sweep(NOW + 30)

    assert (report.due, report.refreshed, report.failed, report.rescheduled) == (6, 6, 0, 0)
    assert probe.operations["Scan"] == 0
    assert probe.read("credential") == 6  # index items only: the leases' ALL_NEW replaced any GetItem
    assert probe.read("cursor") == 0 and report.items_read == 7  # the cursor read (no item on a first sweep)
    assert report.items_read <= 1.1 * report.due + 1
    assert probe.items["credential.Query"] == 6 and probe.items["credential.GetItem"] == 0
    for user in due_users:  # each rotation persisted, decryptable, and the one the provider honours
        tokens = stored_tokens(vault, user)
        assert tokens["refresh_token"] in idp.live and tokens["refresh_token"] != f"rt-{user}-0"
    assert idp.refresh_grants == 6 and idp.refresh_reuse_detected == 0
    for n in range(60):
        later = ConnectionRepository().get(f"later{n}", "acme")
        assert later.generation == 1 and later.status == "valid"

    probe.reset()
    again = refresher(vault, clock).sweep(NOW + 60)
    assert (again.due, again.items_read, again.buckets) == (0, 1, 1)  # the cursor moved to the current bucket
    assert probe.read("credential") == 0 and probe.read("cursor") == 1 and probe.operations["Scan"] == 0


def test_a_permanent_error_is_recorded_with_its_reason(table, vault, idp, clock):
    connect(vault, idp, "bob", issued=NOW - 3300)
    idp.live.clear()  # the user revoked the grant at the provider
    before = bytes(ConnectionRepository().get("bob", "acme").ciphertext)

    report = refresher(vault, clock).sweep(NOW)

    assert (report.due, report.failed) == (1, 1)
    item = ConnectionRepository().get("bob", "acme")
    assert item.status == "revoked"
    assert item.failure_reason == "Acme refused the refresh: invalid_grant: unknown refresh token"
    assert item.gsi2pk is None and item.gsi2sk is None and item.refresh_due_at is None and item.lease_owner is None
    assert bytes(item.ciphertext) == before and stored_tokens(vault, "bob")["refresh_token"] == "rt-bob-0"
    entry = ProviderService(None, None, None, None, None, None, None).entry(ACME, item, NOW)
    assert entry["health"] == "revoked" and entry["connection"]["failure_reason"] == item.failure_reason
    assert refresher(vault, clock).sweep(NOW + 300).due == 0  # out of the due index


def test_transient_errors_reschedule_into_a_later_bucket_then_recover(table, vault, idp, clock):
    connect(vault, idp, "carol", issued=NOW - 3300)
    idp.fail_next = [503, 429, 502, 503]
    service = refresher(vault, clock, retry_budget_s=1.0)  # 0.25 + 0.5 of backoff, then give up

    first = service.sweep(NOW)

    assert (first.rescheduled, first.failed, first.refreshed) == (1, 0, 0)
    raw = raw_item(table, "carol")
    due = int(raw["refresh_due_at"]["N"])
    assert due == int(clock()) + 300 and raw["refresh_attempts"] == {"N": "1"}
    assert raw["gsi2pk"]["S"] == keys.refresh_gsi_pk(keys.refresh_bucket(due))
    assert raw["status"]["S"] == "valid" and "failure_reason" not in raw and "lease_owner" not in raw
    assert idp.refresh_grants == 0

    clock.now = due
    second = service.sweep(due)  # one more 503, then the provider answers
    assert second.refreshed == 1
    raw = raw_item(table, "carol")
    assert "refresh_attempts" not in raw and raw["status"]["S"] == "valid"
    assert stored_tokens(vault, "carol")["refresh_token"] == "rt-carol-1"


def test_a_provider_that_does_not_rotate_keeps_the_old_refresh_token(table, vault, idp, clock):
    idp.rotate = False
    connect(vault, idp, "dave", issued=NOW - 3300)
    assert refresher(vault, clock).refresh_one("dave", "acme") == r.REFRESHED
    assert stored_tokens(vault, "dave") == {"access_token": "at-1", "refresh_token": "rt-dave-0",
                                            "token_type": "bearer", "scope": "read"}


def test_a_reconnect_while_refreshing_is_never_overwritten(table, vault, idp, clock, respx_mock):
    connect(vault, idp, "erin", issued=NOW - 3300)
    original = idp.handle

    def reconnect_during_the_call(request):
        response = original(request)
        connect(vault, idp, "erin", issued=NOW)  # the user reconnected meanwhile: new item, generation 2
        return response

    respx_mock.post(TOKEN_URL).mock(side_effect=reconnect_during_the_call)
    assert refresher(vault, clock).refresh_one("erin", "acme") == r.SUPERSEDED
    assert stored_tokens(vault, "erin")["access_token"] == "at-erin"
    assert CredentialItem.get(keys.user_pk("erin"), keys.credential_sk("acme", "default")).generation == 2


class _Context:
    function_name = "relay-cloud-schedule-token-refresh"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:relay-cloud-schedule-token-refresh"
    aws_request_id = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def wired(table, kms_key, monkeypatch):
    """The composition root pointed at this test's table and key, with "acme" as a custom provider."""
    from relay_cloud import composition

    monkeypatch.setenv("RELAY_ENV", "local")
    monkeypatch.setenv("RELAY_TABLE_NAME", table)
    monkeypatch.setenv("RELAY_KMS_KEY_ID", kms_key)
    monkeypatch.setenv("RELAY_CUSTOM_PROVIDERS", json.dumps([{
        "id": "acme", "display_name": "Acme", "device_authorization_url": "https://idp.test/oauth/device",
        "token_url": TOKEN_URL, "client_id": "relay-client", "client_secret": "relay-secret"}]))
    composition.reset()
    yield composition.container()
    composition.reset()


def test_the_scheduled_handler_runs_a_sweep_through_the_composition_root(wired, idp, capsys):
    from functions.manifest import SCHEDULES
    from functions.schedules.handler import refresh_sweep

    assert any(s.name == "token-refresh" and s.rate_minutes == 5 and s.handler == "functions.schedules.handler.refresh_sweep"
               for s in SCHEDULES)
    import time

    from tests.logcapture import all_log_output

    connect(wired.vault, idp, "frank", issued=int(time.time()) - 3300)
    with all_log_output() as logs:  # the logger's handler keeps the stream it was created with
        result = refresh_sweep({"source": "aws.events", "detail-type": "Scheduled Event"}, _Context())
    assert (result["due"], result["refreshed"], result["failed"]) == (1, 1, 0)
    assert stored_tokens(wired.vault, "frank")["refresh_token"] == "rt-frank-1"
    out = capsys.readouterr().out + logs.getvalue()
    assert '"TokensRefreshed"' in out and "token refresh sweep" in out  # EMF metrics and the report line
    assert "rt-frank" not in out and "at-1" not in out  # never a token in a log line
