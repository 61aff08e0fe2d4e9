"""Helpers shared by the Kafka suites (a module of its own: `conftest` is ambiguous across suites)."""

import os
import time
from pathlib import Path


def wait_for(predicate, timeout=30.0, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a truthy value (returned) or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def consume_all(consumer, expected, timeout=30.0):
    """Polls a confluent-kafka consumer until `expected` records arrived (or fails)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise AssertionError(f"consumer error: {msg.error()}")
        out.append(msg)
    assert len(out) >= expected, f"got {len(out)} of {expected} records"
    return out


def ferry_binary():
    """The binary under test ($FERRY_BIN, as the shared fixture uses)."""
    return os.environ.get("FERRY_BIN", str(Path(__file__).resolve().parents[3] / "target" / "debug" / "ferry"))
