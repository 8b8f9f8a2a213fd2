"""``relay-cloud``: one entry point, one subcommand module per verb.

Only argparse is imported here; each subcommand imports what it needs when it runs, so ``relay-cloud
--help`` stays instant and ``relay-cloud daemon`` does not pay for moto.
"""

from __future__ import annotations

import argparse
import sys


def _dev(args: argparse.Namespace) -> int:
    from relay_cloud.cli.dev import run

    return run(port=args.port, sandbox=args.sandbox)


def _link(args: argparse.Namespace) -> int:
    from relay_cloud.cli.link import run

    return run(cloud=args.cloud, name=args.name, force=args.force, qr=args.qr)


def _unlink(args: argparse.Namespace) -> int:
    from relay_cloud.cli.unlink import run

    return run()


def _status(args: argparse.Namespace) -> int:
    from relay_cloud.cli.status import run

    return run()


def _daemon(args: argparse.Namespace) -> int:
    from relay_cloud.cli.daemon import run

    return run(agents=args.agents, once=args.once)


def _sync(args: argparse.Namespace) -> int:
    from relay_cloud.cli.sync import run

    return run(print_env=args.print_env)


def _send(args: argparse.Namespace) -> int:
    from relay_cloud.cli.send import run

    return run(target=args.target, content=args.content, from_agent=args.from_agent, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay-cloud", description="Agent Relay Cloud: the control plane for teams of AI coding agents."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    dev = commands.add_parser(
        "dev", help="run the whole control plane on this machine (embedded AWS, web app, sandbox upstreams)",
        description="Run Agent Relay Cloud locally on 127.0.0.1 until Ctrl-C.",
    )
    dev.add_argument("--port", type=int, default=8787, help="port to serve on (default 8787; 0 picks a free one)")
    dev.add_argument(
        "--no-sandbox", dest="sandbox", action="store_false",
        help="talk to the real GitHub (RELAY_GITHUB_CLIENT_ID/SECRET must be set) instead of the sandboxes",
    )
    dev.set_defaults(handler=_dev)

    link = commands.add_parser(
        "link", help="link this machine to Agent Relay Cloud (approve the code in the dashboard)",
        description="Link this machine: show a code to approve in the dashboard, then store the machine's key "
        "in the user data dir ($RELAY_CLOUD_HOME, else $XDG_DATA_HOME/relay-cloud or ~/.local/share/relay-cloud).",
    )
    link.add_argument(
        "--cloud", metavar="URL", default=None,
        help="the cloud to link to (default: $RELAY_CLOUD_URL, else http://127.0.0.1:8787)",
    )
    link.add_argument("--name", metavar="NAME", default=None, help="how the machine is shown (default: hostname)")
    link.add_argument(
        "--force", action="store_true",
        help="replace an existing local link (the old one stays linked on the server until unlinked there)",
    )
    link.add_argument("--no-qr", dest="qr", action="store_false", help="do not print a QR code")
    link.set_defaults(handler=_link)

    unlink = commands.add_parser(
        "unlink", help="revoke this machine's key and delete the local config",
        description="Revoke this machine's key in the cloud, then delete the local config.",
    )
    unlink.set_defaults(handler=_unlink)

    status = commands.add_parser(
        "status", help="show the link and whether the cloud still accepts this machine's key",
        description="Show the link and check the key (read-only). Exit 0 when linked and accepted, else 1.",
    )
    status.set_defaults(handler=_status)

    daemon = commands.add_parser(
        "daemon", help="keep this machine online: heartbeats, the agents' inboxes, commands from the dashboard",
        description="Heartbeat with this machine's agents, write their messages into <data dir>/inbox/<agent>/ "
        "and run the dashboard's commands (provider logins) until SIGTERM or Ctrl-C. Exit 3 when the machine "
        "was unlinked.",
    )
    daemon.add_argument(
        "--agent", dest="agents", metavar="NAME[:PROVIDER]", action="append", default=[],
        help="an agent on this machine (repeatable), e.g. --agent alice:anthropic",
    )
    daemon.add_argument("--once", action="store_true", help="run one cycle and exit (0 when it succeeded)")
    daemon.set_defaults(handler=_daemon)

    sync = commands.add_parser(
        "sync", help="fetch this machine's credential leases into <data dir>/credentials.env",
        description="Fetch the short-lived credential leases allowed for this machine, open them with its key "
        "and write <data dir>/credentials.env (mode 0600) with one export per provider.",
    )
    sync.add_argument("--print-env", action="store_true", help="print the exports instead of writing the file")
    sync.set_defaults(handler=_sync)

    send = commands.add_parser(
        "send", help="send a message to an agent on one of your machines",
        description="Send a message to DAEMON/AGENT (DAEMON: a daemon id or machine name). The body is "
        '{"text": TEXT}; @FILE reads the text from FILE (@- from stdin); --json sends the JSON value instead.',
    )
    send.add_argument("target", metavar="DAEMON/AGENT")
    send.add_argument("content", metavar="TEXT|@FILE")
    send.add_argument("--from", dest="from_agent", metavar="AGENT", default=None, help="the sending agent's name")
    send.add_argument("--json", action="store_true", help="the message is a JSON value, not text")
    send.set_defaults(handler=_send)

    from relay_cloud.cli import admin  # argparse only at import: the command imports pynamodb when it runs

    admin.add_parser(commands)
    # Planned: bench — a parser here and a module under relay_cloud/cli.
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
