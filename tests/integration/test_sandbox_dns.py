"""The sandbox DNS on the running local stack: records published over HTTP (/_sandbox/dns/records) are
answered by its real DNS server, which the cloud's DomainChecker (dnspython) asks through the resolver
the stack configured: TXT, CNAME, NXDOMAIN, NODATA, removal, validation, and injected failures."""

from __future__ import annotations

import uuid

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from relay_cloud.adapters.dns import DomainChecker
from relay_cloud.adapters.providers import UpstreamUnavailable
from relay_cloud.config import parse_resolver_address
from relay_cloud.domain.domains import challenge_name, new_ownership_token, verify

RECORDS = "/_sandbox/dns/records"


@pytest.fixture
def domain():
    return f"app-{uuid.uuid4().hex[:8]}.acme-corp.dev"


@pytest.fixture
def checker(local_stack):
    from relay_cloud import config
    from relay_cloud.composition import container

    # The stack points the cloud's settings at its sandbox DNS, and the composition root uses them.
    assert config.settings().dns_resolver == local_stack.env["RELAY_DNS_RESOLVER"]
    assert parse_resolver_address(local_stack.env["RELAY_DNS_RESOLVER"])[0] == "127.0.0.1"
    return container().domain_checker


@pytest.fixture(autouse=True)
def _clean(local_stack):
    local_stack.sandboxes["dns"]._clear_faults(None)
    yield
    local_stack.sandboxes["dns"]._clear_faults(None)


def publish(http, name, kind, value, **extra):
    return http.post(RECORDS, json={"name": name, "type": kind, "value": value, **extra})


def test_published_txt_and_cname_verify_a_domain_through_the_real_resolver(http, checker, domain):
    token, host = new_ownership_token(), "ws-abc123.relay-workspaces.dev"
    txt = publish(http, challenge_name(domain), "TXT", token)
    assert txt.status_code == 201
    assert txt.json() | {"id": "x"} == {"id": "x", "name": challenge_name(domain), "type": "TXT", "value": token,
                                        "ttl": 60}
    assert publish(http, domain.upper() + ".", "CNAME", host).status_code == 201  # stored normalized

    assert checker.txt_values(challenge_name(domain)) == [token]
    assert checker.cname_target(domain) == host
    result = verify(checker.txt_values(challenge_name(domain)), checker.cname_target(domain), token, host,
                    domain=domain)
    assert result.verified


def test_unknown_names_and_missing_types_are_empty_not_errors(http, checker, domain):
    assert checker.txt_values(challenge_name(domain)) == []  # NXDOMAIN
    assert checker.cname_target(domain) is None
    assert publish(http, domain, "A", "203.0.113.10").status_code == 201
    assert checker.cname_target(domain) is None  # the name exists, without a CNAME (NODATA)
    assert checker.txt_values(domain) == []


def test_the_server_speaks_plain_dns(local_stack, http, domain):
    host, port = parse_resolver_address(local_stack.env["RELAY_DNS_RESOLVER"])
    publish(http, domain, "AAAA", "2001:db8::7")
    answer = dns.query.udp(dns.message.make_query(domain, "AAAA"), host, port=port, timeout=3)
    assert answer.rcode() == dns.rcode.NOERROR and answer.flags & dns.flags.AA
    assert [rr.to_text() for rr in answer.answer[0]] == ["2001:db8::7"]
    missing = dns.query.udp(dns.message.make_query("nope." + domain, "TXT"), host, port=port, timeout=3)
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.answer == []
    nodata = dns.query.udp(dns.message.make_query(domain, "TXT"), host, port=port, timeout=3)
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []
    chaos = dns.query.udp(dns.message.make_query(domain, "TXT", rdclass="CH"), host, port=port, timeout=3)
    assert chaos.rcode() == dns.rcode.REFUSED


def test_a_cname_answer_carries_the_chain_to_published_targets(local_stack, http, checker, domain):
    target = "edge." + domain
    publish(http, domain, "CNAME", target)
    publish(http, target, "TXT", "hello")
    assert checker.txt_values(domain) == ["hello"]  # followed through the CNAME
    host, port = parse_resolver_address(local_stack.env["RELAY_DNS_RESOLVER"])
    reply = dns.query.udp(dns.message.make_query(domain, "TXT"), host, port=port, timeout=3)
    assert [rrset.rdtype for rrset in reply.answer] == [dns.rdatatype.CNAME, dns.rdatatype.TXT]


def test_a_long_txt_value_comes_back_whole_over_tcp_fallback(http, checker, domain):
    value = "k=" + "x" * 700  # over 255 bytes (split in strings) and over 512 (truncated on UDP)
    assert publish(http, challenge_name(domain), "TXT", value).status_code == 201
    assert checker.txt_values(challenge_name(domain)) == [value]


def test_removal_by_id_and_by_filter(http, checker, domain):
    first = publish(http, challenge_name(domain), "TXT", "one").json()
    publish(http, challenge_name(domain), "TXT", "two")
    assert sorted(checker.txt_values(challenge_name(domain))) == ["one", "two"]

    assert http.delete(f"{RECORDS}/{first['id']}").status_code == 204
    assert http.delete(f"{RECORDS}/{first['id']}").status_code == 404
    assert checker.txt_values(challenge_name(domain)) == ["two"]

    removed = http.request("DELETE", RECORDS, json={"name": challenge_name(domain), "type": "TXT"})
    assert removed.status_code == 200 and removed.json() == {"removed": 1}
    assert checker.txt_values(challenge_name(domain)) == []
    assert http.get(RECORDS, params={"name": challenge_name(domain)}).json() == {"records": []}


def test_listing_and_idempotent_publish(http, domain):
    created = publish(http, domain, "CNAME", "ws-1.relay-workspaces.dev")
    again = publish(http, domain, "CNAME", "WS-1.relay-workspaces.dev.")
    assert again.status_code == 200 and again.json() == created.json()
    listed = http.get(RECORDS, params={"name": domain}).json()["records"]
    assert listed == [created.json()]
    assert created.json() in http.get(RECORDS, params={"type": "cname"}).json()["records"]


@pytest.mark.parametrize(("body", "status"), [
    ({"name": "x.acme.dev", "type": "MX", "value": "mail.acme.dev"}, 400),
    ({"name": "x.acme.dev", "type": "A", "value": "2001:db8::1"}, 400),
    ({"name": "x.acme.dev", "type": "AAAA", "value": "10.0.0.1"}, 400),
    ({"name": "x.acme.dev", "type": "CNAME", "value": "not a name"}, 400),
    ({"name": "x.acme.dev", "type": "TXT", "value": "y" * 3000}, 400),
    ({"name": "x.acme.dev", "type": "TXT", "value": 5}, 400),
    ({"name": "nodots", "type": "TXT", "value": "v"}, 400),
    ({"name": "bad name.acme.dev", "type": "TXT", "value": "v"}, 400),
    ({"type": "TXT", "value": "v"}, 400),
    ({"name": "x.acme.dev", "type": "TXT", "value": "v", "ttl": -1}, 400),
])
def test_invalid_records_are_refused(http, body, status):
    assert http.post(RECORDS, json=body).status_code == status
    assert http.post(RECORDS, content=b"not json", headers={"Content-Type": "application/json"}).status_code == 400


def test_a_cname_stands_alone_at_its_name(http, domain):
    assert publish(http, domain, "TXT", "v").status_code == 201
    assert publish(http, domain, "CNAME", "ws-1.relay-workspaces.dev").status_code == 409
    other = "other." + domain
    assert publish(http, other, "CNAME", "ws-1.relay-workspaces.dev").status_code == 201
    assert publish(http, other, "CNAME", "ws-2.relay-workspaces.dev").status_code == 409
    assert publish(http, other, "A", "203.0.113.1").status_code == 409


def test_servfail_and_timeouts_are_upstream_unavailable(local_stack, http, domain):
    publish(http, challenge_name(domain), "TXT", "v")
    assert http.post("/_sandbox/dns/_faults", json={"path_contains": domain, "status": 503}).status_code == 201
    with pytest.raises(UpstreamUnavailable) as err:
        DomainChecker(local_stack.env["RELAY_DNS_RESOLVER"], timeout=2).txt_values(challenge_name(domain))
    assert err.value.code == "UPSTREAM_UNAVAILABLE" and err.value.status == 503

    http.post("/_sandbox/dns/_faults", json={"path_contains": domain, "delay_ms": 1500, "count": 5})
    with pytest.raises(UpstreamUnavailable):
        DomainChecker(local_stack.env["RELAY_DNS_RESOLVER"], timeout=0.5).cname_target(domain)
    http.request("DELETE", "/_sandbox/dns/_faults")
    assert DomainChecker(local_stack.env["RELAY_DNS_RESOLVER"], timeout=2).txt_values(challenge_name(domain)) == ["v"]


def test_a_resolver_nobody_listens_on_is_upstream_unavailable():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        silent = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, never answers
        with pytest.raises(UpstreamUnavailable):
            DomainChecker(silent, timeout=0.5).txt_values("_relay-challenge.app.acme-corp.dev")
