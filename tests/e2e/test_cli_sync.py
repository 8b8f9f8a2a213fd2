"""``relay-cloud sync`` against the local stack: an Anthropic API key connected in the dashboard (checked
by the sandbox provider), a machine approved for anthropic only; sync opens the lease sealed to the
machine's key and prints or writes (0600) the export, and says what it skipped without any value."""

from __future__ import annotations

from tests.e2e.conftest import SEEN_SECRETS
from tests.e2e.test_daemon_messaging import cli, link_machine, mode, signed_in
from tests.e2e.test_workspace_login import write

ANTHROPIC_KEY = "sk-ant-api03-" + "s" * 48
OPENAI_KEY = "sk-proj-" + "o" * 48


def test_sync_prints_and_writes_the_leased_key_for_allowed_providers_only(local_stack, tmp_path):
    SEEN_SECRETS.update({ANTHROPIC_KEY, OPENAI_KEY})
    user = signed_in(local_stack, "sync")
    connected = write(user, "POST", "/api/providers/anthropic/connect", json={"method": "api_key", "api_key": ANTHROPIC_KEY})
    assert connected.status_code == 201, connected.text
    home = tmp_path / "ci-box"
    link_machine(local_stack, user, home, "ci-box", allowed_providers=["anthropic"])

    printed = cli(home, "sync", "--print-env")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == f"export ANTHROPIC_API_KEY={ANTHROPIC_KEY}\n"
    assert ANTHROPIC_KEY not in printed.stderr
    assert not (home / "credentials.env").exists()

    written = cli(home, "sync")
    assert written.returncode == 0, written.stderr
    env_file = home / "credentials.env"
    assert mode(env_file) == 0o600
    assert env_file.read_text() == f"export ANTHROPIC_API_KEY={ANTHROPIC_KEY}\n"
    assert ANTHROPIC_KEY not in written.stdout + written.stderr and "ANTHROPIC_API_KEY" in written.stdout

    # A provider the machine is not allowed never reaches it, connected or not.
    other = write(user, "POST", "/api/providers/openai/connect", json={"method": "api_key", "api_key": OPENAI_KEY})
    if other.status_code == 201:
        again = cli(home, "sync", "--print-env")
        assert again.returncode == 0 and OPENAI_KEY not in again.stdout + again.stderr
