"""The composition root: production wiring, built lazily once per process (a warm Lambda reuses it).

Handlers call ``container()``; tests build services with fakes directly and never patch this module.
``reset()`` forgets the wiring (the local stack calls it after it rewrites the environment).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

from relay_cloud.config import Settings, settings

LOGIN_COMMANDS = ("provider_login", "provider_login_code", "provider_login_cancel")


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
            client_secret=self.github_client_secret,
            timeout=self.settings.http_timeout_seconds,
        )

    @cached_property
    def github_client_secret(self) -> str:
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


    @cached_property
    def registry(self):
        """The provider registry with every client secret resolved (GitHub's and custom providers'
        secrets live in Secrets Manager in deployed stacks; fetched once per warm function)."""
        from dataclasses import replace

        from relay_cloud.domain.providers import Registry

        registry = self.settings.registry(github_client_secret=self.github_client_secret)
        if not any(spec.client_secret_arn and not spec.client_secret for spec in registry.all()):
            return registry
        secrets = self.boto_session.client("secretsmanager")
        return Registry([
            replace(spec, client_secret=secrets.get_secret_value(SecretId=spec.client_secret_arn)["SecretString"])
            if spec.client_secret_arn and not spec.client_secret else spec
            for spec in registry.all()
        ])

    @cached_property
    def providers(self):
        from relay_cloud.adapters.dynamo.accounts import AuditLog
        from relay_cloud.adapters.dynamo.connections import ConnectionRepository, DeviceFlowRepository
        from relay_cloud.adapters.dynamo.rate_limits import RateLimiter
        from relay_cloud.adapters.providers import ProviderClient
        from relay_cloud.adapters.workflows import StepFunctionsWorkflow
        from relay_cloud.services.providers import ProviderService

        return ProviderService(
            registry=_Lazy(lambda: self.registry),
            connections=ConnectionRepository(),
            flows=DeviceFlowRepository(),
            vault=self.vault,
            upstream=ProviderClient(github_api_url=self.settings.github_api_url,
                                    timeout=self.settings.http_timeout_seconds),
            workflow=StepFunctionsWorkflow(self.boto_session.client("stepfunctions"),
                                           self.settings.device_flow_state_machine_arn),
            audit=AuditLog(),
            machine_logins=_Lazy(lambda: self.machine_logins),
            limiter=RateLimiter(),
        )

    @cached_property
    def machine_logins(self):
        """Provider logins run on the user's machine (workspace_login): prompts and codes relayed, never tokens."""
        from relay_cloud.adapters.dynamo.accounts import AuditLog
        from relay_cloud.adapters.dynamo.connections import ConnectionRepository
        from relay_cloud.adapters.dynamo.daemons import DaemonRepository
        from relay_cloud.adapters.dynamo.logins import WorkspaceLoginRepository
        from relay_cloud.services.machine_logins import MachineLoginService

        return MachineLoginService(
            logins=WorkspaceLoginRepository(),
            machines=DaemonRepository(),  # read-only: the machine a login runs on
            commands=_Lazy(lambda: self.commands),
            connections=ConnectionRepository(),
            audit=AuditLog(),
        )

    @cached_property
    def daemons(self):
        """Daemon linking and daemon-key authentication (SPEC C4): DynamoDB only, no upstream."""
        from relay_cloud.adapters.dynamo.accounts import AuditLog
        from relay_cloud.adapters.dynamo.daemons import DaemonRepository, LinkRepository
        from relay_cloud.adapters.dynamo.rate_limits import RateLimiter
        from relay_cloud.services.daemons import DaemonService

        return DaemonService(
            links=LinkRepository(),
            daemons=DaemonRepository(),
            audit=AuditLog(),
            registry=_Lazy(lambda: self.settings.registry()),  # provider ids only: no secret needed
            public_url=self.settings.public_url,
            limiter=RateLimiter(),
        )

    @cached_property
    def messages(self):
        """Cross-machine messages between one owner's daemons (SPEC C4): DynamoDB only."""
        from relay_cloud.adapters.dynamo.messages import MessageRepository
        from relay_cloud.services.messages import MessageService

        return MessageService(messages=MessageRepository())

    @cached_property
    def commands(self):
        """Commands queued for daemons; what the machine reports on a provider login moves that login on."""
        from relay_cloud.adapters.dynamo.accounts import AuditLog
        from relay_cloud.adapters.dynamo.daemons import DaemonRepository
        from relay_cloud.services.commands import CommandService

        def login_report(*report):
            return self.machine_logins.report(*report)

        return CommandService(daemons=DaemonRepository(), audit=AuditLog(),
                              sinks=dict.fromkeys(LOGIN_COMMANDS, login_report))

    @cached_property
    def leases(self):
        """Access-only credential leases sealed to a daemon's X25519 key (SPEC §2.3)."""
        from relay_cloud.adapters.dynamo.accounts import AuditLog
        from relay_cloud.adapters.dynamo.connections import ConnectionRepository
        from relay_cloud.services.leases import LeaseService

        return LeaseService(connections=ConnectionRepository(), vault=self.vault,
                            registry=_Lazy(lambda: self.settings.registry()), audit=AuditLog())

    @cached_property
    def refresh(self):
        """The token-refresh sweep (SPEC C3); its own provider client, the shared vault and registry."""
        import secrets
        import time

        from relay_cloud.adapters.dynamo.refresh_store import DynamoRefreshStore
        from relay_cloud.adapters.providers import ProviderClient
        from relay_cloud.services.refresh import RefreshService

        return RefreshService(
            registry=_Lazy(lambda: self.registry),
            store=DynamoRefreshStore(),
            vault=self.vault,
            upstream=ProviderClient(github_api_url=self.settings.github_api_url,
                                    timeout=self.settings.http_timeout_seconds),
            clock=time.time,
            sleep=time.sleep,
            owner_id=f"refresher-{secrets.token_hex(4)}",  # each lease adds its own random suffix
            workers=8,
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
