"""inventory-consumer: OrderEvents -> InventoryEvents, exactly once."""
