"""Process-level settings every service applies once it has started."""
from __future__ import annotations

import gc
import logging

# A secret shorter than this is not masked: replacing every "abc" in every line would garble
# the logs, and so short a password is no secret anyway (config refuses an empty one).
MIN_MASKED_LENGTH = 6
_SERVICE_LOGGERS = ("", "gunicorn.error", "gunicorn.access")


class MaskingFormatter(logging.Formatter):
    """Formats a record, traceback included, then replaces the process' secrets in the text.

    Masking the finished text, not the record's message, also covers exception text and
    arguments whose repr holds a secret, and never calls getMessage itself (a record whose
    arguments do not match its format is formatted, and fails, exactly as without masking).
    """

    def __init__(self, secrets, fmt: str | None = None, datefmt: str | None = None):
        super().__init__(fmt, datefmt)
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_MASKED_LENGTH}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        return text


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# kafka-python logs every failed connection attempt in 3 to 5 lines; the services say what went
# wrong themselves in one line (kafka_access.py). Only these chatty network loggers are
# silenced: kafka.net.selector keeps its "IO loop crashed".
_QUIET = ("kafka.net.connection", "kafka.net.manager", "kafka.net.transport", "kafka.net.inet")


def configure_logging(cfg) -> None:
    """One line per record at LOG_LEVEL, kafka-python's connection chatter off, secrets masked in every handler."""
    logging.basicConfig(level=cfg.log_level, format=LOG_FORMAT)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    mask_secrets([cfg.connection.sasl_password.reveal(), cfg.api_token.reveal()])


def mask_secrets(secrets) -> None:
    """Give every handler of the root and gunicorn loggers a formatter that masks secrets."""
    for name in _SERVICE_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            old = handler.formatter
            handler.setFormatter(MaskingFormatter(secrets, old._fmt if old else LOG_FORMAT,
                                                  old.datefmt if old else None))


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
