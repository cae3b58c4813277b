"""StallWatch: when an idle consumer is a stalled one (pure logic; group_lists is tested on a broker)."""
import pytest

from services.common.watchdog import ConsumerStalled, StallWatch


class NoPartitions:
    """A consumer with an empty assignment: an idle extra instance, or one that fell out of its group."""

    def assignment(self):
        return set()


def _asking(answer):
    """An in_group check that records each call and gives answer."""
    calls = []

    def in_group():
        calls.append(1)
        return answer
    return in_group, calls


def test_no_partitions_and_not_in_the_group_is_a_stall():
    in_group, calls = _asking(False)
    watch = StallWatch(NoPartitions(), window_s=0, in_group=in_group)
    with pytest.raises(ConsumerStalled, match="no longer a member"):
        watch.check()
    assert calls == [1]


def test_no_partitions_as_a_member_is_an_idle_instance():
    in_group, calls = _asking(True)
    StallWatch(NoPartitions(), window_s=0, in_group=in_group).check()
    assert calls == [1]


def test_a_group_that_cannot_say_is_no_reason_to_restart():
    # group_lists answers None when the broker is unreachable or the group answers an error.
    in_group, calls = _asking(None)
    StallWatch(NoPartitions(), window_s=0, in_group=in_group).check()
    assert calls == [1]


def test_the_group_is_asked_at_most_once_per_window():
    in_group, calls = _asking(False)
    watch = StallWatch(NoPartitions(), window_s=3600, in_group=in_group)
    watch.check()  # the window has not passed since the watch started
    assert calls == []
    watch.last -= 3601
    with pytest.raises(ConsumerStalled):
        watch.check()
    watch.check()  # right after a check: the next window starts
    assert calls == [1]


class AtTheEnd:
    """A consumer that has read everything on one partition; the group's offset is on_broker."""

    def __init__(self, on_broker: int, position: int = 10):
        from kafka import TopicPartition
        self.tp = TopicPartition("InventoryEvents", 0)
        self.on_broker, self.pos = on_broker, position

    def assignment(self):
        return {self.tp}

    def end_offsets(self, tps, timeout_ms=None):
        return {tp: self.pos for tp in tps}

    def position(self, tp, timeout_ms=None):
        return self.pos

    def committed(self, tp, timeout_ms=None):
        return self.on_broker


def _committed(consumer, offset):
    from kafka.structs import OffsetAndMetadata
    return {consumer.tp: OffsetAndMetadata(offset, "", -1)}


def test_a_commit_that_never_reached_the_group_is_a_stall():
    # kafka-python's producer I/O thread died; commit_transaction returned without committing.
    consumer = AtTheEnd(on_broker=7)
    watch = StallWatch(consumer, window_s=0)
    watch.progressed(_committed(consumer, 10))
    with pytest.raises(ConsumerStalled, match="commits did not reach the group"):
        watch.check()


def test_commits_that_reached_the_group_are_no_stall():
    consumer = AtTheEnd(on_broker=10)
    watch = StallWatch(consumer, window_s=0)
    watch.progressed(_committed(consumer, 10))
    watch.check()


def test_a_position_past_a_commit_marker_is_no_stall():
    # On a transactional topic the position runs past the last commit marker (offset 10 here),
    # which no commit covers: only what we committed counts.
    consumer = AtTheEnd(on_broker=10, position=11)
    watch = StallWatch(consumer, window_s=0)
    watch.progressed(_committed(consumer, 10))
    watch.check()
