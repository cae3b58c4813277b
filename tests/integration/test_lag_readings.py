"""group_lag read over and over with one peek consumer, as the lag sampler and /metrics do."""
from __future__ import annotations

import time

import requests

from lab.stack import INVENTORY
from services.common import kafka_clients
from services.common.lag import group_lag
from services.common.topics import INVENTORY_GROUP as GROUP, ORDER_EVENTS


def test_repeated_readings_match_the_offsets_while_a_slow_consumer_works(stack):
    cfg = stack.service_config()
    admin = kafka_clients.admin(cfg, client_id="test-lag")
    peek = kafka_clients.consumer(cfg, group_id=None, client_id="test-lag-peek")
    try:
        stack.restart(INVENTORY, {"THROTTLE_MS": 100})
        resp = requests.post(stack.producer_url + "/orders/bulk", json={"n": 1500, "item": "mixed"}, timeout=60)
        assert resp.status_code == 201
        readings = []
        for _ in range(10):
            readings.append(group_lag(admin, GROUP, [ORDER_EVENTS], peek))
            time.sleep(1)  # the sampler's cadence: the peek consumer's fetches run on between calls
    finally:
        admin.close()
        peek.close()
        stack.restart(INVENTORY)
    # About one poll (500 records) per partition is what tripped the old peek.
    # OrderEvents has no transaction markers, so the peek must confirm the offset lag exactly,
    # on every call: a reused peek consumer once lost partitions and reported them as lag 0.
    for rows in readings:
        for r in rows:
            # Nothing committed yet on a fresh stack: the group starts at offset 0 (the log start).
            assert r.lag == r.end_offset - (r.committed or 0), r
            assert (r.lag_seconds is not None) and (r.lag_seconds > 0) == (r.lag > 0), r
    assert any(r.lag > 0 for rows in readings for r in rows)
