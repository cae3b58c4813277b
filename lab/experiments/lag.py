"""Experiment 02, consumer lag: a lag sampler, drain rates per phase, the throttle's drain model, the run."""
from __future__ import annotations

import logging
import threading
import time

from kafka.errors import KafkaError

from lab import lagstatus
from lab.experiments.client import produce, wait_settled
from lab.stack import INVENTORY, LabStack, restore_services
from services.common import kafka_clients
from services.common.lag import group_lag
from services.common.topics import ORDER_EVENTS
from services.inventory.worker import GROUP as INVENTORY_GROUP

log = logging.getLogger(__name__)


class LagSampler:
    """Samples a group's per-partition lag in a background thread; each sample carries the current phase."""

    def __init__(self, cfg, group: str = INVENTORY_GROUP, topics=(ORDER_EVENTS,), interval_s: float = 1.0,
                 on_sample=None):
        self.cfg, self.group, self.topics, self.interval_s = cfg, group, tuple(topics), interval_s
        self.phase: int | None = None
        self.samples: list[dict] = []
        # Called with the samples so far, on the caller's thread (a notebook's display must be
        # updated from the cell's own thread), whenever hold() or wait_for() sees new ones.
        self.on_sample = on_sample
        self._told = 0
        self._lock = threading.Lock()
        self._new_sample = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._t0 = 0.0

    def now(self) -> float:
        """Seconds since start(): the time axis of every sample."""
        return time.monotonic() - self._t0

    def start(self, phase: int) -> "LagSampler":
        self.phase = phase
        # The clients belong to the sampler thread alone (kafka-python clients are not thread-safe).
        self._admin = kafka_clients.admin(self.cfg, client_id="lab-lag-sampler")
        self._peek = kafka_clients.consumer(self.cfg, group_id=None, client_id="lab-lag-peek")
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            due = 0.0
            while not self._stop.wait(max(0.0, due - self.now())):
                self._sample()
                # Fixed ticks from the start; a slow sample skips ticks instead of bunching them.
                due += self.interval_s
                while due < self.now():
                    due += self.interval_s
        except BaseException as exc:  # surfaced by stop() / hold(): the experiment must not go on blind
            self._error = exc
            log.exception("lag sampler failed")
        finally:
            self._admin.close()
            self._peek.close()

    def _sample(self) -> None:
        t, wall, phase = self.now(), time.time(), self.phase
        try:
            rows = group_lag(self._admin, self.group, self.topics, self._peek)
        except (KafkaError, KeyError) as exc:
            # A broker hiccup costs one sample, not the experiment; the gap shows in the readings.
            log.warning("lag sample skipped at t=%.1fs: %r", t, exc)
            return
        parts = [{"partition": r.partition, "end_offset": r.end_offset, "committed": r.committed,
                  "lag": r.lag, "lag_seconds": r.lag_seconds} for r in rows]
        sample = {"t": round(t, 3), "wall": round(wall, 3), "phase": phase, "partitions": parts,
                  "total_lag": sum(p["lag"] for p in parts),
                  "max_lag_seconds": max((p["lag_seconds"] or 0.0 for p in parts), default=0.0)}
        with self._new_sample:
            self.samples.append(sample)
            self._new_sample.notify_all()
        log.info("lag t=%5.1fs phase %s: total %5d  by partition %s  oldest unprocessed %.1fs",
                 t, phase, sample["total_lag"], [p["lag"] for p in parts], sample["max_lag_seconds"])

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError("the lag sampler failed; see the log above") from self._error

    def _tell(self) -> None:
        """Hand the samples so far to on_sample if new ones came (outside the lock: drawing takes a while)."""
        if self.on_sample is None:
            return
        with self._lock:
            if len(self.samples) == self._told:
                return
            self._told = len(self.samples)
            samples = list(self.samples)
        self.on_sample(samples)

    def hold(self, until_t: float) -> None:
        """Let the sampler record until until_t (seconds since start)."""
        while self.now() < until_t:
            self._raise_if_failed()
            self._tell()
            time.sleep(min(0.2, max(0.0, until_t - self.now())))
        self._raise_if_failed()
        self._tell()

    def wait_for(self, predicate, timeout_s: float) -> dict | None:
        """The first sample (recorded already or to come) that satisfies predicate, or None after timeout_s."""
        deadline = time.monotonic() + timeout_s
        seen = 0  # samples recorded before the call count too: a restart may have blocked a while
        while True:
            self._tell()
            with self._new_sample:
                for s in self.samples[seen:]:
                    if predicate(s):
                        return s
                seen = len(self.samples)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._raise_if_failed()
                self._new_sample.wait(min(remaining, 0.5))

    def stop(self) -> list[dict]:
        """Stop sampling; the recorded samples, in time order."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._raise_if_failed()
        with self._lock:
            return list(self.samples)


def processed_between(a: dict, b: dict) -> int:
    """Events the group committed between samples a and b (a committed offset of None counts as 0)."""
    before = {p["partition"]: p["committed"] or 0 for p in a["partitions"]}
    return sum(max(0, (p["committed"] or 0) - before.get(p["partition"], 0)) for p in b["partitions"])


def drain_rates(samples: list[dict]) -> dict:
    """Events processed per second over samples: over the whole span, and while progress was being made."""
    if len(samples) < 2:
        return {"processed": 0, "duration_s": 0.0, "events_per_s": 0.0, "active_events_per_s": 0.0}
    first, last = samples[0], samples[-1]
    processed = processed_between(first, last)
    span = last["t"] - first["t"]
    # A phase starts with a restart (and, scaled out, a rebalance) and may end idle, caught up;
    # the active rate runs from the sample before the first progress to the last progress.
    moved = [i for i in range(1, len(samples)) if processed_between(samples[i - 1], samples[i]) > 0]
    active = 0.0
    if moved:
        start, end = samples[moved[0] - 1], samples[moved[-1]]
        active = processed_between(start, end) / (end["t"] - start["t"])
    return {"processed": processed, "duration_s": round(span, 3),
            "events_per_s": round(processed / span, 2) if span > 0 else 0.0,
            "active_events_per_s": round(active, 2)}


def annotate_status(samples: list[dict], window_s: float, stop_after_s: float) -> None:
    """Give each sample the group's status over the window ending at it (in place)."""
    for i, s in enumerate(samples):
        verdict = lagstatus.evaluate(samples, window_s, stop_after_s, at=i)
        s["status"] = verdict.status.name
        s["status_reason"] = verdict.reason


def summarize_phases(samples: list[dict], phases: list[dict], window_s: float, stop_after_s: float) -> list[dict]:
    """Per phase: drain rates, lag at start/peak/end, the oldest event's age, the status at its end."""
    out = []
    for ph in phases:
        idx = [i for i, s in enumerate(samples) if s["phase"] == ph["phase"]]
        row = dict(ph)
        if not idx:
            out.append({**row, "samples": 0})
            continue
        mine = [samples[i] for i in idx]
        row.update({
            "samples": len(mine),
            **drain_rates(mine),
            "lag_start": mine[0]["total_lag"],
            "lag_max": max(s["total_lag"] for s in mine),
            "lag_end": mine[-1]["total_lag"],
            "lag_seconds_max": round(max(s["max_lag_seconds"] for s in mine), 3),
            "status": lagstatus.evaluate(samples, window_s, stop_after_s, at=idx[-1]).as_dict(),
        })
        row.update(drain_model(row, partitions=len(mine[0]["partitions"])))
        out.append(row)
    return out


# -- the drain model: what the throttle allows, beside what was measured -------------------------------
def expected_drain_rate(instances: int, throttle_ms: int, partitions: int) -> float | None:
    """Events/s the throttle allows: instances x 1000 / throttle_ms, and no more consumers work than partitions.

    A group gives each partition to one member, so a fourth consumer on three partitions idles.
    None when unthrottled: then nothing but the machine sets the rate.
    """
    if throttle_ms <= 0:
        return None
    return min(instances, partitions) * 1000 / throttle_ms


def drain_time_s(lag: int, events_per_s: float | None) -> float | None:
    """Seconds until lag reaches 0 at this rate: 0 with no lag, None when nothing drains."""
    if lag <= 0:
        return 0.0
    if not events_per_s:
        return None
    return lag / events_per_s


def drain_model(phase: dict, partitions: int) -> dict:
    """A summarised phase's model figures: expected rate, measured/expected, the extra ms per event, drain time."""
    measured = phase.get("active_events_per_s", 0.0)
    expected = expected_drain_rate(phase["instances"], phase["throttle_ms"], partitions)
    working = min(phase["instances"], partitions)
    # What each event cost beyond the throttle's sleep (decoding, producing, the transaction commit
    # that closes every COMMIT_INTERVAL_MS of work): the part of the time the model leaves out.
    extra = 1000 * working / measured - phase["throttle_ms"] if expected and measured else None
    drained = drain_time_s(phase.get("lag_end", 0), measured)
    return {"consumers_at_work": working,
            "expected_events_per_s": round(expected, 2) if expected else None,
            "measured_vs_expected": round(measured / expected, 3) if expected else None,
            "extra_ms_per_event": round(extra, 1) if extra is not None else None,
            "drained_in_s_at_this_rate": round(drained, 1) if drained is not None else None}


def phase_label(instances: int, throttle_ms: int) -> str:
    who = f"{instances} consumer{'s' if instances > 1 else ''}"
    return f"{who}, {throttle_ms} ms/event" if throttle_ms else f"{who}, unthrottled"


def run_lag_experiment(stack: LabStack, *, throttle_ms: int, burst: int, sample_interval_s: float,
                       phase1_s: float, phase2_s: float, phase3_timeout_s: float, scale_out: int = 3,
                       status_window_s: float = 10.0, stop_after_s: float = 15.0, on_progress=None) -> dict:
    """Burst into a throttled inventory-consumer, scale it out, then unthrottle it; sample lag throughout.

    on_progress, if given, is called with the experiment so far (the shape of the result, phases
    still open) at each new sample: a notebook in JupyterLab redraws its chart with it.
    Whatever happens, inventory-consumer ends unthrottled with one instance.
    """
    wait_settled(stack)
    phases: list[dict] = []
    burst_result: dict | None = None
    burst_t: float | None = None

    def so_far(samples: list[dict]) -> None:
        now = round(sampler.now(), 3)
        on_progress({"group": INVENTORY_GROUP, "topic": ORDER_EVENTS, "burst": burst_result, "burst_t": burst_t,
                     "samples": samples, "live_t": now,
                     "phases": [{"end_t": now, **ph} for ph in phases]})

    sampler = LagSampler(stack.service_config(), interval_s=sample_interval_s,
                         on_sample=so_far if on_progress else None)

    def begin(phase: int, instances: int, throttle: int) -> float:
        sampler.phase = phase
        t = sampler.now()
        if phases:
            phases[-1]["end_t"] = round(t, 3)
        phases.append({"phase": phase, "label": phase_label(instances, throttle), "instances": instances,
                       "throttle_ms": throttle, "start_t": round(t, 3)})
        log.info("phase %d: %s", phase, phases[-1]["label"])
        return t

    caught_up_t = None
    try:
        sampler.start(phase=1)
        begin(1, 1, throttle_ms)
        stack.restart(INVENTORY, {"THROTTLE_MS": throttle_ms}, instances=1)
        burst_t = sampler.now()
        burst_result = produce(stack, burst)
        log.info("burst: %d events acknowledged in %.2fs", burst_result["produced"], burst_result["duration_s"])
        # Observation times count from when the restarted consumers are up: a compose restart
        # waits for the containers' healthchecks, seconds longer than the embedded one.
        sampler.hold(burst_t + phase1_s)

        begin(2, scale_out, throttle_ms)
        stack.restart(INVENTORY, {"THROTTLE_MS": throttle_ms}, instances=scale_out)
        sampler.hold(sampler.now() + phase2_s)

        begin(3, 1, 0)
        restore_services(stack)
        zero = sampler.wait_for(lambda s: s["phase"] == 3 and s["total_lag"] == 0, phase3_timeout_s)
        if zero is None:
            log.warning("lag did not reach 0 within %.0fs of phase 3", phase3_timeout_s)
        else:
            caught_up_t = zero["t"]
            # A few samples at zero, so the chart shows the group staying caught up.
            sampler.hold(caught_up_t + 3 * sample_interval_s)
        phases[-1]["end_t"] = round(sampler.now(), 3)
    finally:
        # Restore first: a failed sampler must not leave the consumer throttled.
        try:
            restore_services(stack)
        finally:
            samples = sampler.stop()

    annotate_status(samples, status_window_s, stop_after_s)
    summary = summarize_phases(samples, phases, status_window_s, stop_after_s)
    rates = {p["phase"]: p.get("active_events_per_s", 0.0) for p in summary}
    return {
        "group": INVENTORY_GROUP,
        "topic": ORDER_EVENTS,
        "burst": burst_result,
        "burst_t": round(burst_t, 3),
        "phases": summary,
        "samples": samples,
        "caught_up": caught_up_t is not None,
        "caught_up_t": caught_up_t,
        "scale_out_speedup": round(rates[2] / rates[1], 2) if rates.get(1) else None,
        "status_window_s": status_window_s,
        "stop_after_s": stop_after_s,
        "final_status": lagstatus.evaluate(samples, status_window_s, stop_after_s).as_dict(),
    }
