"""Credential leases with fakes: only the machine's allowed providers, sealed to its key (only its private
key opens them, under the lease's AAD), access tokens only (the refresh token never leaves the vault),
the skip reasons, lease lifetimes, and one audit item per lease."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from relay_cloud.adapters.vault import VaultContext
from relay_cloud.domain.daemons import DaemonPrincipal
from relay_cloud.domain.providers import DEVICE_FLOW, ProviderSpec, Registry, built_in_providers
from relay_cloud.domain.sealing import SealedBoxError, b64url, lease_aad, open_sealed
from relay_cloud.services.leases import LeaseService
from tests.fakes import Clock, FakeAudit, FakeVault

NOW = 1_800_000_000
DAEMON = "dmn_" + "a" * 32
API_KEY = "sk-ant-api03-the-real-key"
ACCESS, REFRESH = "gho_access_token_value", "ghr_refresh_token_value"


def key_pair():
    private = X25519PrivateKey.generate()
    return (private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
            b64url(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)))


PRIVATE, PUBLIC = key_pair()


class FakeConnections:
    def __init__(self):
        self.items = {}

    def all(self, user_id):
        return {provider: item for (uid, provider), item in self.items.items() if uid == user_id}


def registry() -> Registry:
    acme = ProviderSpec("acme", "Acme", "#000", "Acme OAuth", methods=(DEVICE_FLOW,), vault_allowed=True,
                        device_authorization_url="https://acme.test/device", token_url="https://acme.test/token",
                        client_id="cid", custom=True)
    return Registry(built_in_providers(anthropic_url="https://a.test", openai_url="https://o.test",
                                       google_url="https://g.test", github_oauth_url="https://gh.test",
                                       github_client_id="cid", github_client_secret="") + [acme])


class AuditedVault(FakeVault):
    """The fake vault plus the decrypt audit the real one writes (actor, reason)."""

    def __init__(self):
        super().__init__()
        self.decrypt_audit = []

    def decrypt(self, ctx, ciphertext, *, actor, reason):
        plaintext = super().decrypt(ctx, ciphertext, actor=actor, reason=reason)
        self.decrypt_audit.append((ctx.provider, actor, reason))
        return plaintext


@pytest.fixture
def world():
    vault, connections = AuditedVault(), FakeConnections()

    def connect(provider, method, secret=None, *, user_id="usr_me", status="valid", expires_at=None):
        purpose = {"api_key": "api_key", "device_flow": "oauth_tokens"}.get(method, "workspace_login")
        ciphertext = None
        if secret is not None:
            ciphertext = vault.seal(VaultContext(user_id, provider, "default", purpose),
                                    json.dumps(secret).encode()).ciphertext
        connections.items[(user_id, provider)] = SimpleNamespace(
            provider=provider, method=method, purpose=purpose, ciphertext=ciphertext, status=status,
            token_expires_at=expires_at, metadata={})

    service = LeaseService(connections=connections, vault=vault, registry=registry(), audit=FakeAudit(),
                           clock=Clock(NOW))
    return SimpleNamespace(service=service, connect=connect, audit=service.audit)


def caller(*providers, public_key=PUBLIC):
    return DaemonPrincipal(DAEMON, "usr_me", public_key, tuple(providers))


def opened(lease, private=PRIVATE) -> dict:
    aad = lease_aad(DAEMON, lease["provider"], lease["lease_id"], lease["expires_at"])
    return json.loads(open_sealed(private, lease["sealed"], aad))


def test_an_api_key_is_leased_for_an_hour_sealed_to_the_machine(world):
    world.connect("anthropic", "api_key", {"api_key": API_KEY})
    answer = world.service.leases(caller("anthropic"))
    assert answer["skipped"] == []
    [lease] = answer["leases"]
    assert lease["lease_id"].startswith("lse_") and lease["provider"] == "anthropic"
    assert lease["kind"] == "api_key" and lease["expires_at"] == NOW + 3600
    assert API_KEY not in json.dumps(answer)
    assert opened(lease) == {"provider": "anthropic", "kind": "api_key", "value": API_KEY, "expires_at": NOW + 3600}


def test_a_lease_opens_only_with_the_daemons_private_key_and_its_own_aad(world):
    world.connect("anthropic", "api_key", {"api_key": API_KEY})
    [lease] = world.service.leases(caller("anthropic"))["leases"]
    with pytest.raises(SealedBoxError):
        opened(lease, private=key_pair()[0])
    with pytest.raises(SealedBoxError):  # a lease replayed as another provider's, or with a longer expiry
        open_sealed(PRIVATE, lease["sealed"], lease_aad(DAEMON, "openai", lease["lease_id"], lease["expires_at"]))
    with pytest.raises(SealedBoxError):
        open_sealed(PRIVATE, lease["sealed"], lease_aad(DAEMON, "anthropic", lease["lease_id"], NOW + 7200))


def test_a_device_flow_connection_leases_the_access_token_only(world):
    world.connect("github", "device_flow", {"access_token": ACCESS, "refresh_token": REFRESH,
                                            "token_type": "bearer", "scope": "repo"}, expires_at=NOW + 600)
    answer = world.service.leases(caller("github"))
    [lease] = answer["leases"]
    assert lease["kind"] == "access_token" and lease["expires_at"] == NOW + 600  # the token's own expiry
    plain = opened(lease)
    assert plain == {"provider": "github", "kind": "access_token", "value": ACCESS, "expires_at": NOW + 600}
    assert REFRESH not in json.dumps(answer) and REFRESH not in json.dumps(plain)
    assert REFRESH not in json.dumps(world.audit.events)


def test_a_long_lived_access_token_is_leased_for_an_hour_at_most(world):
    world.connect("github", "device_flow", {"access_token": ACCESS, "refresh_token": REFRESH})  # GitHub: no expiry
    world.connect("acme", "device_flow", {"access_token": ACCESS, "refresh_token": REFRESH}, expires_at=NOW + 86400)
    leases = world.service.leases(caller("github", "acme"))["leases"]
    assert [(lease["provider"], lease["expires_at"]) for lease in leases] == [("github", NOW + 3600),
                                                                              ("acme", NOW + 3600)]


def test_providers_not_allowed_on_the_machine_are_never_leased(world):
    world.connect("anthropic", "api_key", {"api_key": API_KEY})
    world.connect("openai", "api_key", {"api_key": "sk-openai"})
    answer = world.service.leases(caller("openai"))
    assert [lease["provider"] for lease in answer["leases"]] == ["openai"] and answer["skipped"] == []
    assert API_KEY not in json.dumps(answer)
    assert world.service.leases(caller()) == {"leases": [], "skipped": []}


def test_skip_reasons(world):
    world.connect("anthropic", "workspace_login")  # the token lives on that machine
    world.connect("github", "device_flow", {"access_token": ACCESS, "refresh_token": REFRESH}, status="refresh_failed")
    world.connect("acme", "device_flow", {"access_token": ACCESS, "refresh_token": REFRESH}, expires_at=NOW)
    world.connect("openai", "api_key", {"api_key": "sk-other-user"}, user_id="usr_other")
    answer = world.service.leases(caller("anthropic", "github", "acme", "openai", "google", "gone-provider"))
    assert answer == {"leases": [], "skipped": [
        {"provider": "anthropic", "reason": "on_machine"},
        {"provider": "github", "reason": "unhealthy"},
        {"provider": "acme", "reason": "expired"},
        {"provider": "openai", "reason": "not_connected"},
        {"provider": "google", "reason": "not_connected"},
        {"provider": "gone-provider", "reason": "not_connected"},
    ]}
    assert world.audit.events == []


def test_a_secret_that_does_not_open_is_skipped_as_unhealthy(world):
    world.connect("anthropic", "api_key", {"api_key": API_KEY})
    world.service.vault.shred("usr_me")
    assert world.service.leases(caller("anthropic")) == {
        "leases": [], "skipped": [{"provider": "anthropic", "reason": "unhealthy"}]}


def test_one_audit_item_per_lease(world):
    world.connect("anthropic", "api_key", {"api_key": API_KEY})
    world.connect("github", "device_flow", {"access_token": ACCESS, "refresh_token": REFRESH})
    leases = world.service.leases(caller("anthropic", "github"))["leases"]
    leases += world.service.leases(caller("anthropic"))["leases"]
    assert len({lease["lease_id"] for lease in leases}) == 3
    assert [(e["action"], e["actor"], e["subject_user_id"], e["detail"]) for e in world.audit.events] == [
        ("credential.lease", DAEMON, "usr_me", {"provider": lease["provider"], "lease_id": lease["lease_id"],
                                                "daemon_id": DAEMON}) for lease in leases]
    assert API_KEY not in json.dumps(world.audit.events) and ACCESS not in json.dumps(world.audit.events)
    assert world.service.vault.decrypt_audit == [
        (lease["provider"], DAEMON, f"credential lease {lease['lease_id']}") for lease in leases]
