"""The composition root: production wiring, built lazily once per process (a warm Lambda reuses it).

Handlers call ``container()``; tests build services with fakes directly and never patch this module.
``reset()`` forgets the wiring (the local stack calls it after it rewrites the environment).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

from relay_cloud.config import Settings, settings


@dataclass
class Container:
    settings: Settings

    @cached_property
    def boto_session(self):
        import boto3

        return boto3.session.Session()

    @cached_property
    def vault(self):
        from relay_cloud.adapters.dynamo.vault_store import DynamoVaultStore
        from relay_cloud.adapters.vault import Vault

        return Vault(
            kms=self.boto_session.client("kms"),
            kms_key_id=self.settings.kms_key_id,
            store=DynamoVaultStore(),
            cache_seconds=self.settings.vault_cache_seconds,
            cache_uses=self.settings.vault_cache_uses,
        )

    @cached_property
    def github(self):
        from relay_cloud.adapters.github import GithubOAuth

        return GithubOAuth(
            oauth_url=self.settings.github_oauth_url,
            api_url=self.settings.github_api_url,
            client_id=self.settings.github_client_id,
            client_secret=self._github_client_secret(),
            timeout=self.settings.http_timeout_seconds,
        )

    def _github_client_secret(self) -> str:
        if self.settings.github_client_secret:
            return self.settings.github_client_secret
        if not self.settings.github_client_secret_arn:
            return ""
        client = self.boto_session.client("secretsmanager")
        return client.get_secret_value(SecretId=self.settings.github_client_secret_arn)["SecretString"]

    @cached_property
    def auth(self):
        from relay_cloud.adapters.dynamo.accounts import (
            AuditLog,
            LoginRepository,
            SessionRepository,
            UserRepository,
        )
        from relay_cloud.services.auth import AuthService

        return AuthService(
            users=UserRepository(),
            sessions=SessionRepository(),
            logins=LoginRepository(),
            audit=AuditLog(),
            vault=self.vault,
            github=_Lazy(lambda: self.github),
            redirect_uri=self.settings.github_redirect_uri,
            session_ttl=self.settings.session_ttl_seconds,
        )


class _Lazy:
    """Defers building an upstream client (and fetching its secret) until a route really needs it."""

    def __init__(self, build):
        self._build = build

    def __getattr__(self, name):
        return getattr(self._build(), name)


@cache
def container() -> Container:
    return Container(settings())


def reset() -> None:
    settings.cache_clear()
    container.cache_clear()
