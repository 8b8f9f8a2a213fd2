"""Logger and metrics, built once per process (Powertools: JSON logs with correlation id, EMF metrics)."""

from __future__ import annotations

import logging
import sys
import warnings

from aws_lambda_powertools import Logger, Metrics

# A request that emits no business metric is normal, not worth a warning on every invocation.
warnings.filterwarnings("ignore", message="No application metrics to publish")
# httpx logs every request URL at INFO; a URL may carry an OAuth code or state, so only its warnings pass.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)



class _CurrentStdout:
    """Writes to whatever sys.stdout is at write time (Lambda's stdout in production; a test's or the
    local stack's replacement otherwise), never a stream captured when this module was imported."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


# The service name comes from POWERTOOLS_SERVICE_NAME (one per function, set by the CDK construct).
logger = Logger(utc=True, stream=_CurrentStdout())
metrics = Metrics(namespace="AgentRelayCloud")
