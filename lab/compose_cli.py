"""What the docker and compose CLIs take and print, for lab.compose: the runner, `ps` output,
a container's healthcheck as an argv, and which variables the compose file takes from the host."""
from __future__ import annotations

import json
import re
import subprocess
from collections import Counter

from lab import paths
from lab.labstack import StackError

# An environment entry the host can set: `VAR: ${VAR:-default}` (same name on both sides).
_FROM_HOST = re.compile(r"^\$\{(\w+)(?::?-[^}]*)?\}$")


def run_command(argv: list[str], *, env: dict, capture: bool = False,
                timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run argv from the repository root: the runner ComposeStack uses unless given another."""
    try:
        return subprocess.run(argv, env=env, cwd=paths.ROOT, text=True, capture_output=capture, timeout=timeout)
    except FileNotFoundError:
        raise StackError(f"'{argv[0]}' not found: install Docker Engine with the Compose plugin, "
                         "or drop --compose to run the embedded stack") from None


def host_variables(compose: dict) -> dict[str, set[str]]:
    """For each service, the variables only it takes from the host environment.

    A variable several services share (LOG_LEVEL) is set for the whole stack before `up`;
    one service's own (THROTTLE_MS) can change with a restart of just that service.
    """
    uses = {name: {k for k, v in (svc.get("environment") or {}).items()
                   if (m := _FROM_HOST.match(str(v))) and m.group(1) == k}
            for name, svc in compose["services"].items()}
    shared = Counter(v for names in uses.values() for v in names)
    return {name: {v for v in names if shared[v] == 1} for name, names in uses.items()}


def healthcheck_argv(test: list[str] | None) -> list[str]:
    """The argv that runs a container's HEALTHCHECK test (Docker's ["CMD", ...] or ["CMD-SHELL", "..."])."""
    if test and test[0] == "CMD" and len(test) > 1:
        return list(test[1:])
    if test and test[0] == "CMD-SHELL" and len(test) == 2:
        return ["/bin/sh", "-c", test[1]]
    return ["true"]  # no healthcheck: running is ready


def parse_ps(text: str) -> list[dict]:
    """`docker compose ps --format json`: a JSON array (Compose < 2.21) or one object per line."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]
