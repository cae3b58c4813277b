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
