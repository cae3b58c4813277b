"""Secrets never reach a log line: not in the message, its arguments or a traceback."""
from __future__ import annotations

import io
import logging

import pytest

from services.common.runtime import MaskingFormatter, mask_secrets

SECRET = "s3cret-Passw0rd"


@pytest.fixture
def captured():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter([SECRET, "", "abc"], "%(levelname)s %(message)s"))
    log = logging.getLogger("test.masking")
    log.addHandler(handler)
    log.propagate = False
    yield log, stream
    log.removeHandler(handler)


def test_a_secret_in_the_message_and_its_arguments_is_masked(captured):
    log, stream = captured
    log.warning("login as lab with %s", SECRET)
    log.warning("config %r", {"sasl_plain_password": SECRET})
    assert SECRET not in stream.getvalue()
    assert stream.getvalue().count("***") == 2


def test_a_secret_in_a_traceback_is_masked(captured):
    log, stream = captured
    try:
        raise RuntimeError(f"refused password {SECRET}")
    except RuntimeError:
        log.exception("failed")
    out = stream.getvalue()
    assert "Traceback" in out and "RuntimeError: refused password ***" in out
    assert SECRET not in out


def test_short_secrets_are_not_masked_and_lines_without_secrets_pass_unchanged(captured):
    log, stream = captured
    log.warning("abc is not masked; %d%% intact", 100)
    assert stream.getvalue() == "WARNING abc is not masked; 100% intact\n"


def test_a_record_with_bad_arguments_fails_as_without_masking(captured):
    log, stream = captured
    # logging reports its own formatting errors on stderr and carries on; masking adds no crash.
    logging.raiseExceptions, saved = False, logging.raiseExceptions
    try:
        log.warning("two %s %s", "one")
    finally:
        logging.raiseExceptions = saved
    assert stream.getvalue() == ""


def test_mask_secrets_covers_the_gunicorn_loggers_and_keeps_their_format():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[gunicorn] %(message)s"))
    gunicorn = logging.getLogger("gunicorn.error")
    gunicorn.addHandler(handler)
    try:
        mask_secrets([SECRET])
        gunicorn.error("worker saw %s", SECRET)
    finally:
        gunicorn.removeHandler(handler)
    assert stream.getvalue() == "[gunicorn] worker saw ***\n"
