"""Client factories against a real broker: settings kafka-python would refuse never reach it."""
from __future__ import annotations

import dataclasses

from services.common import kafka_clients


def test_a_producer_may_linger_longer_than_the_kafka_timeout(stack):
    # inventory-consumer lingers COMMIT_INTERVAL_MS; kafka-python refuses a delivery timeout
    # under linger + request timeout, which the default KAFKA_TIMEOUT_MS-based one was once
    # COMMIT_INTERVAL_MS exceeded KAFKA_TIMEOUT_MS: inventory then never started.
    cfg = dataclasses.replace(stack.service_config(), kafka_timeout_ms=2000)
    producer = kafka_clients.producer(cfg, transactional_id="test-long-linger", linger_ms=10_000)
    try:
        producer.init_transactions()
    finally:
        producer.close(timeout=5)
