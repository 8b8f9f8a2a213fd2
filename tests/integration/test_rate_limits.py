"""The fixed-window rate limiter on moto and on DynamoDB Local: exactly ``limit`` concurrent hits pass,
the next window starts again from zero, and a subject (an address) is stored only as its digest."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from relay_cloud.adapters.dynamo.rate_limits import RateLimiter
from relay_cloud.domain.daemons import sha256_hex

NOW = 1_800_000_000  # the start of a 600 s window
ADDRESS = "203.0.113.77"


def scan(backend) -> list[dict]:
    client, name = backend
    return client.scan(TableName=name, ConsistentRead=True)["Items"]


def test_exactly_the_limit_passes_under_concurrency_then_the_next_window_passes(backend):
    limiter = RateLimiter()

    def hit(_):
        return limiter.hit("link-device", ADDRESS, limit=5, window_seconds=600, now=NOW + 30)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(hit, range(20)))
    assert results.count(True) == 5 and results.count(False) == 15
    assert not limiter.hit("link-device", ADDRESS, limit=5, window_seconds=600, now=NOW + 599)

    assert limiter.hit("link-device", ADDRESS, limit=5, window_seconds=600, now=NOW + 600)  # the next window
    assert limiter.hit("link-device", "198.51.100.1", limit=5, window_seconds=600, now=NOW)  # another subject
    assert limiter.hit("provider-device-flow", ADDRESS, limit=5, window_seconds=600, now=NOW)  # another scope

    counters = {(item["pk"]["S"], item["sk"]["S"]): item for item in scan(backend)}
    first = counters[(f"RATE#link-device#{sha256_hex(ADDRESS)}", f"W#{NOW // 600:010d}")]
    assert first["count"] == {"N": "5"} and first["type"] == {"S": "RATE_LIMIT"}
    assert first["expires_at"] == {"N": str(NOW + 600 + 60)}  # the window's end plus a minute
    second = counters[(f"RATE#link-device#{sha256_hex(ADDRESS)}", f"W#{NOW // 600 + 1:010d}")]
    assert second["count"] == {"N": "1"} and second["expires_at"] == {"N": str(NOW + 1200 + 60)}
    assert len(counters) == 4


def test_the_address_is_never_stored(backend):
    limiter = RateLimiter()
    for address in (ADDRESS, "2001:db8::/64"):
        assert limiter.hit("link-device", address, limit=1, window_seconds=600, now=NOW)
    stored = repr(scan(backend))
    assert ADDRESS not in stored and "2001:db8" not in stored
    assert sha256_hex(ADDRESS) in stored
