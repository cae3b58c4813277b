"""Transactions a fenced incarnation left open on a partition, and their abort.

Kafka 4.3.1 can lose a transaction's markers when the only broker stops or restarts while
the transaction commits. Its marker sender finds the partitions leaderless for a moment
(controlled shutdown; the restarted broker fenced until its old session expires), logs
"Couldn't find leader endpoint for partitions ... these partitions are likely deleted
already and hence can be skipped", and records the transaction as complete. Its records then
stay open on every partition it wrote: read_committed consumers stop at them, and the group
offsets it carried answer UNSTABLE_OFFSET_COMMIT for good (seen in
test_broker_outage_gives_503...: inventory-grp never resumed and the pipeline never drained).

After init_transactions the coordinator has finished every transaction of the earlier epochs
of our transactional id, so anything of ours still open on a partition under an older epoch
has lost its markers. Aborting it on every partition it reached (outputs, snapshots, offsets)
undoes the whole transaction consistently; the orders are simply processed again.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from kafka import TopicPartition
from kafka.admin import AbortTransactionSpec

log = logging.getLogger(__name__)
OFFSETS_TOPIC = "__consumer_offsets"


def fenced_open_transactions(states: dict, producer_id: int, epoch: int) -> list[tuple[TopicPartition, Any]]:
    """(partition, producer state) for each transaction producer_id left open under an epoch before epoch.

    states is admin.describe_producers' answer: TopicPartition -> PartitionProducerState.
    """
    return [(tp, p) for tp, state in sorted(states.items())
            for p in state.active_producers
            if p.producer_id == producer_id and p.producer_epoch < epoch and p.current_transaction_start_offset >= 0]


def abort_fenced_transactions(admin, transactional_id: str, topics) -> list[TopicPartition]:
    """Abort what earlier epochs of transactional_id left open on topics and the group offsets topic.

    Call it after init_transactions and before reading committed offsets. Returns the
    partitions where something was aborted.
    """
    desc = admin.describe_transactions([transactional_id])[transactional_id]
    names = [*topics, OFFSETS_TOPIC]
    tps = [TopicPartition(t["name"], p["partition_index"])
           for t in admin.describe_topics(names) for p in t["partitions"]]
    aborted = []
    for tp, p in fenced_open_transactions(admin.describe_producers(tps), desc.producer_id, desc.producer_epoch):
        log.warning("aborting a transaction left open with lost markers: %s producer_id=%d epoch=%d from offset %d",
                    tp, p.producer_id, p.producer_epoch, p.current_transaction_start_offset)
        admin.abort_transaction(AbortTransactionSpec(tp, p.producer_id, p.producer_epoch, p.coordinator_epoch))
        aborted.append(tp)
    return aborted


class TransactionStuck(RuntimeError):
    """A transactional call did not finish in time (the producer's I/O thread may be dead)."""


def bounded(call, timeout_s: float, what: str):
    """Run call with a deadline: kafka-python's transactional waits block forever otherwise."""
    done = threading.Event()
    box: dict = {}

    def run():
        try:
            box["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"txn-{what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise TransactionStuck(f"{what} did not finish within {timeout_s:.0f}s")
    if "error" in box:
        raise box["error"]
    return box.get("result")
