"""Kafka client factories: every producer, consumer and admin client is built here, from Config."""
from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.net.compat import KafkaNetClient

from services.common.config import Config

# How long the broker lets a transaction stay open before aborting it itself (clients default
# to 60 s). It matters only when a producer dies mid-transaction and its transactional id never
# returns (a replica killed, then scaled away): until the abort, read_committed readers and the
# partitions' next owner wait. Our transactions span COMMIT_INTERVAL_MS and each call in them
# gives up after 15 s (inventory's txn_timeout_s), so only dead ones reach 20 s (docs/tuning.md).
TRANSACTION_TIMEOUT_MS = 20_000


def build_client(cls, **opts):
    """cls(**opts), closing its network client if the constructor fails.

    kafka-python 3 connects inside the constructor; when that fails (broker down) the client
    it had built stays open: a selector and its sockets, never closed. Under gevent
    (producer-order) each one left the event loop spinning: after six 503s during an outage
    the worker used 100% of a core with nothing to do. Under threads each left an idle socket.
    """
    built = []

    def net_client(**kw):
        built.append(KafkaNetClient(**kw))
        return built[-1]

    try:
        return cls(kafka_client=net_client, **opts)
    except BaseException:
        for client in built:
            client.close()
        raise


def producer(cfg: Config, *, transactional_id: str | None = None, client_id: str = "lab",
             linger_ms: int = 5, batch_size: int = 64 * 1024) -> KafkaProducer:
    """An idempotent acks=all producer; transactional when transactional_id is given."""
    opts = dict(
        bootstrap_servers=cfg.bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        batch_size=batch_size,
        # A down broker must surface as an error within bounded time, not a hang: the
        # constructor too, where kafka-python 3 connects (docs/tuning.md).
        bootstrap_timeout_ms=cfg.kafka_timeout_ms,
        max_block_ms=cfg.kafka_timeout_ms,
        request_timeout_ms=cfg.kafka_timeout_ms,
        # Long enough to ride out a broker failure (config.py says why); kafka-python refuses a
        # delivery timeout under linger + request timeout.
        delivery_timeout_ms=max(cfg.delivery_timeout_ms, cfg.kafka_timeout_ms + linger_ms + 5),
        reconnect_backoff_max_ms=1000,
        # Nothing reads kafka-python's client-side metrics, and they cost CPU per produce request.
        metrics_enabled=False,
        **cfg.connection.client_options(),
    )
    if transactional_id:
        opts["transactional_id"] = transactional_id
        opts["transaction_timeout_ms"] = TRANSACTION_TIMEOUT_MS
        # CONCURRENT_TRANSACTIONS is retried after retry_backoff_ms in kafka-python (20 ms in the
        # Java client); it meets most transactions' first AddPartitionsToTxn (docs/tuning.md).
        opts["retry_backoff_ms"] = 20
    return build_client(KafkaProducer, **opts)


# How the streaming consumers fetch: the broker answers once it has 64 KiB or after 200 ms, so a
# stream of single orders costs one fetch and one commit per wait, not per handful of records;
# a lone order waits at most 200 ms per hop (measurements: docs/tuning.md).
STREAM_FETCH = {"fetch_min_bytes": 64 * 1024, "fetch_max_wait_ms": 200}


def consumer(cfg: Config, *, group_id: str | None, client_id: str = "lab", **extra) -> KafkaConsumer:
    """A read_committed consumer that never auto-commits: callers commit what they processed."""
    opts = dict(
        bootstrap_servers=cfg.bootstrap,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        # A member killed with -9 holds its partitions until its session expires: 10 s, not 45.
        session_timeout_ms=10000,
        heartbeat_interval_ms=3000,
        request_timeout_ms=max(cfg.kafka_timeout_ms, 30000) + 5000,
        reconnect_backoff_max_ms=1000,
        # As for producers: nothing reads kafka-python's client metrics, and recording them
        # is a few % of analytics' CPU (Sensor.record in every fetch, py-spy).
        metrics_enabled=False,
        **cfg.connection.client_options(),
    )
    opts.update(extra)
    return build_client(KafkaConsumer, **opts)


def admin(cfg: Config, *, client_id: str = "lab-admin") -> KafkaAdminClient:
    return build_client(KafkaAdminClient, bootstrap_servers=cfg.bootstrap, client_id=client_id,
                        request_timeout_ms=cfg.kafka_timeout_ms * 2,
                        bootstrap_timeout_ms=cfg.kafka_timeout_ms * 2, **cfg.connection.client_options())


def end_offsets(consumer, tps, attempts: int = 10, timeout_ms: int | None = 30000) -> dict:
    """consumer.end_offsets (the last stable offset for read_committed), retried.

    kafka-python 3.0.12 raises KeyError when a partition's leader is not yet in its
    metadata (just after start or a broker restart); a metadata refresh cures it. Private
    access: the consumer has no public refresh, so consumer._client.cluster is asked for one
    (the topic_ids test in tests/unit/test_kafka_clients.py holds that path).
    """
    for attempt in range(attempts):
        try:
            return consumer.end_offsets(list(tps), timeout_ms=timeout_ms)
        except KeyError:
            if attempt == attempts - 1:
                raise
            consumer._client.cluster.request_update()
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def read_range(consumer, tp, start: int | None = None, end: int | None = None, *,
               max_records: int = 5000, timeout_s: float = 120.0):
    """Yield tp's records from start (default: its beginning) up to end (default: its current end).

    The consumer is assigned tp alone; with read_committed, aborted records and transaction
    markers are skipped, and the end is the last stable offset.
    """
    consumer.assign([tp])
    if end is None:
        end = end_offsets(consumer, [tp])[tp]
    if start is None:
        consumer.seek_to_beginning(tp)
    else:
        consumer.seek(tp, start)
    deadline = time.monotonic() + timeout_s
    while consumer.position(tp) < end:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {tp} to offset {end} took over {timeout_s}s")
        for records in consumer.poll(timeout_ms=500, max_records=max_records).values():
            for rec in records:
                if rec.offset >= end:
                    return
                yield rec


def read_back(consumer, tp, first_step: int = 16):
    """Yield tp's records newest first, reading back from the end in growing windows.

    The state topics' newest record is the one that matters, and it sits in the last few
    offsets; an older one is read only if every newer one was refused.
    """
    hi = end_offsets(consumer, [tp])[tp]
    step = first_step
    while hi > 0:
        lo = max(0, hi - step)
        yield from reversed(list(read_range(consumer, tp, lo, hi)))
        hi, step = lo, step * 8


def batch_future(record_future):
    """The future of the produce batch a record was appended to: one callback there serves them all.

    Private access: kafka-python keeps it as FutureRecordMetadata._produce_future, with no public
    name; without it the record's own future serves (one callback per record, just slower).
    tests/unit/test_kafka_clients.py fails if the attribute moves.
    """
    return getattr(record_future, "_produce_future", record_future)


def topic_ids(client, topics) -> dict[str, str | None]:
    """Each topic's id as the client's last metadata has it; None where it knows none.

    Private access: kafka-python 3 keeps the ids (KIP-516) in its cluster metadata, with no
    public accessor on the consumer. tests/unit/test_kafka_clients.py fails if that moves.
    """
    cluster = client._client.cluster
    return {t: (str(tid) if (tid := cluster.topic_id(t)) is not None else None) for t in topics}
