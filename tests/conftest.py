"""Shared fixtures: one local stack per test session, and an HTTP client pointed at it."""

from __future__ import annotations

import secrets

import httpx
import pytest


@pytest.fixture(scope="session")
def _session_stack():
    from relay_cloud.local.stack import LocalStack

    stack = LocalStack(port=0).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def local_stack(_session_stack):
    """The whole control plane on 127.0.0.1 (moto, gateway, web, sandboxes), started once per session.

    moto's backends are process-global and an in-process ``mock_aws`` in another test resets them (and
    rebinds the models), so each test gets the stack's resources back before it starts."""
    _session_stack.ensure_bootstrapped()
    return _session_stack


@pytest.fixture
def http(local_stack):
    """A client from its own loopback address (all of 127/8 is local on Linux): per-address limits such as
    20 link requests per 10 minutes count each test apart."""
    address = f"127.{secrets.randbelow(250) + 2}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    with httpx.Client(base_url=local_stack.url, follow_redirects=False, timeout=10,
                      transport=httpx.HTTPTransport(local_address=address)) as client:
        client.source_address = address
        yield client
