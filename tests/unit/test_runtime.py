"""services/common/runtime.py: the gunicorn config module holds the hook and no other setting."""
from __future__ import annotations

import gc

from gunicorn.config import Config

from services.common import runtime


def test_gunicorn_reads_only_the_hook_from_the_config_module():
    # gunicorn takes every top-level name of a python: config module that matches a setting.
    settings = set(Config().settings)
    assert {name for name in vars(runtime) if name in settings} == {"post_worker_init"}


def test_the_hook_freezes_the_heap():
    gc.unfreeze()   # whatever froze before (pytest, an earlier test) must not make this pass
    assert gc.get_freeze_count() == 0
    try:
        runtime.post_worker_init(worker=None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
