"""The headers of a dead-letter record, written by inventory (OrderEvents poison) and analytics (InventoryEvents)."""
from __future__ import annotations


def dead_letter_headers(error: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record: why it failed and where it came from."""
    return [("dlq.error", error.encode()[:1000]), ("dlq.source.topic", topic.encode()),
            ("dlq.source.partition", str(partition).encode()), ("dlq.source.offset", str(offset).encode())]
