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

    def _secret(self, inline: str, arn: str) -> str:
        """A secret given inline (local runs only: config refuses it elsewhere) or by Secrets Manager ARN."""
        if inline or not arn:
            return inline or ""
        return self.boto_session.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]

    @cached_property
    def github_client_secret(self) -> str:
        return self._secret(self.settings.github_client_secret, self.settings.github_client_secret_arn)

    @cached_property
    def auth(self):
        from relay_cloud.adapters.dynamo.accounts import (
            AuditLog,
            LoginRepository,
            SessionRepository,
            UserRepository,
        )
        from relay_cloud.adapters.dynamo.workspaces import WorkspaceRepository
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
            workspaces=WorkspaceRepository(),  # account deletion waits until no workspace is left
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
    def repos(self):
        """Repositories (SPEC C5): DynamoDB, the vault (the user's GitHub token) and GitHub's REST API."""
        from relay_cloud.adapters.dynamo.accounts import AuditLog, UserRepository
        from relay_cloud.adapters.dynamo.connections import ConnectionRepository
        from relay_cloud.adapters.dynamo.repos import RepoRepository
        from relay_cloud.adapters.dynamo.usage import UsageRepository
        from relay_cloud.adapters.github_repos import GithubRepos
        from relay_cloud.services.repos import RepoService

        return RepoService(
            repos=RepoRepository(),
            usage=UsageRepository(),
            users=UserRepository(),
            connections=ConnectionRepository(),
            vault=self.vault,
            github=GithubRepos(api_url=self.settings.github_api_url, timeout=self.settings.http_timeout_seconds),
            public_url=self.settings.public_url,
            audit=AuditLog(),
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
    def domain_checker(self):
        """Custom-domain DNS checks: the configured resolver (the sandbox DNS locally) or the system's."""
        from relay_cloud.adapters.dns import DomainChecker

        return DomainChecker(self.settings.dns_resolver or None, timeout=self.settings.http_timeout_seconds)

    @cached_property
    def compute(self):
        """The Fly.io provisioner (SPEC C6); its token comes from Secrets Manager in deployed stacks."""
        from relay_cloud.adapters.fly import FlyProvisioner

        return FlyProvisioner(api_url=self.settings.fly_api_url, token=self.fly_api_token, org=self.settings.fly_org,
                              timeout=self.settings.http_timeout_seconds)

    @cached_property
    def provisioning(self):
        """The steps of the workspace provisioning and teardown workflows (the workflows function)."""
        import time

        from relay_cloud.adapters.dynamo.daemons import DaemonRepository
        from relay_cloud.adapters.dynamo.workspaces import WorkspaceRepository
        from relay_cloud.services.provisioning import ProvisioningService

        return ProvisioningService(
            workspaces=WorkspaceRepository(),
            # The workspace's own provider (fly | railway); its token is fetched on the first step that needs it.
            compute_for=self.compute_for,
            domains=_Lazy(lambda: self.domains),  # the teardown releases the custom domain first
            daemons=DaemonRepository(),
            cloud_url=self.settings.public_url,
            image=self.settings.workspace_image,
            region=self.settings.workspace_region,
            sizes=self.settings.machine_sizes(),
            clock=time.time,
        )

    @cached_property
    def workspaces(self):
        """Workspaces (SPEC C6): DynamoDB, the compute provider for start/stop/restart and the reconcile
        schedule, and the provisioning and teardown workflows."""
        from relay_cloud.adapters.dynamo.accounts import AuditLog, UserRepository
        from relay_cloud.adapters.dynamo.usage import UsageRepository
        from relay_cloud.adapters.dynamo.workspaces import WorkspaceRepository
        from relay_cloud.adapters.workflows import StepFunctionsWorkflow
        from relay_cloud.services.workspaces import WorkspaceService

        stepfunctions = _Lazy(lambda: self.boto_session.client("stepfunctions"))
        return WorkspaceService(
            workspaces=WorkspaceRepository(),
            users=UserRepository(),
            usage=UsageRepository(),
            provisioning=StepFunctionsWorkflow(stepfunctions, self.settings.provision_state_machine_arn),
            teardown=StepFunctionsWorkflow(stepfunctions, self.settings.teardown_state_machine_arn),
            registry=_Lazy(lambda: self.settings.registry()),  # provider ids only: no secret needed
            sizes=self.settings.machine_sizes(),
            region=self.settings.workspace_region,
            public_url=self.settings.public_url,
            audit=AuditLog(),
            domains=_Lazy(lambda: self.domains),  # the reconcile moves issuing certificates on
            # start/stop/restart/reconcile on the workspace's own provider; its token is fetched on first use
            compute_for=self.compute_for,
            computes=self.computes,
        )

    @cached_property
    def domains(self):
        """Custom domains of workspaces (SPEC C6): the DNS checks and the provider's certificates."""
        import time

        from relay_cloud.adapters.dynamo.accounts import UserRepository
        from relay_cloud.adapters.dynamo.domains import DomainRepository
        from relay_cloud.adapters.dynamo.workspaces import WorkspaceRepository
        from relay_cloud.services.domains import DomainService

        return DomainService(
            workspaces=WorkspaceRepository(),
            guards=DomainRepository(),
            checker=self.domain_checker,
            compute_for=self.compute_for,  # certificates live with the workspace's own provider
            users=UserRepository(),
            clock=time.time,
        )

    @cached_property
    def railway(self):
        """The Railway provisioner (the same interface, GraphQL); token from Secrets Manager when deployed."""
        from relay_cloud.adapters.railway import RailwayProvisioner

        return RailwayProvisioner(api_url=self.settings.railway_api_url, token=self.railway_api_token,
                                  workspace_id=self.settings.railway_workspace_id,
                                  timeout=self.settings.http_timeout_seconds)

    @cached_property
    def railway_api_token(self) -> str:
        return self._secret(self.settings.railway_api_token, self.settings.railway_api_token_arn)

    @property
    def computes(self) -> tuple[str, ...]:
        """The compute providers new workspaces may choose: Fly always, Railway once it is configured."""
        railway = bool(self.settings.railway_api_token or self.settings.railway_api_token_arn)
        return ("fly", "railway") if railway else ("fly",)

    def compute_for(self, provider: str):
        """The provisioner of a compute provider by name (a workspace records which one it runs on)."""
        if provider == "fly":
            return self.compute
        if provider == "railway":
            return self.railway
        raise ValueError(f"unknown compute provider {provider!r}")

    @cached_property
    def fly_api_token(self) -> str:
        return self._secret(self.settings.fly_api_token, self.settings.fly_api_token_arn)

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
