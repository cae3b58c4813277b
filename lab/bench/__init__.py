"""./run_all.sh bench: the lab's speed, as ratios against raw kafka-python on the same broker.

The machine is shared and noisy, so every figure that has a target is a ratio: the service
and a raw kafka-python loop doing the same work, measured side by side in one run, several
repetitions each (median and spread). Sections, in the order they run:

  e2e       10k mixed orders: first produce -> /metrics counts them all; creation -> inventory latency
  replay    POST /replay against a raw consumer reading and JSON-decoding the same partitions from 0
  clients   the service, raw kafka-python and raw confluent-kafka reading and producing the same, for information
  orders    POST /order at concurrency 1, 8, 32: requests/s, p50/p99 latency
  inventory inventory-consumer (transactional) against raw consume-and-produce loops on the same records
  bulk      POST /orders/bulk for n = 1k, 10k, 100k against a raw producer loop; growth with n; peak RSS
  perf      Kafka's own ProducerPerformance on the same broker: the ceiling, for information
  scale     (--scale, opt-in) restarts and replay with 1M events of history over 10k / 100k; peak RSS

`./run_all.sh bench --quick` is the smoke-test size. The figures go to reports/bench.json
(or --out) and a table to stdout. docs/benchmarks.md says what each figure means.

Modules: stats (arithmetic), baselines (the raw loops), confluent (its loops), harness (the Lab
and its tools), sections, clients, scale, report (targets and table), command (run and the command line).
"""
from lab.bench.command import ALL_SECTIONS, SECTIONS, main, run
from lab.bench.harness import PERF_TOPIC, RAW_GROUP, RAW_OUT_TOPIC, SCRATCH_TOPICS, Plan
from lab.bench.report import table, targets
from lab.bench.stats import flatness, linearity, pair_median, summary

__all__ = ["ALL_SECTIONS", "PERF_TOPIC", "RAW_GROUP", "RAW_OUT_TOPIC", "SCRATCH_TOPICS", "SECTIONS", "Plan", "flatness",
           "linearity", "main", "pair_median", "run", "summary", "table", "targets"]
