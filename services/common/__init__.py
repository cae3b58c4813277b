"""What every service shares: config, topics, event schema, Kafka client factories, lag."""
