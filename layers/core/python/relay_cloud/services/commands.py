"""Commands from the cloud to a daemon (docs/design/daemon-messaging.md): queued in the daemon item,
delivered by its heartbeat, and reported back through ``POST /api/daemons/commands/{id}/result``.

A final report is recorded exactly once (the entry's removal and the result's Put are one transaction),
and reporting again is idempotent: the stored outcome is answered with ``duplicate: true``. After every
recorded report, duplicates included, the command type's sink is told (sinks are idempotent), so a sink
that failed after the result was stored gets another chance when the daemon retries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from relay_cloud.domain.commands import (
    COMMAND_ID_PATTERN,
    DEFAULT_TTL_SECONDS,
    RUNNING,
    live,
    new_command,
    validate_report,
)
from relay_cloud.domain.daemons import DAEMON_ID_PATTERN, DaemonPrincipal
from relay_cloud.domain.errors import DependencyUnavailable, Gone, NotFound

REPORT_ATTEMPTS = 3  # a report losing a race re-reads the entry: finished (duplicate) or expired (410)


@dataclass
class CommandService:
    daemons: object
    audit: object
    # command type -> callable(user_id, daemon_id, command, status, output, error)
    sinks: dict = field(default_factory=dict)
    clock: Callable[[], float] = time.time

    def enqueue(self, user_id: str, daemon_id: str, type: str, args: dict,
                ttl_seconds: int = DEFAULT_TTL_SECONDS) -> dict:
        """Queue a command for one of the user's linked machines; returns the queued entry."""
        now = self.clock()
        command = new_command(type, args, now_ms=int(now * 1000), ttl_seconds=ttl_seconds)
        if not DAEMON_ID_PATTERN.fullmatch(daemon_id or ""):
            raise NotFound("No such machine", code="DAEMON_NOT_FOUND")
        self.daemons.enqueue_command(daemon_id, user_id=user_id, command=command, now=int(now))
        self.audit.record(subject_user_id=user_id, action="daemon.command", actor=user_id,
                          detail={"daemon_id": daemon_id, "command_id": command["command_id"], "type": type})
        return command

    def report(self, caller: DaemonPrincipal, command_id: str, body: dict) -> dict:
        report = validate_report(body)
        if not COMMAND_ID_PATTERN.fullmatch(command_id or ""):
            raise _not_found()
        for _ in range(REPORT_ATTEMPTS):
            now = int(self.clock())
            command = self.daemons.queued_command(caller.daemon_id, command_id)
            if command is None:
                return self._duplicate(caller, command_id, now)
            if not live(command, now):
                self.daemons.remove_expired_command(caller.daemon_id, command_id, now=now)
                raise Gone("This command expired before it finished", code="COMMAND_EXPIRED")
            if report.status == RUNNING:
                recorded = self.daemons.record_progress(caller.daemon_id, command_id, progress=report.output or {},
                                                        now=now)
            else:
                recorded = self.daemons.finish_command(caller.daemon_id, command, status=report.status,
                                                       output=report.output, error=report.error, now=now)
            if recorded:  # else a concurrent report finished it, or it just expired: look again
                if report.status != RUNNING:
                    self._audit_result(caller, command, report.status, report.error)
                self._tell_sink(caller, command, report.status, report.output, report.error)
                return {"command_id": command_id, "status": report.status}
        raise DependencyUnavailable("The command kept changing; retry", code="COMMAND_BUSY")

    def _duplicate(self, caller: DaemonPrincipal, command_id: str, now: int) -> dict:
        """A report of a command no longer queued: answer the stored outcome if it finished, else 404
        (unknown, another daemon's, or expired and already removed)."""
        result = self.daemons.command_result(caller.daemon_id, command_id, now=now)
        if result is None:
            raise _not_found()
        if result["args"] is not None:  # a sink needs the args (which login): results stored without them skip it
            command = {"command_id": command_id, "type": result["type"], "args": result["args"]}
            self._tell_sink(caller, command, result["status"], result["output"], result["error"])
        return {"command_id": command_id, "status": result["status"], "duplicate": True}

    def _tell_sink(self, caller: DaemonPrincipal, command: dict, status: str, output, error) -> None:
        sink = self.sinks.get(command["type"])
        if sink is not None:
            sink(caller.user_id, caller.daemon_id, command, status, output, error)

    def _audit_result(self, caller: DaemonPrincipal, command: dict, status: str, error: dict | None) -> None:
        detail = {"daemon_id": caller.daemon_id, "command_id": command["command_id"], "type": command["type"],
                  "status": status}
        if error is not None:
            detail["error_code"] = error["code"]
        self.audit.record(subject_user_id=caller.user_id, action="daemon.command_result", actor=caller.daemon_id,
                          detail=detail)


def _not_found() -> NotFound:
    return NotFound("No such command for this machine", code="COMMAND_NOT_FOUND")
