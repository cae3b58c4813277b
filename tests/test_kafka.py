"""The seed's test command: `pip install requests kafka-python && python tests/test_kafka.py`.

Against a running stack (`./run_all.sh up`, or the compose stack), it runs the spec's three steps:

  1. produces 10 000 events in 4 bulk posts of 2 500 (item=mixed) and waits until analytics counted them;
  2. restarts inventory-consumer with THROTTLE_MS=100 (through ./run_all.sh), burst-produces 3 000
     events and prints the lag of group inventory-grp, read from Kafka (committed vs end offsets),
     then restarts it unthrottled and reads the lag down to 0;
  3. calls POST /replay and prints the before/after table;

and writes tests/kafka_metrics_report.txt. Exit 0 when every check passed, 1 when one failed, 2 when
the stack cannot be reached. `--help` lists the sizes and addresses; the defaults are the seed's.

It needs only requests and kafka-python: it imports the services' Kafka plumbing (config, client
factories, lag) and the lab's lag status, which need nothing more, and is otherwise a client of the
HTTP API. It is a program, not a pytest module: tests/conftest.py keeps pytest from collecting it,
and tests/integration/test_seed_command.py runs it against the test suite's own stack.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from kafka.errors import KafkaError

ROOT = Path(__file__).resolve().parent.parent
# Run as `python tests/test_kafka.py`, sys.path[0] is tests/: the packages live one level up.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab import lagstatus  # noqa: E402
from services.common import kafka_clients  # noqa: E402
from services.common.config import Config  # noqa: E402
from services.common.lag import group_lag  # noqa: E402
from services.common.topics import ORDER_EVENTS  # noqa: E402

# services.inventory.worker.GROUP; that module needs the services' own packages (jsonschema).
INVENTORY_GROUP = "inventory-grp"
INVENTORY = "inventory-consumer"
RUN_ALL = ROOT / "run_all.sh"
DEFAULT_REPORT = Path(__file__).resolve().parent / "kafka_metrics_report.txt"
HTTP_TIMEOUT_S = 300
POLL_S = 0.25
# The lab's lag status (lab/lagstatus.py) over the same window as notebook 02.
STATUS_WINDOW_S, STOP_AFTER_S = 10.0, 15.0


class StackUnreachable(RuntimeError):
    """The stack does not answer where the options say it is."""


# -- options ---------------------------------------------------------------------------------------
def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def pick_stack(choice: str, environ) -> str:
    """embedded or compose: what --stack says, else LAB_STACK, else whichever broker port answers."""
    if choice != "auto":
        return choice
    if environ.get("LAB_STACK", "").startswith("compose"):
        return "compose"
    if environ.get("KAFKA_BOOTSTRAP"):
        return "embedded"
    # The embedded broker listens on KAFKA_PORT (9092); compose publishes its broker on 9094.
    embedded, compose = int(environ.get("KAFKA_PORT") or 9092), int(environ.get("KAFKA_EXTERNAL_PORT") or 9094)
    return "compose" if not _port_open(embedded) and _port_open(compose) else "embedded"


def parse_args(argv, environ) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python tests/test_kafka.py",
        description="The seed's three steps against a running stack: load, consumer lag, replay; "
                    "writes tests/kafka_metrics_report.txt.")
    p.add_argument("--events", type=int, default=10_000, help="events in step 1 (default 10000)")
    p.add_argument("--batches", type=int, default=4, help="bulk posts they are split into (default 4)")
    p.add_argument("--item", default="mixed", help="the item of every order (default mixed)")
    p.add_argument("--burst", type=int, default=3_000, help="events of step 2's burst (default 3000)")
    p.add_argument("--throttle-ms", type=int, default=100,
                   help="inventory-consumer's THROTTLE_MS in step 2 (default 100)")
    p.add_argument("--observe-s", type=float, default=20.0,
                   help="seconds to read lag from the burst while throttled, before unthrottling (default 20)")
    p.add_argument("--sample-interval-s", type=float, default=1.0, help="seconds between lag readings (default 1)")
    p.add_argument("--drain-timeout-s", type=float, default=300.0,
                   help="how long the unthrottled consumer may take to reach lag 0 (default 300)")
    p.add_argument("--producer", default=f"http://127.0.0.1:{environ.get('PRODUCER_PORT') or 7001}",
                   help="producer-order's URL (default http://127.0.0.1:$PRODUCER_PORT, 7001)")
    p.add_argument("--analytics", default=f"http://127.0.0.1:{environ.get('ANALYTICS_PORT') or 7002}",
                   help="analytics-consumer's URL (default http://127.0.0.1:$ANALYTICS_PORT, 7002)")
    p.add_argument("--bootstrap", default=None,
                   help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP, else 127.0.0.1:9092, "
                        "or 127.0.0.1:9094 on the compose stack)")
    p.add_argument("--stack", choices=("auto", "embedded", "compose"), default="auto",
                   help="which stack ./run_all.sh restarts: auto picks compose when LAB_STACK says so or only "
                        "compose's broker port (9094) answers")
    p.add_argument("--no-restart", action="store_true",
                   help="do not restart inventory-consumer: you have started it with THROTTLE_MS yourself "
                        "(and restart it unthrottled afterwards)")
    p.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                   help="where the report goes (default tests/kafka_metrics_report.txt)")
    args = p.parse_args(argv)
    for name in ("events", "batches", "burst"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.throttle_ms < 1:
        p.error("--throttle-ms must be at least 1: step 2 measures a throttled consumer")
    args.stack = pick_stack(args.stack, environ)
    if args.bootstrap is None:
        args.bootstrap = environ.get("KAFKA_BOOTSTRAP") or (
            f"127.0.0.1:{environ.get('KAFKA_EXTERNAL_PORT') or 9094}" if args.stack == "compose"
            else f"127.0.0.1:{environ.get('KAFKA_PORT') or 9092}")
    args.producer, args.analytics = args.producer.rstrip("/"), args.analytics.rstrip("/")
    return args


def split(n: int, parts: int) -> list[int]:
    """n as `parts` near-equal batch sizes, larger ones first (lab.experiments.split, which needs pandas)."""
    parts = min(parts, n)
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def flatten(doc: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1} (services.analytics.metrics.flatten, whose module needs jsonschema)."""
    out: dict = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def before_after_rows(before: dict, after: dict) -> list[tuple]:
    """(metric, before, after, delta) for every flattened metric of a replay; delta None when not numeric."""
    fb, fa = flatten(before), flatten(after)
    rows = []
    for key in dict.fromkeys([*fb, *fa]):
        b, a = fb.get(key), fa.get(key)
        num = isinstance(a, (int, float)) and isinstance(b, (int, float))
        rows.append((key, b, a, (a - b) if num else None))
    return rows


def table(header: tuple, rows: list[tuple]) -> list[str]:
    """Plain aligned text columns: the first left-aligned, the rest right-aligned."""
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.2f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)
    cells = [tuple(map(cell, header))] + [tuple(map(cell, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in cells]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]


# -- the run -----------------------------------------------------------------------------------------
class Run:
    """The stack's addresses, the report being written, and the checks so far."""

    def __init__(self, args, environ):
        self.args, self.environ = args, environ
        self.lines: list[str] = []
        self.failures: list[str] = []
        self.http = requests.Session()
        token = environ.get("LAB_API_TOKEN")
        if token:  # the services then refuse a POST without it
            self.http.headers["Authorization"] = f"Bearer {token}"
        # The services' own Config (security settings included), pointed at --bootstrap.
        self.cfg = Config.from_env({**environ, "KAFKA_BOOTSTRAP": args.bootstrap})

    # output: every line goes to stdout and into the report
    def out(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def note(self, line: str) -> None:
        """Progress: stdout only."""
        print(f"  .. {line}", flush=True)

    def check(self, ok: bool, what: str) -> bool:
        self.out(f"  check: {what}: {'ok' if ok else 'FAILED'}")
        if not ok:
            self.failures.append(what)
        return ok

    # HTTP
    def _call(self, method: str, url: str, **kw) -> requests.Response:
        try:
            return self.http.request(method, url, timeout=HTTP_TIMEOUT_S, **kw)
        except requests.ConnectionError:
            raise StackUnreachable(f"nothing answers at {url}: start the stack (./run_all.sh up) "
                                   f"or point --producer/--analytics at it") from None

    def _json(self, resp: requests.Response) -> dict:
        if not resp.ok:
            raise RuntimeError(f"{resp.request.method} {resp.url} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    def metrics(self) -> dict:
        return self._json(self._call("GET", self.args.analytics + "/metrics"))

    def bulk(self, n: int) -> dict:
        resp = self._call("POST", self.args.producer + "/orders/bulk", json={"n": n, "item": self.args.item})
        if resp.status_code == 503 and "produced" in resp.json():
            return resp.json()  # some events not acknowledged: the counts say how many
        return self._json(resp)

    def wait_settled(self, timeout_s: float = 180) -> dict:
        """/metrics once analytics is live and neither group lags, twice in a row."""
        deadline, streak = time.monotonic() + timeout_s, 0
        while True:
            body = self.metrics()
            settled = body["consumer"]["phase"] == "live" and body.get("lag") is not None \
                and all(row["lag"] == 0 for row in body["lag"])
            streak = streak + 1 if settled else 0
            if streak >= 2:
                return body
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not settle within {timeout_s:.0f}s: phase "
                                   f"{body['consumer']['phase']}, lag {[r['lag'] for r in body.get('lag') or []]}")
            time.sleep(POLL_S)

    # ./run_all.sh
    def run_all(self, *argv: str) -> subprocess.CompletedProcess:
        cmd = [str(RUN_ALL), *(["--compose"] if self.args.stack == "compose" else []), *argv]
        return subprocess.run(cmd, cwd=ROOT, env=dict(self.environ), capture_output=True, text=True, timeout=900)

    def inventory_overrides(self) -> dict:
        """inventory-consumer's current overrides (PROCESSING_GUARANTEE...), kept across our restarts."""
        proc = self.run_all("status", "--json")
        try:
            return dict(json.loads(proc.stdout[proc.stdout.index("{"):])[INVENTORY].get("overrides") or {})
        except (ValueError, KeyError):
            return {}

    def restart_inventory(self, overrides: dict) -> None:
        shown = " ".join(f"{k}={v}" for k, v in overrides.items())
        compose = " --compose" if self.args.stack == "compose" else ""
        self.note(f"./run_all.sh{compose} restart {INVENTORY} {shown}".rstrip())
        proc = self.run_all("restart", INVENTORY, *(f"{k}={v}" for k, v in overrides.items()))
        if proc.returncode != 0:
            raise RuntimeError(f"./run_all.sh restart {INVENTORY} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-600:]}")


class LagReader:
    """Lag of inventory-grp on OrderEvents, per partition, from Kafka: committed offsets vs end offsets."""

    def __init__(self, cfg):
        self.admin = kafka_clients.admin(cfg, client_id="seed-test-lag")
        self.peek = kafka_clients.consumer(cfg, group_id=None, client_id="seed-test-lag-peek")
        self.t0 = time.monotonic()
        self.samples: list[dict] = []

    def close(self) -> None:
        self.admin.close()
        self.peek.close()

    def read(self, phase: str) -> dict | None:
        """One reading (also kept in samples), or None when the broker could not answer this time."""
        t = round(time.monotonic() - self.t0, 2)
        try:
            rows = group_lag(self.admin, INVENTORY_GROUP, (ORDER_EVENTS,), self.peek)
        except (KafkaError, KeyError) as exc:
            print(f"  .. lag reading skipped at t={t}s: {exc!r}", flush=True)
            return None
        parts = [{"partition": r.partition, "committed": r.committed, "lag": r.lag,
                  "lag_seconds": r.lag_seconds, "end_offset": r.end_offset} for r in rows]
        s = {"t": t, "phase": phase, "partitions": parts, "total_lag": sum(p["lag"] for p in parts),
             "oldest_s": max((p["lag_seconds"] or 0.0 for p in parts), default=0.0)}
        self.samples.append(s)
        s["status"] = lagstatus.evaluate(self.samples, STATUS_WINDOW_S, STOP_AFTER_S).status.name
        return s


def reading_row(s: dict) -> tuple:
    return (s["t"], s["phase"], *(p["lag"] for p in s["partitions"]), s["total_lag"], round(s["oldest_s"], 1),
            s["status"])


def committed_total(s: dict) -> int:
    return sum(p["committed"] or 0 for p in s["partitions"])


# -- the three steps -----------------------------------------------------------------------------------
def step_load(run: Run) -> None:
    a = run.args
    run.out(f"1. LOAD: {a.events:,} events in {a.batches} bulk posts (item={a.item})")
    before = run.wait_settled()
    rows, produced = [], 0
    for i, size in enumerate(split(a.events, a.batches)):
        r = run.bulk(size)
        produced += r["produced"]
        rows.append((i + 1, size, r["produced"], r["failed"], r["duration_s"], r["events_per_s"],
                     *(r["by_partition"].get(str(p), 0) for p in range(3))))
        run.note(f"batch {i + 1}: {r['produced']} of {size} acknowledged in {r['duration_s']:.2f}s")
    bulk_s = sum(r[4] for r in rows)
    rows.append(("total", a.events, produced, a.events - produced, round(bulk_s, 3),
                 round(produced / bulk_s, 1) if bulk_s else 0.0, *(sum(r[6 + p] for r in rows) for p in range(3))))
    for line in table(("batch", "requested", "acknowledged", "failed", "duration_s", "events/s",
                       "partition 0", "partition 1", "partition 2"), rows):
        run.out("  " + line)
    want_o, want_i = before["orders_total"] + produced, before["inventory_events_total"] + produced
    deadline, t0 = time.monotonic() + 300, time.monotonic()
    while True:
        m = run.metrics()
        if (m["orders_total"] >= want_o and m["inventory_events_total"] >= want_i) or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    counted_o = m["orders_total"] - before["orders_total"]
    counted_i = m["inventory_events_total"] - before["inventory_events_total"]
    run.out(f"  analytics counted {counted_o:,} orders and {counted_i:,} inventory events of this load "
            f"({time.monotonic() - t0:.1f}s after the last acknowledgement)")
    run.check(produced == a.events, f"the broker acknowledged all {a.events:,} events")
    run.check(counted_o == produced and counted_i == produced,
              "analytics counted each acknowledged event once in OrderEvents and InventoryEvents")


def step_lag(run: Run) -> None:
    a = run.args
    run.out("")
    run.out(f"2. CONSUMER LAG: inventory-consumer at THROTTLE_MS={a.throttle_ms}, a burst of {a.burst:,} events")
    run.out(f"  group {INVENTORY_GROUP} on {ORDER_EVENTS}, read from Kafka: end offset minus committed offset "
            f"per partition; oldest = age of the oldest unprocessed event")
    run.wait_settled()
    prior = {} if a.no_restart else run.inventory_overrides()
    restore = {k: v for k, v in prior.items() if k != "THROTTLE_MS"}
    reader = None
    throttled = False
    try:
        if not a.no_restart:
            throttled = True  # from here on, the finally below must undo it
            run.restart_inventory({**restore, "THROTTLE_MS": a.throttle_ms})
        reader = LagReader(run.cfg)
        readings = [reader.read("throttled")]
        burst = run.bulk(a.burst)
        run.note(f"burst: {burst['produced']} of {a.burst} acknowledged in {burst['duration_s']:.2f}s")
        end = time.monotonic() + a.observe_s
        while time.monotonic() < end:
            time.sleep(a.sample_interval_s)
            readings.append(reader.read("throttled"))
        throttled_samples = [s for s in readings if s]
        if not a.no_restart:
            run.restart_inventory(restore)
            throttled = False
        # With --no-restart the consumer stays as the user set it: still throttled.
        drain_phase = "throttled" if a.no_restart else "unthrottled"
        observed = len(readings)
        deadline = time.monotonic() + a.drain_timeout_s
        while True:
            s = reader.read(drain_phase)
            readings.append(s)
            if (s and s["total_lag"] == 0) or time.monotonic() > deadline:
                break
            time.sleep(a.sample_interval_s)
    finally:
        if reader is not None:
            reader.close()
        if throttled:
            run.note(f"leaving {INVENTORY} unthrottled")
            run.restart_inventory(restore)
    samples = [s for s in readings if s]
    run.out("")
    run.out(f"  Lag readings ({len(samples)}; t in seconds from the first reading):")
    for line in table(("t_s", "consumer", "lag p0", "lag p1", "lag p2", "total", "oldest_s", "status"),
                      [reading_row(s) for s in samples]):
        run.out("  " + line)
    peak = max(s["total_lag"] for s in samples)
    run.out("")
    run.out(f"  peak lag {peak:,} events; burst {burst['produced']:,} acknowledged in {burst['duration_s']:.2f}s")
    if len(throttled_samples) >= 2:
        first, last = throttled_samples[0], throttled_samples[-1]
        rate = (committed_total(last) - committed_total(first)) / max(1e-9, last["t"] - first["t"])
        run.out(f"  throttled drain: {rate:.1f} events/s (one consumer at {a.throttle_ms} ms/event can do "
                f"{1000 / a.throttle_ms:.1f}/s)")
    zero = next((s for s in readings[observed:] if s and s["total_lag"] == 0), None)
    if zero:
        run.out(f"  {drain_phase}, lag reached 0 at t={zero['t']:.1f}s")
    run.check(peak > 0, "lag rose while inventory-consumer was throttled")
    run.check(zero is not None, f"lag returned to 0 {'once unthrottled ' if not a.no_restart else ''}"
                                f"(within {a.drain_timeout_s:.0f}s)")


def step_replay(run: Run) -> None:
    run.out("")
    run.out("3. REPLAY: POST /replay recomputes the metrics from offset 0 in a disposable consumer group")
    run.wait_settled()
    for _ in range(30):
        resp = run._call("POST", run.args.analytics + "/replay")
        if resp.status_code != 409:  # 409: another replay is running; wait for it
            break
        time.sleep(1)
    result = run._json(resp)
    run.out(f"  group {result['group_id']}: {result['events_replayed']:,} events replayed in "
            f"{result['duration_s']:.2f}s ({result['events_per_s']:,.0f} events/s)")
    run.out("")
    run.out("  Before/after table (before = live /metrics, after = replayed from offset 0):")
    for line in table(("metric", "before", "after", "delta"), before_after_rows(result["before"], result["after"])):
        run.out("  " + line)
    run.out("")
    run.check(result["diff"] == {}, "replay reproduced the live metrics exactly (no metric differs)"
              if result["diff"] == {} else f"replay reproduced the live metrics: {len(result['diff'])} differ "
                                          f"({', '.join(sorted(result['diff'])[:5])})")


def write_report(run: Run) -> None:
    a = run.args
    head = ["Kafka metrics report (python tests/test_kafka.py)",
            "=================================================",
            f"written {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}",
            f"stack: {a.stack}; producer-order {a.producer}, analytics-consumer {a.analytics}, kafka {a.bootstrap}",
            f"sizes: --events {a.events} --batches {a.batches} --burst {a.burst} --throttle-ms {a.throttle_ms} "
            f"--observe-s {a.observe_s:g}", ""]
    result = ["", "RESULT: all checks passed" if not run.failures
              else f"RESULT: {len(run.failures)} check(s) FAILED: " + "; ".join(run.failures)]
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text("\n".join(head + run.lines + result) + "\n")


def main(argv: list[str] | None = None, environ=None) -> int:
    environ = os.environ if environ is None else environ
    args = parse_args(sys.argv[1:] if argv is None else argv, environ)
    if not args.no_restart and not RUN_ALL.exists():
        print(f"error: step 2 restarts {INVENTORY} with THROTTLE_MS={args.throttle_ms} through ./run_all.sh, "
              f"which is not next to this script ({RUN_ALL.name} missing in {ROOT.name}/). Restart it yourself "
              f"(docker compose: THROTTLE_MS={args.throttle_ms} docker compose up -d {INVENTORY}) and pass "
              f"--no-restart; restart it unthrottled afterwards.", file=sys.stderr)
        return 2
    run = Run(args, environ)
    try:
        step_load(run)
        step_lag(run)
        step_replay(run)
    except StackUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, KafkaError) as exc:
        print(f"error: {exc!r}" if isinstance(exc, KafkaError) else f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if run.lines:
            write_report(run)
            print(f"\nreport: {args.report}", flush=True)
    print("RESULT: all checks passed" if not run.failures
          else f"RESULT: {len(run.failures)} check(s) FAILED: " + "; ".join(run.failures), flush=True)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
