"""The command line behind ./run_all.sh."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from lab import paths
from lab.broker import BrokerStartError, PrerequisiteError
from lab.compose import ComposeStack
from lab.stack import SERVICES, Stack, StackError, node_of

USAGE = """./run_all.sh [COMMAND] [options]

  (no command)        the whole lab: start the stack, run the notebooks, write reports/, stop
  up                  start the embedded stack (broker, topics, services); idempotent
  down [--wipe]       stop everything; --wipe also deletes the broker's data
  status [--json]     what runs, with pids and addresses
  logs SERVICE [-n N] the last lines of a service's log
  restart SERVICE [VAR=VALUE ...] [--instances N]
                      restart one service with environment overrides
  test [PYTEST ARGS]  the test suite (starts its own broker on free ports)
  verify [--json]     reconcile the topics independently: duplicates, gaps, stock balance
  lab                 the stack plus JupyterLab on notebooks/ (127.0.0.1)
  bench [--quick]     the benchmarks: service vs raw kafka-python, reports/bench.json
  images [--offline]  (--compose) build every image; --offline without Docker Hub

  --compose           anywhere: the same commands on the docker-compose.yml stack
                      (needs Docker Engine with Compose v2; see the README)
  --brokers N         anywhere: the embedded stack as an N-node KRaft cluster (3: replication 3,
                      min ISR 2); later commands remember it until down --wipe
  --secure            anywhere: the embedded brokers secured like a managed cluster (SASL_SSL,
                      SCRAM-SHA-512, an ACL'd principal per service); remembered until down --wipe
"""


# What ruff checks before the tests; pyproject.toml holds its rules.
LINTED = ("services", "lab", "tests")


def lint(root=None, targets=None) -> int:
    """ruff check of targets (LINTED) under root with the project's rules: the report to stdout, its exit code back."""
    return subprocess.call([sys.executable, "-m", "ruff", "check", "--config", str(paths.ROOT / "pyproject.toml"),
                            *(targets or LINTED)], cwd=root or paths.ROOT)


TYPED = ("services",)


def typecheck(root=None, targets=None) -> int:
    """mypy over targets (TYPED) with the project's settings: the report to stdout, its exit code back.
    services/ only: lab/ borrows methods between its two stacks, which mypy cannot follow yet."""
    return subprocess.call([sys.executable, "-m", "mypy", "--config-file", str(paths.ROOT / "pyproject.toml"),
                            *(targets or TYPED)], cwd=root or paths.ROOT)


def _kv(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"expected VAR=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k] = v
    return out


def _service(name: str) -> str:
    """A service name, or one broker of an embedded cluster (kafka-2)."""
    if name in SERVICES or node_of(name):
        return name
    raise argparse.ArgumentTypeError(f"unknown service {name!r}; one of {', '.join(SERVICES)} or kafka-N")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    compose = "--compose" in argv
    if compose:
        argv.remove("--compose")
        # Notebooks and other child processes pick the same stack (lab.compose.stack_from_env).
        os.environ["LAB_STACK"] = "compose"
    if "--brokers" in argv:
        i = argv.index("--brokers")
        try:
            n = int(argv[i + 1])
        except (IndexError, ValueError):
            print("error: --brokers needs a number (1 or 3)", file=sys.stderr)
            return 2
        if n < 1 or compose:
            print("error: --brokers N (N >= 1) is for the embedded stack", file=sys.stderr)
            return 2
        del argv[i:i + 2]
        # Kernels and services started from here see the same cluster (Stack.from_env).
        os.environ["LAB_BROKERS"] = str(n)
    if "--secure" in argv:
        argv.remove("--secure")
        if compose:
            print("error: --secure is for the embedded stack (the README says why not compose yet)", file=sys.stderr)
            return 2
        os.environ["LAB_SECURE"] = "1"
    if argv and argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command = argv[0] if argv and not argv[0].startswith("-") else "run"
    rest = argv[1:] if argv and not argv[0].startswith("-") else argv
    try:
        return _dispatch(command, rest, compose)
    except (PrerequisiteError, BrokerStartError, StackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _dispatch(command: str, rest: list[str], compose: bool = False) -> int:
    stack = ComposeStack.from_env() if compose else Stack.from_env()
    if command == "up":
        stack.up()
        st = stack.status()
        print(f"stack up: producer-order {st['producer-order']['address']}, "
              f"analytics-consumer {st['analytics-consumer']['address']}, kafka {stack.bootstrap}")
        return 0
    if command == "down":
        p = argparse.ArgumentParser(prog="run_all.sh down")
        p.add_argument("--wipe", action="store_true", help="also delete the broker's data")
        stack.down(wipe=p.parse_args(rest).wipe)
        return 0
    if command == "status":
        p = argparse.ArgumentParser(prog="run_all.sh status")
        p.add_argument("--json", action="store_true")
        args = p.parse_args(rest)
        st = stack.status()
        if args.json:
            print(json.dumps(st, indent=2))
        else:
            for name, row in st.items():
                state = {True: "running", False: "stopped", None: "external"}[row["running"]]
                extra = f" overrides={row['overrides']}" if row.get("overrides") else ""
                if "under_replicated" in row:
                    extra += f" under-replicated partitions={row['under_replicated']}"
                if "security" in row:
                    extra += f" secured: {row['security']}"
                pids = ",".join(map(str, row.get("containers", row["pids"]))) or "-"
                print(f"{name:20} {state:8} pid={pids:14} {row['address'] or ''}{extra}")
                for b in row.get("brokers", ()):
                    role = " (active controller)" if b["controller"] else ""
                    print(f"  {b['name']:18} {'running' if b['pid'] else 'stopped':8} pid={b['pid'] or '-':<14} "
                          f"{b['address']}{role}")
                for principal, path in row.get("client_properties", {}).items():
                    print(f"  {principal:18} --command-config {path}")
        return 0
    if command == "logs":
        p = argparse.ArgumentParser(prog="run_all.sh logs")
        p.add_argument("service", type=_service, metavar="SERVICE")
        p.add_argument("-n", type=int, default=60, help="lines per log")
        args = p.parse_args(rest)
        if compose:
            stack.logs(args.service, args.n)
            return 0
        from lab.processes import tail
        if args.service == "kafka":
            files = [n.log_file for n in stack.cluster.nodes]
        elif node_of(args.service):
            files = [stack.cluster.node(node_of(args.service)).log_file]
        else:
            files = sorted((stack.home / "logs").glob(f"{args.service}-*.log"))
        for f in files:
            print(f"==> {f} <==\n{tail(f, args.n)}")
        return 0
    if command == "restart":
        p = argparse.ArgumentParser(prog="run_all.sh restart")
        p.add_argument("service", type=_service, metavar="SERVICE")
        p.add_argument("overrides", nargs="*", metavar="VAR=VALUE")
        p.add_argument("--instances", type=int, default=1)
        args = p.parse_args(rest)
        overrides = _kv(args.overrides)
        if "PROCESSING_GUARANTEE" in overrides:
            # A value inventory-consumer would refuse at start: refused here, before the running one stops.
            from services.common.config import ConfigError, parse_guarantee
            try:
                parse_guarantee(str(overrides["PROCESSING_GUARANTEE"]))
            except ConfigError as exc:
                raise StackError(f"{args.service}: {exc}") from None
        stack.restart(args.service, overrides, args.instances)
        return 0
    if command == "test":
        env = {**os.environ, "PYTHONPATH": str(paths.ROOT)}
        # Lint first, in seconds: the README's test command and CI fail on a finding, with ruff's report.
        if (code := lint()) != 0:
            print("ruff check failed (above); fix those lines first (pyproject.toml states the rules)", file=sys.stderr)
            return code
        if (code := typecheck()) != 0:
            print("mypy failed (above) on services/; fix those types first (pyproject.toml has its settings)",
                  file=sys.stderr)
            return code
        # Unit tests first: they fail fast, and they run before any Kafka client of an integration
        # test exists in the process (a background client's jitter draws from the global random,
        # which hypothesis takes for a strategy using it).
        return subprocess.call([sys.executable, "-m", "pytest", *(rest or ["tests/unit", "tests/integration"])],
                               cwd=paths.ROOT, env=env)
    if command in ("run", "lab", "verify", "bench", "images"):
        import importlib
        module = importlib.import_module({"run": "lab.pipeline", "lab": "lab.jupyter", "images": "lab.images",
                                          "verify": "lab.verify", "bench": "lab.bench"}[command])
        return module.main(rest, stack)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
