"""The services over HTTP: /metrics, a bulk of orders, /replay, and the waits for a settled stack."""
from __future__ import annotations

import logging
import time

import requests

from lab.stack import LabStack
from services.common import events

log = logging.getLogger(__name__)


HTTP_TIMEOUT_S = 300          # a bulk of 10k or a replay of the whole log answers well within this
POLL_S = 0.25


def _check(resp: requests.Response) -> dict:
    if not resp.ok:
        raise RuntimeError(f"{resp.request.method} {resp.url} answered {resp.status_code}: {resp.text[:500]}")
    return resp.json()


def metrics(stack: LabStack) -> dict:
    """GET /metrics of analytics-consumer."""
    return _check(requests.get(stack.analytics_url + "/metrics", timeout=30))


def produce(stack: LabStack, n: int, item: str = events.MIXED, seed: int | None = None) -> dict:
    """POST /orders/bulk; a partial failure (503) comes back as a summary with produced < requested."""
    body = {"n": n, "item": item, **({"seed": seed} if seed is not None else {})}
    resp = requests.post(stack.producer_url + "/orders/bulk", json=body, timeout=HTTP_TIMEOUT_S)
    if resp.status_code == 503 and "produced" in resp.json():
        return resp.json()
    return _check(resp)


def replay(stack: LabStack) -> dict:
    """POST /replay: before/after/diff and the replay's throughput."""
    return _check(requests.post(stack.analytics_url + "/replay", timeout=HTTP_TIMEOUT_S))


def _settled(body: dict) -> bool:
    return (body["consumer"]["phase"] == "live" and body.get("lag") is not None
            and all(row["lag"] == 0 for row in body["lag"]))


def wait_settled(stack: LabStack, timeout_s: float = 180) -> dict:
    """Wait until analytics is live and neither group lags (twice in a row); return /metrics."""
    deadline = time.monotonic() + timeout_s
    streak, body = 0, None
    while True:
        try:
            body = metrics(stack)
        except (requests.RequestException, RuntimeError) as exc:
            # A just-restarted analytics may refuse a moment; the deadline bounds the wait.
            log.debug("metrics not yet available: %s", exc)
            body, streak = None, 0
        else:
            streak = streak + 1 if _settled(body) else 0
            if streak >= 2:
                return body
        if time.monotonic() > deadline:
            lags = [] if body is None else [(r['group'], r['partition'], r['lag']) for r in body.get('lag') or []]
            state = "no answer" if body is None else f"phase={body['consumer']['phase']} lag={lags}"
            raise TimeoutError(f"the stack did not settle within {timeout_s:.0f}s: {state}")
        time.sleep(POLL_S)


def wait_counted(stack: LabStack, orders: int, inventory_events: int, timeout_s: float = 180) -> tuple[dict, bool]:
    """Wait until /metrics counts at least these totals; returns (last /metrics, reached)."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = metrics(stack)
        if body["orders_total"] >= orders and body["inventory_events_total"] >= inventory_events:
            return body, True
        if time.monotonic() > deadline:
            log.warning("analytics did not count %d orders / %d inventory events within %.0fs: has %d / %d",
                        orders, inventory_events, timeout_s, body["orders_total"], body["inventory_events_total"])
            return body, False
        time.sleep(POLL_S)


def wait_live(stack: LabStack, timeout_s: float = 180) -> dict:
    """Wait until analytics has finished its start (rebuild or not) and consumes live."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            body = metrics(stack)
            if body["consumer"]["phase"] == "live":
                return body
        except (requests.RequestException, RuntimeError) as exc:
            log.debug("analytics not answering yet: %s", exc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"analytics was not live within {timeout_s:.0f}s")
        time.sleep(POLL_S)
