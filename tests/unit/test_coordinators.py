"""Which __consumer_offsets partition coordinates a group: Kafka's own rule, on names whose hash is negative too."""
import pytest

from lab.coordinators import group_partition


@pytest.mark.parametrize("group,partitions,expected", [
    # Java: Utils.abs("inventory-grp".hashCode()) % 5 and the same for the others.
    ("inventory-grp", 5, 4),
    ("analytics-grp", 5, 2),
    ("", 5, 0),
    ("a", 50, 97 % 50),
])
def test_group_partition_follows_kafkas_utils_abs(group, partitions, expected):
    assert group_partition(group, partitions) == expected
