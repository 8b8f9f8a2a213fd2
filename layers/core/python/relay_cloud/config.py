"""One typed settings object, read from the environment in one place.

Every variable is documented in the README's configuration reference. Outside ``RELAY_ENV=local`` the
settings refuse plain-http or sandbox upstreams, so a deployed function can never talk to a sandbox.
"""

from __future__ import annotations

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

    @property
    def is_local(self) -> bool:
        return self.env == "local"

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies everywhere except plain-http localhost."""
        return urlsplit(self.public_url).scheme == "https"

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
    if settings.is_local:
        return
    for spec in registry.all():
        if spec.custom and spec.client_secret:
            raise ConfigError(f"custom provider {spec.id!r}: give client_secret_arn (Secrets Manager), not an inline "
                              "client_secret, outside RELAY_ENV=local")
    for name, url in settings.upstream_urls().items() | {("RELAY_PUBLIC_URL", settings.public_url)}:
        parts = urlsplit(url)
        if parts.scheme != "https" or "/_sandbox" in parts.path:
            raise ConfigError(f"{name} must be an https URL of the real service outside RELAY_ENV=local")


@cache
def settings() -> Settings:
    return load_settings()


SETTING_NAMES = tuple(f.name for f in fields(Settings))
