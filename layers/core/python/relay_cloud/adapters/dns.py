"""DNS lookups for custom-domain verification, with dnspython through a configurable resolver.

``DomainChecker(None, …)`` asks the system's resolver (a deployed function); ``DomainChecker("127.0.0.1:
5353", …)`` asks that server only (the local stack's sandbox DNS, RELAY_DNS_RESOLVER). Answers that say
"nothing there" (NXDOMAIN, no record of that type) are empty results, because an unpublished record is
an ordinary verification outcome; a resolver that fails or does not answer is UpstreamUnavailable, so
the caller can say "try again" instead of "your record is wrong".
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from relay_cloud.adapters.providers import UpstreamUnavailable
from relay_cloud.config import parse_resolver_address

UPSTREAM = "dns"


class DomainChecker:
    def __init__(self, resolver_address: str | None, timeout: float = 5.0) -> None:
        if resolver_address:
            host, port = parse_resolver_address(resolver_address)
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host]
            resolver.port = port
        else:
            resolver = dns.resolver.Resolver()  # /etc/resolv.conf
        # One lifetime for the whole lookup (retries included): a verify request must answer promptly.
        resolver.lifetime = timeout
        resolver.timeout = min(timeout, 2.0)
        resolver.cache = None  # a record the user just published must be seen on the next check
        self._resolver = resolver

    def txt_values(self, name: str) -> list[str]:
        """The TXT records at ``name``, each record's strings joined (a long value is split into
        255-byte strings on the wire). Empty when the name or the records do not exist."""
        answer = self._resolve(name, dns.rdatatype.TXT)
        if answer is None:
            return []
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]

    def cname_target(self, name: str) -> str | None:
        """The target of ``name``'s CNAME record (lower-case, no trailing dot), or None when it has none."""
        answer = self._resolve(name, dns.rdatatype.CNAME)
        if answer is None:
            return None
        for rdata in answer:
            return rdata.target.to_text(omit_final_dot=True).lower()
        return None

    def _resolve(self, name: str, rdtype) -> dns.resolver.Answer | None:
        try:
            qname = dns.name.from_text(name)  # absolute: no search list is ever appended
        except dns.exception.DNSException as exc:
            raise ValueError("not a DNS name") from exc
        try:
            return self._resolver.resolve(qname, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.resolver.NoNameservers, dns.resolver.YXDOMAIN, dns.exception.Timeout) as exc:
            # SERVFAIL/REFUSED from every server, or no answer in time.
            raise UpstreamUnavailable(UPSTREAM) from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise UpstreamUnavailable(UPSTREAM) from exc
