"""Delisting benchmark: catalogue-purge's apply_plan against a plain sequential UpdateItem loop.

Both write the same conditional UpdateItem per listing to DynamoDB on moto's server (on
loopback), twice: as is, and with a simulated 5 ms round trip per call (a botocore hook that
sleeps before each request is sent), which is what an in-region call to DynamoDB costs and what
concurrency exists to hide. Prints items/s and the ratio to the sequential loop.

    uv run python bench/delist.py --items 100000
    uv run python bench/delist.py --items 5000 --concurrency 32

A third line runs the same comparison against the in-memory catalogue with the same round
trip and no server: moto's server spends a few milliseconds of its own CPU on each conditional
UpdateItem, which caps every client at a few hundred items/s on this machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VERSION = "2021-10-01T00:00:00.000000Z"


def _listings(n: int, prefix: str) -> list:
    from catalogue_purge.enforce.catalogue import LiveListing, Status

    return [
        LiveListing(
            f"{prefix}{i:07d}",
            f"S{i % 997:04d}",
            Status.ACTIVE,
            "Home Appliances > Heaters",
            "Antminer S19 heater",
            None,
            "US",
            VERSION,
        )
        for i in range(n)
    ]


def _with_latency(client: Any, seconds: float) -> Any:
    if seconds:
        client.meta.events.register("before-send.dynamodb.*", lambda **_: time.sleep(seconds))
    return client


def sequential(client: Any, table: str, ids: list[str]) -> float:
    """The obvious loop: the same conditional UpdateItem as ours, one call after another."""
    from catalogue_purge.enforce.catalogue import DynamoCatalogue, Enforcement

    catalogue = DynamoCatalogue(table, client)
    enforcement = Enforcement(
        "loop", "crypto-mining-2021", "bench", ("asic-miner-brands",), datetime.now(UTC), "DELISTED"
    )
    start = time.perf_counter()
    for listing_id in ids:
        catalogue.delist(listing_id, VERSION, enforcement)
    return time.perf_counter() - start


def ours(
    client: Any, table: str, listings: list, *, concurrency: int, runs: str, catalogue: Any = None
) -> tuple[float, dict]:
    import pyarrow as pa

    from catalogue_purge.detect.sweep import FINDINGS_SCHEMA
    from catalogue_purge.enforce.catalogue import DynamoCatalogue
    from catalogue_purge.enforce.delist import OUTCOME_SCHEMA, apply_plan, plan_delistings
    from catalogue_purge.enforce.runstore import RunStore

    findings = pa.Table.from_pylist(
        [
            {
                "listing_id": x.listing_id,
                "seller_id": x.seller_id,
                "country_of_sale": "US",
                "category_path": x.category_path,
                "decision": "delist",
                "rule_ids": ["asic-miner-brands"],
                "matched_terms": ["antminer"],
                "evasion": True,
                "title": x.title,
                "updated_at": datetime(2021, 10, 1, tzinfo=UTC),
                "prohibited_category": None,
                "evidence": [],
                "exemption_ids": [],
            }
            for x in listings
        ],
        schema=FINDINGS_SCHEMA,
    )
    plan = plan_delistings(findings, "bench", "crypto-mining-2021", "bench")
    store = RunStore(runs, OUTCOME_SCHEMA)
    start = time.perf_counter()
    target = catalogue if catalogue is not None else DynamoCatalogue(table, client)
    report = apply_plan(
        plan, target, store, lambda _live: (False, ()), concurrency=concurrency, chunk=5000
    )
    return time.perf_counter() - start, report.outcomes


class _Slow:
    """A catalogue whose every write costs a round trip, outside any lock (as a network call)."""

    def __init__(self, inner: Any, latency: float) -> None:
        self.inner, self.latency = inner, latency

    def get(self, listing_id: str) -> Any:
        time.sleep(self.latency)
        return self.inner.get(listing_id)

    def delist(self, listing_id: str, expected: str, enforcement: Any) -> None:
        time.sleep(self.latency)
        self.inner.delist(listing_id, expected, enforcement)

    def reinstate(self, listing_id: str, run_id: str, reason: str) -> None:
        time.sleep(self.latency)
        self.inner.reinstate(listing_id, run_id, reason)


def _in_memory(items: int, latency: float, concurrency: int) -> tuple[str, float, float, float]:
    """The same comparison without moto's server, whose own CPU caps any client: what the
    concurrency hides of a round trip, on the client's side alone."""
    from catalogue_purge.enforce.catalogue import Enforcement, InMemoryCatalogue

    loop_items, our_items = _listings(items, "A"), _listings(items, "B")
    slow = _Slow(InMemoryCatalogue({x.listing_id: x for x in loop_items + our_items}), latency)
    enforcement = Enforcement("loop", "p", "s", (), datetime.now(UTC), "DELISTED")
    start = time.perf_counter()
    for x in loop_items:
        slow.delist(x.listing_id, VERSION, enforcement)
    loop_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as runs:
        our_s, outcomes = ours(
            None, "", our_items, concurrency=concurrency, runs=runs, catalogue=slow
        )
    assert outcomes == {"DELISTED": items}, outcomes
    return "in memory (no server)", latency, loop_s, our_s


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"moto's server did not start on port {port}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    args = parser.parse_args()

    from catalogue_purge import aws
    from catalogue_purge.enforce.catalogue import put_listings
    from catalogue_purge.job.stack import create_listings_table

    # moto's server in a process of its own, as DynamoDB is: in this process it would share
    # the GIL with the client under test.
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    _wait_for(port)
    try:
        rows = []
        for latency in (0.0, args.latency_ms / 1000):
            setup = aws.client("dynamodb")
            table = f"listings-{int(latency * 1000)}ms"
            create_listings_table(setup, table)
            loop_items, our_items = _listings(args.items, "A"), _listings(args.items, "B")
            put_listings(setup, table, loop_items + our_items)
            loop_s = sequential(
                _with_latency(aws.client("dynamodb"), latency),
                table,
                [x.listing_id for x in loop_items],
            )
            with tempfile.TemporaryDirectory() as runs:
                our_s, outcomes = ours(
                    _with_latency(aws.client("dynamodb"), latency),
                    table,
                    our_items,
                    concurrency=args.concurrency,
                    runs=runs,
                )
            assert outcomes == {"DELISTED": args.items}, outcomes
            rows.append((latency, loop_s, our_s))
        fake = _in_memory(args.items, args.latency_ms / 1000, args.concurrency)
        print(
            f"{args.items:,} conditional delistings per contender, concurrency {args.concurrency}"
        )
        print(
            f"\n{'catalogue':>24} {'round trip':>10} {'loop items/s':>13} {'ours items/s':>13} {'x loop':>7}"
        )
        for name, latency, loop_s, our_s in [*(("DynamoDB on moto", *r) for r in rows), fake]:
            print(
                f"{name:>24} {'+' + str(int(latency * 1000)) + ' ms':>10} {args.items / loop_s:13,.0f} "
                f"{args.items / our_s:13,.0f} {loop_s / our_s:7.2f}"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
