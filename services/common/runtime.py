"""Process-level settings every service applies once it has started."""
from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Move everything built at start-up out of the garbage collector's sight.

    Flask, gunicorn, jsonschema and kafka-python leave ~180k long-lived objects, and each
    full collection rescans them all. A replay allocates 100k records, which sets off full
    collections; in analytics' worker they cost more than the fold itself: /replay ran at
    0.79-0.85 x a raw kafka-python reader, and 0.96-1.01 x with the start-up heap frozen
    (alternating bench runs, 100k events). Frozen objects are still freed by reference
    counting; only cycles among them are never collected. Nearly all of them live as long as
    the process; the exception is analytics, whose consumer thread is already running when
    gunicorn calls the hook: if that first consumer is ever replaced, its clients' cycles stay
    (once, bounded).
    """
    gc.collect()
    gc.freeze()


def post_worker_init(worker) -> None:
    """gunicorn hook (`--config python:services.common.runtime`): the app is loaded by now."""
    freeze_startup_heap()
