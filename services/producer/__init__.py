"""producer-order: HTTP -> OrderEvents."""
