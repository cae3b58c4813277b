"""./run_all.sh lab: the stack, and JupyterLab on notebooks/ bound to 127.0.0.1, for running the notebooks by hand.

The kernels JupyterLab starts inherit the same environment papermill's do (lab.pipeline.
kernel_environment), so Stack.from_env() in a notebook finds this very stack.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado import web

from lab import paths
from lab.pipeline import KernelError, check_kernel, environment, kernel_environment, sigterm_as_interrupt
from lab.stack import LabStack, restore_services


class KernelConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket, without its 500 when a page leaves while its kernel still starts.

    jupyter_server 2.21 waits for the kernel before it completes the websocket handshake. A page
    that closes the request meanwhile (reloaded, its tab closed) makes the handler drop this
    connection and then complete the handshake anyway: AttributeError "'NoneType' object has no
    attribute 'kernel_ws_protocol'", logged as a 500 (jupyter_server#1265, unfixed in any release).
    Here the wait ends instead with 499, the client closed the request, and a warning line.
    """

    _left = False

    def disconnect(self):
        self._left = True
        super().disconnect()

    async def prepare(self):
        await super().prepare()
        if self._left:
            raise web.HTTPError(499, reason="Client Closed Request")


def lab_command(port: int) -> list[str]:
    """JupyterLab on notebooks/, reachable from this machine only, with no browser to open."""
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", f"--ServerApp.root_dir={paths.NOTEBOOKS_DIR}",
           # CurveZMQ between the server and its kernels, as in the pipeline.
           "--KernelManager.transport_encryption=auto",
           f"--ServerApp.kernel_websocket_connection_class={KernelConnection.__module__}.KernelConnection"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers often run as root; the server refuses it otherwise
    return cmd


def main(rest: list[str], stack: LabStack) -> int:
    """Start the stack and JupyterLab; when JupyterLab exits (Ctrl-C), stop the stack unless --keep."""
    p = argparse.ArgumentParser(prog="./run_all.sh lab",
                                description="Start the stack and JupyterLab on notebooks/ at 127.0.0.1.")
    p.add_argument("--port", type=int, default=8888,
                   help="JupyterLab's port (default 8888; the next free one if taken)")
    p.add_argument("--keep", action="store_true", help="leave the stack running when JupyterLab exits")
    args = p.parse_args(rest)
    env = kernel_environment(stack)
    with environment(env), sigterm_as_interrupt():
        try:
            print(f"[lab] kernel {check_kernel()}", flush=True)
        except KernelError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        up = False
        rc = 1
        server = None
        try:
            stack.up()
            up = True
            print(f"[lab] notebooks write into {paths.REPORTS_DIR}; Ctrl-C stops JupyterLab"
                  f"{'' if args.keep else ' and the stack'}", flush=True)
            # JupyterLab prints its URL with the login token on its own.
            server = subprocess.Popen(lab_command(args.port), cwd=paths.NOTEBOOKS_DIR, env=dict(os.environ))
            rc = server.wait()
        except KeyboardInterrupt:
            if server is not None:
                # JupyterLab asks for confirmation on the first Ctrl-C; a SIGTERM shuts it down at once.
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            rc = 0
        finally:
            if up:
                # A notebook interrupted mid-experiment may have left the consumer throttled.
                for service in restore_services(stack):
                    print(f"[lab] restored {service} to normal", flush=True)
                if args.keep:
                    print("[lab] --keep: the stack keeps running (./run_all.sh down stops it)", flush=True)
                else:
                    print("[lab] stopping the stack (--keep leaves it running)", flush=True)
                    stack.down()
    return rc
