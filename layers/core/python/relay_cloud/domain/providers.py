"""The provider registry (SPEC C2, §2.1): which AI and code providers exist, how a user may connect
each one, and whether the cloud may hold its tokens at all.

- ``api_key``: bring your own key; validated with a non-billable call (a model list), kept in the vault.
- ``device_flow``: RFC 8628 with *our* registered OAuth client (GitHub, admin-configured OAuth/OIDC).
- ``workspace_login``: the provider's own CLI login runs on the user's machine; the cloud never sees the
  token. The default for Claude, Codex and Gemini subscriptions, whose terms forbid third parties from
  holding subscription tokens.

Built-ins are declared here; custom OAuth/OIDC providers come from configuration (like Coder's
external auth). Endpoint base URLs come from settings, so sandboxes and tests plug in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

API_KEY, DEVICE_FLOW, WORKSPACE_LOGIN = "api_key", "device_flow", "workspace_login"
METHODS = (API_KEY, DEVICE_FLOW, WORKSPACE_LOGIN)
VAULT_METHODS = frozenset({API_KEY, DEVICE_FLOW})  # the methods that store a secret in the cloud
PROVIDER_ID = re.compile(r"^[a-z][a-z0-9-]{1,31}$")

# A token is refreshed once at most this fraction of its lifetime is left (SPEC C3).
REFRESH_AT_FRACTION_LEFT = 0.10


@dataclass(frozen=True)
class ProviderSpec:
    id: str
    display_name: str
    color: str
    description: str
    methods: tuple[str, ...]
    vault_allowed: bool
    # api_key: how a key is validated ("anthropic" | "openai" | "google") and where.
    key_check: str | None = None
    api_url: str | None = None
    # device_flow and refresh: our OAuth client and the provider's endpoints.
    device_authorization_url: str | None = None
    token_url: str | None = None
    revoke_url: str | None = None
    userinfo_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    client_secret_arn: str | None = None  # deployed stacks: the secret lives in Secrets Manager
    scopes: tuple[str, ...] = ()
    token_style: str = "rfc"  # "github": errors arrive as HTTP 200 bodies, revoke is GitHub's API
    cli_login: str | None = None  # the provider CLI's own login, for workspace_login
    custom: bool = False

    def allows(self, method: str) -> bool:
        return method in self.methods

    def to_public(self) -> dict:
        return {
            "id": self.id,
            "display_name": self.display_name,
            "color": self.color,
            "description": self.description,
            "methods": list(self.methods),
            "vault_allowed": self.vault_allowed,
            "custom": self.custom,
        }


class RegistryError(ValueError):
    """The provider configuration is invalid."""


def built_in_providers(*, anthropic_url: str, openai_url: str, google_url: str, github_oauth_url: str,
                       github_client_id: str, github_client_secret: str) -> list[ProviderSpec]:
    return [
        ProviderSpec(
            "anthropic", "Claude (Anthropic)", "#d97757",
            "Claude Code. Use an Anthropic Console API key, or log in with your Claude subscription on your "
            "own machine (the subscription token never reaches the cloud).",
            methods=(API_KEY, WORKSPACE_LOGIN), vault_allowed=True, key_check="anthropic", api_url=anthropic_url,
            cli_login="claude setup-token",
        ),
        ProviderSpec(
            "openai", "Codex (OpenAI)", "#10a37f",
            "Codex CLI. Use an OpenAI API key, or run the Codex device login on your own machine.",
            methods=(API_KEY, WORKSPACE_LOGIN), vault_allowed=True, key_check="openai", api_url=openai_url,
            cli_login="codex login --device-auth",
        ),
        ProviderSpec(
            "google", "Gemini (Google)", "#4285f4",
            "Gemini CLI. Use a Gemini API key, or log in with Google on your own machine.",
            methods=(API_KEY, WORKSPACE_LOGIN), vault_allowed=True, key_check="google", api_url=google_url,
            cli_login="gemini",
        ),
        ProviderSpec(
            "github", "GitHub", "#24292f",
            "Repository access and Copilot, through our GitHub app's device flow.",
            methods=(DEVICE_FLOW,), vault_allowed=True,
            device_authorization_url=f"{github_oauth_url}/login/device/code",
            token_url=f"{github_oauth_url}/login/oauth/access_token",
            revoke_url=f"{github_oauth_url}/applications/{github_client_id}/token",
            client_id=github_client_id, client_secret=github_client_secret,
            scopes=("repo", "read:user", "user:email"), token_style="github",
        ),
    ]


def custom_providers(raw: str) -> list[ProviderSpec]:
    """Admin-configured OAuth/OIDC providers from RELAY_CUSTOM_PROVIDERS (a JSON list)."""
    if not raw.strip():
        return []
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise RegistryError("RELAY_CUSTOM_PROVIDERS is not valid JSON") from exc
    if not isinstance(entries, list):
        raise RegistryError("RELAY_CUSTOM_PROVIDERS must be a JSON list")
    specs = []
    for entry in entries:
        try:
            provider_id = entry["id"]
            if not PROVIDER_ID.match(provider_id):
                raise RegistryError(f"custom provider id {provider_id!r} must match {PROVIDER_ID.pattern}")
            specs.append(ProviderSpec(
                provider_id, entry.get("display_name", provider_id), entry.get("color", "#64748b"),
                entry.get("description", f"{entry.get('display_name', provider_id)} (OAuth, configured by your admin)"),
                methods=tuple(entry.get("methods", (DEVICE_FLOW,))), vault_allowed=bool(entry.get("vault_allowed", True)),
                device_authorization_url=entry["device_authorization_url"], token_url=entry["token_url"],
                revoke_url=entry.get("revoke_url"), userinfo_url=entry.get("userinfo_url"),
                client_id=entry["client_id"], client_secret=entry.get("client_secret"),
                client_secret_arn=entry.get("client_secret_arn"), scopes=tuple(entry.get("scopes", ())), custom=True,
            ))
        except (KeyError, TypeError) as exc:
            raise RegistryError(f"custom provider entry is missing {exc}") from exc
    return specs


class Registry:
    def __init__(self, providers: list[ProviderSpec]):
        self._providers: dict[str, ProviderSpec] = {}
        for spec in providers:
            if spec.id in self._providers:
                raise RegistryError(f"provider {spec.id!r} is declared twice")
            unknown = set(spec.methods) - set(METHODS)
            if unknown:
                raise RegistryError(f"provider {spec.id!r} declares unknown methods {sorted(unknown)}")
            if not spec.vault_allowed and set(spec.methods) & VAULT_METHODS:
                raise RegistryError(
                    f"provider {spec.id!r} may not be held by the cloud (vault_allowed false), so it can only "
                    "be connected with workspace_login"
                )
            self._providers[spec.id] = spec

    def get(self, provider_id: str) -> ProviderSpec | None:
        return self._providers.get(provider_id)

    def all(self) -> list[ProviderSpec]:
        return list(self._providers.values())


def refresh_due_at(issued_at: int, expires_at: int | None) -> int | None:
    """When to refresh: once at most 10 % of the token's lifetime is left."""
    if expires_at is None:
        return None
    lifetime = max(expires_at - issued_at, 0)
    return expires_at - int(lifetime * REFRESH_AT_FRACTION_LEFT)


def health(*, status: str | None, expires_at: int | None, refresh_due: int | None, now: int) -> str:
    """valid / expiring / refresh_failed / revoked / not_connected, from the stored connection."""
    if status is None:
        return "not_connected"
    if status in ("refresh_failed", "revoked"):
        return status
    if expires_at is not None and (expires_at <= now or (refresh_due is not None and refresh_due <= now)):
        return "expiring"
    return "valid"
