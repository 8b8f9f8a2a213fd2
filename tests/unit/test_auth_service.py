from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from relay_cloud.domain.auth import GithubProfile
from relay_cloud.domain.errors import Conflict, Unauthenticated, ValidationFailed
from relay_cloud.services.auth import AuthService
from tests.fakes import Clock, FakeAudit, FakeGithub, FakeLogins, FakeSessions, FakeUsers, FakeVault

TTL = 7 * 24 * 3600
OCTO = GithubProfile(github_id=42, login="octocat", name="Octo Cat", email="octo@example.com", avatar_url=None)


@pytest.fixture
def svc():
    return AuthService(
        users=FakeUsers(), sessions=FakeSessions(), logins=FakeLogins(), audit=FakeAudit(), vault=FakeVault(),
        github=FakeGithub(), redirect_uri="https://app.test/api/auth/github/callback", session_ttl=TTL, clock=Clock(),
    )


def start(svc, next_path="/dashboard/team", profile=OCTO, code="code-1"):
    begun = svc.begin_sign_in(next_path)
    state = parse_qs(urlsplit(begun.authorize_url).query)["state"][0]
    svc.github.grant(code, profile)
    return begun, state


def test_sign_in_creates_user_session_and_encrypted_token(svc):
    begun, state = start(svc)
    done = svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    assert done.next_path == "/dashboard/team"
    assert done.user.github_login == "octocat" and done.user.plan == "free"
    assert svc.sessions.get(done.session.session_id, svc.clock()) is not None
    stored = svc.users.credentials[(done.user.user_id, "github")]
    assert b"gho_faketoken" not in stored.ciphertext
    assert svc.users.data_keys[done.user.user_id]  # the first data key travels with the sign-in
    assert [e["action"] for e in svc.audit.events] == ["auth.sign_in"]


def test_second_sign_in_reuses_user_and_issues_a_new_session_id(svc):
    begun, state = start(svc)
    first = svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    begun, state = start(svc, code="code-2")
    second = svc.finish_sign_in(state=state, code="code-2", error=None, browser_secret=begun.browser_secret)
    assert second.user.user_id == first.user.user_id
    assert second.session.session_id != first.session.session_id
    assert second.session.csrf_token != first.session.csrf_token
    assert len(svc.users.users) == 1


@pytest.mark.parametrize("state", [None, ""])
def test_missing_state_is_rejected(svc, state):
    begun, _ = start(svc)
    with pytest.raises(ValidationFailed) as err:
        svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    assert err.value.code == "OAUTH_STATE_MISSING"


def test_replayed_state_is_rejected_and_creates_nothing_more(svc):
    begun, state = start(svc)
    svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    svc.github.grant("code-again", OCTO)
    with pytest.raises(ValidationFailed) as err:
        svc.finish_sign_in(state=state, code="code-again", error=None, browser_secret=begun.browser_secret)
    assert err.value.code == "OAUTH_STATE_INVALID"
    assert len(svc.sessions.items) == 1


def test_state_from_another_browser_is_rejected(svc):
    _, state = start(svc)
    with pytest.raises(ValidationFailed) as err:
        svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret="someone-elses-cookie")
    assert err.value.code == "OAUTH_STATE_INVALID"
    assert svc.users.users == {} and svc.github.exchanged == []


def test_expired_state_is_rejected(svc):
    begun, state = start(svc)
    svc.clock.advance(601)
    with pytest.raises(ValidationFailed) as err:
        svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    assert err.value.code == "OAUTH_STATE_INVALID"


def test_error_from_github_is_reported_and_nothing_created(svc):
    begun, state = start(svc)
    with pytest.raises(ValidationFailed) as err:
        svc.finish_sign_in(state=state, code=None, error="access_denied", browser_secret=begun.browser_secret)
    assert err.value.code == "OAUTH_DENIED"
    assert svc.users.users == {} and svc.sessions.items == {}


def test_unknown_code_is_rejected_and_nothing_created(svc):
    begun, state = start(svc)
    with pytest.raises(ValidationFailed) as err:
        svc.finish_sign_in(state=state, code="not-a-code", error=None, browser_secret=begun.browser_secret)
    assert err.value.code == "OAUTH_CODE_INVALID"
    assert svc.users.users == {} and svc.sessions.items == {}


@pytest.mark.parametrize("evil", ["https://evil.test/", "//evil.test", "/\\evil.test", "javascript:alert(1)", "/ok\nx"])
def test_open_redirects_are_refused(svc, evil):
    begun, state = start(svc, next_path=evil)
    done = svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    assert done.next_path == "/dashboard"


def test_lost_first_sign_in_race_joins_the_winner(svc):
    from relay_cloud.domain.auth import User

    winner = User("usr_winner", 42, "octocat", None, None, None, "pro", 1)
    begun, state = start(svc)
    svc.users.race_once = winner
    done = svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    assert done.user.user_id == "usr_winner" and done.user.plan == "pro"
    assert len(svc.users.users) == 1


def test_sessions_slide_and_expire(svc):
    begun, state = start(svc)
    sid = svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret).session.session_id
    svc.clock.advance(TTL - 60)
    svc.authenticate(sid)  # near the end: slides forward
    svc.clock.advance(TTL - 60)
    assert svc.authenticate(sid).user_id
    svc.clock.advance(TTL + 1)
    with pytest.raises(Unauthenticated) as err:
        svc.authenticate(sid)
    assert err.value.code == "SESSION_EXPIRED"


def test_session_status_codes(svc):
    assert svc.session_status(None) == {"authenticated": False, "code": "NOT_SIGNED_IN"}
    assert svc.session_status("bogus") == {"authenticated": False, "code": "SESSION_EXPIRED"}
    begun, state = start(svc)
    done = svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    status = svc.session_status(done.session.session_id)
    assert status["authenticated"] and status["csrf_token"] == done.session.csrf_token
    assert status["user"]["github_login"] == "octocat" and status["user"]["plan_name"] == "Free"


def test_sign_out_ends_the_session(svc):
    begun, state = start(svc)
    done = svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    svc.sign_out(svc.authenticate(done.session.session_id))
    with pytest.raises(Unauthenticated):
        svc.authenticate(done.session.session_id)


def test_delete_account_needs_confirmation_then_shreds_and_removes(svc):
    begun, state = start(svc)
    done = svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    who = svc.authenticate(done.session.session_id)
    with pytest.raises(ValidationFailed) as err:
        svc.delete_account(who, "someone-else")
    assert err.value.code == "CONFIRMATION_REQUIRED" and svc.users.users
    svc.delete_account(who, "octocat")
    assert svc.users.users == {} and svc.users.credentials == {}
    assert done.user.user_id in svc.vault.shredded
    assert svc.github.revoked == ["gho_faketoken"]  # the GitHub grant went back before the keys went


class FakeOwnedWorkspaces:
    """The owner index: the user's workspaces (any status) until the teardown deletes their items."""

    def __init__(self):
        self.statuses: dict[str, dict[str, str]] = {}  # user_id → {workspace_id: status}
        self.slots: dict[str, int] = {}  # user_id → plan slots held (read consistently)

    def owned_by(self, user_id):
        return [SimpleNamespace(workspace_id=w, status=s) for w, s in self.statuses.get(user_id, {}).items()]

    def reserved_slots(self, user_id):
        return self.slots.get(user_id, 0)


def test_delete_account_is_refused_while_workspaces_exist_and_keeps_everything(svc):
    svc.workspaces = FakeOwnedWorkspaces()
    begun, state = start(svc)
    done = svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    who = svc.authenticate(done.session.session_id)
    svc.workspaces.statuses[who.user_id] = {"ws_a": "running", "ws_b": "deleting"}

    with pytest.raises(Conflict) as refused:
        svc.delete_account(who, "octocat")
    body = refused.value.body()
    assert refused.value.status == 409 and body["code"] == "WORKSPACES_EXIST"
    assert body["count"] == 2 and body["deleting"] == 1
    assert body["error"].startswith("You still have 2 workspaces. Delete your workspaces first")
    # Nothing happened: the account, its keys and the GitHub grant are all still there.
    assert svc.users.users and not svc.vault.shredded and not getattr(svc.github, "revoked", [])

    svc.workspaces.statuses[who.user_id] = {"ws_b": "deleting"}  # its teardown still runs
    with pytest.raises(Conflict) as waiting:
        svc.delete_account(who, "octocat")
    assert waiting.value.body()["error"].startswith("Your workspace is still being deleted")

    svc.workspaces.statuses[who.user_id] = {}
    svc.workspaces.slots[who.user_id] = 1  # just created: its slot is counted, the owner index lags
    with pytest.raises(Conflict) as lagging:
        svc.delete_account(who, "octocat")
    assert lagging.value.body()["code"] == "WORKSPACES_EXIST" and lagging.value.body()["count"] == 1

    svc.workspaces.slots[who.user_id] = 0  # the teardown deleted the items and released the slot
    svc.delete_account(who, "octocat")
    assert svc.users.users == {} and done.user.user_id in svc.vault.shredded


def test_signing_in_again_in_the_same_browser_ends_the_old_session(svc):
    begun, state = start(svc)
    first = svc.finish_sign_in(state=state, code="code-1", error=None, browser_secret=begun.browser_secret)
    begun, state = start(svc, code="code-2")
    second = svc.finish_sign_in(state=state, code="code-2", error=None, browser_secret=begun.browser_secret,
                                previous_session_id=first.session.session_id)
    assert svc.sessions.get(first.session.session_id, svc.clock()) is None
    assert svc.sessions.get(second.session.session_id, svc.clock()) is not None
