"""analytics-consumer: both topics -> live metrics, GET /metrics, POST /replay."""
