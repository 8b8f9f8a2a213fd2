"""DynamoDB repositories for daemon linking (docs/design/daemon-linking.md): link requests with their
user-code guards, the failed-lookup counter, and linked daemons.

Each method is one access pattern; every write that must not race is conditional or transactional.
"""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
from relay_cloud.adapters.dynamo.models import DaemonItem, LinkCodeItem, LinkGuessItem, LinkRequestItem
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
from relay_cloud.domain.errors import Conflict

REVOKED_RETENTION_SECONDS = 90 * 24 * 3600  # a revoked daemon stays readable (401 REVOKED) this long


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
            linked_at=daemon.linked_at, agents=[],
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

    # -- failed user-code lookups (a conditional counter per user and window) ----------------------

    def failed_lookups(self, user_id: str, window: int) -> int:
        with translated("get"):
            try:
                item = LinkGuessItem.get(keys.user_pk(user_id), keys.link_guess_sk(window), consistent_read=True)
            except LinkGuessItem.DoesNotExist:
                return 0
        return int(item.count)

    def count_failed_lookup(self, user_id: str, window: int, *, limit: int, expires_at: int) -> bool:
        """Add one failed lookup; False (nothing added) when the window already holds ``limit``."""
        item = LinkGuessItem(keys.user_pk(user_id), keys.link_guess_sk(window))
        with translated("update"):
            try:
                item.update(actions=[LinkGuessItem.count.add(1), LinkGuessItem.expires_at.set(expires_at),
                                     LinkGuessItem.type.set("LINK_GUESS")],
                            condition=LinkGuessItem.count.does_not_exist() | (LinkGuessItem.count < limit))
                return True
            except PynamoDBException as exc:
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

    def heartbeat(self, daemon_id: str, *, key_hash: str, now: int, agents: list, metrics: dict) -> list | None:
        """Authenticate and record a heartbeat in ONE conditional UpdateItem, no read first (SPEC §6):
        last_seen_at, the reported inventory (replacing the previous one) and the metrics, on condition
        that the key hash matches and the daemon was not unlinked. Returns the queued commands read from
        the ALL_NEW item (ordered by their key; [] when there are none), or None when the condition
        failed: no such daemon, a wrong key, a daemon without a key yet, or a revoked one."""
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
        commands = item.commands.as_dict() if item.commands is not None else {}
        return [commands[key] for key in sorted(commands)]
