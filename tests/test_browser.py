"""JupyterLab as its users see it: a real Chromium opens notebook 05, runs it with Run All in
fast mode, drags the WiSE-FT slider and sees the figure change; no cell shows an error.

The browser is Debian's ``chromium`` package (installed here with apt-get when it is missing
and the tests run as root, as in CI), driven by Playwright from PyPI pointed at that binary:
nothing is downloaded at run time. JupyterLab serves a copy of the notebook under
build/browser/, listens on 127.0.0.1 only with a random token, and writes its workspace and
runtime files there too, so the run leaves ``git status`` clean. Where Chromium or Playwright
cannot be had, the test is skipped with the reason.
"""
from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = "05_robust_finetuning.ipynb"
RUN_TIMEOUT_S = int(os.environ.get("CLIPTUNE_BROWSER_TIMEOUT", "1200"))

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    """The Chromium binary; installed with apt-get when missing and we may (root)."""
    for cand in (os.environ.get("CLIPTUNE_CHROMIUM"), "/usr/bin/chromium",
                 shutil.which("chromium"), shutil.which("chromium-browser")):
        if cand and os.path.exists(cand):
            return cand
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=600,
                           capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, check=True,
                           timeout=1200, capture_output=True)
        except (subprocess.SubprocessError, OSError):
            return None
        return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: `make setup` installs it "
        "(pip install -e '.[dev]'); the browser test is skipped")
    path = _chromium()
    if path is None:
        pytest.skip("Chromium is not installed and cannot be installed here (apt-get needs "
                    "root): `apt-get install chromium`, or set CLIPTUNE_CHROMIUM to a Chromium "
                    "binary; the browser test is skipped")
    return sync_api, path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the notebook under build/browser/."""
    work = ROOT / "build" / "browser" / secrets.token_hex(4)
    work.mkdir(parents=True)
    nb = json.loads((ROOT / "notebooks" / NOTEBOOK).read_text())
    # the kernel of the Python running the tests, whatever kernels this machine has installed
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    (work / NOTEBOOK).write_text(json.dumps(nb))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "CLIPTUNE_FAST_DEV_RUN": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JUPYTER_CONFIG_DIR": str(work / ".jupyter"),
           "JUPYTER_RUNTIME_DIR": str(work / ".runtime"),
           "JUPYTER_DATA_DIR": str(work / ".data"),
           "IPYTHONDIR": str(work / ".ipython")}
    for var, sub in (("CLIPTUNE_FIGURES", "figures"), ("CLIPTUNE_RESULTS", "results"),
                     ("CLIPTUNE_CHECKPOINTS", "checkpoints")):
        env.setdefault(var, str(work / sub))
    log = open(work / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={work}", "--ServerApp.port_retries=0",
         f"--LabApp.workspaces_dir={work / '.workspaces'}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # a loaded 2-core machine needs a minute
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    while True:
        try:
            direct.open(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                raise RuntimeError("JupyterLab did not start: see "
                                   f"{(work / 'server.log').relative_to(ROOT)}")
            time.sleep(0.5)
    yield {"url": url, "token": token, "dir": work}
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()
    if os.environ.get("CLIPTUNE_KEEP_BROWSER_RUN") != "1":
        shutil.rmtree(work, ignore_errors=True)


KERNEL_STATUS = ("() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                 " const k = w && w.sessionContext && w.sessionContext.session &&"
                 " w.sessionContext.session.kernel; return k ? k.status : 'none'; }")


def _wait(predicate, timeout, what, poll=1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_run_all_and_move_the_wise_ft_slider(chromium, lab):
    sync_api, path = chromium
    t0 = time.time()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--no-proxy-server",
                                           "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)  # a loaded 2-core machine is slow to render
        page.goto(f"{lab['url']}/lab/tree/{NOTEBOOK}?token={lab['token']}",
                  wait_until="domcontentloaded", timeout=300_000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=300_000)
        _wait(lambda: page.evaluate(KERNEL_STATUS) == "idle", 180, "the kernel to start")

        # Run All, through the menu as a person would
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        last_output = page.locator(".jp-Notebook .jp-CodeCell").last.locator(".jp-OutputArea")
        _wait(lambda: "result rows" in last_output.inner_text(), RUN_TIMEOUT_S,
              "Run All to reach the last cell", poll=3.0)
        _wait(lambda: page.evaluate(KERNEL_STATUS) == "idle", 120, "the kernel to finish")
        run_s = time.time() - t0

        # the slider and its live figure
        box = page.locator(".cliptune-interactive").first
        box.scroll_into_view_if_needed()
        image = box.locator(".jp-OutputArea-output img").first
        image.wait_for(timeout=60_000)
        before = image.get_attribute("src")
        handle = box.locator(".noUi-handle, .ui-slider-handle, input[type=range]").first
        handle.focus()
        handle.press("ArrowRight")
        _wait(lambda: (box.locator(".jp-OutputArea-output img").count() > 0 and
                       box.locator(".jp-OutputArea-output img").first.get_attribute("src")
                       not in (None, before)), 60, "the WiSE-FT figure to change")
        assert "1.00" in box.inner_text() or "1.0" in box.inner_text()

        # the notebook as JupyterLab saves it: no error output anywhere
        page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
        time.sleep(2)
        browser.close()
    saved = json.loads((lab["dir"] / NOTEBOOK).read_text())
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(saved["cells"])
              if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o["output_type"] == "error"]
    assert not errors, errors
    warned = [i for i, c in enumerate(saved["cells"]) if c["cell_type"] == "code"
              for o in c.get("outputs", []) if o["output_type"] == "stream"
              and "Warning" in "".join(o.get("text", ""))]
    assert not warned, f"cells {warned} print warnings"
    assert any("FAST mode" in "".join(o.get("text", "")) for c in saved["cells"]
               if c["cell_type"] == "code" for o in c.get("outputs", [])
               if o["output_type"] == "stream")
    print(f"Run All took {run_s:.0f} s; whole browser test {time.time() - t0:.0f} s")
