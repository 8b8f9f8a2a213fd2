"""A thread standing in for EventBridge: runs ``functions.manifest.SCHEDULES`` at their rates, and a
local-only TTL reaper, because moto never deletes TTL-expired items (DynamoDB does, eventually).

Each schedule's handler receives the event an EventBridge scheduled rule sends. Failures are logged
(type only) and the schedule keeps its rate, as a retried-then-dropped invocation would.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
import uuid
from datetime import datetime, timezone

from relay_cloud.local.gateway import ACCOUNT_ID, REGION
from relay_cloud.local.repo import ensure_functions_importable

log = logging.getLogger("relay_cloud.local.ticker")
REAP_INTERVAL_S = 60.0


def scheduled_event(rule_name: str, *, now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/relay-cloud-{rule_name}"],
        "detail": {},
    }


class _ScheduleContext:
    def __init__(self, name: str) -> None:
        self.function_name = f"relay-cloud-schedule-{name}"
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + 300

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _load(handler: str):
    module, _, attr = handler.rpartition(".")
    return getattr(importlib.import_module(module), attr)


class Ticker:
    def __init__(self, schedules=None, *, table_name: str | None = None, dynamodb_client=None,
                 reap_interval_s: float = REAP_INTERVAL_S, clock=time.monotonic) -> None:
        if schedules is None:
            ensure_functions_importable()
            from functions.manifest import SCHEDULES as schedules
        self.schedules = tuple(schedules)
        self.table_name = table_name
        self.client = dynamodb_client
        self.reap_interval_s = reap_interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Ticker":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="relay-cloud-ticker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        started = self._clock()
        # Like a new rate rule, the first run comes one period after creation.
        due = {spec.name: started + spec.rate_minutes * 60 for spec in self.schedules}
        next_reap = started + self.reap_interval_s
        while not self._stop.wait(0.5):
            now = self._clock()
            for spec in self.schedules:
                name, rate, handler = spec.name, spec.rate_minutes, spec.handler
                if now >= due[name]:
                    due[name] = now + rate * 60
                    self.run_schedule(name, handler)
            if self.client is not None and self.table_name and now >= next_reap:
                next_reap = now + self.reap_interval_s
                try:
                    self.reap_expired()
                except Exception as exc:
                    log.error(json.dumps({"msg": "ttl reaper failed", "error": type(exc).__name__}))

    def run_schedule(self, name: str, handler: str):
        """Invoke one schedule's target now (the ticker's loop and tests use this)."""
        started = time.perf_counter()
        try:
            result = _load(handler)(scheduled_event(name), _ScheduleContext(name))
            outcome = "ok"
        except Exception as exc:
            result, outcome = None, type(exc).__name__
        log.info(json.dumps({"msg": "schedule", "name": name, "outcome": outcome,
                             "duration_ms": round((time.perf_counter() - started) * 1000, 1)}))
        return result

    def reap_expired(self, now: float | None = None) -> int:
        """Delete every item whose TTL attribute lies in the past, as DynamoDB's TTL would."""
        from relay_cloud.adapters.dynamo.table import TABLE

        now_s = int(time.time() if now is None else now)
        keys = []
        kwargs = {
            "TableName": self.table_name,
            "FilterExpression": "#ttl < :now",
            "ProjectionExpression": "#pk, #sk",
            "ExpressionAttributeNames": {"#ttl": TABLE.ttl_attribute, "#pk": TABLE.partition_key, "#sk": TABLE.sort_key},
            "ExpressionAttributeValues": {":now": {"N": str(now_s)}},
        }
        while True:
            page = self.client.scan(**kwargs)
            keys += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": key}} for key in keys[start:start + 25]]
            while requests:
                result = self.client.batch_write_item(RequestItems={self.table_name: requests})
                requests = result.get("UnprocessedItems", {}).get(self.table_name, [])
        if keys:
            log.info(json.dumps({"msg": "ttl reaper", "deleted": len(keys)}))
        return len(keys)
