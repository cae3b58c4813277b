"""python -m services.inventory: run one inventory-consumer instance until SIGTERM."""
from __future__ import annotations

import signal
import sys

from services.common.config import Config, ConfigError
from services.common.runtime import configure_logging, freeze_startup_heap
from services.inventory.worker import InventoryWorker


def main() -> None:
    try:
        cfg = Config.from_env()
    except ConfigError as exc:
        # A setting that cannot work (PROCESSING_GUARANTEE=twice): one line, not a traceback.
        sys.exit(f"inventory-consumer: {exc}")
    configure_logging(cfg)
    worker = InventoryWorker(cfg)
    freeze_startup_heap()
    # SIGTERM finishes the current transaction, then leaves the group cleanly.
    signal.signal(signal.SIGTERM, lambda *_: worker.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop_event.set())
    worker.run()


if __name__ == "__main__":
    main()
