"""The embedded stack's status: what runs where with which overrides, the KRaft controller, under-replication.

A mixin of lab.stack.Stack, which supplies the cluster, the pid and settings files and the addresses.
"""
from __future__ import annotations

import json

from lab import security
from lab.topology import ANALYTICS, KAFKA, PRODUCER, SERVICES
from services.common.config import masked


class StackStatus:
    """`./run_all.sh status` and the cluster tests read a Stack through these."""

    def active_controller(self) -> int | None:
        """The KRaft leader, from the quorum state the nodes keep on disk (the newest epoch wins)."""
        best = (-1, None)
        for n in self.cluster.nodes:
            try:
                state = json.loads((n.data_dir / "__cluster_metadata-0" / "quorum-state").read_text())
            except (FileNotFoundError, ValueError):
                continue
            if state.get("leaderId", -1) >= 0 and state.get("leaderEpoch", -1) > best[0]:
                best = (state["leaderEpoch"], state["leaderId"])
        return best[1]

    def under_replicated(self) -> int | None:
        """Partitions (internal ones included) whose in-sync replicas are fewer than their replicas; None if unknown."""
        from services.common import kafka_clients
        try:
            admin = kafka_clients.admin(self.service_config(), client_id="lab-status")
        except Exception:  # noqa: BLE001 - status reports what it can
            return None
        try:
            return sum(len(p["isr_nodes"]) < len(p["replica_nodes"]) for t in admin.describe_topics()
                       for p in t["partitions"])
        except Exception:  # noqa: BLE001
            return None
        finally:
            admin.close()

    def broker_rows(self) -> list[dict]:
        """One row per node: name, pid, address, whether it is the active controller."""
        leader = self.active_controller()
        rows = [{"name": f"kafka-{n.node_id}", "node_id": n.node_id, "pid": n.running_pid(), "address": n.bootstrap}
                for n in self.cluster.nodes]
        for r in rows:   # the quorum state on disk outlives the processes: a stopped node leads nothing
            r["controller"] = bool(r["pid"]) and r["node_id"] == leader
        return rows

    def status(self) -> dict:
        """For each service: running or not, pid(s), address, overrides."""
        out = {}
        for service in SERVICES:
            pids = self._pids(service)
            row = {"running": bool(pids), "pids": pids}
            if service == KAFKA:
                row["address"] = self.bootstrap
                row["external"] = bool(self.external_bootstrap)
                if self.external_bootstrap:
                    row["running"] = None  # not ours to know; see the cluster itself
                elif self.broker_count > 1:
                    row["brokers"] = self.broker_rows()
                    row["under_replicated"] = self.under_replicated() if pids else None
                if self.is_secure:
                    row["security"] = security.describe()
                    row["client_properties"] = {p: str(self.secure_home.properties_file(p))
                                                for p in security.PRINCIPALS}
            else:
                s = self._settings(service)
                row["address"] = {PRODUCER: self.producer_url, ANALYTICS: self.analytics_url}.get(service)
                row["instances"] = s["instances"] if pids else 0
                row["overrides"] = masked(s["overrides"])
            out[service] = row
        return out
