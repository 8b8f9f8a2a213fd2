"""A sandbox DNS: records published over HTTP, answered by a real DNS server on 127.0.0.1 (UDP + TCP).

Custom-domain verification (relay_cloud.adapters.dns) asks a resolver for a TXT record at
``_relay-challenge.<domain>`` and the domain's CNAME. In local runs and tests that resolver is this
sandbox (RELAY_DNS_RESOLVER=127.0.0.1:<port>): it answers authoritatively from the published records,
the way a zone's name server would:

    - a name with no records                  → NXDOMAIN
    - a known name, no record of the type     → NOERROR with an empty answer (NODATA)
    - a name that is a CNAME                  → the CNAME, followed by the target's records of the asked
                                                type when the target is published here too (RFC 1034 §3.6.2)
    - CLASS other than IN                     → REFUSED; opcodes other than QUERY → NOTIMP
    - an answer too big for UDP               → TC set; the same port serves TCP, where the resolver
                                                retries

Control surface (SPEC §5; plain HTTP under /_sandbox/dns, never faulted):
    POST   /records         {"name", "type": TXT|CNAME|A|AAAA, "value", "ttl"?} → 201 the record (200 and
                            the existing record when the same one is already published); 409 when it
                            would put a CNAME beside other data (RFC 1034: a CNAME is alone at its name)
    GET    /records         ?name=&type= filters → {"records": [...]}
    DELETE /records/{id}    → 204 (404 when unknown)
    DELETE /records         {"name"?, "type"?, "value"?} (JSON body or query) → {"removed": n}; no filter
                            removes every record
    POST   /_faults         the shared fault injection, applied to DNS queries: ``path_contains`` is
                            matched against the query name; ``status`` (any) answers SERVFAIL, ``delay_ms``
                            delays the answer (longer than the resolver's timeout = a timeout)
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import socketserver
import sys
import threading
import time
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from relay_cloud.sandbox.base import Request, Response, Sandbox, json_response

log = logging.getLogger("relay_cloud.local")

RECORD_TYPES = ("TXT", "CNAME", "A", "AAAA")
DEFAULT_TTL = 60
MAX_TXT_BYTES = 2048
MAX_CNAME_CHAIN = 8
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


class RecordError(ValueError):
    """A record the sandbox refuses (400), with a message for the caller."""


class RecordConflict(ValueError):
    """A record that would break the zone's rules (409)."""


def normalize_name(raw: object) -> str:
    """Lower-case, no trailing dot; labels of letters, digits, hyphens and underscores (``_relay-challenge``)."""
    if not isinstance(raw, str) or not raw.strip():
        raise RecordError("name is required")
    name = raw.strip().lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise RecordError("name must be a fully qualified DNS name such as _relay-challenge.app.example.dev")
    return name


@dataclass(frozen=True)
class Record:
    id: str
    name: str
    type: str
    value: str
    ttl: int

    def to_public(self) -> dict:
        return {"id": self.id, "name": self.name, "type": self.type, "value": self.value, "ttl": self.ttl}

    def rdata(self):
        if self.type == "A":
            return A(dns.rdataclass.IN, dns.rdatatype.A, self.value)
        if self.type == "AAAA":
            return AAAA(dns.rdataclass.IN, dns.rdatatype.AAAA, self.value)
        if self.type == "CNAME":
            return CNAME(dns.rdataclass.IN, dns.rdatatype.CNAME, dns.name.from_text(self.value))
        raw = self.value.encode()  # a TXT value is one or more character-strings of at most 255 bytes
        return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""])


def _record_value(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise RecordError("value must be a string")
    if kind == "A":
        try:
            return str(ipaddress.IPv4Address(value.strip()))
        except ValueError as exc:
            raise RecordError("an A record's value is an IPv4 address") from exc
    if kind == "AAAA":
        try:
            return str(ipaddress.IPv6Address(value.strip()))
        except ValueError as exc:
            raise RecordError("an AAAA record's value is an IPv6 address") from exc
    if kind == "CNAME":
        try:
            return normalize_name(value)
        except RecordError as exc:
            raise RecordError("a CNAME record's value is a fully qualified DNS name") from exc
    if len(value.encode()) > MAX_TXT_BYTES or not value.isprintable():
        raise RecordError(f"a TXT record's value is printable text of at most {MAX_TXT_BYTES} bytes")
    return value


class DnsSandbox(Sandbox):
    name = "dns"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self._servers: list[tuple[socketserver.BaseServer, threading.Thread]] = []
        self.queries = 0  # DNS questions answered, for tests
        self.route("POST", "/records", self._publish)
        self.route("GET", "/records", self._list)
        self.route("DELETE", "/records", self._remove_matching)
        self.route("DELETE", "/records/{record_id}", self._remove_one)

    def is_control(self, path: str) -> bool:
        return True  # every HTTP path here is control surface; faults apply to DNS queries

    # -- records (also usable directly from tests) ---------------------------------------------------

    def publish(self, name: object, kind: object, value: object, ttl: object = DEFAULT_TTL) -> tuple[Record, bool]:
        """(the record, created?) — publishing the same record twice keeps one."""
        name = normalize_name(name)
        kind = str(kind or "").upper()
        if kind not in RECORD_TYPES:
            raise RecordError(f"type must be one of {', '.join(RECORD_TYPES)}")
        value = _record_value(kind, value)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 86400:
            raise RecordError("ttl must be an integer number of seconds (0-86400)")
        with self._lock:
            here = [r for r in self._records.values() if r.name == name]
            for record in here:
                if record.type == kind and record.value == value:
                    return record, False
            if kind == "CNAME" and here:
                raise RecordConflict(f"{name} already has records: a CNAME must be the only record at its name")
            if kind != "CNAME" and any(r.type == "CNAME" for r in here):
                raise RecordConflict(f"{name} is a CNAME: no other record can live beside it")
            record = Record("rec_" + secrets.token_hex(8), name, kind, value, ttl)
            self._records[record.id] = record
            return record, True

    def remove(self, *, name: str | None = None, kind: str | None = None, value: str | None = None) -> int:
        name = normalize_name(name) if name else None
        kind = kind.upper() if kind else None
        with self._lock:
            doomed = [r.id for r in self._records.values()
                      if (name is None or r.name == name) and (kind is None or r.type == kind)
                      and (value is None or r.value == value or r.value == value.lower().rstrip("."))]
            for record_id in doomed:
                del self._records[record_id]
        return len(doomed)

    def records(self, name: str | None = None, kind: str | None = None) -> list[Record]:
        with self._lock:
            return [r for r in self._records.values()
                    if (name is None or r.name == name) and (kind is None or r.type == kind)]

    # -- HTTP control surface -----------------------------------------------------------------------

    def _publish(self, request: Request) -> Response:
        data = request.json()
        if not isinstance(data, dict):
            return json_response({"message": "Expected a JSON object with name, type and value"}, 400)
        try:
            record, created = self.publish(data.get("name"), data.get("type"), data.get("value"),
                                           data.get("ttl", DEFAULT_TTL))
        except RecordError as exc:
            return json_response({"message": str(exc)}, 400)
        except RecordConflict as exc:
            return json_response({"message": str(exc)}, 409)
        return json_response(record.to_public(), 201 if created else 200)

    def _list(self, request: Request) -> Response:
        try:
            name = normalize_name(request.arg("name")) if request.arg("name") else None
        except RecordError as exc:
            return json_response({"message": str(exc)}, 400)
        kind = (request.arg("type") or "").upper() or None
        return json_response({"records": [r.to_public() for r in self.records(name, kind)]})

    def _remove_one(self, request: Request) -> Response:
        with self._lock:
            removed = self._records.pop(request.params["record_id"], None)
        return Response(204) if removed else json_response({"message": "Not Found"}, 404)

    def _remove_matching(self, request: Request) -> Response:
        filters = request.form()  # JSON body or query string
        try:
            removed = self.remove(name=filters.get("name") or None, kind=filters.get("type") or None,
                                  value=filters.get("value") or None)
        except RecordError as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response({"removed": removed})

    # -- the DNS server ------------------------------------------------------------------------------

    def start_server(self, host: str = "127.0.0.1") -> str:
        """Serve DNS on ``host``:<free port>, UDP and TCP (a resolver retries a truncated UDP answer over
        TCP); answers "ip:port" (RELAY_DNS_RESOLVER)."""
        if not self._servers:
            for _attempt in range(20):
                udp = _UdpServer((host, 0), self)
                try:
                    tcp = _TcpServer((host, udp.server_address[1]), self)
                except OSError:  # that port's TCP side is taken: pick another
                    udp.server_close()
                    continue
                break
            else:
                raise OSError("no free port for the sandbox DNS")
            for server in (udp, tcp):
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name="relay-cloud-dns", daemon=True)
                thread.start()
                self._servers.append((server, thread))
        address, port = self._servers[0][0].server_address[:2]
        return f"{address}:{port}"

    def close(self) -> None:
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(5)
        self._servers.clear()

    def answer(self, wire: bytes, *, tcp: bool = False) -> bytes | None:
        """The reply to one DNS query in wire format (None: not a DNS query, dropped like a server would)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if query.flags & dns.flags.QR:
            return None  # a response, not a query
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        else:
            question = query.question[0]
            fault = self._take_fault(question.name.to_text(omit_final_dot=True).lower())
            if fault is not None and fault.delay_ms:
                time.sleep(fault.delay_ms / 1000)
            if fault is not None and fault.status:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif question.rdclass != dns.rdataclass.IN:
                response.set_rcode(dns.rcode.REFUSED)
            else:
                self._fill(response, question.name, question.rdtype)
        with self._lock:
            self.queries += 1
        limit = 65535 if tcp else max(512, query.payload) if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    def _fill(self, response: dns.message.Message, qname: dns.name.Name, rdtype) -> None:
        current = qname
        for _ in range(MAX_CNAME_CHAIN):
            name = current.to_text(omit_final_dot=True).lower()
            here = self.records(name)
            if not here:
                if current == qname:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return  # a CNAME to a name this server does not hold: the resolver takes it from there
            cname = next((r for r in here if r.type == "CNAME"), None)
            if cname is not None and rdtype != dns.rdatatype.CNAME:
                response.answer.append(_rrset(current, [cname]))
                current = dns.name.from_text(cname.value)
                continue
            matching = [r for r in here if rdtype == dns.rdatatype.ANY or dns.rdatatype.from_text(r.type) == rdtype]
            for kind in dict.fromkeys(r.type for r in matching):
                response.answer.append(_rrset(current, [r for r in matching if r.type == kind]))
            return  # NODATA when nothing matched: NOERROR, empty answer


def _rrset(name: dns.name.Name, records: list[Record]) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.from_text(records[0].type))
    for record in records:
        rrset.add(record.rdata(), ttl=min(r.ttl for r in records))
    return rrset


class _UdpHandler(socketserver.BaseRequestHandler):
    server: "_UdpServer"

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.sandbox.answer(data)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TcpHandler(socketserver.StreamRequestHandler):
    """RFC 1035 §4.2.2: each message is preceded by its two-byte length."""

    server: "_TcpServer"
    timeout = 10

    def handle(self) -> None:
        while True:
            prefix = self.rfile.read(2)
            if len(prefix) < 2:
                return
            data = self.rfile.read(int.from_bytes(prefix, "big"))
            reply = self.server.sandbox.answer(data, tcp=True)
            if reply is None:
                return
            self.wfile.write(len(reply).to_bytes(2, "big") + reply)


class _Loopback:
    """Shared by both servers: loopback only, threads per request (a delayed, fault-injected answer must
    not hold up the others), errors logged by type only (socketserver's default traceback could carry
    the datagram's bytes)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], sandbox: DnsSandbox, handler) -> None:
        if address[0] != "127.0.0.1":
            raise ValueError("the sandbox DNS binds to the loopback interface only")
        self.sandbox = sandbox
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (BrokenPipeError, ConnectionResetError, TimeoutError)):
            return
        log.error(json.dumps({"msg": "sandbox dns failed", "error_type": type(error).__name__}))


class _UdpServer(_Loopback, socketserver.ThreadingUDPServer):
    def __init__(self, address: tuple[str, int], sandbox: DnsSandbox) -> None:
        super().__init__(address, sandbox, _UdpHandler)


class _TcpServer(_Loopback, socketserver.ThreadingTCPServer):
    def __init__(self, address: tuple[str, int], sandbox: DnsSandbox) -> None:
        super().__init__(address, sandbox, _TcpHandler)
