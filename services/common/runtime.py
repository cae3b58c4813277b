"""Process-level settings every service applies once it has started."""
from __future__ import annotations

import gc
import logging


class _MaskSecrets(logging.Filter):
    """Replaces the process' secrets in every log line: a library that logs its settings cannot leak them."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            for s in self.secrets:
                message = message.replace(s, "***")
            record.msg, record.args = message, None
        return True


def configure_logging(cfg) -> None:
    """One line per record, at LOG_LEVEL; kafka-python's own connection chatter off, secrets masked.

    kafka-python logs every failed connection attempt in 3 to 5 lines (a wrong password gave 25
    lines in 4 s). The services say what went wrong themselves, in one line naming the address
    and the fix (services/common/kafka_access.py), so only kafka-python's warnings outside its
    network layer are kept.
    """
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("kafka.net").setLevel(logging.CRITICAL)
    mask = _MaskSecrets([cfg.connection.sasl_password.reveal(), cfg.api_token])
    for handler in logging.getLogger().handlers:
        handler.addFilter(mask)


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
