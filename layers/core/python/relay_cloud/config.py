"""One typed settings object, read from the environment in one place.

Every variable is documented in the README's configuration reference. Outside ``RELAY_ENV=local`` the
settings refuse plain-http or sandbox upstreams, so a deployed function can never talk to a sandbox.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields
from functools import cache
from urllib.parse import urlsplit


class ConfigError(RuntimeError):
    """The environment does not describe a valid deployment."""


@dataclass(frozen=True)
class Settings:
    env: str
    table_name: str
    kms_key_id: str
    public_url: str
    github_client_id: str
    github_client_secret: str
    github_client_secret_arn: str
    github_oauth_url: str
    github_api_url: str
    anthropic_api_url: str
    openai_api_url: str
    google_api_url: str
    custom_providers: str
    device_flow_state_machine_arn: str
    session_ttl_seconds: int
    vault_cache_seconds: int
    vault_cache_uses: int
    http_timeout_seconds: float
    fly_api_url: str = "https://api.machines.dev"
    fly_graphql_url: str = "https://api.fly.io/graphql"
    fly_api_token: str = ""
    fly_api_token_arn: str = ""  # deployed stacks: the token lives in Secrets Manager
    fly_org: str = "personal"
    railway_api_url: str = "https://backboard.railway.com/graphql/v2"
    railway_api_token: str = ""
    railway_api_token_arn: str = ""  # deployed stacks: the token lives in Secrets Manager
    railway_workspace_id: str = ""  # the Railway workspace (team) the workspaces' projects are created in
    workspace_region: str = "iad"
    workspace_image: str = ""
    workspace_sizes: str = ""  # JSON of named sizes; empty = domain.compute.DEFAULT_SIZES
    dns_resolver: str = ""  # "ip[:port]" for custom-domain checks; empty = the system resolver
    provision_state_machine_arn: str = ""  # workflows/provision_workspace.asl.json
    teardown_state_machine_arn: str = ""  # workflows/delete_workspace.asl.json

    @property
    def is_local(self) -> bool:
        return self.env == "local"

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies everywhere except plain-http localhost."""
        return urlsplit(self.public_url).scheme == "https"

    def machine_sizes(self):
        """The named workspace sizes (``RELAY_WORKSPACE_SIZES``) → cpu_kind, cpus, memory_mb, volume_gb."""
        from relay_cloud.domain.compute import parse_sizes

        return parse_sizes(self.workspace_sizes)

    @property
    def github_redirect_uri(self) -> str:
        return f"{self.public_url}/api/auth/github/callback"

    def upstream_urls(self) -> dict[str, str]:
        urls = {
            "RELAY_GITHUB_OAUTH_URL": self.github_oauth_url,
            "RELAY_GITHUB_API_URL": self.github_api_url,
            "RELAY_ANTHROPIC_API_URL": self.anthropic_api_url,
            "RELAY_OPENAI_API_URL": self.openai_api_url,
            "RELAY_GOOGLE_API_URL": self.google_api_url,
            "RELAY_FLY_API_URL": self.fly_api_url,
            "RELAY_FLY_GRAPHQL_URL": self.fly_graphql_url,
            "RELAY_RAILWAY_API_URL": self.railway_api_url,
        }
        for spec in self.registry().all():
            for name in ("device_authorization_url", "token_url", "revoke_url", "userinfo_url"):
                if getattr(spec, name):
                    urls[f"RELAY_CUSTOM_PROVIDERS[{spec.id}].{name}"] = getattr(spec, name)
        return urls

    def registry(self, github_client_secret: str | None = None):
        """The provider registry; the GitHub client secret may be passed in once fetched (deployed stacks
        keep it in Secrets Manager)."""
        from relay_cloud.domain.providers import Registry, built_in_providers, custom_providers

        return Registry(
            built_in_providers(
                anthropic_url=self.anthropic_api_url, openai_url=self.openai_api_url, google_url=self.google_api_url,
                github_oauth_url=self.github_oauth_url, github_client_id=self.github_client_id,
                github_client_secret=github_client_secret or self.github_client_secret,
            )
            + custom_providers(self.custom_providers)
        )


def _int(environ, name: str, default: int) -> int:
    raw = environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer") from exc


def load_settings(environ=None) -> Settings:
    environ = os.environ if environ is None else environ
    settings = Settings(
        env=environ.get("RELAY_ENV", "production"),
        table_name=environ.get("RELAY_TABLE_NAME", ""),
        kms_key_id=environ.get("RELAY_KMS_KEY_ID", ""),
        public_url=environ.get("RELAY_PUBLIC_URL", "").rstrip("/"),
        github_client_id=environ.get("RELAY_GITHUB_CLIENT_ID", ""),
        github_client_secret=environ.get("RELAY_GITHUB_CLIENT_SECRET", ""),
        github_client_secret_arn=environ.get("RELAY_GITHUB_CLIENT_SECRET_ARN", ""),
        github_oauth_url=environ.get("RELAY_GITHUB_OAUTH_URL", "https://github.com").rstrip("/"),
        github_api_url=environ.get("RELAY_GITHUB_API_URL", "https://api.github.com").rstrip("/"),
        anthropic_api_url=environ.get("RELAY_ANTHROPIC_API_URL", "https://api.anthropic.com").rstrip("/"),
        openai_api_url=environ.get("RELAY_OPENAI_API_URL", "https://api.openai.com").rstrip("/"),
        google_api_url=environ.get("RELAY_GOOGLE_API_URL", "https://generativelanguage.googleapis.com").rstrip("/"),
        custom_providers=environ.get("RELAY_CUSTOM_PROVIDERS", ""),
        device_flow_state_machine_arn=environ.get("RELAY_DEVICE_FLOW_STATE_MACHINE_ARN", ""),
        session_ttl_seconds=_int(environ, "RELAY_SESSION_TTL_SECONDS", 7 * 24 * 3600),
        vault_cache_seconds=_int(environ, "RELAY_VAULT_CACHE_SECONDS", 300),
        vault_cache_uses=_int(environ, "RELAY_VAULT_CACHE_USES", 1000),
        http_timeout_seconds=float(environ.get("RELAY_HTTP_TIMEOUT_SECONDS", "10") or 10),
        fly_api_url=environ.get("RELAY_FLY_API_URL", "https://api.machines.dev").rstrip("/"),
        fly_graphql_url=environ.get("RELAY_FLY_GRAPHQL_URL", "https://api.fly.io/graphql").rstrip("/"),
        fly_api_token=environ.get("RELAY_FLY_API_TOKEN", ""),
        fly_api_token_arn=environ.get("RELAY_FLY_API_TOKEN_ARN", ""),
        fly_org=environ.get("RELAY_FLY_ORG", "personal"),
        railway_api_url=environ.get("RELAY_RAILWAY_API_URL", "https://backboard.railway.com/graphql/v2").rstrip("/"),
        railway_api_token=environ.get("RELAY_RAILWAY_API_TOKEN", ""),
        railway_api_token_arn=environ.get("RELAY_RAILWAY_API_TOKEN_ARN", ""),
        railway_workspace_id=environ.get("RELAY_RAILWAY_WORKSPACE_ID", ""),
        workspace_region=environ.get("RELAY_WORKSPACE_REGION", "iad"),
        workspace_image=environ.get("RELAY_WORKSPACE_IMAGE", ""),
        workspace_sizes=environ.get("RELAY_WORKSPACE_SIZES", ""),
        dns_resolver=environ.get("RELAY_DNS_RESOLVER", "").strip(),
        provision_state_machine_arn=environ.get("RELAY_PROVISION_STATE_MACHINE_ARN", ""),
        teardown_state_machine_arn=environ.get("RELAY_TEARDOWN_STATE_MACHINE_ARN", ""),
    )
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    if settings.env not in ("local", "production"):
        raise ConfigError("RELAY_ENV must be 'local' or 'production'")
    from relay_cloud.domain.providers import RegistryError

    try:
        registry = settings.registry()
    except RegistryError as exc:
        raise ConfigError(str(exc)) from exc
    from relay_cloud.domain.compute import SizeError

    try:
        settings.machine_sizes()
    except SizeError as exc:
        raise ConfigError(str(exc)) from exc
    if settings.dns_resolver:
        host, _port = parse_resolver_address(settings.dns_resolver)
        if not settings.is_local and ipaddress.ip_address(host).is_loopback:
            raise ConfigError("RELAY_DNS_RESOLVER points at this machine (the sandbox DNS) outside RELAY_ENV=local")
    if settings.is_local:
        return
    if settings.railway_api_token:
        raise ConfigError("give RELAY_RAILWAY_API_TOKEN_ARN (Secrets Manager), not an inline RELAY_RAILWAY_API_TOKEN, "
                          "outside RELAY_ENV=local")
    if settings.fly_api_token:
        raise ConfigError("give RELAY_FLY_API_TOKEN_ARN (Secrets Manager), not an inline RELAY_FLY_API_TOKEN, "
                          "outside RELAY_ENV=local")
    for spec in registry.all():
        if spec.custom and spec.client_secret:
            raise ConfigError(f"custom provider {spec.id!r}: give client_secret_arn (Secrets Manager), not an inline "
                              "client_secret, outside RELAY_ENV=local")
    for name, url in settings.upstream_urls().items() | {("RELAY_PUBLIC_URL", settings.public_url)}:
        parts = urlsplit(url)
        if parts.scheme != "https" or "/_sandbox" in parts.path:
            raise ConfigError(f"{name} must be an https URL of the real service outside RELAY_ENV=local")


def parse_resolver_address(text: str) -> tuple[str, int]:
    """``"10.0.0.2"``, ``"127.0.0.1:5353"`` or ``"[::1]:5353"`` → (ip, port); the port defaults to 53."""
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            host = ""  # "[::1" or "[::1]x": refused below
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError as exc:
        raise ConfigError("RELAY_DNS_RESOLVER must be an IP address with an optional port, e.g. 10.0.0.2:53") from exc
    if not 0 < number < 65536:
        raise ConfigError("RELAY_DNS_RESOLVER's port must be between 1 and 65535")
    return host, number


@cache
def settings() -> Settings:
    return load_settings()


SETTING_NAMES = tuple(f.name for f in fields(Settings))
