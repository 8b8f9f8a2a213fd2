"""Measure what SPEC §6 budgets and print one table of medians.

- cold import of every function's handler module, in fresh interpreters, with bytecode compiled the way
  the CDK bundler ships it (unchecked-hash), so no cold start recompiles;
- cold start: a fresh interpreter imports the shipped handler and serves one real request against the
  running emulator (clients are built on first use, so this is where boto3/pynamodb/KMS costs show);
- request latency through the local HTTP API gateway for the session and profile routes.

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
               "billing": ("/api/billing/plans", "GET /api/billing/plans")}


def cold_request_ms(cookie: str, code_dir: Path, runs: int) -> dict[str, list[float]]:
    import json

    from functions.manifest import FUNCTIONS
    from relay_cloud.local.gateway import build_event

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(code_dir)
    env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    results = {}
    for spec in FUNCTIONS:
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--import-runs", type=int, default=9)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    from functions.manifest import FUNCTIONS

    from relay_cloud.local.signin import sign_in
    from relay_cloud.local.stack import LocalStack

    rows = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp, LocalStack(port=0) as stack:
        code_dir = shipped_copy(Path(tmp))
        imports = {spec: cold_import_ms(spec.module, args.import_runs, code_dir) for spec in FUNCTIONS}
        client = sign_in(stack.url, "bench-user")
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        cold = cold_request_ms(cookie, code_dir, args.import_runs)
        latency = gateway_latency_ms(client, args.requests)
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
