"""``DaemonRepository.upsert_workspace_daemon`` on moto and on DynamoDB Local: a cloud workspace's own
daemon is created without a link flow, a re-run rotates its key (and brings a revoked one back), and it
can never take over a daemon id that belongs to another machine or user."""

from __future__ import annotations

import pytest

from relay_cloud.adapters.dynamo.daemons import DaemonRepository
from relay_cloud.domain.daemons import Daemon
from relay_cloud.domain.errors import Conflict

DAEMON_ID = "dmn_" + "a" * 32
NOW = 1_800_000_000


def workspace_daemon(**overrides) -> Daemon:
    fields = dict(daemon_id=DAEMON_ID, user_id="usr_owner", name="dev box", machine_id="ws_" + "0" * 20,
                  public_key="pk-1", key_hash="h1", allowed_providers=("anthropic",), linked_at=NOW)
    return Daemon(**{**fields, **overrides})


def test_create_rotate_and_revive(backend):
    daemons = DaemonRepository()
    daemons.upsert_workspace_daemon(workspace_daemon(), now=NOW)
    stored = daemons.get(DAEMON_ID)
    assert (stored.key_hash, stored.public_key, stored.allowed_providers, stored.active) == (
        "h1", "pk-1", ("anthropic",), True)
    assert [d.daemon_id for d in daemons.owned_by("usr_owner")] == [DAEMON_ID]

    assert daemons.revoke(DAEMON_ID, user_id="usr_owner", now=NOW + 1)
    daemons.upsert_workspace_daemon(workspace_daemon(key_hash="h2", public_key="pk-2", name="renamed"), now=NOW + 2)
    rotated = daemons.get(DAEMON_ID)
    assert (rotated.key_hash, rotated.public_key, rotated.name, rotated.revoked_at) == ("h2", "pk-2", "renamed", None)
    assert rotated.linked_at == NOW + 2 and rotated.active
    assert [d.daemon_id for d in daemons.owned_by("usr_owner")] == [DAEMON_ID]  # still one machine


@pytest.mark.parametrize("other", [{"user_id": "usr_intruder"}, {"machine_id": "ws_" + "1" * 20}])
def test_never_takes_over_another_daemon(backend, other):
    daemons = DaemonRepository()
    daemons.upsert_workspace_daemon(workspace_daemon(), now=NOW)
    with pytest.raises(Conflict):
        daemons.upsert_workspace_daemon(workspace_daemon(key_hash="stolen", **other), now=NOW + 1)
    assert daemons.get(DAEMON_ID).key_hash == "h1"
