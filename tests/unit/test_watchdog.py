"""StallWatch: when an idle consumer is a stalled one (pure logic; group_lists is tested on a broker)."""
import pytest

from services.common.watchdog import ConsumerStalled, StallWatch


class NoPartitions:
    """A consumer with an empty assignment: an idle extra instance, or one that fell out of its group."""

    def assignment(self):
        return set()


def test_no_partitions_and_not_in_the_group_is_a_stall():
    asked = []
    watch = StallWatch(NoPartitions(), window_s=0, in_group=lambda: asked.append(1) or False)
    with pytest.raises(ConsumerStalled, match="no longer a member"):
        watch.check()
    assert asked == [1]


def test_no_partitions_as_a_member_is_an_idle_instance():
    watch = StallWatch(NoPartitions(), window_s=0, in_group=lambda: True)
    watch.check()


def test_the_group_is_asked_at_most_once_per_window():
    asked = []
    watch = StallWatch(NoPartitions(), window_s=3600, in_group=lambda: asked.append(1) or False)
    watch.check()  # the window has not passed since the watch started
    watch.last -= 3601
    with pytest.raises(ConsumerStalled):
        watch.check()
    watch.check()  # right after a check: the next window starts
    assert asked == [1]
