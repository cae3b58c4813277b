"""Client factories: a constructor that cannot reach Kafka leaves nothing open behind it."""
import dataclasses
import gc
import os
import socket

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError

from services.common import kafka_clients
from services.common.config import Config


def _open_selectors() -> int:
    """epoll instances this process holds: one per kafka-python network client left open."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
        except OSError:
            pass  # the listing's own descriptor, gone already
    return n


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


@pytest.mark.parametrize("factory", [
    lambda cfg: kafka_clients.producer(cfg),
    lambda cfg: kafka_clients.admin(cfg),
], ids=["producer", "admin"])
def test_a_failed_constructor_closes_its_network_client(factory):
    # kafka-python 3 connects in the constructor and, when that fails, left its selector and
    # sockets open: under gevent (producer-order) each one kept the event loop spinning.
    cfg = dataclasses.replace(Config.from_env(), bootstrap=f"127.0.0.1:{_closed_port()}", kafka_timeout_ms=300)
    with pytest.raises(KafkaError):
        factory(cfg)  # warm-up: imports and lazily opened descriptors of the library
    gc.collect()
    before = _open_selectors()
    for _ in range(3):
        with pytest.raises(KafkaError):
            factory(cfg)
    gc.collect()
    assert _open_selectors() == before


def test_topic_ids_reads_kafka_pythons_cluster_metadata_where_it_keeps_them():
    # The one private access of topic_ids: if kafka-python moves its ids, this fails, not a restart.
    from kafka import KafkaConsumer
    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{_closed_port()}", api_version=(3, 9))
    try:
        consumer._client.cluster._topic_ids["OrderEvents"] = "AAAAAAAAAAAAAAAAAAAAAA"
        assert kafka_clients.topic_ids(consumer, ["OrderEvents", "Unknown"]) == \
            {"OrderEvents": "AAAAAAAAAAAAAAAAAAAAAA", "Unknown": None}
    finally:
        consumer.close()


def test_batch_future_is_the_produce_batch_future_kafka_python_keeps_on_each_record_future():
    # The private attribute batch_future reads: if kafka-python renames it, this fails, and the
    # bulk's ack stamping would otherwise fall back to one callback per record without a word.
    from kafka.producer.future import FutureProduceResult, FutureRecordMetadata
    batch = FutureProduceResult(TopicPartition("OrderEvents", 0))
    records = [FutureRecordMetadata(batch, i, 0, None, 1, 1, 0) for i in range(3)]
    assert all(kafka_clients.batch_future(r) is batch for r in records)
    assert kafka_clients.batch_future(batch) is batch   # anything else: itself
