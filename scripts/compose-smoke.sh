#!/usr/bin/env bash
# Smoke test of docker-compose.yml on a host with Docker Engine and Compose v2
# (scripts/install-docker.sh sets both up; ./run_all.sh --compose images --offline builds the
# images without Docker Hub). Builds and starts the stack, produces N orders, checks analytics
# counted N, replays, and always tears it down again. It runs in CI
# (tests/integration/test_compose.py). Its own project name keeps it away from the data of a
# `./run_all.sh --compose` stack; the host ports are the stack's (7001, 7002, 9094) unless
# PRODUCER_PORT, ANALYTICS_PORT and KAFKA_EXTERNAL_PORT move them.
#   scripts/compose-smoke.sh [N]        N orders, default 1000
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000}
PRODUCER=http://127.0.0.1:${PRODUCER_PORT:-7001}
ANALYTICS=http://127.0.0.1:${ANALYTICS_PORT:-7002}
compose() { docker compose -p "${SMOKE_PROJECT:-kafka-lab-smoke}" -f docker-compose.yml "$@"; }
# field '["a"]["b"]' < json: one value out of a JSON document.
field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

finish() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    echo "compose-smoke: FAILED (exit $status); container states and logs follow" >&2
    compose ps --all >&2 || true
    compose logs --no-color --tail 200 >&2 || true
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  exit "$status"
}
trap finish EXIT

compose down -v --remove-orphans >/dev/null 2>&1   # leftovers of an interrupted run: counts start at 0
compose up --build --wait --wait-timeout 300

# Each response is captured first, so a failing request stops here with curl's own message.
bulk=$(curl -fsS -X POST "$PRODUCER/orders/bulk" -H 'Content-Type: application/json' \
  -d "{\"n\": $N, \"item\": \"mixed\", \"seed\": 1}")
produced=$(field '["produced"]' <<<"$bulk")
[ "$produced" -eq "$N" ] || { echo "produced $produced of $N" >&2; exit 1; }

for _ in $(seq 120); do   # analytics counts orders and the inventory events they cause
  metrics=$(curl -fsS "$ANALYTICS/metrics")
  orders=$(field '["orders_total"]' <<<"$metrics")
  inventory=$(field '["inventory_events_total"]' <<<"$metrics")
  [ "$orders" -eq "$N" ] && [ "$inventory" -eq "$N" ] && break
  sleep 1
done
[ "$orders" -eq "$N" ] && [ "$inventory" -eq "$N" ] \
  || { echo "/metrics: orders_total=$orders inventory_events_total=$inventory, expected $N" >&2; exit 1; }

replay=$(curl -fsS -X POST "$ANALYTICS/replay")
replayed=$(field '["after"]["orders_total"]' <<<"$replay")
[ "$replayed" -eq "$N" ] || { echo "replay counted $replayed orders, expected $N" >&2; exit 1; }

prometheus=$(curl -fsS "$ANALYTICS/metrics/prometheus")
grep -q '^kafka_consumergroup_group_lag{' <<<"$prometheus" \
  || { echo "no lag metrics on /metrics/prometheus" >&2; exit 1; }

echo "compose-smoke: OK: $N produced, counted by /metrics, replayed; lag metrics exported"
