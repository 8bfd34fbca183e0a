"""What the Python driver scripts share: the nodes' ports, one line per check, grouped sections
that survive an unexpected exception, and the closing `N passed, M failed` line."""

import asyncio
import os
import sys
import time
import traceback

PRIMARY = int(os.environ["PRIMARY_PORT"])
REPLICAS = {int(p) for p in os.environ["REPLICA_PORTS"].split(",")}

_counts = {"passed": 0, "failed": 0}
SECTIONS = []


def check(name, ok, detail=""):
    if ok:
        _counts["passed"] += 1
        print(f"ok   {name}")
    else:
        _counts["failed"] += 1
        print(f"FAIL {name}: {detail}")
    sys.stdout.flush()


def eq(name, got, want):
    check(name, got == want, f"got {got!r}, want {want!r}")


def section(fn):
    SECTIONS.append(fn)
    return fn


def _start(fn):
    print(f"-- {fn.__name__}")
    return time.monotonic()


def _failed(fn):
    check(f"{fn.__name__} (no exception)", False, traceback.format_exc())


def run_sections():
    """Runs each group of checks; an unexpected exception is one failure, and the rest go on."""
    for fn in SECTIONS:
        started = _start(fn)
        try:
            fn()
        except Exception:  # noqa: BLE001 - reported as a failed check
            _failed(fn)
        print(f"   ({time.monotonic() - started:.2f}s)")


async def run_sections_async(timeout=30):
    """The same for coroutine sections, each bounded by `timeout` seconds."""
    for fn in SECTIONS:
        started = _start(fn)
        try:
            await asyncio.wait_for(fn(), timeout)
        except Exception:  # noqa: BLE001 - reported as a failed check
            _failed(fn)
        print(f"   ({time.monotonic() - started:.2f}s)")


def summary():
    """Prints the closing line; returns the exit status."""
    print(f"{_counts['passed']} passed, {_counts['failed']} failed")
    return 1 if _counts["failed"] else 0
