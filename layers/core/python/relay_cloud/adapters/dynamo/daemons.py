"""DynamoDB repositories for daemon linking (docs/design/daemon-linking.md): link requests with their
user-code guards, and linked daemons with their command queue and results (docs/design/daemon-messaging.md).
Failed user-code lookups are counted by the rate limiter (rate_limits.py).

Each method is one access pattern; every write that must not race is conditional or transactional.
"""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import size
from pynamodb.transactions import TransactWrite

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
from relay_cloud.adapters.dynamo.models import (
    CommandResultItem,
    DaemonItem,
    LinkCodeItem,
    LinkRequestItem,
)
from relay_cloud.domain.commands import MAX_QUEUED, RESULT_RETENTION_SECONDS, live
from relay_cloud.domain.daemons import (
    APPROVED,
    CONSUMED,
    DENIED,
    LINK_RETENTION_SECONDS,
    LINK_TTL_SECONDS,
    PENDING,
    Daemon,
    LinkRequest,
)
from relay_cloud.domain.errors import Conflict, DependencyUnavailable, NotFound, RateLimited

REVOKED_RETENTION_SECONDS = 90 * 24 * 3600  # a revoked daemon stays readable (401 REVOKED) this long
ENQUEUE_ATTEMPTS = 3  # reads + conditional writes of one enqueue racing other writers of the queue


def _transaction() -> TransactWrite:
    return TransactWrite(connection=DaemonItem._get_connection().connection)


def _link_request(item: LinkRequestItem) -> LinkRequest:
    return LinkRequest(
        device_hash=item.pk.removeprefix("LINK#"),
        user_code=item.user_code,
        client_id=item.client_id,
        machine_id=item.machine_id,
        name=item.name,
        public_key=item.public_key,
        requesting_ip=item.requesting_ip,
        status=item.status,
        user_id=item.user_id,
        allowed_providers=tuple(item.allowed_providers or ()),
        daemon_id=item.daemon_id,
        interval=int(item.interval),
        last_polled_at=int(item.last_polled_at) if item.last_polled_at is not None else None,
        created_at=int(item.created_at),
    )


def _daemon(item: DaemonItem) -> Daemon:
    return Daemon(
        daemon_id=item.daemon_id,
        user_id=item.user_id,
        name=item.name,
        machine_id=item.machine_id,
        public_key=item.public_key,
        key_hash=item.key_hash,
        allowed_providers=tuple(item.allowed_providers or ()),
        linked_at=int(item.linked_at),
        last_seen_at=int(item.last_seen_at) if item.last_seen_at is not None else None,
        revoked_at=int(item.revoked_at) if item.revoked_at is not None else None,
        agents=tuple(item.agents or ()),
    )


def _live(now: int):
    """Condition: the request has not expired (reads treat created_at + 600 s as the expiry)."""
    return LinkRequestItem.created_at > now - LINK_TTL_SECONDS


class LinkRepository:
    def create(self, request: LinkRequest) -> None:
        """The request and its user-code guard in one transaction; Conflict when the user code (or,
        never in practice, the device code) is taken: the caller retries with new codes."""
        item = LinkRequestItem(
            keys.link_request_pk(request.device_hash), keys.LINK_REQUEST_SK,
            user_code=request.user_code, client_id=request.client_id, machine_id=request.machine_id,
            name=request.name, public_key=request.public_key, requesting_ip=request.requesting_ip,
            status=PENDING, interval=request.interval, created_at=request.created_at,
            expires_at=request.created_at + LINK_TTL_SECONDS + LINK_RETENTION_SECONDS,
        )
        guard = LinkCodeItem(keys.link_code_pk(request.user_code), keys.LINK_CODE_SK,
                             device_hash=request.device_hash, expires_at=request.expires_at)
        with translated("transaction"):
            try:
                with _transaction() as tx:
                    tx.save(item, condition=LinkRequestItem.pk.does_not_exist())
                    tx.save(guard, condition=LinkCodeItem.pk.does_not_exist())
            except TransactWriteError as exc:
                if is_condition_failure(exc):
                    raise Conflict("The user code is taken", code="USER_CODE_TAKEN") from exc
                raise

    def get(self, device_hash: str) -> LinkRequest | None:
        with translated("get"):
            try:
                item = LinkRequestItem.get(keys.link_request_pk(device_hash), keys.LINK_REQUEST_SK,
                                           consistent_read=True)
            except LinkRequestItem.DoesNotExist:
                return None
        return _link_request(item)

    def device_hash_for(self, user_code: str, now: int) -> str | None:
        """The device hash behind a live user code (an expired guard is gone, whatever TTL did)."""
        with translated("get"):
            try:
                guard = LinkCodeItem.get(keys.link_code_pk(user_code), keys.LINK_CODE_SK, consistent_read=True)
            except LinkCodeItem.DoesNotExist:
                return None
        return guard.device_hash if guard.expires_at > now else None

    def record_poll(self, device_hash: str, *, previous_polled_at: int | None, now: int, interval: int) -> bool:
        """Note a token poll of a pending request (and its interval after a slow_down); False when
        another poll or a decision got there first."""
        condition = (LinkRequestItem.status == PENDING) & (
            LinkRequestItem.last_polled_at.does_not_exist() if previous_polled_at is None
            else LinkRequestItem.last_polled_at == previous_polled_at)
        return self._update(device_hash, [LinkRequestItem.last_polled_at.set(now),
                                          LinkRequestItem.interval.set(interval)], condition)

    def deny(self, device_hash: str, *, user_id: str, now: int) -> bool:
        condition = (LinkRequestItem.status == PENDING) & _live(now)
        return self._update(device_hash, [LinkRequestItem.status.set(DENIED), LinkRequestItem.user_id.set(user_id)],
                            condition)

    def _update(self, device_hash: str, actions, condition) -> bool:
        with translated("update"):
            try:
                LinkRequestItem(keys.link_request_pk(device_hash), keys.LINK_REQUEST_SK).update(
                    actions=actions, condition=LinkRequestItem.pk.exists() & condition)
                return True
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return False
                raise

    def approve(self, device_hash: str, daemon: Daemon, *, now: int) -> None:
        """The daemon item (no key yet) and the request turning approved, in one transaction
        (condition: the request is still pending and not expired). Conflict otherwise."""
        item = DaemonItem(
            keys.daemon_pk(daemon.daemon_id), keys.DAEMON_SK,
            daemon_id=daemon.daemon_id, user_id=daemon.user_id, name=daemon.name, machine_id=daemon.machine_id,
            public_key=daemon.public_key, allowed_providers=list(daemon.allowed_providers),
            linked_at=daemon.linked_at, agents=[], commands={},
            gsi1pk=keys.owner_gsi_pk(daemon.user_id), gsi1sk=keys.daemon_gsi_sk(daemon.linked_at, daemon.daemon_id),
        )
        request = LinkRequestItem(keys.link_request_pk(device_hash), keys.LINK_REQUEST_SK)
        with translated("transaction"):
            try:
                with _transaction() as tx:
                    tx.save(item, condition=DaemonItem.pk.does_not_exist())
                    tx.update(request, actions=[
                        LinkRequestItem.status.set(APPROVED),
                        LinkRequestItem.user_id.set(daemon.user_id),
                        LinkRequestItem.daemon_id.set(daemon.daemon_id),
                        LinkRequestItem.allowed_providers.set(list(daemon.allowed_providers)),
                    ], condition=LinkRequestItem.pk.exists() & (LinkRequestItem.status == PENDING) & _live(now))
            except TransactWriteError as exc:
                if is_condition_failure(exc):
                    raise Conflict("The link request was decided meanwhile", code="LINK_REQUEST_DECIDED") from exc
                raise

    def exchange(self, device_hash: str, daemon_id: str, key_hash: str, *, now: int) -> bool:
        """Set the daemon's key hash and consume the request in one transaction (condition: the request
        is approved and live, the daemon has no key and was not unlinked). False when it was not."""
        daemon = DaemonItem(keys.daemon_pk(daemon_id), keys.DAEMON_SK)
        request = LinkRequestItem(keys.link_request_pk(device_hash), keys.LINK_REQUEST_SK)
        with translated("transaction"):
            try:
                with _transaction() as tx:
                    tx.update(daemon, actions=[DaemonItem.key_hash.set(key_hash)],
                              condition=DaemonItem.pk.exists() & DaemonItem.key_hash.does_not_exist()
                              & DaemonItem.revoked_at.does_not_exist())
                    tx.update(request, actions=[LinkRequestItem.status.set(CONSUMED)],
                              condition=LinkRequestItem.pk.exists() & (LinkRequestItem.status == APPROVED)
                              & (LinkRequestItem.daemon_id == daemon_id) & _live(now))
                return True
            except TransactWriteError as exc:
                if is_condition_failure(exc):
                    return False
                raise


class DaemonRepository:
    def get(self, daemon_id: str) -> Daemon | None:
        """One strongly consistent GetItem: a revocation is seen by the very next request."""
        with translated("get"):
            try:
                item = DaemonItem.get(keys.daemon_pk(daemon_id), keys.DAEMON_SK, consistent_read=True)
            except DaemonItem.DoesNotExist:
                return None
        return _daemon(item)

    def owned_by(self, user_id: str) -> list[Daemon]:
        """The user's daemons, oldest link first (the owner index; revoked ones included, the caller
        filters)."""
        with translated("query"):
            items = DaemonItem.by_owner.query(keys.owner_gsi_pk(user_id),
                                              DaemonItem.gsi1sk.startswith(keys.DAEMON_GSI_PREFIX))
            return [_daemon(item) for item in items]

    def revoke(self, daemon_id: str, *, user_id: str, now: int) -> bool:
        """Revoke the key of a daemon the user owns; False when there is no such live daemon of theirs."""
        with translated("update"):
            try:
                DaemonItem(keys.daemon_pk(daemon_id), keys.DAEMON_SK).update(
                    actions=[DaemonItem.revoked_at.set(now),
                             DaemonItem.expires_at.set(now + REVOKED_RETENTION_SECONDS)],
                    condition=DaemonItem.pk.exists() & (DaemonItem.user_id == user_id)
                    & DaemonItem.revoked_at.does_not_exist(),
                )
                return True
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return False
                raise

    def upsert_workspace_daemon(self, daemon: Daemon, *, now: int) -> None:
        """Create a cloud workspace's own daemon (no link flow: the provisioning workflow mints it), or
        rotate its key and public key when the step runs again; a revoked one comes back to life. One
        UpdateItem, on condition that the id is free or already this user's daemon for this workspace
        (``machine_id`` = the workspace id), so it can never take over another daemon. Conflict otherwise."""
        item = DaemonItem(keys.daemon_pk(daemon.daemon_id), keys.DAEMON_SK)
        with translated("update"):
            try:
                item.update(actions=[
                    DaemonItem.type.set("DAEMON"),
                    DaemonItem.daemon_id.set(daemon.daemon_id),
                    DaemonItem.user_id.set(daemon.user_id),
                    DaemonItem.name.set(daemon.name),
                    DaemonItem.machine_id.set(daemon.machine_id),
                    DaemonItem.public_key.set(daemon.public_key),
                    DaemonItem.key_hash.set(daemon.key_hash),
                    DaemonItem.allowed_providers.set(list(daemon.allowed_providers)),
                    DaemonItem.linked_at.set(now),
                    DaemonItem.agents.set(DaemonItem.agents | []),
                    DaemonItem.gsi1pk.set(keys.owner_gsi_pk(daemon.user_id)),
                    DaemonItem.gsi1sk.set(keys.daemon_gsi_sk(now, daemon.daemon_id)),
                    DaemonItem.revoked_at.remove(),
                    DaemonItem.expires_at.remove(),
                ], condition=DaemonItem.pk.does_not_exist()
                    | ((DaemonItem.user_id == daemon.user_id) & (DaemonItem.machine_id == daemon.machine_id)))
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    raise Conflict("That daemon id belongs to another machine", code="DAEMON_ID_TAKEN") from exc
                raise

    def heartbeat(self, daemon_id: str, *, key_hash: str, now: int, agents: list, metrics: dict) -> list | None:
        """Authenticate and record a heartbeat in ONE conditional UpdateItem, no read first (SPEC §6):
        last_seen_at, the reported inventory (replacing the previous one) and the metrics, on condition
        that the key hash matches and the daemon was not unlinked. Returns the live queued commands read
        from the ALL_NEW item (expires_at > now, in id order; [] when there are none: expired entries are
        removed by the next enqueue or report), or None when the condition failed: no such daemon, a
        wrong key, a daemon without a key yet, or a revoked one."""
        item = DaemonItem(keys.daemon_pk(daemon_id), keys.DAEMON_SK)
        with translated("update"):
            try:
                item.update(  # pynamodb asks for ReturnValues=ALL_NEW and loads it into ``item``
                    actions=[DaemonItem.last_seen_at.set(now), DaemonItem.agents.set(agents),
                             DaemonItem.metrics.set(metrics)],
                    condition=(DaemonItem.key_hash == key_hash) & DaemonItem.revoked_at.does_not_exist(),
                )
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return None
                raise
        return _live_commands(item, now)

    # -- the command queue (the daemon item's ``commands`` map) and results --------------------------

    def enqueue_command(self, daemon_id: str, *, user_id: str, command: dict, now: int) -> None:
        """Queue a command for a linked, keyed, unrevoked daemon of ``user_id``, removing expired entries
        in the same UpdateItem. NotFound DAEMON_NOT_FOUND otherwise; RateLimited COMMAND_QUEUE_FULL when
        MAX_QUEUED live commands are queued.

        A consistent read first finds the expired ids; the write's condition then pins what the read saw
        that matters (owner, key, not revoked, those expired entries still there, the map's size), so a
        concurrent enqueue, report or unlink makes it fail and the loop decides again."""
        key = (keys.daemon_pk(daemon_id), keys.DAEMON_SK)
        for _ in range(ENQUEUE_ATTEMPTS):
            with translated("get"):
                try:
                    item = DaemonItem.get(*key, consistent_read=True)
                except DaemonItem.DoesNotExist:
                    item = None
            if item is None or item.user_id != user_id or not item.key_hash or item.revoked_at is not None:
                raise NotFound("No such machine", code="DAEMON_NOT_FOUND")
            condition = (DaemonItem.pk.exists() & (DaemonItem.user_id == user_id) & DaemonItem.key_hash.exists()
                         & DaemonItem.revoked_at.does_not_exist())
            if item.commands is None:  # daemons linked before the queue existed: create the map
                actions = [DaemonItem.commands.set({command["command_id"]: command})]
                condition &= DaemonItem.commands.does_not_exist()
            else:
                queued = item.commands.as_dict()
                expired = [command_id for command_id, entry in queued.items() if not live(entry, now)]
                if len(queued) - len(expired) >= MAX_QUEUED:
                    raise RateLimited(f"The machine already has {MAX_QUEUED} commands queued; retry later",
                                      code="COMMAND_QUEUE_FULL")
                actions = [DaemonItem.commands[command["command_id"]].set(command)]
                actions += [DaemonItem.commands[command_id].remove() for command_id in expired]
                condition &= DaemonItem.commands.exists() & (size(DaemonItem.commands) < MAX_QUEUED + len(expired))
                for command_id in expired:
                    condition &= DaemonItem.commands[command_id].exists()
            if self._update_daemon(daemon_id, actions, condition):
                return
        raise DependencyUnavailable("The machine's command queue kept changing; retry", code="COMMAND_QUEUE_BUSY")

    def queued_command(self, daemon_id: str, command_id: str) -> dict | None:
        """The queued entry (expired or not: the caller decides), or None. One consistent GetItem."""
        with translated("get"):
            try:
                item = DaemonItem.get(keys.daemon_pk(daemon_id), keys.DAEMON_SK, consistent_read=True)
            except DaemonItem.DoesNotExist:
                return None
        return item.commands.as_dict().get(command_id) if item.commands is not None else None

    def record_progress(self, daemon_id: str, command_id: str, *, progress: dict, now: int) -> bool:
        """Note a ``running`` report on a live entry (it stays queued); False when the entry is gone or
        expired meanwhile."""
        entry = DaemonItem.commands[command_id]
        return self._update_daemon(
            daemon_id, [entry["progress"].set(progress), entry["reported_at"].set(now)],
            DaemonItem.pk.exists() & entry.exists() & (entry["expires_at"] > now))

    def finish_command(self, daemon_id: str, command: dict, *, status: str, output: dict | None,
                       error: dict | None, now: int) -> bool:
        """Remove the live entry and store the result in one transaction; False when the entry is gone
        (another report finished it), expired, or the result already exists."""
        command_id = command["command_id"]
        entry = DaemonItem.commands[command_id]
        result = CommandResultItem(
            keys.daemon_pk(daemon_id), keys.command_result_sk(command_id),
            command_id=command_id, command_type=command["type"], status=status, output=output, error=error,
            args=command.get("args") or {}, finished_at=now, expires_at=now + RESULT_RETENTION_SECONDS,
        )
        with translated("transaction"):
            try:
                with _transaction() as tx:
                    tx.update(DaemonItem(keys.daemon_pk(daemon_id), keys.DAEMON_SK), actions=[entry.remove()],
                              condition=DaemonItem.pk.exists() & entry.exists() & (entry["expires_at"] > now))
                    tx.save(result, condition=CommandResultItem.pk.does_not_exist())
                return True
            except TransactWriteError as exc:
                if is_condition_failure(exc):
                    return False
                raise

    def command_result(self, daemon_id: str, command_id: str, *, now: int) -> dict | None:
        """A finished command's stored outcome ``{command_id, type, args, status, output, error,
        finished_at}``, or None (never finished, another daemon's, or past its retention)."""
        with translated("get"):
            try:
                item = CommandResultItem.get(keys.daemon_pk(daemon_id), keys.command_result_sk(command_id),
                                             consistent_read=True)
            except CommandResultItem.DoesNotExist:
                return None
        if item.expires_at <= now:
            return None
        return {"command_id": item.command_id, "type": item.command_type,
                "args": item.args.as_dict() if item.args is not None else None, "status": item.status,
                "output": item.output.as_dict() if item.output is not None else None,
                "error": item.error.as_dict() if item.error is not None else None,
                "finished_at": int(item.finished_at)}

    def remove_expired_command(self, daemon_id: str, command_id: str, *, now: int) -> bool:
        """Drop an entry past its ``expires_at`` (a live one is left alone)."""
        entry = DaemonItem.commands[command_id]
        return self._update_daemon(daemon_id, [entry.remove()],
                                   DaemonItem.pk.exists() & entry.exists() & (entry["expires_at"] <= now))

    @staticmethod
    def _update_daemon(daemon_id: str, actions, condition) -> bool:
        with translated("update"):
            try:
                DaemonItem(keys.daemon_pk(daemon_id), keys.DAEMON_SK).update(actions=actions, condition=condition)
                return True
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return False
                raise


def _live_commands(item: DaemonItem, now: int) -> list[dict]:
    """The entries a daemon should still run (expires_at > now), in id order (= enqueue order)."""
    commands = item.commands.as_dict() if item.commands is not None else {}
    return [commands[key] for key in sorted(commands) if live(commands[key], now)]
