"""``relay-cloud``: one entry point, one subcommand module per verb.

Only argparse is imported here; each subcommand imports what it needs when it runs, so ``relay-cloud
--help`` stays instant and ``relay-cloud daemon`` (later) will not pay for moto.
"""

from __future__ import annotations

import argparse
import sys


def _dev(args: argparse.Namespace) -> int:
    from relay_cloud.cli.dev import run

    return run(port=args.port, sandbox=args.sandbox)


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
    # Planned: link, daemon, admin, bench — each a parser here and a module under relay_cloud/cli.
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
