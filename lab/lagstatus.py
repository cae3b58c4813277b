"""Burrow-like consumer-group status over a window of lag samples: OK, WARN, STALL or STOP. Pure.

Burrow (linkedin/Burrow) judges a group by how its committed offsets and its lag move
over a window, not by one lag number. Our rules, per partition, first match wins:

- OK     the last reading has lag 0 (caught up);
- OK     the committed offset moved in the window and lag did not grow (draining or keeping pace);
- WARN   the committed offset moved but lag grew (the consumer works, but falls behind);
- STOP   the offset did not move and nothing in the whole group was committed for
         `stop_after_s` (the consumer is gone or hung);
- STALL  the offset did not move while lag > 0, though the group still commits elsewhere
         (this partition is starved or stuck).

Kafka does not tell us when an offset was committed, only where it is, so "no commits"
is read from the group: if any partition's offset moves, the consumer is alive. A window
with a single reading and lag > 0 has no trend yet: WARN. The group's status is its worst
partition's, as in Burrow.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise


class Status(IntEnum):
    """Ordered by severity, so max() gives the group's status."""
    OK = 0
    WARN = 1
    STALL = 2
    STOP = 3


@dataclass(frozen=True)
class Reading:
    """One partition at one sample: seconds since the experiment started, committed offset, lag."""
    t: float
    committed: int | None
    lag: int


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str


@dataclass(frozen=True)
class GroupVerdict:
    status: Status
    reason: str
    partitions: dict[int, Verdict]

    def as_dict(self) -> dict:
        return {"status": self.status.name, "reason": self.reason,
                "partitions": {str(p): {"status": v.status.name, "reason": v.reason}
                               for p, v in sorted(self.partitions.items())}}


def _moved(window: Sequence[Reading]) -> bool:
    return any(r.committed != window[0].committed for r in window[1:])


def group_idle_s(windows: Mapping[int, Sequence[Reading]]) -> float:
    """Seconds from the group's last committed-offset move (or the window's start) to its last reading."""
    last_t = max(w[-1].t for w in windows.values())
    first_t = min(w[0].t for w in windows.values())
    moves = [cur.t for w in windows.values() for prev, cur in pairwise(w) if cur.committed != prev.committed]
    return last_t - max(moves, default=first_t)


def partition_status(window: Sequence[Reading], idle_s: float, stop_after_s: float) -> Verdict:
    """The status of one partition over its window; idle_s is the whole group's (see group_idle_s)."""
    if not window:
        raise ValueError("a window needs at least one reading")
    first, last = window[0], window[-1]
    if last.lag == 0:
        return Verdict(Status.OK, "caught up")
    if _moved(window):
        if last.lag > first.lag:
            return Verdict(Status.WARN, f"lag rising {first.lag} -> {last.lag} while offsets advance")
        return Verdict(Status.OK, f"lag falling {first.lag} -> {last.lag}" if last.lag < first.lag
                       else f"lag steady at {last.lag} while offsets advance")
    if idle_s >= stop_after_s:
        return Verdict(Status.STOP, f"no commit in the group for {idle_s:.0f}s, lag {last.lag}")
    if len(window) < 2:
        return Verdict(Status.WARN, f"lag {last.lag}, one reading: no trend yet")
    return Verdict(Status.STALL, f"offset stuck at {last.committed} with lag {last.lag} "
                                 f"for {last.t - first.t:.0f}s")


def group_status(windows: Mapping[int, Sequence[Reading]], stop_after_s: float) -> GroupVerdict:
    """The worst partition's status, with every partition's verdict."""
    if not windows:
        raise ValueError("no partitions to judge")
    idle = group_idle_s(windows)
    verdicts = {p: partition_status(w, idle, stop_after_s) for p, w in sorted(windows.items())}
    worst = max(v.status for v in verdicts.values())
    culprits = [p for p, v in verdicts.items() if v.status == worst]
    if worst == Status.OK:
        reason = "; ".join(f"p{p} {v.reason}" for p, v in verdicts.items())
    else:
        reason = f"partition{'s' if len(culprits) > 1 else ''} {', '.join(map(str, culprits))}: " \
                 + verdicts[culprits[0]].reason
    return GroupVerdict(worst, reason, verdicts)


def windows_from_samples(samples: Sequence[dict], window_s: float, at: int | None = None) -> dict[int, list[Reading]]:
    """Per-partition readings of the recorded samples within window_s before sample `at` (default: the last)."""
    if not samples:
        raise ValueError("no samples")
    end = len(samples) - 1 if at is None else at
    t_end = samples[end]["t"]
    out: dict[int, list[Reading]] = {}
    for s in samples[: end + 1]:
        if t_end - s["t"] > window_s:
            continue
        for row in s["partitions"]:
            out.setdefault(row["partition"], []).append(Reading(s["t"], row["committed"], row["lag"]))
    return out


def evaluate(samples: Sequence[dict], window_s: float, stop_after_s: float, at: int | None = None) -> GroupVerdict:
    """Status of the group over the window ending at sample `at`, from recorded sample dicts."""
    return group_status(windows_from_samples(samples, window_s, at), stop_after_s)
