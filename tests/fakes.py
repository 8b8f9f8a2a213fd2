"""In-memory fakes of the service ports, for unit tests (no sockets, no moto)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from relay_cloud.domain.auth import GithubProfile
from relay_cloud.domain.errors import Conflict, ValidationFailed


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeUsers:
    def __init__(self):
        self.users, self.identities, self.credentials, self.data_keys = {}, {}, {}, {}
        self.race_once = None  # a User to insert just before the next save, as a concurrent sign-in would
        self.audit = []  # audit items written together with a change (plan changes)

    def get(self, user_id):
        return self.users.get(user_id)

    def user_id_for_github(self, github_id):
        return self.identities.get(github_id)

    def save_sign_in(self, user, *, is_new, credential, new_data_key, now, previous_login=None):
        if self.race_once is not None:
            winner, self.race_once = self.race_once, None
            self.users[winner.user_id] = winner
            self.identities[winner.github_id] = winner.user_id
        if is_new and user.github_id in self.identities:
            raise Conflict("race", code="SIGN_IN_RACE")
        self.users[user.user_id] = user
        self.identities[user.github_id] = user.user_id
        self.credentials[(user.user_id, credential.provider)] = credential
        if new_data_key is not None:
            self.data_keys[user.user_id] = new_data_key

    def find_by_github_login(self, login):
        return next((u for u in self.users.values() if u.github_login.lower() == login.lower()), None)

    def change_plan(self, user_id, *, from_plan, to_plan, actor, reason, now):
        user = self.users.get(user_id)
        if user is None or user.plan != from_plan:
            raise Conflict("plan changed", code="PLAN_CHANGED")
        self.users[user_id] = replace(user, plan=to_plan)
        self.audit.append({"subject": user_id, "action": "plan.set", "actor": actor, "reason": reason,
                           "detail": {"from": from_plan, "to": to_plan}, "at": now})

    def sign_in_ciphertext(self, user_id, provider, credential_id):
        credential = self.credentials.get((user_id, provider))
        return credential.ciphertext if credential else None

    def account_items(self, user):
        yield ("USER#" + user.user_id, "PROFILE")
        for (uid, provider) in list(self.credentials):
            if uid == user.user_id:
                yield ("USER#" + uid, "CRED#" + provider)

    def delete_items(self, keys):
        deleted = 0
        for pk, sk in keys:
            uid = pk.removeprefix("USER#")
            if sk == "PROFILE":
                user = self.users.pop(uid)
                self.identities.pop(user.github_id, None)
            else:
                self.credentials.pop((uid, sk.removeprefix("CRED#")), None)
            deleted += 1
        return deleted


class FakeSessions:
    def __init__(self):
        self.items = {}

    def create(self, session):
        assert session.session_id not in self.items
        self.items[session.session_id] = session

    def get(self, session_id, now):
        session = self.items.get(session_id)
        return session if session and session.expires_at > now else None

    def slide(self, session, expires_at):
        if session.session_id in self.items:
            self.items[session.session_id] = replace(session, expires_at=expires_at)

    def delete(self, session_id):
        self.items.pop(session_id, None)


class FakeLogins:
    def __init__(self):
        self.items = {}

    def put(self, login, now):
        self.items[login.state] = login

    def take(self, state, now):
        login = self.items.pop(state, None)
        return login if login and login.expires_at > now else None


class FakeAudit:
    def __init__(self):
        self.events = []

    def record(self, **event):
        self.events.append(event)


class FakeLimiter:
    """The rate limiter's conditional counter, in memory: a hit counts only while the window is not full."""

    def __init__(self):
        self.counts = {}

    def hit(self, scope, subject, *, limit, window_seconds, now):
        window = (scope, subject, now // window_seconds)
        if self.counts.get(window, 0) >= limit:
            return False
        self.counts[window] = self.counts.get(window, 0) + 1
        return True

    def count(self, scope, subject, *, window_seconds, now):
        return self.counts.get((scope, subject, now // window_seconds), 0)


@dataclass
class Sealed:
    ciphertext: bytes
    key_version: int
    new_data_key: object


class FakeVault:
    """Reversible 'encryption' that is obviously not the plaintext, with a per-user key marker."""

    def __init__(self):
        self.keys, self.shredded = set(), set()

    def seal(self, ctx, plaintext):
        new_key = None if ctx.user_id in self.keys else f"key-of-{ctx.user_id}"
        self.keys.add(ctx.user_id)
        return Sealed(b"sealed:" + plaintext[::-1], 1, new_key)

    def decrypt(self, ctx, ciphertext, *, actor, reason):
        if ctx.user_id not in self.keys:
            from relay_cloud.domain.errors import VaultError

            raise VaultError("shredded", code="VAULT_UNKNOWN_KEY")
        return ciphertext.removeprefix(b"sealed:")[::-1]

    def shred(self, user_id):
        self.keys.discard(user_id)
        self.shredded.add(user_id)


class FakeGithub:
    def __init__(self):
        self.codes = {}  # code -> (verifier_challenge, profile, token)
        self.exchanged = []

    def authorize_url(self, *, state, code_challenge, redirect_uri):
        self.last_challenge = code_challenge
        return f"https://github.test/login/oauth/authorize?state={state}&code_challenge={code_challenge}"

    def grant(self, code, profile: GithubProfile, token="gho_faketoken"):
        self.codes[code] = (self.last_challenge, profile, token)

    def exchange_code(self, *, code, code_verifier, redirect_uri):
        from relay_cloud.domain.auth import pkce_challenge

        entry = self.codes.pop(code, None)
        if entry is None or pkce_challenge(code_verifier) != entry[0]:
            raise ValidationFailed("bad code", code="OAUTH_CODE_INVALID")
        self.exchanged.append(code)
        self.profiles = getattr(self, "profiles", {})
        self.profiles[entry[2]] = entry[1]
        return entry[2]

    def profile(self, token):
        return self.profiles[token]

    def revoke_grant(self, token):
        self.revoked = getattr(self, "revoked", []) + [token]
        return True
