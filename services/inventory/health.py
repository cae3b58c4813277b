"""python -m services.inventory.health: exit 0 when this instance is a live member of inventory-grp.

The container healthcheck of inventory-consumer, which has no HTTP port. It runs in the
worker's container with the worker's environment, so it derives the same client id.
"""
from __future__ import annotations

import sys

from kafka.errors import KafkaError

from services.common import kafka_clients
from services.common.config import Config
from services.common.kafka_access import explain
from services.inventory.worker import GROUP, InventoryWorker


def member_client_ids(admin, group: str = GROUP) -> set[str]:
    """Client ids of the group's current members, as the broker's coordinator sees them."""
    described = admin.describe_groups([group]).get(group) or {}
    return {m["client_id"] for m in described.get("members", ())}


def main(environ=None) -> int:
    cfg = Config.from_env(environ)
    client_id = InventoryWorker(cfg).transactional_id  # the worker's consumer uses it as client_id
    try:
        admin = kafka_clients.admin(cfg, client_id=f"{client_id}-health")
    except KafkaError as exc:
        print(f"{client_id}: {explain(exc, cfg)}", file=sys.stderr)
        return 1
    try:
        members = member_client_ids(admin)
    finally:
        admin.close()
    if client_id in members:
        return 0
    print(f"{client_id} is not a member of {GROUP} (members: {sorted(members) or 'none'})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
