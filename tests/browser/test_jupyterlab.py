"""The course as a student opens it: `make lab`, then notebooks run through JupyterLab's UI in Chromium.

Run with `make test-browser` (or `pytest --browser tests/browser`). It starts the server exactly
as `make lab` does, in fast mode, opens notebook 01, the student's notebook 05 and notebook 03
(which trains, so its progress bar shows), clicks Run → Run All Cells, and asserts that the
course's kernel started, no output is an error or stderr, every figure is an image and training
progress is a widget bar. It checks that nbgrader's extensions load (its menu in JupyterLab, the Formgrader
server extension). Screenshots go to the output folder's browser/. The website that `make course` builds
from the executed notebooks has its own browser test (tests/site/, `make test-site`).

Needs Chromium from the system's packages (`apt-get install chromium`); Playwright drives it
through ``executable_path`` and never downloads a browser.
"""
import hashlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOKS = ["01_data.ipynb", "05_custom_encoding_stages.ipynb", "03_fedavg_baseline.ipynb"]
RUN_TIMEOUT_SECONDS = 900
SCREENSHOTS = pathlib.Path(os.environ.get("COURSE_BROWSER_SCREENSHOTS", ROOT / "outputs" / "browser"))


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def notebook_digests():
    """sha256 of every course notebook (not JupyterLab's checkpoints), to prove the test leaves them untouched."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (ROOT / "notebooks").glob("**/*.ipynb")
            if ".ipynb_checkpoints" not in p.parts}


def checkpoint_files():
    """The checkpoint copies JupyterLab keeps next to the notebooks (it makes one when it opens a notebook)."""
    return set((ROOT / "notebooks").glob("**/.ipynb_checkpoints/*.ipynb"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`make lab` on a free port with a known token, fast mode, autosave off; yields its base URL."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: run `apt-get install chromium` (Debian/Ubuntu), "
                    "then `make test-browser` again.")
    home = tmp_path_factory.mktemp("lab")
    for plugin, values in [("docmanager-extension/plugin", {"autosave": False}),
                           ("apputils-extension/notification", {"fetchNews": "false"}),
                           ("notebook-extension/tracker", {"windowingMode": "none"})]:  # every cell in the page
        path = home / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, COURSE_FAST="1", COURSE_OUTPUT_DIR=str(home / "outputs"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"))
    env.pop("COURSE_HEADLESS", None)  # a person watches this one: progress is a widget
    args = (f"--no-browser --ServerApp.port={port} --ServerApp.port_retries=0 "
            f"--IdentityProvider.token={token}")
    log = open(home / "lab.log", "w")
    server = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"], cwd=ROOT,
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    before, checkpoints_before = notebook_digests(), checkpoint_files()
    try:
        wait_for(lambda: _answers(f"{base}/api/status?token={token}"), 120, server, home / "lab.log")
        yield base, token
    finally:
        _stop(server, base, token)
        log.close()
        for path in checkpoint_files() - checkpoints_before:
            path.unlink()
    assert notebook_digests() == before, "the browser test changed a committed notebook"


def _answers(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(condition, seconds, server, log_path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`make lab` exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"`make lab` did not answer within {seconds} s:\n{log_path.read_text()[-3000:]}")


def _stop(server, base, token):
    """Ask the server to shut down (it stops its kernels, which stop their TFF workers), then make sure."""
    request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
        server.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def course_kernel_display_name(notebook):
    """The display name of the kernel the notebook's metadata names, as installed in this environment."""
    from jupyter_client.kernelspec import KernelSpecManager
    name = json.loads((ROOT / "notebooks" / notebook).read_text())["metadata"]["kernelspec"]["name"]
    return KernelSpecManager().get_kernel_spec(name).display_name


def run_all_cells(page):
    """Click Run → Run All Cells, then wait until every code cell has an execution count."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt")
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        texts = prompts.all_inner_texts()
        if texts and all(t.strip() not in ("[ ]:", "[*]:", "") for t in texts):
            return texts
        if errors.count() and "[*]:" not in [t.strip() for t in texts]:
            return texts  # Run All stops at an error; check_outputs reports it
        time.sleep(1)
    pytest.fail(f"cells still running or not run after {RUN_TIMEOUT_SECONDS} s: {texts}")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab(lab, browser, notebook):
    base, token = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    try:
        page.goto(f"{base}/lab/tree/{notebook}?reset&token={token}")  # reset: only this notebook open
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        kernel = page.locator(".jp-Toolbar-kernelName:visible").first
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-Toolbar-kernelName')].some("
                "k => k.offsetParent && !['', 'No Kernel', 'Kernel'].includes(k.innerText.trim()))",
                timeout=180_000)
        finally:
            page.screenshot(path=str(SCREENSHOTS / f"{notebook.removesuffix('.ipynb')}-opened.png"))
        assert kernel.inner_text().strip() == course_kernel_display_name(notebook)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]:visible', timeout=180_000)
        run_all_cells(page)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]:visible', timeout=120_000)
        page.screenshot(path=str(SCREENSHOTS / f"{notebook.removesuffix('.ipynb')}.png"))
        check_outputs(page, notebook)
    finally:
        page.close()
        shut_down_kernels(base, token)


def shut_down_kernels(base, token):
    """Stop every kernel of the server (each holds a TFF worker), as closing and shutting down a notebook does."""
    with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        request = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
        urllib.request.urlopen(request, timeout=60)


def check_outputs(page, notebook):
    stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    assert stderr.count() == 0, f"{notebook}: error or stderr output:\n" + "\n---\n".join(
        stderr.all_inner_texts())[:4000]
    as_text = page.locator(".jp-OutputArea-output", has_text="<Figure size")
    assert as_text.count() == 0, f"{notebook}: figures shown as text: {as_text.all_inner_texts()}"
    images = page.locator(".jp-RenderedImage img")
    widths = [images.nth(i).evaluate("img => img.naturalWidth") for i in range(images.count())]
    if notebook != "05_custom_encoding_stages.ipynb":  # the student's 05 draws only once stages work
        assert widths and all(w > 0 for w in widths), f"{notebook}: images {widths}"
    if notebook == "03_fedavg_baseline.ipynb":
        bars = page.locator(".jp-OutputArea-output .widget-progress, .jp-OutputArea-output .widget-hprogress")
        assert bars.count() >= 1, f"{notebook}: no widget progress bar"
        bars.first.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / f"{notebook.removesuffix('.ipynb')}-progress.png"))


def test_nbgrader_extensions_load(lab, browser):
    """nbgrader's JupyterLab extension adds its menu, and its Formgrader server extension answers."""
    base, token = lab
    with urllib.request.urlopen(f"{base}/formgrader?token={token}", timeout=60) as response:
        assert response.status == 200 and "formgrader" in response.read().decode().lower()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/lab?reset&token={token}")
        page.wait_for_selector(".lm-MenuBar-itemLabel", timeout=180_000)
        menu = page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader")
        menu.first.wait_for(timeout=60_000)
        menu.first.click()
        items = page.locator(".lm-Menu-itemLabel").all_inner_texts()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "nbgrader-menu.png"))
        assert any("Formgrader" in item for item in items), items
    finally:
        page.close()
