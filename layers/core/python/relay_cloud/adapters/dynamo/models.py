"""pynamodb models of the single table. One Meta for all: the table name and endpoint come from settings.

Each model is one item type; its keys are built in relay_cloud.adapters.dynamo.keys. Reads filter out
items whose ``expires_at`` has passed, because DynamoDB deletes TTL-expired items only eventually (and
moto and DynamoDB Local never do).
"""

from __future__ import annotations

import os

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from relay_cloud.adapters.dynamo.table import BY_DUE_TIME, BY_OWNER, TABLE


class _Meta:
    """Resolved per process from the environment (pynamodb reads Meta at class creation)."""

    table_name = os.environ.get("RELAY_TABLE_NAME", "relay-cloud")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    host = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None
    connect_timeout_seconds = 2
    read_timeout_seconds = 5
    max_retry_attempts = 3


def bind_table(table_name: str, *, host: str | None = None, region: str | None = None) -> None:
    """Point every model at a table (the local stack and tests call this before first use)."""
    for model in ALL_MODELS:
        model.Meta.table_name = table_name
        model.Meta.host = host
        if region:
            model.Meta.region = region
        model._connection = None


class ByDueTime(GlobalSecondaryIndex):
    class Meta:
        index_name = BY_DUE_TIME.name
        projection = AllProjection()

    gsi2pk = UnicodeAttribute(hash_key=True)
    gsi2sk = UnicodeAttribute(range_key=True)


class ByOwner(GlobalSecondaryIndex):
    class Meta:
        index_name = BY_OWNER.name
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class Item(Model):
    """Any item of the table, by its keys and type (for partition-wide reads and deletes)."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True, attr_name=TABLE.partition_key)
    sk = UnicodeAttribute(range_key=True, attr_name=TABLE.sort_key)
    type = UnicodeAttribute()


class UserItem(Item):
    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="USER")

    user_id = UnicodeAttribute()
    github_id = NumberAttribute()
    github_login = UnicodeAttribute()
    name = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    avatar_url = UnicodeAttribute(null=True)
    plan = UnicodeAttribute(default="free")
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    last_login_at = NumberAttribute(null=True)


class GithubIdentityItem(Item):
    """Guard item: maps a GitHub account id to our user id, unique by construction."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="GITHUB_IDENTITY")

    user_id = UnicodeAttribute()


class SessionItem(Item):
    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="SESSION")

    user_id = UnicodeAttribute()
    csrf_token = UnicodeAttribute()
    created_at = NumberAttribute()
    expires_at = NumberAttribute()
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    by_owner = ByOwner()


class OAuthLoginItem(Item):
    """A pending GitHub sign-in: one-time state, PKCE verifier, the pre-login cookie's digest, next path."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="OAUTH_LOGIN")

    code_verifier = UnicodeAttribute()
    browser_binding = UnicodeAttribute()
    next_path = UnicodeAttribute()
    created_at = NumberAttribute()
    expires_at = NumberAttribute()


class DataKeyItem(Item):
    """A user's vault data key, wrapped by the stack's KMS key (CiphertextBlob of GenerateDataKey)."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="DATA_KEY")

    user_id = UnicodeAttribute()
    version = NumberAttribute()
    wrapped_key = BinaryAttribute(legacy_encoding=False)
    kms_key_id = UnicodeAttribute()
    created_at = NumberAttribute()
    retired_at = NumberAttribute(null=True)  # set by rotation: still opens old ciphertext, takes no new one

    @classmethod
    def accepts_new_ciphertext(cls):
        """The condition a transaction storing ciphertext sealed under this key puts on the key item: it
        exists and rotation has not retired it (else the writer seals again under the current key)."""
        return cls.pk.exists() & cls.retired_at.does_not_exist()


class CredentialItem(Item):
    """An encrypted credential; ``ciphertext`` carries its data-key version (see adapters.vault)."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="CREDENTIAL")

    user_id = UnicodeAttribute()
    provider = UnicodeAttribute()
    credential_id = UnicodeAttribute()
    purpose = UnicodeAttribute()
    ciphertext = BinaryAttribute(legacy_encoding=False, null=True)  # absent for workspace_login connections
    key_version = NumberAttribute(null=True)
    metadata = MapAttribute(default=dict)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    # Provider connections (SPEC C2/C3); the sign-in token leaves these unset.
    method = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)  # valid | refresh_failed | revoked
    failure_reason = UnicodeAttribute(null=True)
    account = UnicodeAttribute(null=True)
    token_issued_at = NumberAttribute(null=True)
    token_expires_at = NumberAttribute(null=True)
    refresh_due_at = NumberAttribute(null=True)
    last_refreshed_at = NumberAttribute(null=True)
    generation = NumberAttribute(default=0)  # bumped on every write of new tokens (conditional writes)
    lease_owner = UnicodeAttribute(null=True)  # the refresher holding the single-flight lease
    lease_until = NumberAttribute(null=True)
    refresh_attempts = NumberAttribute(null=True)  # sweeps in a row that ran out of retry budget
    gsi2pk = UnicodeAttribute(null=True)  # REFRESH#<bucket> while a refresh is due, else absent
    gsi2sk = UnicodeAttribute(null=True)
    by_due_time = ByDueTime()


class DeviceFlowItem(Item):
    """An RFC 8628 device authorization in progress, polled by the device-flow workflow.

    The device code is a bearer secret: it is kept sealed in the vault, never in the workflow's input."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="DEVICE_FLOW")
    flow_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    provider = UnicodeAttribute()
    status = UnicodeAttribute()  # pending | connected | expired | denied | error | cancelled
    user_code = UnicodeAttribute()
    verification_uri = UnicodeAttribute()
    verification_uri_complete = UnicodeAttribute(null=True)
    interval = NumberAttribute()
    flow_expires_at = NumberAttribute()
    device_code = BinaryAttribute(legacy_encoding=False)
    key_version = NumberAttribute()
    execution_arn = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    expires_at = NumberAttribute()  # TTL: a day after the device code expires


class SweepCursorItem(Item):
    """Where a scheduled sweep resumes: the oldest due bucket that may still hold work."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="SWEEP_CURSOR")
    bucket = NumberAttribute()
    updated_at = NumberAttribute()


class LinkRequestItem(Item):
    """A daemon's RFC 8628 device authorization (docs/design/daemon-linking.md), under the SHA-256 of its
    device code. Reads treat ``created_at`` + 600 s as the expiry; ``expires_at`` is the TTL (a day later)."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="LINK_REQUEST")
    user_code = UnicodeAttribute()
    client_id = UnicodeAttribute()
    machine_id = UnicodeAttribute()
    name = UnicodeAttribute()
    public_key = UnicodeAttribute()
    requesting_ip = UnicodeAttribute(null=True)
    status = UnicodeAttribute()  # pending | approved | denied | consumed
    user_id = UnicodeAttribute(null=True)  # who decided it
    allowed_providers = ListAttribute(of=UnicodeAttribute, null=True)
    daemon_id = UnicodeAttribute(null=True)
    interval = NumberAttribute()
    last_polled_at = NumberAttribute(null=True)
    created_at = NumberAttribute()
    expires_at = NumberAttribute()


class LinkCodeItem(Item):
    """Guard item: the user code of a live link request, unique through a conditional put."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="LINK_CODE")
    device_hash = UnicodeAttribute()
    expires_at = NumberAttribute()


class DaemonItem(Item):
    """A linked machine. ``key_hash`` is the hex SHA-256 of its key's secret (set at the token exchange);
    ``revoked_at`` refuses the key from the next request on."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="DAEMON")
    daemon_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    name = UnicodeAttribute()
    machine_id = UnicodeAttribute()
    public_key = UnicodeAttribute()
    key_hash = UnicodeAttribute(null=True)
    allowed_providers = ListAttribute(of=UnicodeAttribute, default=list)
    linked_at = NumberAttribute()
    last_seen_at = NumberAttribute(null=True)
    revoked_at = NumberAttribute(null=True)
    agents = ListAttribute(default=list)  # the last heartbeat's inventory (it replaces the previous one)
    metrics = MapAttribute(null=True)  # the last heartbeat's metrics: {name: number}
    commands = MapAttribute(null=True)  # {command_id: command}: queued, returned by every heartbeat until reported
    gsi1pk = UnicodeAttribute()
    gsi1sk = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)  # TTL, set only when revoked
    by_owner = ByOwner()


class AuditItem(Item):
    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="AUDIT")

    event_id = UnicodeAttribute()
    action = UnicodeAttribute()
    actor = UnicodeAttribute()
    subject = UnicodeAttribute()
    reason = UnicodeAttribute(null=True)
    detail = MapAttribute(default=dict)
    at = NumberAttribute()
    expires_at = NumberAttribute(null=True)


class MessageItem(Item):
    """A cross-machine message pending in the target daemon's inbox until acked (or its TTL)."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="MESSAGE")
    message_id = UnicodeAttribute()
    from_daemon_id = UnicodeAttribute()
    from_agent = UnicodeAttribute(null=True)
    to_agent = UnicodeAttribute()
    body = UnicodeAttribute()  # the compact JSON of the sent body (at most 64 KiB)
    sent_at = NumberAttribute()
    deliveries = NumberAttribute(default=0)
    lease_until = NumberAttribute(null=True)  # leased to a receive until then; redelivered afterwards
    expires_at = NumberAttribute()  # TTL: sent_at + 24 h (reads also treat it as the expiry)


class InboxCounterItem(Item):
    """How many messages a daemon's inbox holds (the 1,000 cap is a condition on it)."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="INBOX_COUNTER")
    pending = NumberAttribute(default=0)
    recounted_at = NumberAttribute(null=True)


class CommandResultItem(Item):
    """The final outcome of a command a daemon ran: a second report of the same id finds it here."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="COMMAND_RESULT")
    command_id = UnicodeAttribute()
    command_type = UnicodeAttribute()
    args = MapAttribute(null=True)  # what the command asked: a repeated report tells its sink the same
    status = UnicodeAttribute()  # succeeded | failed
    output = MapAttribute(null=True)
    error = MapAttribute(null=True)
    finished_at = NumberAttribute()
    expires_at = NumberAttribute()


class WorkspaceLoginItem(Item):
    """A provider CLI login running on one of the user's machines; the cloud relays prompts, never tokens."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="WORKSPACE_LOGIN")
    login_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    provider = UnicodeAttribute()
    daemon_id = UnicodeAttribute()
    command_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    prompt = MapAttribute(null=True)  # {url, user_code, needs_code} as the machine relayed them
    error = MapAttribute(null=True)  # {code, message}
    login_expires_at = NumberAttribute()
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    expires_at = NumberAttribute()  # TTL


class RateLimitItem(Item):
    """One fixed window of a rate limit: a conditional counter."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="RATE_LIMIT")
    count = NumberAttribute(default=0)
    expires_at = NumberAttribute()


class RepoItem(Item):
    """A repository a user added (docs/design/repositories.md), in the user's partition."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="REPO")
    repo_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    github_id = NumberAttribute()
    full_name = UnicodeAttribute()
    name = UnicodeAttribute()
    owner = UnicodeAttribute()
    private = BooleanAttribute()
    default_branch = UnicodeAttribute()
    html_url = UnicodeAttribute(null=True)
    added_at = NumberAttribute()
    attached_workspace_id = UnicodeAttribute(null=True)  # absent until a workspace attaches it


class RepoGuardItem(Item):
    """Guard item: one of the user's repositories per GitHub repository id (unique by a conditional put)."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="REPO_GUARD")
    repo_id = UnicodeAttribute()


class UsageItem(Item):
    """A user's usage of one plan-limited resource: a counter moved only with the items it counts."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="USAGE")
    count = NumberAttribute(default=0)


class WorkspaceItem(Item):
    """A hosted workspace (docs/design/workspaces.md); every status write is conditional on the status
    it expects. ``gsi2pk`` (the sparse reconcile index) is present only while the status is watched."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="WORKSPACE")
    workspace_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    name = UnicodeAttribute()
    status = UnicodeAttribute()
    compute = UnicodeAttribute()
    region = UnicodeAttribute()
    size = UnicodeAttribute()
    app_name = UnicodeAttribute()
    repo_ids = ListAttribute(of=UnicodeAttribute, default=list)
    providers = ListAttribute(of=UnicodeAttribute, default=list)
    resources = MapAttribute(default=dict)  # app, ips, volume_id, machine_id, daemon_id: filled step by step
    host = UnicodeAttribute(null=True)
    error = MapAttribute(null=True)  # {code, message, step}
    execution_arn = UnicodeAttribute(null=True)
    running_since = NumberAttribute(null=True)
    compute_seconds = NumberAttribute(default=0)
    domain = MapAttribute(null=True)
    slot_held = BooleanAttribute(default=True)  # the plan slot is counted until fail or the final delete
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    gsi1pk = UnicodeAttribute()
    gsi1sk = UnicodeAttribute()
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = UnicodeAttribute(null=True)
    by_owner = ByOwner()
    by_due_time = ByDueTime()


class WorkspaceEventItem(Item):
    """One step event of a workspace's provisioning or teardown (what the UI's progress shows)."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="WORKSPACE_EVENT")
    step = UnicodeAttribute()
    state = UnicodeAttribute()
    message = UnicodeAttribute()
    at = NumberAttribute()  # ms
    expires_at = NumberAttribute()  # TTL: 30 days


class DomainGuardItem(Item):
    """Guard item: which workspace holds a custom domain (unique across all workspaces). Written in one
    transaction with the workspace's ``domain`` map; an unverified claim carries ``expires_at`` (also the
    TTL) and may be taken over once it has passed, a verified one never expires."""

    class Meta(_Meta):
        pass

    type = UnicodeAttribute(default="DOMAIN_GUARD")
    domain = UnicodeAttribute()
    workspace_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    token = UnicodeAttribute()  # the ownership TXT value (public: the user publishes it in DNS)
    verified = BooleanAttribute(default=False)
    claimed_at = NumberAttribute()
    verified_at = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)  # TTL while unverified; removed when verified


ALL_MODELS = (
    Item, UserItem, GithubIdentityItem, SessionItem, OAuthLoginItem, DataKeyItem, CredentialItem, DeviceFlowItem, SweepCursorItem,
    AuditItem, LinkRequestItem, LinkCodeItem, DaemonItem, MessageItem, InboxCounterItem,
    CommandResultItem, WorkspaceLoginItem, RateLimitItem, RepoItem, RepoGuardItem, UsageItem,
    WorkspaceItem, WorkspaceEventItem, DomainGuardItem,
)
