"""DynamoDB repositories for sign-in: users, GitHub identities, sessions, pending OAuth logins, audit.

Each method is one access pattern; writes that must not race are conditional or transactional.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
from relay_cloud.adapters.dynamo.models import (
    AuditItem,
    CredentialItem,
    DataKeyItem,
    GithubIdentityItem,
    Item,
    OAuthLoginItem,
    SessionItem,
    UserItem,
)
from relay_cloud.domain.auth import PendingLogin, Session, User
from relay_cloud.domain.errors import Conflict

AUDIT_RETENTION_SECONDS = 400 * 24 * 3600
LOGIN_GUARD_TYPE = "GITHUB_LOGIN"  # a GithubIdentityItem keyed by login (keys.github_login_pk)


def _user(item: UserItem) -> User:
    return User(
        user_id=item.user_id,
        github_id=int(item.github_id),
        github_login=item.github_login,
        name=item.name,
        email=item.email,
        avatar_url=item.avatar_url,
        plan=item.plan,
        created_at=int(item.created_at),
    )


def _transaction() -> TransactWrite:
    return TransactWrite(connection=UserItem._get_connection().connection)


class UserRepository:
    def get(self, user_id: str) -> User | None:
        with translated():
            try:
                return _user(UserItem.get(keys.user_pk(user_id), keys.USER_PROFILE_SK))
            except UserItem.DoesNotExist:
                return None

    def user_id_for_github(self, github_id: int) -> str | None:
        with translated():
            try:
                item = GithubIdentityItem.get(
                    keys.github_identity_pk(github_id), keys.IDENTITY_SK, consistent_read=True
                )
            except GithubIdentityItem.DoesNotExist:
                return None
            return item.user_id

    def save_sign_in(
        self,
        user: User,
        *,
        is_new: bool,
        credential,
        new_data_key: DataKeyItem | None,
        now: int,
        previous_login: str | None = None,
    ) -> None:
        """One transaction: the user (created or refreshed), their GitHub identity guard, their login
        guard, the encrypted GitHub token, and the user's first data key when the vault just made one.
        All or nothing. ``previous_login``: the login stored before this sign-in (a rename frees it)."""
        item = UserItem(
            keys.user_pk(user.user_id),
            keys.USER_PROFILE_SK,
            user_id=user.user_id,
            github_id=user.github_id,
            github_login=user.github_login,
            name=user.name,
            email=user.email,
            avatar_url=user.avatar_url,
            plan=user.plan,
            created_at=user.created_at,
            updated_at=now,
            last_login_at=now,
        )
        with translated():
            try:
                with _transaction() as tx:
                    if is_new:
                        tx.save(item, condition=UserItem.pk.does_not_exist())
                        tx.save(
                            GithubIdentityItem(
                                keys.github_identity_pk(user.github_id), keys.IDENTITY_SK, user_id=user.user_id
                            ),
                            condition=GithubIdentityItem.pk.does_not_exist(),
                        )
                    else:
                        tx.update(
                            item,
                            actions=[
                                UserItem.github_login.set(user.github_login),
                                UserItem.name.set(user.name),
                                UserItem.email.set(user.email),
                                UserItem.avatar_url.set(user.avatar_url),
                                UserItem.updated_at.set(now),
                                UserItem.last_login_at.set(now),
                            ],
                            condition=UserItem.pk.exists(),
                        )
                    # Unconditional: GitHub just said this login is this account's now, whoever held it
                    # before (logins can be renamed and re-registered). Readers check it (find_by_github_login).
                    tx.save(GithubIdentityItem(keys.github_login_pk(user.github_login), keys.IDENTITY_SK,
                                               user_id=user.user_id, type=LOGIN_GUARD_TYPE))
                    tx.save(
                        CredentialItem(
                            keys.user_pk(credential.user_id),
                            keys.credential_sk(credential.provider, credential.credential_id),
                            user_id=credential.user_id,
                            provider=credential.provider,
                            credential_id=credential.credential_id,
                            purpose=credential.purpose,
                            ciphertext=credential.ciphertext,
                            key_version=credential.key_version,
                            metadata=credential.metadata,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    if new_data_key is not None:
                        tx.save(new_data_key, condition=DataKeyItem.pk.does_not_exist())
                    else:  # a rotation elsewhere must not have deleted the key this was sealed under
                        tx.condition_check(
                            DataKeyItem,
                            keys.user_pk(user.user_id),
                            keys.data_key_sk(credential.key_version),
                            condition=DataKeyItem.accepts_new_ciphertext(),
                        )
            except TransactWriteError as exc:
                if is_condition_failure(exc):
                    raise Conflict("The account changed during sign-in, please retry", code="SIGN_IN_RACE") from exc
                raise
        if previous_login and previous_login.lower() != user.github_login.lower():
            self._release_login(previous_login, user.user_id)

    def _release_login(self, login: str, user_id: str) -> None:
        """Delete a login guard only while it still names this user (someone may have taken the login)."""
        with translated():
            try:
                GithubIdentityItem(keys.github_login_pk(login), keys.IDENTITY_SK).delete(
                    condition=GithubIdentityItem.user_id == user_id
                )
            except PynamoDBException as exc:
                if not is_condition_failure(exc):
                    raise

    def find_by_github_login(self, login: str) -> User | None:
        """The user whose current GitHub login this is (case-insensitive): the login guard, then the user,
        whose stored login must still match (a guard left behind by a rename is not an answer)."""
        with translated():
            try:
                guard = GithubIdentityItem.get(keys.github_login_pk(login), keys.IDENTITY_SK, consistent_read=True)
                item = UserItem.get(keys.user_pk(guard.user_id), keys.USER_PROFILE_SK, consistent_read=True)
            except (GithubIdentityItem.DoesNotExist, UserItem.DoesNotExist):
                return None
        user = _user(item)
        return user if user.github_login.lower() == login.lower() else None

    def change_plan(self, user_id: str, *, from_plan: str, to_plan: str, actor: str, reason: str | None,
                    now: int) -> None:
        """Set the plan only if it is still ``from_plan`` (no lost update), with its audit item, in one
        transaction: a plan change without its audit record cannot happen."""
        user = UserItem(keys.user_pk(user_id), keys.USER_PROFILE_SK)
        with translated():
            try:
                with _transaction() as tx:
                    tx.update(
                        user,
                        actions=[UserItem.plan.set(to_plan), UserItem.updated_at.set(now)],
                        condition=UserItem.pk.exists() & (UserItem.plan == from_plan),
                    )
                    tx.save(audit_item(subject_user_id=user_id, action="plan.set", actor=actor, reason=reason,
                                       detail={"from": from_plan, "to": to_plan}, now_ms=now * 1000))
            except TransactWriteError as exc:
                if is_condition_failure(exc):
                    raise Conflict("The user's plan changed meanwhile (or the account is gone); read it again",
                                   code="PLAN_CHANGED") from exc
                raise

    def sign_in_ciphertext(self, user_id: str, provider: str, credential_id: str) -> bytes | None:
        with translated("get"):
            try:
                item = CredentialItem.get(keys.user_pk(user_id), keys.credential_sk(provider, credential_id),
                                          consistent_read=True)
            except CredentialItem.DoesNotExist:
                return None
        return bytes(item.ciphertext)

    def account_items(self, user: User) -> Iterator[tuple[str, str]]:
        """Every (pk, sk) that belongs to the user: their partition, identity guard, and what the owner
        index lists (sessions; each daemon with its whole partition and its inbox of messages)."""
        with translated():
            for item in Item.query(keys.user_pk(user.user_id), consistent_read=True):
                yield item.pk, item.sk
            yield keys.github_identity_pk(user.github_id), keys.IDENTITY_SK
            owner = self.find_by_github_login(user.github_login)
            if owner is not None and owner.user_id == user.user_id:  # not if the login has a new owner
                yield keys.github_login_pk(user.github_login), keys.IDENTITY_SK
            for owned in SessionItem.by_owner.query(keys.owner_gsi_pk(user.user_id)):
                if not owned.gsi1sk.startswith(keys.DAEMON_GSI_PREFIX):
                    yield owned.pk, owned.sk
                    continue
                # The daemon item comes with its partition (yielding it twice would fail the batch delete).
                daemon_id = owned.pk.removeprefix(keys.daemon_pk(""))
                for pk in (keys.daemon_pk(daemon_id), keys.inbox_pk(daemon_id)):
                    for item in Item.query(pk, consistent_read=True, attributes_to_get=[Item.pk, Item.sk]):
                        yield item.pk, item.sk

    def delete_items(self, item_keys) -> int:
        count = 0
        with translated(), Item.batch_write() as batch:
            for pk, sk in item_keys:
                batch.delete(Item(pk, sk))
                count += 1
        return count


class SessionRepository:
    def create(self, session: Session) -> None:
        with translated():
            SessionItem(
                keys.session_pk(session.session_id),
                keys.SESSION_SK,
                user_id=session.user_id,
                csrf_token=session.csrf_token,
                created_at=session.created_at,
                expires_at=session.expires_at,
                gsi1pk=keys.owner_gsi_pk(session.user_id),
                gsi1sk=f"SESSION#{session.created_at:013d}",
            ).save(condition=SessionItem.pk.does_not_exist())

    def get(self, session_id: str, now: int) -> Session | None:
        with translated():
            try:
                item = SessionItem.get(keys.session_pk(session_id), keys.SESSION_SK)
            except SessionItem.DoesNotExist:
                return None
        if item.expires_at <= now:  # TTL deletion is eventual: expired is gone
            return None
        return Session(session_id, item.user_id, item.csrf_token, int(item.created_at), int(item.expires_at))

    def slide(self, session: Session, expires_at: int) -> None:
        item = SessionItem(keys.session_pk(session.session_id), keys.SESSION_SK)
        with translated():
            try:
                item.update(actions=[SessionItem.expires_at.set(expires_at)], condition=SessionItem.pk.exists())
            except PynamoDBException as exc:
                if not is_condition_failure(exc):  # logged out meanwhile: nothing to slide
                    raise

    def delete(self, session_id: str) -> None:
        with translated():
            SessionItem(keys.session_pk(session_id), keys.SESSION_SK).delete()


class LoginRepository:
    def put(self, login: PendingLogin, now: int) -> None:
        with translated():
            OAuthLoginItem(
                keys.oauth_login_pk(login.state),
                keys.OAUTH_LOGIN_SK,
                code_verifier=login.code_verifier,
                browser_binding=login.browser_binding,
                next_path=login.next_path,
                created_at=now,
                expires_at=login.expires_at,
            ).save(condition=OAuthLoginItem.pk.does_not_exist())

    def take(self, state: str, now: int) -> PendingLogin | None:
        """Consume a pending login exactly once: a conditional delete returning the old item."""
        connection = OAuthLoginItem._get_connection()
        with translated():
            try:
                response = connection.delete_item(
                    keys.oauth_login_pk(state),
                    keys.OAUTH_LOGIN_SK,
                    condition=OAuthLoginItem.pk.exists(),
                    return_values="ALL_OLD",
                )
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return None
                raise
        item = OAuthLoginItem.from_raw_data(response["Attributes"])
        if item.expires_at <= now:
            return None
        return PendingLogin(state, item.code_verifier, item.browser_binding, item.next_path, int(item.expires_at))


def audit_item(*, subject_user_id: str, action: str, actor: str, reason: str | None, detail, now_ms: int) -> AuditItem:
    return AuditItem(
        keys.user_pk(subject_user_id),
        keys.audit_sk(now_ms, secrets.token_hex(6)),
        event_id=secrets.token_hex(8),
        action=action,
        actor=actor,
        subject=subject_user_id,
        reason=reason,
        detail=detail or {},
        at=now_ms,
        expires_at=now_ms // 1000 + AUDIT_RETENTION_SECONDS,
    )


class AuditLog:
    def record(self, *, subject_user_id: str, action: str, actor: str, reason: str | None = None, detail=None) -> None:
        with translated():
            audit_item(subject_user_id=subject_user_id, action=action, actor=actor, reason=reason, detail=detail,
                       now_ms=int(time.time() * 1000)).save()
