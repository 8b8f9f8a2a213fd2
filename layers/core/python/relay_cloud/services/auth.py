"""Sign-in with GitHub, sessions, and account deletion (SPEC C1).

The service sees only ports: user/session/login repositories, an audit log, the vault, the GitHub
client and a clock. Production wiring lives in relay_cloud.composition; tests pass fakes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

from relay_cloud.adapters.dynamo.keys import digest
from relay_cloud.domain.auth import (
    OAUTH_LOGIN_TTL_SECONDS,
    GithubProfile,
    PendingLogin,
    Principal,
    Session,
    User,
    new_id,
    new_secret,
    pkce_pair,
    safe_next,
    same_secret,
)
from relay_cloud.domain.errors import Conflict, DependencyUnavailable, Unauthenticated, ValidationFailed, VaultError
from relay_cloud.domain.plans import DEFAULT_TIER, PLANS
from relay_cloud.domain.workspaces import DELETING

GITHUB_PROVIDER = "github"
SIGN_IN_CREDENTIAL_ID = "sign-in"
TOKEN_PURPOSE = "oauth_access_token"


class GithubClient(Protocol):
    def authorize_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str: ...
    def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> str: ...
    def profile(self, token: str) -> GithubProfile: ...
    def revoke_grant(self, token: str) -> bool: ...


@dataclass(frozen=True)
class SignInStart:
    authorize_url: str
    browser_secret: str  # the pre-login cookie's value: binds the callback to this browser


@dataclass(frozen=True)
class SignInDone:
    session: Session
    user: User
    next_path: str


@dataclass(frozen=True)
class StoredCredential:
    user_id: str
    provider: str
    credential_id: str
    purpose: str
    ciphertext: bytes
    key_version: int
    metadata: dict


@dataclass
class AuthService:
    users: object
    sessions: object
    logins: object
    audit: object
    vault: object
    github: GithubClient
    redirect_uri: str
    session_ttl: int
    clock: Callable[[], float] = time.time
    # The user's workspaces (``owned_by``): their machines run and bill at the compute provider until
    # deleted, so the account cannot go while one exists. None: no workspaces in this deployment.
    workspaces: object = None

    def _now(self) -> int:
        return int(self.clock())

    # -- sign-in -------------------------------------------------------------------------------

    def begin_sign_in(self, next_path: str | None) -> SignInStart:
        state, browser_secret = new_secret(), new_secret()
        verifier, challenge = pkce_pair()
        now = self._now()
        self.logins.put(
            PendingLogin(state, verifier, digest(browser_secret), safe_next(next_path), now + OAUTH_LOGIN_TTL_SECONDS),
            now,
        )
        url = self.github.authorize_url(state=state, code_challenge=challenge, redirect_uri=self.redirect_uri)
        return SignInStart(url, browser_secret)

    def finish_sign_in(
        self,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        browser_secret: str | None,
        previous_session_id: str | None = None,
    ) -> SignInDone:
        if not state:
            raise ValidationFailed("The sign-in response has no state", code="OAUTH_STATE_MISSING")
        login = self.logins.take(state, self._now())  # one-time: a replay finds nothing
        if login is None or not same_secret(digest(browser_secret or ""), login.browser_binding):
            raise ValidationFailed("This sign-in link is not valid any more", code="OAUTH_STATE_INVALID")
        if error:
            raise ValidationFailed("GitHub sign-in was cancelled", code="OAUTH_DENIED")
        if not code:
            raise ValidationFailed("The sign-in response has no code", code="OAUTH_CODE_INVALID")
        token = self.github.exchange_code(code=code, code_verifier=login.code_verifier, redirect_uri=self.redirect_uri)
        profile = self.github.profile(token)
        try:
            user = self._store_sign_in(profile, token)
        except Conflict:
            user = self._store_sign_in(profile, token)  # lost a first-sign-in race: the winner's user now exists
        session = self._new_session(user.user_id)
        if previous_session_id:  # whatever session this browser held before is over (no fixation)
            self.sessions.delete(previous_session_id)
        self.audit.record(subject_user_id=user.user_id, action="auth.sign_in", actor=user.user_id, reason="github")
        return SignInDone(session, user, login.next_path)

    def _store_sign_in(self, profile: GithubProfile, token: str) -> User:
        from relay_cloud.adapters.vault import VaultContext

        now = self._now()
        existing_id = self.users.user_id_for_github(profile.github_id)
        existing = self.users.get(existing_id) if existing_id else None
        user = User(
            user_id=existing.user_id if existing else new_id("usr"),
            github_id=profile.github_id,
            github_login=profile.login,
            name=profile.name,
            email=profile.email,
            avatar_url=profile.avatar_url,
            plan=existing.plan if existing else DEFAULT_TIER,
            created_at=existing.created_at if existing else now,
        )
        context = VaultContext(user.user_id, GITHUB_PROVIDER, SIGN_IN_CREDENTIAL_ID, TOKEN_PURPOSE)
        sealed = self.vault.seal(context, token.encode())
        credential = StoredCredential(
            user.user_id, GITHUB_PROVIDER, SIGN_IN_CREDENTIAL_ID, TOKEN_PURPOSE,
            sealed.ciphertext, sealed.key_version, {"login": profile.login},
        )
        self.users.save_sign_in(
            user, is_new=existing is None, credential=credential, new_data_key=sealed.new_data_key, now=now,
            previous_login=existing.github_login if existing else None,
        )
        return user

    def _new_session(self, user_id: str) -> Session:
        now = self._now()
        session = Session(new_secret(), user_id, new_secret(), now, now + self.session_ttl)
        self.sessions.create(session)
        return session

    # -- sessions ------------------------------------------------------------------------------

    def authenticate(self, session_id: str | None) -> Principal:
        session = self.sessions.get(session_id, self._now()) if session_id else None
        if session is None:
            raise Unauthenticated("Your session has expired, please sign in again", code="SESSION_EXPIRED")
        now = self._now()
        if session.needs_slide(now, self.session_ttl):
            self.sessions.slide(session, now + self.session_ttl)
        return Principal(session.user_id, session.session_id, session.csrf_token)

    def session_status(self, session_id: str | None) -> dict:
        if not session_id:
            return {"authenticated": False, "code": "NOT_SIGNED_IN"}
        try:
            principal = self.authenticate(session_id)
        except Unauthenticated:
            return {"authenticated": False, "code": "SESSION_EXPIRED"}
        user = self.users.get(principal.user_id)
        if user is None:
            return {"authenticated": False, "code": "SESSION_EXPIRED"}
        return {"authenticated": True, "user": _public_user(user), "csrf_token": principal.csrf_token}

    def me(self, principal: Principal) -> dict:
        user = self.users.get(principal.user_id)
        if user is None:
            raise Unauthenticated("Your account no longer exists", code="SESSION_EXPIRED")
        return {
            **_public_user(user),
            "connected_providers": [{"provider": GITHUB_PROVIDER, "account": user.github_login, "method": "sign_in"}],
            "pending_invites": 0,
        }

    def sign_out(self, principal: Principal) -> None:
        self.sessions.delete(principal.session_id)

    # -- account -------------------------------------------------------------------------------

    def delete_account(self, principal: Principal, confirm: str | None) -> int:
        """Crypto-shred first (the data keys go, so every ciphertext is unreadable even if a later
        delete fails), then remove every item of the account, sessions included."""
        user = self.users.get(principal.user_id)
        if user is None:
            raise Unauthenticated("Your account no longer exists", code="SESSION_EXPIRED")
        if confirm != user.github_login:
            raise ValidationFailed(
                "Type your GitHub username to confirm deleting your account", code="CONFIRMATION_REQUIRED"
            )
        self._refuse_while_workspaces_exist(user)
        self._revoke_github_grant(user)
        self.vault.shred(user.user_id)
        return self.users.delete_items(list(self.users.account_items(user)))

    def _refuse_while_workspaces_exist(self, user: User) -> None:
        """409 ``WORKSPACES_EXIST`` while any workspace of the user is still there (one being deleted
        included: its teardown may still have machines to remove, and a failed one needs the user to
        delete it again). Deleting the account first would leave them running, and billing, unowned."""
        if self.workspaces is None:
            return
        left = self.workspaces.owned_by(user.user_id)  # eventually consistent: the slots cover its lag
        count = max(len(left), self.workspaces.reserved_slots(user.user_id))
        if not count:
            return
        deleting = sum(1 for workspace in left if workspace.status == DELETING)
        message = (f"You still have {count} workspace{'s' if count != 1 else ''}. Delete your workspaces first "
                   "(Workspaces page), then delete your account.")
        if deleting == count:
            message = (f"Your {'workspaces are' if count != 1 else 'workspace is'} still being deleted. "
                       "Try again once the Workspaces page is empty.")
        raise Conflict(message, code="WORKSPACES_EXIST", count=count, deleting=deleting)

    def _revoke_github_grant(self, user: User) -> None:
        """Give the GitHub authorization back before forgetting it (best effort: deletion goes on)."""
        from relay_cloud.adapters.vault import VaultContext

        ciphertext = self.users.sign_in_ciphertext(user.user_id, GITHUB_PROVIDER, SIGN_IN_CREDENTIAL_ID)
        if ciphertext is None:
            return
        context = VaultContext(user.user_id, GITHUB_PROVIDER, SIGN_IN_CREDENTIAL_ID, TOKEN_PURPOSE)
        try:
            token = self.vault.decrypt(context, ciphertext, actor=user.user_id, reason="revoke on account deletion")
        except (VaultError, DependencyUnavailable):
            return
        self.github.revoke_grant(token.decode())


def _public_user(user: User) -> dict:
    data = user.to_public()
    data["plan_name"] = PLANS[user.plan].name if user.plan in PLANS else user.plan
    return data
