"""JupyterLab, driven in a real browser: `./run_all.sh lab` against the test's own stack.

Debian's Chromium, through Playwright.

The user's way in by hand: open notebook 01, set small parameters in its parameters cell, Run All,
and read the reconciliation table and the load chart in the page. Nothing is saved: the
repository's notebook must be byte for byte what it was.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time

import pytest

from lab import paths
from tests.conftest import free_port
from tests.integration.test_notebooks import lab_env

NOTEBOOK = "01-load-10k.ipynb"
SMALL_PARAMETERS = ('n_events: int = 40  # orders in the whole load\n'
                    'batches: int = 4  # POST /orders/bulk requests the load is split into\n'
                    'item: str = "mixed"  # "mixed" draws items and quantities from the catalog; or one item name')
START_TIMEOUT_S = 180     # the server up and printing its URL (bounds, not performance expectations)
RUN_TIMEOUT_S = 600       # Run All on 40 events, kernel start included
STOP_TIMEOUT_S = 60
# jupyter_server logs an answered 500 as "[E ... ServerApp] 500 GET /api/... (127.0.0.1) 2.00ms".
HTTP_500 = re.compile(r"\b500 (GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) ")

# Every code cell has run (a number in its prompt), or something went wrong (stderr or an error
# output, which JupyterLab renders with the stderr mime type, or a dialog): either way, waiting is over.
RUN_FINISHED_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return false;
  if (document.querySelector('.jp-Dialog')) return true;
  if (panel.querySelector('[data-mime-type="application/vnd.jupyter.stderr"]')) return true;
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
  return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p));
}"""
# What the user reads in the status bar once the notebook's kernel is connected and waiting
# ("No Kernel | Initializing", then "Python 3 (ipykernel) | Connecting" come before it). The toolbar's
# execution indicator alone can say idle before the session has its kernel: Run All then asks
# which kernel to start.
KERNEL_IDLE_JS = """() => {
  const items = [...document.querySelectorAll('.jp-StatusBar-Item')].map(e => e.innerText.trim());
  const el = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  return items.some(t => /^Python 3 \\(ipykernel\\) \\| Idle$/.test(t))
    && el !== null && el.getAttribute('data-status') === 'idle';
}"""


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip(os.environ.get("LAB_CHROMIUM_UNAVAILABLE")
                    or "Debian's chromium is not installed (scripts/install-chromium.sh installs it)")
    return path


def jupyter_settings(root) -> dict:
    """A settings and workspaces dir of the test's own: no autosave (the notebook is never written), no news prompt."""
    settings = root / "settings"
    for plugin, values in {"@jupyterlab/docmanager-extension/plugin": {"autosave": False},
                           "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                                          "checkForUpdates": False}}.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    return {"JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
            "JUPYTER_CONFIG_DIR": str(root / "config"), "JUPYTER_RUNTIME_DIR": str(root / "runtime")}


def wait_for_url(proc, log_path, deadline: float) -> str:
    """The base URL JupyterLab prints once it serves (it moves to another port if the chosen one was taken)."""
    while time.monotonic() < deadline:
        m = re.search(r"http://127\.0\.0\.1:(\d+)/lab", log_path.read_text(errors="replace"))
        if m:
            return f"http://127.0.0.1:{m.group(1)}"
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not start (exit {proc.poll()}):\n{log_path.read_text(errors='replace')[-3000:]}")


def stop(proc) -> None:
    """SIGTERM takes ./run_all.sh lab's own way out (JupyterLab stopped, services restored); then the group goes."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # anything of the group still there (a kernel, the server)
    except ProcessLookupError:
        pass
    proc.wait(timeout=STOP_TIMEOUT_S)


def run_notebook_in_the_browser(executable: str, url: str, token: str, shots) -> dict:
    """Open notebook 01, type small parameters into its parameters cell, Run All, wait; what the page shows."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}", timeout=120_000)
            page.wait_for_function(KERNEL_IDLE_JS, timeout=180_000, polling=500)

            # The parameters cell: select its text in the editor and type the small sizes over it.
            params = page.locator(".jp-CodeCell", has_text="n_events: int =").first
            params.locator(".cm-content").click()
            page.keyboard.press("Control+a")
            page.keyboard.insert_text(SMALL_PARAMETERS)
            typed = params.locator(".cm-content").inner_text()

            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            try:
                page.wait_for_function(RUN_FINISHED_JS, timeout=RUN_TIMEOUT_S * 1000, polling=1000)
                page.wait_for_function(KERNEL_IDLE_JS, timeout=120_000, polling=500)
            finally:
                page.screenshot(path=str(shots / "01-load-10k.png"), full_page=True)

            chart = page.locator(".jp-CodeCell", has_text="plots.load_chart(").locator(".jp-OutputArea-output img")
            if chart.count():
                chart.first.scroll_into_view_if_needed()
                page.screenshot(path=str(shots / "01-load-10k-chart.png"))
            reconciliation = page.locator(".jp-RenderedHTMLCommon table",
                                          has_text="InventoryEvents read back (distinct orders)")
            reconciliation.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "01-load-10k-reconciliation.png"))
            # textContent, not innerText: JupyterLab skips rendering cells out of view, and innerText
            # of a skipped element is empty.
            def texts(selector: str) -> list[str]:
                return [e.text_content() or "" for e in page.locator(selector).all()]

            return {
                "typed": typed,
                "dialogs": texts(".jp-Dialog"),
                "stderr": texts('[data-mime-type="application/vnd.jupyter.stderr"]'),
                "stdout": "\n".join(texts('[data-mime-type="application/vnd.jupyter.stdout"]')),
                "prompts": [t.strip()
                            for t in texts(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt")],
                "reconciliation": reconciliation.first.evaluate(
                    "t => [...t.querySelectorAll('tbody tr')].map(r => [...r.children].map(c => c.textContent.trim()))")
                if reconciliation.count() else None,
                "load_table": page.locator(".jp-RenderedHTMLCommon table", has_text="partition 0").first.text_content(),
                "charts": chart.count(),
                "chart_size": (chart.first.evaluate("img => [img.naturalWidth, img.naturalHeight]")
                               if chart.count() else None),
            }
        finally:
            browser.close()


def test_run_all_on_notebook_01_in_jupyterlab(stack, tmp_path):
    executable = chromium()
    notebook = paths.NOTEBOOKS_DIR / NOTEBOOK
    saved = notebook.read_bytes()
    token = secrets.token_hex(16)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    log_path = tmp_path / "jupyterlab.log"
    env = {**lab_env(stack, tmp_path / "reports"), **jupyter_settings(tmp_path / "jupyter"), "JUPYTER_TOKEN": token}
    # --keep: the session fixture owns the stack. Its own process group, so nothing outlives the test.
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(paths.ROOT / "run_all.sh"), "lab", "--keep", "--port", str(free_port())],
                                cwd=paths.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        url = wait_for_url(proc, log_path, time.monotonic() + START_TIMEOUT_S)
        page = run_notebook_in_the_browser(executable, url, token, shots)
    finally:
        stop(proc)
    server_log = log_path.read_text(errors="replace")
    print(f"screenshots in {shots}")

    assert page["typed"].startswith("n_events: int = 40")
    assert page["dialogs"] == []
    # Every cell ran, and nothing is painted as an error: progress lines are ordinary output.
    assert page["stderr"] == [], page["stderr"]
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in page["prompts"]), page["prompts"]
    assert "load batch 1/4: 10 of 10 events acknowledged" in page["stdout"]
    # The reconciliation table: the four counts, all 40, all matching.
    assert page["reconciliation"] is not None
    counts = {name: (value, matches) for name, value, matches in page["reconciliation"]}
    assert len(counts) == 4 and set(counts.values()) == {("40", "yes")}, page["reconciliation"]
    assert "InventoryEvents read back (distinct orders)" in counts
    assert "total" in page["load_table"]
    # The load chart, as a picture in the page.
    assert page["charts"] == 1
    assert page["chart_size"][0] >= 800 and page["chart_size"][1] >= 200
    assert (shots / "01-load-10k.png").stat().st_size > 50_000
    # The server answered every request: no 500 (such as jupyter_server#1265's websocket one).
    assert not HTTP_500.search(server_log) and "kernel_ws_protocol" not in server_log, server_log[-5000:]
    # What the run recorded went to the test's reports dir; the repository's notebook was not saved over.
    assert (tmp_path / "reports" / "results" / "01-load-10k.json").exists()
    assert notebook.read_bytes() == saved


def test_a_page_leaving_while_its_kernel_starts_gets_no_500(tmp_path):
    """jupyter_server#1265: a kernel websocket closed before the kernel is ready used to be logged as a 500."""
    import base64
    import socket

    import requests

    from lab.jupyter import lab_command

    token, port = secrets.token_hex(16), free_port()
    log_path = tmp_path / "jupyterlab.log"
    env = {**os.environ, **jupyter_settings(tmp_path / "jupyter"), "JUPYTER_TOKEN": token,
           "PYTHONPATH": str(paths.ROOT), "JUPYTER_PREFER_ENV_PATH": "1", "JUPYTER_PLATFORM_DIRS": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(lab_command(port), cwd=paths.NOTEBOOKS_DIR, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        url = wait_for_url(proc, log_path, time.monotonic() + START_TIMEOUT_S)
        kernel = requests.post(f"{url}/api/kernels", params={"token": token}, json={"name": "python3"},
                               timeout=60).json()["id"]
        # A page opens the kernel's websocket and goes away at once: the kernel process is still starting.
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as s:
            s.sendall((f"GET /api/kernels/{kernel}/channels?session_id=leaving&token={token} HTTP/1.1\r\n"
                       f"Host: {url.removeprefix('http://')}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                       "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v1.kernel.websocket.jupyter.org\r\n"
                       "\r\n").encode())
        # The server notices once the kernel is ready; until then there is nothing to see.
        deadline = time.monotonic() + 120
        while "/channels?session_id=leaving" not in log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        requests.delete(f"{url}/api/kernels/{kernel}", params={"token": token}, timeout=60)
    finally:
        stop(proc)
    server_log = log_path.read_text(errors="replace")
    assert not HTTP_500.search(server_log) and "kernel_ws_protocol" not in server_log, server_log[-5000:]
    assert re.search(r"499 GET /api/kernels/\S+/channels\?session_id=leaving", server_log)
