"""Which open transactions the inventory worker aborts after init_transactions (no broker needed)."""
from kafka import TopicPartition
from kafka.admin._transactions import PartitionProducerState, ProducerState

from services.common.transactions import fenced_open_transactions


def producer(pid: int, epoch: int, txn_start: int) -> ProducerState:
    return ProducerState(producer_id=pid, producer_epoch=epoch, last_sequence=3, last_timestamp=0,
                         coordinator_epoch=2, current_transaction_start_offset=txn_start)


def test_only_our_open_transactions_of_earlier_epochs_are_aborted():
    ours, other = 7, 8
    inv0, inv1, offsets = TopicPartition("InventoryEvents", 0), TopicPartition("InventoryEvents", 1), \
        TopicPartition("__consumer_offsets", 4)
    states = {
        inv0: PartitionProducerState([producer(ours, 9, 120), producer(other, 3, 118)]),  # ours, lost markers
        inv1: PartitionProducerState([producer(ours, 9, -1)]),     # ours, earlier epoch, but closed
        offsets: PartitionProducerState([producer(ours, 9, 40)]),  # the offsets it carried
        TopicPartition("InventoryState", 0): PartitionProducerState([producer(ours, 10, 5)]),  # current epoch
    }
    found = fenced_open_transactions(states, producer_id=ours, epoch=10)
    assert [(tp, p.producer_epoch, p.current_transaction_start_offset) for tp, p in found] == [
        (inv0, 9, 120), (offsets, 9, 40)]


def test_nothing_to_abort_on_a_healthy_cluster():
    states = {TopicPartition("InventoryEvents", p): PartitionProducerState([producer(7, 10, -1)]) for p in range(3)}
    assert fenced_open_transactions(states, producer_id=7, epoch=10) == []
    assert fenced_open_transactions({}, producer_id=7, epoch=10) == []
