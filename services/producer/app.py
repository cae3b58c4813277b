"""producer-order: POST /order, POST /orders/bulk, GET /stats, GET /openapi.json; 2xx only for acknowledged events."""
from __future__ import annotations

import logging
import threading
import time
from array import array
from collections import Counter

from flask import Blueprint, Flask, current_app, jsonify
from kafka.errors import KafkaError, KafkaTimeoutError

from services.common import events, kafka_clients
from services.common.config import Config
from services.common.http import ApiError, init_app, json_body
from services.common.kafka_access import AccessCheck, explain
from services.common.prometheus import export_producer
from services.common.runtime import configure_logging
from services.common.topics import ORDER_EVENTS
from services.producer import openapi
from services.producer.stats import ProducerStats

log = logging.getLogger(__name__)
bp = Blueprint("orders", __name__)
# 1 ms: under load concurrent POST /order requests share produce requests instead of each
# forcing its own (docs/tuning.md).
ORDER_LINGER_MS = 1
# Under gevent nothing preempts a loop: a bulk hands the event loop back every YIELD_EVERY
# records, so the I/O greenlet sends what is queued and other requests get answered. A zero
# sleep polls no socket; every 1000 records sent the orders in bursts (docs/tuning.md).
YIELD_EVERY = 100


class OrderSender:
    """Owns the Kafka producer: built lazily, so a service started before the broker still answers."""

    def __init__(self, cfg: Config, producer=None):
        self.cfg = cfg
        self._producer = producer
        self._lock = threading.Lock()
        self.stats = ProducerStats()

    def producer(self):
        if self._producer is None:
            failure = None
            with self._lock:
                if self._producer is None:
                    try:
                        self._producer = kafka_clients.producer(self.cfg, client_id="producer-order",
                                                                linger_ms=ORDER_LINGER_MS)
                    except KafkaError as exc:
                        failure = exc
            if failure is not None:
                # Diagnosed outside the lock: its probes take seconds, and other requests need not wait for them.
                raise ApiError(503, f"Kafka unavailable: {explain(failure, self.cfg)}") from None
        return self._producer

    def send_batch(self, orders, *, with_offsets: bool = False) -> dict:
        """Send every order, wait for the broker's acknowledgement, and count what was acked.

        with_offsets also returns each acked order's id, partition and offset (POST /order);
        a bulk needs only the counts.
        """
        prod = self.producer()
        # Past the delivery timeout every future has an answer; a little more covers the flush itself.
        timeout_s = (self.cfg.delivery_timeout_ms + self.cfg.kafka_timeout_ms) / 1000
        # Per record only the future, its send time and its batch number: per-record callbacks
        # and result dicts made a 100k bulk's memory peak several times higher.
        futures: list = []
        sent_at = array("d")
        batch_of = array("l")
        batch_numbers: dict = {}
        acked_at: list[float | None] = []
        order_ids: list[str] = []
        first_error: str | None = None
        t0 = time.perf_counter()
        for i, ev in enumerate(orders):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                time.sleep(0.0001)  # let gevent's loop poll sockets (see YIELD_EVERY)
            t_send = time.perf_counter()
            try:
                fut = prod.send(ORDER_EVENTS, key=ev["order_id"].encode(), value=events.encode(ev))
            except KafkaTimeoutError as exc:
                # No metadata within max_block_ms: the broker is down; stop sending.
                first_error = f"Kafka unavailable: {exc}"
                break
            # Every record of a producer batch is acknowledged at once, so one callback per
            # batch (hundreds of records) stamps the ack time; it runs on the producer's I/O thread.
            batch = kafka_clients.batch_future(fut)
            b = batch_numbers.get(batch)
            if b is None:
                b = batch_numbers[batch] = len(acked_at)
                acked_at.append(None)
                batch.add_callback(_stamp_ack, acked_at, b)
            futures.append(fut)
            sent_at.append(t_send)
            batch_of.append(b)
            if with_offsets:
                order_ids.append(ev["order_id"])
        try:
            if with_offsets:
                # POST /order waits for its own record only: flush() would also wait for the
                # records of every other request in flight.
                deadline = time.perf_counter() + timeout_s
                for fut in futures:
                    try:
                        fut.get(timeout=max(0.0, deadline - time.perf_counter()))
                    except KafkaTimeoutError:
                        raise
                    except KafkaError:
                        pass  # counted as failed below, with its error
            else:
                prod.flush(timeout=timeout_s)
        except KafkaTimeoutError as exc:
            first_error = first_error or f"Kafka did not acknowledge in time: {exc}"
        t_end = time.perf_counter()
        partitions: Counter[int] = Counter()
        latencies: list[float] = []
        acked: list[dict] = []
        failed = 0
        for i, fut in enumerate(futures):
            if fut.succeeded():
                md = fut.value
                partitions[md.partition] += 1
                t_ack = acked_at[batch_of[i]]
                latencies.append(((t_ack if t_ack is not None else t_end) - sent_at[i]) * 1000)
                if with_offsets:
                    acked.append({"order_id": order_ids[i], "partition": md.partition, "offset": md.offset})
            else:
                failed += 1
                if first_error is None and fut.is_done:
                    first_error = f"Kafka error: {explain(fut.exception, self.cfg)}"
        self.stats.record_acks(partitions, latencies, errors=failed)
        if failed or first_error:
            self.reset()
        return {"acked": acked, "produced": sum(partitions.values()), "partitions": partitions,
                "failed": failed, "error": first_error, "duration_s": t_end - t0}

    def reset(self) -> None:
        """Drop the producer after a failed send; the next request builds a fresh one.

        An idempotent producer whose batches expired may be left in a state it does not
        recover from; a new one (new producer id) starts clean once the broker is back.
        """
        with self._lock:
            old, self._producer = self._producer, None
        if old is not None:
            # close() flushes first, and kafka-python raises KafkaTimeoutError from that flush
            # when records are still unacknowledged (a broker killed mid-bulk): that must never
            # turn the request's 503 with its counts into a 500. Their futures have failed already.
            try:
                old.close(timeout=0)
            except Exception as exc:  # noqa: BLE001 - a close path never raises into a request
                # The raise skipped the rest of close(): stop the I/O thread too, so that the
                # records this request counted as failed cannot still be delivered after its 503.
                # kafka-python 3.0.12 has no public way to abort them: _sender is its I/O thread.
                sender = getattr(old, "_sender", None)
                if sender is not None:
                    sender.force_close()
                log.warning("discarded producer did not close cleanly (%s): its pending records were aborted",
                            exc.__class__.__name__)


def _stamp_ack(acked_at: list, b: int, _result) -> None:
    acked_at[b] = time.perf_counter()


def _sender() -> OrderSender:
    return current_app.extensions["order_sender"]


@bp.post("/order")
def post_order():
    body = events.validate_order_request(json_body())
    ev = events.new_order(body["item"], body["qty"])
    result = _sender().send_batch([ev], with_offsets=True)
    if not result["acked"]:
        raise ApiError(503, result["error"] or "Kafka did not acknowledge the event", produced=0)
    return jsonify(result["acked"][0]), 201


@bp.post("/orders/bulk")
def post_bulk():
    sender = _sender()
    body = events.validate_bulk_request(json_body(), sender.cfg.max_bulk_n)
    n = body["n"]
    orders = events.bulk_orders(n, body["item"], qty=body.get("qty", 1), seed=body.get("seed"))
    result = sender.send_batch(orders)
    produced = result["produced"]
    duration = result["duration_s"]
    summary = {
        "requested": n,
        "produced": produced,
        "failed": n - produced,
        "item": body["item"],
        "duration_s": round(duration, 4),
        "events_per_s": round(produced / duration, 1) if duration > 0 else 0.0,
        "by_partition": {str(p): c for p, c in sorted(result["partitions"].items())},
    }
    if produced < n:
        # Some events were not acknowledged: never a 2xx for those.
        summary["error"] = result["error"] or "some events were not acknowledged"
        log.warning("bulk partially failed produced=%d requested=%d error=%s", produced, n, summary["error"])
        return jsonify(summary), 503
    sender.stats.record_bulk(summary)
    log.info("bulk produced=%d duration_s=%.3f eps=%.0f", produced, duration, summary["events_per_s"])
    return jsonify(summary), 201


@bp.get("/stats")
def get_stats():
    return jsonify(_sender().stats.snapshot())


def create_app(config: Config | None = None, producer=None) -> Flask:
    """The producer-order app; pass a Config and/or a KafkaProducer, or both come from the environment."""
    cfg = config or Config.from_env()
    configure_logging(cfg)
    app = Flask(__name__, static_folder=None)  # a JSON API: no /static route
    # Only a service that builds its own producer checks its way in (a test may pass one).
    access = AccessCheck(cfg, "producer-order").start() if producer is None else None
    registry = init_app(app, cfg, "producer-order", access)
    app.extensions["order_sender"] = OrderSender(cfg, producer)
    export_producer(registry, app.extensions["order_sender"].stats)
    app.register_blueprint(bp)
    openapi.init_app(app, cfg)
    return app
