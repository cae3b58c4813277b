"""analytics-consumer: GET /metrics (live), POST /replay (recompute from offset 0), GET /openapi.json."""
from __future__ import annotations

import atexit
import logging
import threading

from flask import Blueprint, Flask, current_app, jsonify
from kafka.errors import KafkaError

from services.analytics import openapi
from services.analytics.live import TOPICS, LiveMetrics
from services.analytics.replay import ReplayBusy, Replayer
from services.common import kafka_clients, lag
from services.common.config import Config
from services.common.http import ApiError, init_app
from services.common.kafka_access import AccessCheck, explain
from services.common.prometheus import export_analytics
from services.common.runtime import configure_logging
from services.common.topics import ANALYTICS_GROUP, INVENTORY_GROUP, ORDER_EVENTS

log = logging.getLogger(__name__)
bp = Blueprint("analytics", __name__)


class LagReader:
    """Lag of both groups; one admin client and one peek consumer, used under a lock."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._lock = threading.Lock()
        self._admin = self._peek = None

    def read(self) -> list[dict]:
        with self._lock:
            try:
                if self._admin is None:
                    self._admin = kafka_clients.admin(self.cfg, client_id="analytics-lag")
                    # The previous peek leaves a fetch parked at the end of the log; the next
                    # seek waits for it, so a long fetch wait (500 ms default) would be every
                    # /metrics call's floor.
                    self._peek = kafka_clients.consumer(self.cfg, group_id=None, client_id="analytics-lag-peek",
                                                        fetch_max_wait_ms=50)
                rows = lag.group_lag(self._admin, INVENTORY_GROUP, [ORDER_EVENTS], self._peek)
                rows += lag.group_lag(self._admin, ANALYTICS_GROUP, TOPICS, self._peek)
                return [r.as_dict() for r in rows]
            except Exception as exc:  # noqa: BLE001 - lag is an extra; /metrics must still answer
                log.warning("lag read failed: %r", exc)
                self.close()
                raise lag.LagUnavailable(f"lag unavailable: {exc.__class__.__name__}: {exc}") from None

    def close(self):
        for c in (self._admin, self._peek):
            if c is not None:
                c.close()
        self._admin = self._peek = None


def _ext(name):
    return current_app.extensions[name]


@bp.get("/metrics")
def get_metrics():
    live: LiveMetrics = _ext("live_metrics")
    body = live.snapshot()
    body["throughput"] = live.throughput()
    body["consumer"] = {"group": ANALYTICS_GROUP, "phase": live.phase, "error": live.error,
                        # Where the last start took its state from and how much it folded on top.
                        "start": live.start_info,
                        "snapshots": live.snapshots.describe() if live.snapshots is not None else None}
    try:
        body["lag"] = _ext("lag_reader").read()
    except lag.LagUnavailable as exc:
        body["lag"] = None
        body["lag_error"] = str(exc)
    return jsonify(body)


@bp.post("/replay")
def post_replay():
    live: LiveMetrics = _ext("live_metrics")
    try:
        result = _ext("replayer").run(before=live.snapshot())
    except ReplayBusy as exc:
        raise ApiError(409, str(exc)) from None
    except KafkaError as exc:
        raise ApiError(503, f"Kafka unavailable: {explain(exc, live.cfg)}") from None
    return jsonify(result)


def create_app(config: Config | None = None, start_consumer: bool = True) -> Flask:
    """The analytics-consumer app; its consumer thread starts here (one gunicorn worker owns it)."""
    cfg = config or Config.from_env()
    configure_logging(cfg)
    app = Flask(__name__, static_folder=None)  # a JSON API: no /static route
    access = AccessCheck(cfg, "analytics-consumer").start() if start_consumer else None
    registry = init_app(app, cfg, "analytics-consumer", access)
    live = LiveMetrics(cfg)
    app.extensions["live_metrics"] = live.start() if start_consumer else live
    if start_consumer:
        # The consumer thread is a daemon: without this, a stopped worker never leaves
        # analytics-grp and its successor gets no partitions until the 45 s session times out.
        atexit.register(live.stop)
    app.extensions["replayer"] = Replayer(cfg)
    app.extensions["lag_reader"] = LagReader(cfg)
    export_analytics(registry, live, lambda: app.extensions["lag_reader"].read())
    app.register_blueprint(bp)
    openapi.init_app(app, cfg)
    return app
