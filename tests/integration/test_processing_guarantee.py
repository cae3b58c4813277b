"""PROCESSING_GUARANTEE against the real broker: at_least_once writes without transactions, and restart refuses a typo.

No kill here: the session stack's other tests check InventoryEvents whole (lab.verify), and a
crash under at_least_once would leave duplicates there for good (notebook 04, on a stack of
its own in test_notebooks.py, measures that).
"""
from __future__ import annotations

import json
import subprocess
import sys

import requests
from kafka import KafkaAdminClient, KafkaConsumer

from lab import paths
from lab.stack import INVENTORY
from services.common.kafka_clients import TRANSACTION_TIMEOUT_MS
from services.common.topics import INVENTORY_EVENTS, ORDER_EVENTS, TRANSACTIONAL_ID_PREFIX
from tests.integration.kafka_reads import end_offsets, wait_for


def inventory_group_caught_up(stack) -> bool:
    ends = end_offsets(stack.bootstrap, [ORDER_EVENTS])
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap, client_id="test-guarantee")
    try:
        committed = admin.list_group_offsets({"inventory-grp": list(ends)})["inventory-grp"]
    finally:
        admin.close()
    # Nothing committed yet (None, or offset -1) counts as 0: on a fresh stack there is nothing to consume either.
    return all(max(0, committed[tp].offset if committed.get(tp) is not None else 0) == end for tp, end in ends.items())


def spanned(before: dict, after: dict) -> int:
    return sum(after[tp] - before[tp] for tp in before)


def burst(stack, n: int) -> tuple[dict, dict, int]:
    """POST n orders, wait until inventory committed them.

    Returns InventoryEvents' high watermarks before and after, and the records between.
    """
    wait_for(lambda: inventory_group_caught_up(stack), 60, what="inventory-grp to catch up before")
    before = end_offsets(stack.bootstrap, [INVENTORY_EVENTS])          # high watermarks
    r = requests.post(stack.producer_url + "/orders/bulk", json={"n": n, "item": "mixed"}, timeout=60)
    assert r.status_code == 201, r.text
    wait_for(lambda: inventory_group_caught_up(stack), 90, what="inventory-grp to commit the burst")
    after = end_offsets(stack.bootstrap, [INVENTORY_EVENTS])
    c = KafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=None, enable_auto_commit=False,
                      isolation_level="read_uncommitted", client_id="test-guarantee-reader")
    try:
        records = 0
        for tp, start in before.items():
            c.assign([tp])
            c.seek(tp, start)
            while c.position(tp) < after[tp]:
                records += sum(1 for recs in c.poll(timeout_ms=500).values() for rec in recs
                               if rec.offset < after[tp])
    finally:
        c.close()
    return before, after, records


def test_at_least_once_commits_without_transactions_and_exactly_once_with_them(stack):
    try:
        stack.restart(INVENTORY, {"PROCESSING_GUARANTEE": "at_least_once"})
        before, after, records = burst(stack, 60)
        # One record per order and not one offset more: no transaction, so no commit marker.
        assert records == 60 and spanned(before, after) == 60
    finally:
        stack.restart(INVENTORY)
    before, after, records = burst(stack, 60)
    assert records == 60
    # Transactions: each commit leaves a marker on every partition it wrote to (written just
    # after the commit returns, so the last one may still be on its way).
    wait_for(lambda: spanned(before, end_offsets(stack.bootstrap, [INVENTORY_EVENTS])) > 60, 30,
             what="commit markers in InventoryEvents")
    # The broker aborts a dead replica's open transaction after the timeout the producer gave it
    # (kafka_clients.TRANSACTION_TIMEOUT_MS, not the client's 60 s): what its coordinator holds.
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap, client_id="test-guarantee")
    try:
        tid = f"{TRANSACTIONAL_ID_PREFIX}0"
        assert admin.describe_transactions([tid])[tid].transaction_timeout_ms == TRANSACTION_TIMEOUT_MS
    finally:
        admin.close()


def test_restart_refuses_an_unknown_guarantee_and_keeps_the_consumer_running(stack, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(paths.ROOT), "LAB_HOME": str(stack.home),
           "KAFKA_PORT": str(stack.kafka_port), "KAFKA_CONTROLLER_PORT": str(stack.controller_port),
           "PRODUCER_PORT": str(stack.producer_port), "ANALYTICS_PORT": str(stack.analytics_port)}
    before = stack.status()[INVENTORY]
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "restart", INVENTORY, "PROCESSING_GUARANTEE=twice"],
                          cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: inventory-consumer: PROCESSING_GUARANTEE='twice': use one of exactly_once, at_least_once"]
    after = stack.status()[INVENTORY]
    assert after["running"] and after["pids"] == before["pids"] and after["overrides"] == before["overrides"]
    status = json.loads(subprocess.run([sys.executable, "-m", "lab.cli", "status", "--json"], cwd=paths.ROOT,
                                       env=env, capture_output=True, text=True, timeout=120).stdout)
    assert status[INVENTORY]["running"]
