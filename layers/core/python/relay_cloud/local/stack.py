"""``LocalStack``: the whole control plane in one process on 127.0.0.1.

start() runs an embedded AWS (moto server with real Step Functions execution), points this process at
it through the environment (boto3 and pynamodb follow ``AWS_ENDPOINT_URL``), bootstraps the table from
the same definition the CDK stack uses plus the vault's KMS key, then serves the API gateway, the static
web app and — only when local configuration asks for them — the sandbox upstreams, with a ticker for
schedules. stop() undoes all of it, including every environment variable it changed.

    with LocalStack(port=0) as stack:
        httpx.get(stack.url + "/health")
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import secrets
import socket
import threading
import urllib.request

log = logging.getLogger("relay_cloud.local")

REGION = "us-east-1"
TABLE_NAME = "relay-cloud-local"
KMS_ALIAS = "alias/relay-cloud-vault"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
GITHUB_REQUIRED = ("RELAY_GITHUB_CLIENT_ID", "RELAY_GITHUB_CLIENT_SECRET")
# Set by someone else, these would send this process's AWS calls past the emulator (or sign them as
# a real profile): cleared while the stack runs, restored afterwards.
_CLEARED = (
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_ENDPOINT_URL_SFN",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
)


class LocalStackError(RuntimeError):
    """The local stack cannot start with this configuration."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalStack:
    def __init__(self, port: int = 8787, *, sandbox: bool = True, host: str = "127.0.0.1", web_dir=None) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise LocalStackError("the local stack binds to 127.0.0.1 only")
        self.requested_port = port
        self.sandbox = sandbox
        self.host = "127.0.0.1"
        self.web_dir = web_dir
        self.env: dict[str, str] = {}
        self.sandboxes: dict = {}
        self.moto_url = ""
        self.url = ""
        self._saved_env: dict[str, str | None] = {}
        self._saved_binding = None
        self._moto = None
        self._server = None
        self._server_thread: threading.Thread | None = None
        self.ticker = None
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "LocalStack":
        if self._started:
            return self
        self._check_configuration()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _check_configuration(self) -> None:
        relay_env = os.environ.get("RELAY_ENV", "")
        if self.sandbox and relay_env not in ("", "local"):
            raise LocalStackError(
                f"sandbox upstreams are local only: RELAY_ENV is {relay_env!r}; unset it or set RELAY_ENV=local"
            )
        if not self.sandbox:
            missing = [name for name in GITHUB_REQUIRED if not os.environ.get(name)]
            if missing:
                raise LocalStackError(
                    "without sandboxes the stack talks to the real GitHub: set " + ", ".join(missing)
                )

    def _start(self) -> None:
        from relay_cloud.local.server import LocalServer

        self._started = True
        # Bind the HTTP server first: with port=0 its URL (RELAY_PUBLIC_URL) is only known afterwards.
        self._server = LocalServer(self.requested_port, host=self.host, web_dir=self.web_dir)
        self.url = self._server.url
        self._start_moto()

        env = {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "RELAY_ENV": "local",
            "RELAY_TABLE_NAME": TABLE_NAME,
            "RELAY_KMS_KEY_ID": KMS_ALIAS,
            "RELAY_PUBLIC_URL": self.url,
        }
        if self.sandbox:
            sandbox_github = f"{self.url}/_sandbox/github"
            env |= {
                "RELAY_GITHUB_CLIENT_ID": "Iv1.sandbox" + secrets.token_hex(6),
                "RELAY_GITHUB_CLIENT_SECRET": secrets.token_hex(20),
                "RELAY_GITHUB_OAUTH_URL": sandbox_github,
                "RELAY_GITHUB_API_URL": sandbox_github,
                "RELAY_ANTHROPIC_API_URL": f"{self.url}/_sandbox/anthropic",
                "RELAY_OPENAI_API_URL": f"{self.url}/_sandbox/openai",
                "RELAY_GOOGLE_API_URL": f"{self.url}/_sandbox/google",
                "RELAY_CUSTOM_PROVIDERS": json.dumps([self._sandbox_idp_provider()]),
                "RELAY_FLY_API_URL": f"{self.url}/_sandbox/fly",
                "RELAY_FLY_GRAPHQL_URL": f"{self.url}/_sandbox/fly/graphql",
                "RELAY_FLY_API_TOKEN": "fo1_sandbox" + secrets.token_urlsafe(24),
                "RELAY_FLY_ORG": "relay-sandbox",
                "RELAY_RAILWAY_API_URL": f"{self.url}/_sandbox/railway/graphql/v2",
                "RELAY_RAILWAY_API_TOKEN": secrets.token_hex(16),
                "RELAY_RAILWAY_WORKSPACE_ID": "relay-sandbox",
                "RELAY_WORKSPACE_IMAGE": "registry.fly.io/relay-workspace:sandbox",
            }
        self._set_env(env)
        self._bootstrap_aws()
        self._bind_models()
        self._reset_caches()

        if self.sandbox:
            self._mount_sandboxes()
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="relay-cloud-http", daemon=True
        )
        self._server_thread.start()

        import boto3

        from relay_cloud.local.ticker import Ticker

        self.ticker = Ticker(table_name=TABLE_NAME, dynamodb_client=boto3.client(
            "dynamodb", endpoint_url=self.moto_url, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )).start()
        log.info(json.dumps({"msg": "local stack started", "url": self.url, "sandbox": self.sandbox}))

    def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()
            self.ticker = None
        for sandbox in self.sandboxes.values():  # those with sockets of their own (the DNS server)
            if callable(getattr(sandbox, "close", None)):
                sandbox.close()
        if self._server is not None:
            if self._server_thread is not None:
                self._server.shutdown()
                self._server_thread.join(10)
                self._server_thread = None
            self._server.server_close()
            self._server = None
        if self._moto is not None:
            try:
                self._moto.stop()
                server = getattr(self._moto, "_server", None)
                if server is not None:
                    server.server_close()  # release the port, not only the serving thread
            finally:
                self._moto = None
                from relay_cloud.local import lambdas

                lambdas.uninstall()
        self._restore_env()
        if self._saved_binding is not None:
            from relay_cloud.adapters.dynamo import models

            table_name, host, region = self._saved_binding
            models.bind_table(table_name, host=host, region=region)
            self._saved_binding = None
        if self._started:
            self._reset_caches()
        self._started = False

    # -- pieces ---------------------------------------------------------------------------------------

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        port = free_port(self.host)
        # moto reads MOTO_PORT for the URLs it hands out (and its Lambda callbacks).
        self._set_env({"MOTO_PORT": str(port)})
        self._moto = ThreadedMotoServer(ip_address=self.host, port=port, verbose=False)
        self._moto.start()
        self.moto_url = f"http://{self.host}:{port}"
        from relay_cloud.local import lambdas, moto_dynamodb

        lambdas.install()  # moto's simple Lambda backend runs the project's handlers (Step Functions tasks)
        moto_dynamodb.install()  # moto's transactions are not atomic under threads without it
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines carry URLs
        self._configure_moto()

    def _configure_moto(self) -> None:
        # The moto server's own control API sets its configuration (moto_api: POST /moto-api/config).
        request = urllib.request.Request(
            f"{self.moto_url}/moto-api/config",
            data=json.dumps(MOTO_CONFIG).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            response.read()

    def _clients(self):
        import boto3

        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        return session.client("dynamodb", endpoint_url=self.moto_url), session.client("kms", endpoint_url=self.moto_url)

    def _bootstrap_aws(self) -> bool:
        """Create the table (from the CDK's definition), the vault key + alias and the workflows (the
        device-flow state machine from the CDK's ASL file, and its task function) where missing."""
        from relay_cloud.adapters.dynamo.table import create_table

        dynamodb, kms = self._clients()
        created = False
        if TABLE_NAME not in dynamodb.list_tables().get("TableNames", []):
            create_table(dynamodb, TABLE_NAME)
            created = True
        aliases = kms.list_aliases().get("Aliases", [])
        if not any(a.get("AliasName") == KMS_ALIAS and a.get("TargetKeyId") for a in aliases):
            key = kms.create_key(
                Description="Agent Relay Cloud vault (local)", KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT"
            )
            if any(a.get("AliasName") == KMS_ALIAS for a in aliases):
                kms.update_alias(AliasName=KMS_ALIAS, TargetKeyId=key["KeyMetadata"]["KeyId"])
            else:
                kms.create_alias(AliasName=KMS_ALIAS, TargetKeyId=key["KeyMetadata"]["KeyId"])
            created = True
        return self._bootstrap_workflows() or created

    def _bootstrap_workflows(self) -> bool:
        """The workflows function and the device-flow state machine (relay_cloud.local.workflows)."""
        import boto3

        from relay_cloud.local import workflows

        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        arn, created = workflows.bootstrap(session, self.moto_url)
        if self.env.get("RELAY_DEVICE_FLOW_STATE_MACHINE_ARN") != arn:
            self._set_env({"RELAY_DEVICE_FLOW_STATE_MACHINE_ARN": arn})
        # The workspace provisioning and teardown machines (the same workflows function).
        arns, created_workspace_machines = workflows.bootstrap_workspace_machines(session, self.moto_url)
        changed = {name: arn for name, arn in arns.items() if self.env.get(name) != arn}
        if changed:
            self._set_env(changed)
        return created or created_workspace_machines

    def ensure_bootstrapped(self) -> bool:
        """Recreate the table, key, workflows and moto configuration if they are gone; True when it had to.

        moto's backends are process-global: an in-process ``mock_aws`` (other tests) resets them when it
        starts and stops, wiping the running server's resources too. Test fixtures call this.
        """
        from relay_cloud.adapters.dynamo import models

        self._configure_moto()
        recreated = self._bootstrap_aws()
        models.bind_table(TABLE_NAME, host=self.moto_url, region=REGION)  # another test may have rebound it
        if recreated:
            self._reset_caches()
        return recreated

    def _bind_models(self) -> None:
        from relay_cloud.adapters.dynamo import models

        meta = models.ALL_MODELS[0].Meta
        self._saved_binding = (meta.table_name, meta.host, getattr(meta, "region", None))
        models.bind_table(TABLE_NAME, host=self.moto_url, region=REGION)

    def _sandbox_idp_provider(self) -> dict:
        """The one custom OAuth/OIDC provider of the local stack: the sandbox IdP, with a fresh client."""
        idp = f"{self.url}/_sandbox/idp"
        return {
            "id": "sandbox-idp",
            "display_name": "Sandbox OIDC",
            "color": "#0ea5e9",
            "device_authorization_url": f"{idp}/oauth/device_authorization",
            "token_url": f"{idp}/oauth/token",
            "revoke_url": f"{idp}/oauth/revoke",
            "userinfo_url": f"{idp}/userinfo",
            "client_id": "sandbox-idp-" + secrets.token_hex(6),
            "client_secret": secrets.token_hex(20),
            "scopes": ["openid", "profile", "email", "offline_access"],
        }

    def _mount_sandboxes(self) -> None:
        from relay_cloud.sandbox.github import GitHubSandbox
        from relay_cloud.sandbox.idp import IdpSandbox
        from relay_cloud.sandbox.model_lists import AnthropicSandbox, GoogleSandbox, OpenAISandbox

        github = GitHubSandbox(base_url=f"{self.url}/_sandbox/github")
        github.register_client(
            self.env["RELAY_GITHUB_CLIENT_ID"],
            self.env["RELAY_GITHUB_CLIENT_SECRET"],
            callback_url=f"{self.url}/api/auth/github/callback",
        )
        idp = IdpSandbox(base_url=f"{self.url}/_sandbox/idp")
        for provider in json.loads(self.env["RELAY_CUSTOM_PROVIDERS"]):
            if provider["id"] == "sandbox-idp":
                idp.register_client(provider["client_id"], provider["client_secret"])
        self.sandboxes = {
            "github": github,
            "idp": idp,
            "anthropic": AnthropicSandbox(),
            "openai": OpenAISandbox(),
            "google": GoogleSandbox(),
        }
        from relay_cloud.sandbox.fly import FlySandbox

        self.sandboxes["fly"] = FlySandbox()
        self.sandboxes["fly"].register_token(self.env["RELAY_FLY_API_TOKEN"], self.env["RELAY_FLY_ORG"])
        from relay_cloud.sandbox.railway import RailwaySandbox

        self.sandboxes["railway"] = RailwaySandbox()
        self.sandboxes["railway"].register_token(self.env["RELAY_RAILWAY_API_TOKEN"],
                                                 self.env["RELAY_RAILWAY_WORKSPACE_ID"])
        # The sandbox DNS also answers real DNS queries on 127.0.0.1: custom-domain checks resolve through it.
        from relay_cloud.sandbox.dns import DnsSandbox

        self.sandboxes["dns"] = DnsSandbox()
        self._set_env({"RELAY_DNS_RESOLVER": self.sandboxes["dns"].start_server(self.host)})
        # Fly issues a custom domain's certificate only once the domain points at the app: ask the DNS sandbox.
        dns_sandbox = self.sandboxes["dns"]
        self.sandboxes["fly"].dns_configured = lambda hostname, app: any(
            record.value == f"{app}.fly.dev" for record in dns_sandbox.records(hostname.lower(), "CNAME"))
        self.sandboxes["railway"].dns_configured = lambda hostname, target: any(
            record.value == target for record in dns_sandbox.records(hostname.lower(), "CNAME"))
        self._server.sandboxes.update(self.sandboxes)

    @staticmethod
    def _reset_caches() -> None:
        from relay_cloud import config

        config.settings.cache_clear()
        if importlib.util.find_spec("relay_cloud.composition") is not None:
            composition = importlib.import_module("relay_cloud.composition")
            reset = getattr(composition, "reset", None)
            if callable(reset):
                reset()

    def _set_env(self, values: dict[str, str]) -> None:
        for name in (*values, *(n for n in _CLEARED if n not in self._saved_env)):
            if name not in self._saved_env:
                self._saved_env[name] = os.environ.get(name)
        for name in _CLEARED:
            os.environ.pop(name, None)
        os.environ.update(values)
        self.env.update(values)

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
