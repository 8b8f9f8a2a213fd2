"""Measure what SPEC §6 budgets and print one table of medians.

- cold import of every function's handler module, in fresh interpreters, with bytecode compiled the way
  the CDK bundler ships it (unchecked-hash), so no cold start recompiles;
- cold start: a fresh interpreter imports the shipped handler and serves one real request against the
  running emulator (clients are built on first use, so this is where boto3/pynamodb/KMS costs show);
- request latency through the local HTTP API gateway for the session and profile routes;
- DynamoDB requests per steady-state heartbeat (in-process moto, through the daemons handler).
- daemons through the local stack: heartbeat latency of one daemon linked through the services, and 200
  daemons x 20 heartbeats on 8 threads with every item read back (lost updates) and every DynamoDB
  request counted (exactly one per heartbeat).
- workspaces through the local stack: 5 workspaces provisioned and deleted one after another (the
  workflows executed by moto against the Fly sandbox): Fly API calls per provision and per teardown, and
  the control plane's own time per provision (POST → running minus the sandbox's simulated start, the
  Wait states and injected delays).

Timings here are noisy (2 shared cores): read medians, and compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORT_BUDGET_MS = {"default": 350}


def shipped_copy(target: Path) -> Path:
    """The code as the CDK bundler ships it: a copy with bytecode compiled as unchecked-hash.

    Never compile in the source tree: unchecked-hash bytecode is never checked against its source,
    so later edits there would be silently ignored.
    """
    shutil.copytree(ROOT / "functions", target / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "layers/core/python/relay_cloud", target / "relay_cloud",
                    ignore=shutil.ignore_patterns("__pycache__", "local", "sandbox", "cli"))
    compileall.compile_dir(target, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return target


def cold_import_ms(module: str, runs: int, code_dir: Path) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env["PYTHONPATH"] = str(code_dir)  # ahead of the editable install in site-packages
    code = (
        "import time; t = time.perf_counter(); import importlib; "
        f"importlib.import_module({module!r}); print((time.perf_counter() - t) * 1000)"
    )
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], cwd=code_dir, env=env, capture_output=True, text=True,
                             check=True)
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return samples


# A fresh interpreter imports the shipped handler and serves one real request against the running
# emulator: what a cold start costs (the composition root builds boto3/pynamodb/KMS clients lazily).
COLD_REQUEST = """
import json, sys, time
t = time.perf_counter()
import importlib
module = importlib.import_module(sys.argv[1])
context = type("Context", (), {"function_name": "bench", "memory_limit_in_mb": 512, "aws_request_id": "bench",
                               "invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:bench"})
result = module.lambda_handler(json.loads(sys.argv[2]), context())
print(json.dumps({"ms": (time.perf_counter() - t) * 1000, "status": result["statusCode"]}))
"""
COLD_ROUTES = {"meta": ("/health", "GET /health"), "auth": ("/api/auth/me", "ANY /api/auth/{proxy+}"),
               "billing": ("/api/billing/plans", "GET /api/billing/plans"),
               "providers": ("/api/providers", "ANY /api/providers")}


def cold_request_ms(cookie: str, code_dir: Path, runs: int) -> dict[str, list[float]]:
    import json

    from functions.manifest import FUNCTIONS
    from relay_cloud.local.gateway import build_event

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(code_dir)
    env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    results = {}
    for spec in (spec for spec in FUNCTIONS if spec.name in COLD_ROUTES):
        path, route_key = COLD_ROUTES[spec.name]
        event = json.dumps(build_event("GET", path, {"cookie": cookie}, route_key=route_key))
        samples = []
        for _ in range(runs):
            out = subprocess.run([sys.executable, "-c", COLD_REQUEST, spec.module, event],
                                 cwd=code_dir, env=env, capture_output=True, text=True, check=True)
            measured = json.loads(out.stdout.strip().splitlines()[-1])
            assert measured["status"] == 200, (spec.name, measured)
            samples.append(measured["ms"])
        results[spec.module] = samples
    return results


def gateway_latency_ms(client, requests: int) -> dict[str, list[float]]:
    """Warm request latency through the local HTTP API gateway (moto answers the DynamoDB calls)."""
    results: dict[str, list[float]] = {}
    for path in ("/health", "/api/auth/session", "/api/auth/me"):
        client.get(path)  # warm: the first call imports the function, as a cold start would
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(path)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        results[path] = samples
    return results


def p95(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]


# -- SPEC §6: vault KMS calls and refresh-sweep reads (in-process moto; runs before the local stack) -------

VAULT_READS = 1000
SWEEP_CREDENTIALS, SWEEP_DUE = 10_000, 100


class _MotoEnv:
    """An in-process moto (mock_aws) with fake credentials, every model bound to a fresh table."""

    NAMES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS", "AWS_PROFILE")
    FAKE = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_SESSION_TOKEN": "bench",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}

    def __enter__(self):
        import boto3
        from moto import mock_aws

        from relay_cloud.adapters.dynamo import models
        from relay_cloud.adapters.dynamo.table import create_table

        self._saved = {name: os.environ.get(name) for name in (*self.NAMES, *self.FAKE)}
        for name in self.NAMES:
            os.environ.pop(name, None)
        os.environ.update(self.FAKE)
        self._mock = mock_aws()
        self._mock.start()
        self.table = "relay-bench"
        create_table(boto3.client("dynamodb", region_name="us-east-1"), self.table)
        models.bind_table(self.table, host=None, region="us-east-1")
        self.kms = boto3.client("kms", region_name="us-east-1")
        self.key_id = self.kms.create_key()["KeyMetadata"]["Arn"]
        return self

    def __exit__(self, *exc):
        self._mock.stop()
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _ReadCounter:
    """Items returned by DynamoDB reads, as moto answers them (whatever client asked), by what was read."""

    def __init__(self):
        from moto.core.models import botocore_stubber

        self.items: dict[str, int] = {}
        self.scans = 0
        self._stubber = botocore_stubber
        self._process = botocore_stubber.process_request

    def __enter__(self):
        import json

        def counting(request):
            response = self._process(request)
            target = request.headers.get("X-Amz-Target", b"")
            target = target.decode() if isinstance(target, bytes) else str(target)
            operation = target.split(".", 1)[-1]
            if response is not None and operation in ("Query", "GetItem", "Scan", "BatchGetItem"):
                self.scans += operation == "Scan"
                body = json.loads(request.body or b"{}")
                parsed = json.loads(response[2] or b"{}") if response[0] == 200 else {}
                read = len(parsed.get("Items", [])) if "Items" in parsed else int("Item" in parsed)
                sk = body.get("Key", {}).get("sk", {}).get("S", "")
                if body.get("IndexName") == "gsi2" or sk.startswith("CRED#") or sk == "CURSOR":
                    what = "sweep"
                elif "DATAKEY#" in sk or "DATAKEY#" in json.dumps(body.get("ExpressionAttributeValues", {})):
                    what = "vault"
                else:
                    what = "other"
                self.items[what] = self.items.get(what, 0) + read
            return response

        self._stubber.process_request = counting
        return self

    def __exit__(self, *exc):
        del self._stubber.process_request  # back to the class's method


def vault_kms_calls() -> tuple[int, float]:
    """KMS calls made by 1,000 decrypts of one user's credential on a warm vault (moto KMS + DynamoDB)."""
    import boto3

    from relay_cloud.adapters.dynamo.vault_store import DynamoVaultStore
    from relay_cloud.adapters.vault import Vault, VaultContext

    with _MotoEnv() as env:
        vault = Vault(kms=boto3.client("kms", region_name="us-east-1"), kms_key_id=env.key_id,
                      store=DynamoVaultStore())
        ctx = VaultContext("bench-user", "github", "default", "oauth_tokens")
        ciphertext = vault.encrypt(ctx, b'{"access_token":"gho_bench","refresh_token":"ghr_bench"}')
        vault.decrypt(ctx, ciphertext, actor="bench", reason="warm")  # warm: the data key is cached
        vault.kms_calls = 0
        started = time.perf_counter()
        for _ in range(VAULT_READS):
            vault.decrypt(ctx, ciphertext, actor="bench", reason="bench")
        return vault.kms_calls, (time.perf_counter() - started) * 1000 / VAULT_READS


class _FastUpstream:
    """A provider that answers every refresh at once, rotating the refresh token."""

    def __init__(self):
        self.calls = 0

    def refresh(self, spec, refresh_token):
        from relay_cloud.adapters.providers import TokenSet

        self.calls += 1
        return TokenSet(f"at-{self.calls}", f"{refresh_token}-r", expires_in=3600, scope="repo")


def _bench_store():
    from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
    from relay_cloud.adapters.dynamo.models import CredentialItem
    from relay_cloud.adapters.dynamo.refresh_store import DynamoRefreshStore, token_actions
    from relay_cloud.services.refresh import LEASE_LOST, STORED

    class BenchRefreshStore(DynamoRefreshStore):
        """The production store, except that new tokens are written by the same conditional UpdateItem
        without the transaction's data-key ConditionCheck: moto implements every TransactWriteItems by
        deep-copying the whole table (its rollback snapshot), 1.4 s each at 10,000 items, which real
        DynamoDB does not. Reads, the only thing this row measures, are identical."""

        def store_tokens(self, credential, update, *, owner, now):
            item = CredentialItem(*_credential_key(credential))
            with translated("update"):
                try:
                    item.update(actions=token_actions(credential, update, now),
                                condition=CredentialItem.lease_owner == owner)
                except Exception as exc:
                    if is_condition_failure(exc):
                        return LEASE_LOST
                    raise
            return STORED

    return BenchRefreshStore()


def _credential_key(credential) -> tuple[str, str]:
    from relay_cloud.adapters.dynamo import keys

    return keys.user_pk(credential.user_id), keys.credential_sk(credential.provider, keys.CONNECTION_ID)


def sweep_reads() -> dict:
    """Seed 10,000 device-flow connections (1 % due) and run one sweep: items read per refreshed one."""
    import json

    import boto3

    from relay_cloud.adapters.dynamo.connections import ConnectionRepository, NewConnection, connection_item
    from relay_cloud.adapters.dynamo.models import CredentialItem
    from relay_cloud.adapters.dynamo.vault_store import DynamoVaultStore
    from relay_cloud.adapters.vault import Vault, VaultContext
    from relay_cloud.domain.providers import DEVICE_FLOW, ProviderSpec, Registry, refresh_due_at
    from relay_cloud.services.refresh import RefreshService

    now = int(time.time())
    spec = ProviderSpec("acme", "Acme", "#000", "bench IdP", methods=(DEVICE_FLOW,), vault_allowed=True,
                        token_url="https://idp.invalid/token", client_id="bench")
    with _MotoEnv() as env:
        vault = Vault(kms=boto3.client("kms", region_name="us-east-1"), kms_key_id=env.key_id,
                      store=DynamoVaultStore())
        repository = ConnectionRepository()
        for n in range(SWEEP_DUE):  # due now or in the last half hour: real, decryptable tokens
            user, issued = f"due{n:05d}", now - 3240 - (n * 18)
            payload = json.dumps({"access_token": "at", "refresh_token": f"rt-{n}", "token_type": "bearer"})
            sealed = vault.seal(VaultContext(user, "acme", "default", "oauth_tokens"), payload.encode())
            repository.save(NewConnection(user, "acme", DEVICE_FLOW, "oauth_tokens", sealed.ciphertext,
                                          sealed.key_version, account=user, issued_at=issued,
                                          token_expires_at=issued + 3600,
                                          refresh_due_at=refresh_due_at(issued, issued + 3600)),
                            now=issued, new_data_key=sealed.new_data_key)
        started = time.perf_counter()
        with CredentialItem.batch_write() as batch:  # the rest: due over the next day, never read
            for n in range(SWEEP_CREDENTIALS - SWEEP_DUE):
                due = now + 60 + (n * 86_400) // (SWEEP_CREDENTIALS - SWEEP_DUE)
                batch.save(connection_item(NewConnection(f"later{n:05d}", "acme", DEVICE_FLOW, "oauth_tokens",
                                                         b"never-read", 1, account=None, issued_at=due - 3240,
                                                         token_expires_at=due + 360, refresh_due_at=due),
                                           now=due - 3240, generation=1))
        seed_s = time.perf_counter() - started
        upstream = _FastUpstream()
        service = RefreshService(Registry([spec]), _bench_store(), vault, upstream, owner_id="bench", workers=1)
        with _ReadCounter() as counter:
            started = time.perf_counter()
            report = service.sweep(now)
            sweep_s = time.perf_counter() - started
        return {"report": report, "reads": counter.items, "scans": counter.scans, "upstream": upstream.calls,
                "seed_s": seed_s, "sweep_s": sweep_s}


def refresh_rows() -> list[tuple[str, str, str, str, str]]:
    rows = []
    kms_calls, per_read_ms = vault_kms_calls()
    rows.append(("KMS calls per 1,000 vault reads (one user, warm)", f"{kms_calls}",
                 f"{per_read_ms:.2f} ms/read", "<= 1 per cache window", "ok" if kms_calls <= 1 else "OVER"))
    measured = sweep_reads()
    report, reads = measured["report"], measured["reads"]
    refreshed = max(report.refreshed, 1)
    ratio = report.items_read / refreshed
    ok = ratio <= 1.1 and measured["scans"] == 0 and report.refreshed == SWEEP_DUE and reads.get("sweep", 0) <= report.items_read
    rows.append((f"items read per credential refreshed ({SWEEP_CREDENTIALS:,} credentials, 1 % due)", f"{ratio:.2f}",
                 f"{report.items_read} items / {report.refreshed} refreshed, {measured['scans']} scans",
                 "<= 1.1", "ok" if ok else "OVER"))
    rows.append(("  vault data-key reads per credential refreshed (beside the sweep's)",
                 f"{reads.get('vault', 0) / refreshed:.2f}", f"sweep {measured['sweep_s']:.1f} s, seed "
                 f"{measured['seed_s']:.1f} s", "-", f"n={report.refreshed}"))
    return rows


HEARTBEATS = 100


def heartbeat_requests() -> tuple[float, dict[str, int], float]:
    """DynamoDB requests per steady-state heartbeat (SPEC §6: exactly 1), counted by a ``before-send``
    hook (every HTTP attempt, retries included) on the botocore client pynamodb uses, over 100 heartbeats
    served by the daemons function's handler against in-process moto. One warm-up heartbeat first."""
    import json

    from relay_cloud import composition
    from relay_cloud.adapters.dynamo import keys
    from relay_cloud.adapters.dynamo.models import DaemonItem
    from relay_cloud.domain.daemons import daemon_key, new_daemon_id, new_key_secret, sha256_hex
    from relay_cloud.local.gateway import build_event

    env = {"RELAY_ENV": "local", "RELAY_PUBLIC_URL": "http://localhost", "RELAY_TABLE_NAME": "relay-bench",
           "POWERTOOLS_LOG_LEVEL": "WARNING"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    composition.reset()
    try:
        with _MotoEnv():
            daemon_id, secret, now = new_daemon_id(), new_key_secret(), int(time.time())
            DaemonItem(keys.daemon_pk(daemon_id), keys.DAEMON_SK, daemon_id=daemon_id, user_id="bench-user",
                       name="bench", machine_id="bench-host", public_key="k" * 43, key_hash=sha256_hex(secret),
                       linked_at=now, agents=[], gsi1pk=keys.owner_gsi_pk("bench-user"),
                       gsi1sk=keys.daemon_gsi_sk(now, daemon_id)).save()
            from functions.daemons.handler import lambda_handler

            context = type("Context", (), {"function_name": "bench", "memory_limit_in_mb": 512,
                                           "aws_request_id": "bench",
                                           "invoked_function_arn": "arn:aws:lambda:us-east-1:0:function:bench"})()
            body = json.dumps({"agents": [{"name": f"agent-{n}", "provider": "anthropic", "status": "running",
                                           "pid": 1000 + n} for n in range(5)],
                               "metrics": {"cpu": 0.4, "memory_mb": 512}}).encode()
            event = build_event("POST", "/api/daemons/heartbeat",
                                {"authorization": f"Bearer {daemon_key(daemon_id, secret)}",
                                 "content-type": "application/json"}, body,
                                route_key="ANY /api/daemons/{proxy+}")

            def beat():
                result = lambda_handler(event, context)
                assert result["statusCode"] == 200, result

            beat()  # warm: the function's clients and the container are built
            operations: dict[str, int] = {}

            def count(request, **_):
                target = request.headers.get("X-Amz-Target", b"")
                target = target.decode() if isinstance(target, bytes) else str(target)
                operation = target.split(".", 1)[-1]
                operations[operation] = operations.get(operation, 0) + 1

            # Cross-check: every DynamoDB request moto answers, whichever client sent it.
            from moto.core.models import botocore_stubber

            answered = {"dynamodb": 0}
            process = botocore_stubber.process_request

            def answering(request):
                answered["dynamodb"] += "dynamodb." in request.url
                return process(request)

            events = DaemonItem._get_connection().connection.client.meta.events
            events.register_first("before-send.dynamodb", count)
            botocore_stubber.process_request = answering
            try:
                started = time.perf_counter()
                for _ in range(HEARTBEATS):
                    beat()
                per_beat_ms = (time.perf_counter() - started) * 1000 / HEARTBEATS
            finally:
                events.unregister("before-send.dynamodb", count)
                del botocore_stubber.process_request  # back to the class's method
            assert answered["dynamodb"] == sum(operations.values()), (answered, operations)
            return sum(operations.values()) / HEARTBEATS, operations, per_beat_ms
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        composition.reset()


def heartbeat_rows() -> list[tuple[str, str, str, str, str]]:
    per_beat, operations, per_beat_ms = heartbeat_requests()
    ok = per_beat == 1.0 and set(operations) == {"UpdateItem"}
    detail = ", ".join(f"{op} {n}" for op, n in sorted(operations.items()))
    return [(f"DynamoDB requests per steady-state heartbeat ({HEARTBEATS} via the handler)", f"{per_beat:.1f}",
             f"{detail}; {per_beat_ms:.1f} ms/beat", "exactly 1", "ok" if ok else "OVER")]


# -- daemons through the local stack: heartbeat latency, and a fleet heartbeating concurrently ----------

FLEET_DAEMONS, FLEET_BEATS, FLEET_THREADS = 200, 20, 8


def link_daemon(base_url: str) -> tuple[str, str]:
    """Link one daemon through the services rather than HTTP (device authorization, the owner's approval,
    the token exchange): (daemon id, its real daemon key). Built without a rate limiter."""
    import base64

    from relay_cloud.adapters.dynamo.accounts import AuditLog
    from relay_cloud.adapters.dynamo.daemons import DaemonRepository, LinkRepository
    from relay_cloud.domain.auth import Principal
    from relay_cloud.domain.daemons import CLIENT_ID, DEVICE_GRANT_TYPE
    from relay_cloud.services.daemons import DaemonService

    service = DaemonService(links=LinkRepository(), daemons=DaemonRepository(), audit=AuditLog(), registry=None,
                            public_url=base_url)
    started = service.device_authorization({
        "client_id": CLIENT_ID, "machine_id": "bench-host", "name": "bench",
        "public_key": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()}, requesting_ip="127.0.0.1")
    service.approve(Principal("usr_bench", "bench-session", "bench-csrf"), started["user_code"], {})
    token = service.token({"grant_type": DEVICE_GRANT_TYPE, "client_id": CLIENT_ID,
                           "device_code": started["device_code"]})
    return token["daemon_id"], token["access_token"]


def seed_daemons(count: int) -> list[tuple[str, str]]:
    """``count`` daemons as the token exchange leaves them (the approval's item plus the key hash), 10 per
    owner, written by BatchWriteItem: linking each through the services costs three transactions, and moto
    copies the whole table on every transaction (about 0.1 s each here, 90 s for 200 daemons), which real
    DynamoDB does not. The heartbeat, which is what is measured, reads nothing else of the item."""
    import base64

    from relay_cloud.adapters.dynamo import keys
    from relay_cloud.adapters.dynamo.models import DaemonItem
    from relay_cloud.domain.daemons import daemon_key, new_daemon_id, new_key_secret, sha256_hex

    daemons, now = [], int(time.time())
    with DaemonItem.batch_write() as batch:
        for n in range(count):
            daemon_id, secret, owner = new_daemon_id(), new_key_secret(), f"usr_bench{n // 10:04d}"
            batch.save(DaemonItem(
                keys.daemon_pk(daemon_id), keys.DAEMON_SK, daemon_id=daemon_id, user_id=owner, name=f"bench {n}",
                machine_id=f"bench-host-{n:04d}", public_key=base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=")
                .decode(), key_hash=sha256_hex(secret), allowed_providers=[], linked_at=now, agents=[], commands={},
                gsi1pk=keys.owner_gsi_pk(owner), gsi1sk=keys.daemon_gsi_sk(now, daemon_id)))
            daemons.append((daemon_id, daemon_key(daemon_id, secret)))
    return daemons


class _DynamoRequests:
    """DynamoDB requests sent during the block: a ``before-send`` hook (every HTTP attempt, retries
    included) on the botocore client of every pynamodb model (each model has its own connection), and,
    as a cross-check that no other client sent any, the DynamoDB requests the stack's moto server
    answered (its WSGI app wrapped; the stack's ticker must be stopped, its sweeps are DynamoDB requests)."""

    def __init__(self, stack):
        import threading

        self._server = stack._moto._server  # moto's werkzeug server: it looks up ``.app`` per request
        self._lock = threading.Lock()
        self.operations: dict[str, int] = {}
        self.served = 0

    def _count(self, request, **_):
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else str(target)).split(".", 1)[-1]
        with self._lock:
            self.operations[operation] = self.operations.get(operation, 0) + 1

    def _serve(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with self._lock:
                self.served += 1
        return self._app(environ, start_response)

    @property
    def sent(self) -> int:
        return sum(self.operations.values())

    def __enter__(self):
        from relay_cloud.adapters.dynamo.models import ALL_MODELS

        clients = {id(c): c for c in (model._get_connection().connection.client for model in ALL_MODELS)}
        self._clients = list(clients.values())
        for client in self._clients:
            client.meta.events.register_first("before-send.dynamodb", self._count)
        self._app, self._server.app = self._server.app, self._serve
        return self

    def __exit__(self, *exc):
        self._server.app = self._app
        for client in self._clients:
            client.meta.events.unregister("before-send.dynamodb", self._count)


def _beat_body(seq: int) -> dict:
    return {"agents": [{"name": f"agent-{n}", "provider": "anthropic", "status": "running", "pid": 4000 + n}
                       for n in range(3)],
            "metrics": {"seq": seq, "cpu": 0.25}}


def heartbeat_latency_ms(client, key: str, beats: int) -> list[float]:
    """Warm heartbeats of one linked daemon over HTTP through the local gateway, one after another."""
    headers = {"Authorization": f"Bearer {key}"}
    assert client.post("/api/daemons/heartbeat", json=_beat_body(0), headers=headers).status_code == 200  # warm
    samples = []
    for seq in range(1, beats + 1):
        started = time.perf_counter()
        response = client.post("/api/daemons/heartbeat", json=_beat_body(seq), headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return samples


def fleet_heartbeats(stack, client, daemons: list[tuple[str, str]], beats: int, threads: int) -> dict:
    """Every daemon sends ``beats`` heartbeats in order (metric ``seq`` = 1..beats), ``threads`` daemons at a
    time; then every daemon item is read back: a lost update is one whose ``seq`` is not ``beats``."""
    from concurrent.futures import ThreadPoolExecutor

    from relay_cloud.adapters.dynamo import keys
    from relay_cloud.adapters.dynamo.models import DaemonItem

    def run(daemon: tuple[str, str]) -> tuple[list[float], int]:
        headers, samples, failed = {"Authorization": f"Bearer {daemon[1]}"}, [], 0
        for seq in range(1, beats + 1):
            started = time.perf_counter()
            response = client.post("/api/daemons/heartbeat", json=_beat_body(seq), headers=headers)
            samples.append((time.perf_counter() - started) * 1000)
            failed += response.status_code != 200
        return samples, failed

    with _DynamoRequests(stack) as counted:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(run, daemons))
        wall_s = time.perf_counter() - started
    lost = 0
    for daemon_id, _ in daemons:
        item = DaemonItem.get(keys.daemon_pk(daemon_id), keys.DAEMON_SK, consistent_read=True)
        metrics = item.metrics.as_dict() if item.metrics is not None else {}
        lost += metrics.get("seq") != beats or item.last_seen_at is None or len(item.agents or []) != 3
    return {"samples": [ms for samples, _ in results for ms in samples], "failed": sum(f for _, f in results),
            "lost": lost, "wall_s": wall_s, "operations": counted.operations, "sent": counted.sent,
            "served": counted.served, "heartbeats": len(daemons) * beats}


def daemon_rows(stack, requests: int) -> list[tuple[str, str, str, str, str]]:
    import httpx

    stack.ticker.stop()  # its schedules would add DynamoDB requests (and noise) to what is counted
    try:
        _, key = link_daemon(stack.url)
        started = time.perf_counter()
        daemons = seed_daemons(FLEET_DAEMONS)
        seed_s = time.perf_counter() - started
        with httpx.Client(base_url=stack.url, timeout=30,
                          limits=httpx.Limits(max_connections=FLEET_THREADS)) as client:
            latency = heartbeat_latency_ms(client, key, requests)
            fleet = fleet_heartbeats(stack, client, daemons, FLEET_BEATS, FLEET_THREADS)
    finally:
        stack.ticker.start()
    per_beat = fleet["sent"] / fleet["heartbeats"]
    detail = ", ".join(f"{op} {n}" for op, n in sorted(fleet["operations"].items()))
    ratio_ok = per_beat == 1.0 and fleet["served"] == fleet["sent"] and set(fleet["operations"]) == {"UpdateItem"}
    samples = fleet["samples"]
    return [
        (f"gateway POST /api/daemons/heartbeat (one linked daemon, {requests} beats)",
         f"{statistics.median(latency):.1f} ms", f"p95 {p95(latency):.1f} ms", "-", f"n={len(latency)}"),
        (f"lost updates: {FLEET_DAEMONS} daemons x {FLEET_BEATS} heartbeats, {FLEET_THREADS} threads",
         f"{fleet['lost']}", f"{fleet['failed']} non-200; {fleet['heartbeats'] / fleet['wall_s']:.0f} beats/s, "
         f"median {statistics.median(samples):.1f} ms, p95 {p95(samples):.1f} ms",
         "0", "ok" if fleet["lost"] == 0 and fleet["failed"] == 0 else "OVER"),
        ("  DynamoDB requests per heartbeat (same run)", f"{per_beat:.2f}",
         f"{detail} / {fleet['heartbeats']} beats; moto served {fleet['served']}; seed {seed_s:.1f} s",
         "exactly 1", "ok" if ratio_ok else "OVER"),
    ]


# -- workspaces through the local stack: Fly API calls per provision and teardown, control-plane time ---

WORKSPACE_PROVISIONS = 5
WORKSPACE_PLAN = "pro"  # allows 5 workspaces (the bench deletes each before the next anyway)
WORKSPACE_WAIT_S = 60.0  # per provision and per teardown
WORKSPACE_POLL_S = 0.1  # the bench's GET /api/workspaces/{id} interval: the time measure's granularity
FLY_TIMINGS = {"launch_ms": 50, "boot_ms": 250}  # the sandbox's simulated machine start, shortened
PROVISION_TASKS = ("app", "ips", "volume", "secrets", "machine", "wait", "health", "finish", "compensate", "fail")


def _fly_family(method: str, path: str) -> str:
    """``GET /_sandbox/fly/v1/apps/<app>/machines/<id>/wait`` → ``GET machines/*/wait``: the call's kind,
    without the ids (``apps/*`` only when the app itself is the resource)."""
    if path.endswith("/graphql"):
        return f"{method} graphql"
    parts = path.split("/v1/", 1)[-1].strip("/").split("/")
    shape = [part if n % 2 == 0 else "*" for n, part in enumerate(parts)]
    if len(shape) > 2:
        shape = shape[2:]  # apps/*/machines/... → machines/...
    return f"{method} {'/'.join(shape)}"


class _FlyCalls:
    """Every HTTP request this process sends to the Fly sandbox's API, by who sent it: the workflow task
    running in the sending thread (``relay_cloud.local.lambdas`` runs a state machine's Task in moto's
    request thread, and the handler calls Fly from that thread), else ``api`` (a route, e.g. a poll's
    reconcile read). Recorded at ``httpx.Client.send`` (each attempt, retries included) with its
    duration, and cross-checked against the sandbox's own counter (``FlySandbox.requests``). Also the
    ``delay_ms`` of every fault the sandbox injected meanwhile."""

    def __init__(self, stack):
        import threading

        self._sandbox = stack.sandboxes["fly"]
        self._prefix = f"{stack.url}/_sandbox/fly/"
        self._local = threading.local()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.calls: list[tuple[str, str, float]] = []  # (origin, family, ms)
            self.delay_ms = 0
            self._served_from = self._sandbox.requests

    @property
    def served(self) -> int:
        """API calls the sandbox counted since the last reset."""
        return self._sandbox.requests - self._served_from

    def of(self, *origins: str) -> list[tuple[str, str, float]]:
        return [call for call in self.calls if call[0] in origins]

    def __enter__(self):
        import json

        import httpx

        from relay_cloud.local import lambdas

        recorder, local = self, self._local
        self._send, self._invoke, self._take = httpx.Client.send, lambdas.invoke_registered, self._sandbox._take_fault
        send, invoke, take = self._send, self._invoke, self._take

        def sending(client, request, **kwargs):
            url = str(request.url)
            if not url.startswith(recorder._prefix) or url[len(recorder._prefix):].startswith("_"):
                return send(client, request, **kwargs)  # not Fly's API (the control surface is not counted)
            started = time.perf_counter()
            try:
                return send(client, request, **kwargs)
            finally:
                with recorder._lock:
                    recorder.calls.append((getattr(local, "task", None) or "api",
                                           _fly_family(request.method, request.url.path),
                                           (time.perf_counter() - started) * 1000))

        def invoking(registered, arn, body, response_headers):
            try:
                task = json.loads(body or b"{}").get("task")
            except (TypeError, ValueError, AttributeError):
                task = None
            local.task = str(task).removeprefix("workspace.") if task else None
            try:
                return invoke(registered, arn, body, response_headers)
            finally:
                local.task = None

        def taking(path):
            fault = take(path)
            if fault is not None:
                with recorder._lock:
                    recorder.delay_ms += fault.delay_ms
            return fault

        httpx.Client.send = sending
        lambdas.invoke_registered = invoking
        self._sandbox._take_fault = taking
        return self

    def __exit__(self, *exc):
        import httpx

        from relay_cloud.local import lambdas

        httpx.Client.send = self._send
        lambdas.invoke_registered = self._invoke
        del self._sandbox._take_fault  # back to the class's method


def _execution_history(sfn, state_machine_arn: str, workspace_id: str, wait_s: float) -> dict:
    """The workspace's latest execution of the state machine (its name starts with the workspace id),
    awaited: its status, the seconds spent in Wait states (entered → exited), how many Wait states ran,
    and how many task attempts failed (each one a Retry)."""
    executions = [e for e in sfn.list_executions(stateMachineArn=state_machine_arn, maxResults=1000)["executions"]
                  if e["name"].startswith(workspace_id)]
    assert executions, f"no execution of {state_machine_arn} for {workspace_id}"
    execution_arn = max(executions, key=lambda e: e["startDate"])["executionArn"]
    deadline = time.monotonic() + wait_s
    while (status := sfn.describe_execution(executionArn=execution_arn)["status"]) == "RUNNING":
        assert time.monotonic() < deadline, f"execution {execution_arn} still running after {wait_s:.0f} s"
        time.sleep(0.05)
    events, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000,
                                         **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    waited, entered = 0.0, None
    for event in events:
        if event["type"] == "WaitStateEntered":
            entered = event["timestamp"]
        elif event["type"] == "WaitStateExited" and entered is not None:
            waited += (event["timestamp"] - entered).total_seconds()
            entered = None
    return {"status": status, "wait_s": waited,
            "waits": sum(e["type"] == "WaitStateEntered" for e in events),
            "failed_attempts": sum(e["type"] in ("LambdaFunctionFailed", "LambdaFunctionTimedOut", "TaskFailed")
                                   for e in events)}


def _until(check, wait_s: float, what: str):
    deadline = time.monotonic() + wait_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} after {wait_s:.0f} s"
        time.sleep(WORKSPACE_POLL_S)


def provision_and_teardown(stack, client, calls: _FlyCalls, sfn) -> dict:
    """One workspace: POST, poll GET until ``running`` (the provisioning workflow in moto against the Fly
    sandbox), then DELETE and poll until 404 (the teardown workflow); both executions awaited."""
    headers = {"X-CSRF-Token": client.csrf_token}
    calls.reset()
    started = time.time()  # the events' timestamps are wall-clock milliseconds of this same machine
    created = client.post("/api/workspaces", json={"name": "bench box", "providers": ["anthropic"]},
                          headers=headers)
    assert created.status_code == 202, created.text
    workspace_id = created.json()["id"]
    path = f"/api/workspaces/{workspace_id}"
    def running():
        workspace = client.get(path).json()
        assert workspace.get("status") in ("provisioning", "running"), workspace
        return workspace["status"] == "running"

    _until(running, WORKSPACE_WAIT_S, f"{workspace_id} not running")
    seen_ms = (time.time() - started) * 1000
    # When it became running: the finish step's "succeeded" event, written right after the status (the
    # poll's own granularity is not part of the measure).
    events = client.get(f"{path}/events", params={"limit": "100"}).json()["events"]
    (finished,) = [e for e in events if e["step"] == "finish" and e["state"] == "succeeded"]
    wall_ms = finished["at"] - started * 1000
    provision = _execution_history(sfn, os.environ["RELAY_PROVISION_STATE_MACHINE_ARN"], workspace_id,
                                   WORKSPACE_WAIT_S)
    assert provision["status"] == "SUCCEEDED", provision
    provisioned = {"calls": calls.of(*PROVISION_TASKS), "api": calls.of("api"), "served": calls.served,
                   "recorded": len(calls.calls), "delay_ms": calls.delay_ms, "seen_ms": seen_ms}

    calls.reset()
    deleted = client.delete(path, headers=headers)
    assert deleted.status_code == 202, deleted.text
    teardown = _execution_history(sfn, os.environ["RELAY_TEARDOWN_STATE_MACHINE_ARN"], workspace_id,
                                  WORKSPACE_WAIT_S)
    assert teardown["status"] == "SUCCEEDED", teardown
    listed = client.get("/api/workspaces").json()  # its last step deleted the items and released the slot
    assert listed["workspaces"] == [] and listed["usage"]["used"] == 0, listed
    torn_down = {"calls": [c for c in calls.calls if c[0].startswith("teardown")], "served": calls.served,
                 "recorded": len(calls.calls), "api": calls.of("api")}
    return {"wall_ms": wall_ms, "provision": provision, "provisioned": provisioned, "teardown": teardown,
            "torn_down": torn_down}


def _breakdown(runs: list[list[tuple[str, str, float]]]) -> str:
    """Calls per run by kind, as the median over the runs: ``GET apps/* 1, POST apps 1, ...``."""
    kinds = sorted({family for run in runs for _, family, _ in run})
    counts = {kind: statistics.median([sum(f == kind for _, f, _ in run) for run in runs]) for kind in kinds}
    return ", ".join(f"{kind} {count:g}" for kind, count in counts.items())


def workspace_rows(stack, provisions: int) -> list[tuple[str, str, str, str, str]]:
    """Fly API calls per successful provision and per teardown, and the control plane's own time per
    provision, over ``provisions`` sequential workspaces of one signed-in user on the Pro plan."""
    import boto3
    import httpx

    from relay_cloud.adapters.dynamo.accounts import UserRepository
    from relay_cloud.local.signin import sign_in
    from relay_cloud.services.admin import PlanAdmin

    fly = f"{stack.url}/_sandbox/fly"
    saved = httpx.get(f"{fly}/_config").json()
    assert httpx.post(f"{fly}/_config", json=FLY_TIMINGS).status_code == 200
    httpx.delete(f"{fly}/_faults")
    stack.ticker.stop()  # the reconcile schedule's reads would be Fly calls of nobody's provision
    try:
        login = f"bench-ws-{os.urandom(3).hex()}"
        client = sign_in(stack.url, login)
        PlanAdmin(users=UserRepository()).set_plan(login, WORKSPACE_PLAN, actor="operator:bench",
                                                    reason="benchmark")
        sfn = boto3.client("stepfunctions", endpoint_url=stack.moto_url, region_name="us-east-1")
        try:
            with _FlyCalls(stack) as calls:
                runs = [provision_and_teardown(stack, client, calls, sfn) for _ in range(provisions)]
        finally:
            client.close()
        left = httpx.get(f"{fly}/_inventory").json()["counts"]
    finally:
        stack.ticker.start()
        httpx.post(f"{fly}/_config", json={name: saved[name] for name in FLY_TIMINGS})

    provisioned = [run["provisioned"] for run in runs]
    torn_down = [run["torn_down"] for run in runs]
    per_provision = [len(p["calls"]) for p in provisioned]
    per_teardown = [len(t["calls"]) for t in torn_down]
    route_calls = sum(len(p["api"]) + len(t["api"]) for p, t in zip(provisioned, torn_down))
    # Every call the sandbox counted was recorded here, as one of the provisioning's, a teardown's or a route's.
    served = sum(p["served"] + t["served"] for p, t in zip(provisioned, torn_down))
    recorded = sum(p["recorded"] + t["recorded"] for p, t in zip(provisioned, torn_down))
    counted = served == recorded == sum(per_provision) + sum(per_teardown) + route_calls

    # Control-plane time: POST → running, minus what the sandbox simulated or injected while the workflow
    # waited on it: the machine's start (the /wait calls' time, at most launch + boot: the machine step's
    # own work after the create overlaps the rest), the workflow's Wait states (from the execution
    # history) and the delay_ms of injected faults.
    simulated_ms = FLY_TIMINGS["launch_ms"] + FLY_TIMINGS["boot_ms"]
    own_ms, waited_ms = [], []
    for run in runs:
        boot_ms = min(simulated_ms, sum(ms for _, family, ms in run["provisioned"]["calls"]
                                        if family.endswith("/wait")))
        waited_ms.append(boot_ms)
        own_ms.append(run["wall_ms"] - boot_ms - run["provision"]["wait_s"] * 1000
                      - run["provisioned"]["delay_ms"])
    wall = statistics.median([run["wall_ms"] for run in runs])
    seen = statistics.median([p["seen_ms"] for p in provisioned])
    wait_states = sum(run["provision"]["waits"] for run in runs)
    wait_state_s = sum(run["provision"]["wait_s"] for run in runs)
    delays = sum(p["delay_ms"] for p in provisioned)
    retried = sum(run["provision"]["failed_attempts"] + run["teardown"]["failed_attempts"] for run in runs)
    empty = all(count == 0 for count in left.values())
    check = f"sandbox counted {served}, recorded {recorded}"
    return [
        (f"Fly API calls per successful provision ({provisions} sequential, through the local stack)",
         f"{statistics.median(per_provision):g}",
         f"{_breakdown([p['calls'] for p in provisioned])}; min {min(per_provision)} max {max(per_provision)}; "
         f"routes' calls (poll reconcile reads) {route_calls}; {check}",
         "-", f"n={provisions}" if counted else "OVER"),
        ("  control-plane time per provision (POST → running, minus simulated)",
         f"{statistics.median(own_ms):.0f} ms",
         f"POST → finish event {wall:.0f} ms (the {WORKSPACE_POLL_S * 1000:.0f} ms poll saw it at {seen:.0f} ms) minus machine start "
         f"waited {statistics.median(waited_ms):.0f} ms (the /wait call; sandbox launch_ms "
         f"{FLY_TIMINGS['launch_ms']} + boot_ms {FLY_TIMINGS['boot_ms']}), Wait states {wait_state_s:.1f} s "
         f"({wait_states} entered; default timing, poll 5 s: the service sets no input timing), delay_ms {delays}; "
         f"{retried} failed task attempts; min {min(own_ms):.0f} ms", "-", f"n={len(own_ms)}"),
        ("Fly API calls per teardown (DELETE → teardown execution succeeded)", f"{statistics.median(per_teardown):g}",
         f"{_breakdown([t['calls'] for t in torn_down])}; min {min(per_teardown)} max {max(per_teardown)}; "
         f"sandbox afterwards: {', '.join(f'{k} {v}' for k, v in left.items() if v) or 'empty'}",
         "sandbox empty", "ok" if empty and counted else "OVER"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--import-runs", type=int, default=9)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--only-refresh", action="store_true",
                        help="only the in-process moto rows: vault, refresh sweep, heartbeat")
    parser.add_argument("--only-daemons", action="store_true",
                        help="only the local-stack daemon rows: heartbeat latency, a fleet's lost updates")
    parser.add_argument("--only-workspaces", action="store_true",
                        help="only the local-stack workspace rows: Fly API calls per provision and teardown, "
                             "the control plane's own time per provision")
    parser.add_argument("--provisions", type=int, default=WORKSPACE_PROVISIONS,
                        help="sequential workspaces provisioned and deleted for the workspace rows")
    args = parser.parse_args()

    from relay_cloud.local.signin import sign_in
    from relay_cloud.local.stack import LocalStack

    if args.only_daemons:
        with LocalStack(port=0) as stack:
            return _print(daemon_rows(stack, args.requests))
    if args.only_workspaces:
        with LocalStack(port=0) as stack:
            return _print(workspace_rows(stack, args.provisions))

    from functions.manifest import FUNCTIONS, SCHEDULES

    # In-process moto first: its backends are process-global, so it must be done before the stack starts.
    refresh = refresh_rows() + heartbeat_rows()
    if args.only_refresh:
        return _print(refresh)

    rows = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp, LocalStack(port=0) as stack:
        code_dir = shipped_copy(Path(tmp))
        targets = {spec.module: spec for spec in (*FUNCTIONS, *SCHEDULES)}  # schedules share one module
        imports = {spec: cold_import_ms(module, args.import_runs, code_dir) for module, spec in targets.items()}
        client = sign_in(stack.url, "bench-user")
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        cold = cold_request_ms(cookie, code_dir, args.import_runs)
        latency = gateway_latency_ms(client, args.requests)
        daemons = daemon_rows(stack, args.requests)
        workspaces = workspace_rows(stack, args.provisions)
    for spec, samples in imports.items():
        budget = IMPORT_BUDGET_MS.get(spec.name, IMPORT_BUDGET_MS["default"])
        median = statistics.median(samples)
        rows.append((f"cold import {spec.module}", f"{median:.0f} ms", f"min {min(samples):.0f} ms",
                     f"<= {budget} ms", "ok" if median <= budget else "OVER"))
    for module, samples in cold.items():
        rows.append((f"cold start {module} (import + 1st request)", f"{statistics.median(samples):.0f} ms",
                     f"min {min(samples):.0f} ms", "-", f"n={len(samples)}"))
    for path, samples in latency.items():
        rows.append((f"gateway GET {path}", f"{statistics.median(samples):.1f} ms", f"p95 {p95(samples):.1f} ms",
                     "-", f"n={len(samples)}"))
    return _print(rows + daemons + workspaces + refresh)


def _print(rows: list[tuple]) -> int:
    header = ("measure", "median", "spread", "budget", "verdict")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    return 0 if all(r[4] != "OVER" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
