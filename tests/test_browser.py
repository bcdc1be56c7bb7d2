"""End to end in a real browser: notebook 02 served by Voila, driven by Debian's chromium.

The headroom slider is moved one step with the keyboard, the way a user would nudge it; the
summary on the page must then show the cold starts a direct replay with that headroom gives.
"""

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "02_tuning_panel.ipynb"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip

_missing = [
    name for name, ok in (
        ("chromium (apt-get install chromium)", CHROMIUM.exists()),
        ("voila (pip install voila)", importlib.util.find_spec("voila") is not None),
        ("playwright (pip install playwright)", importlib.util.find_spec("playwright") is not None),
    ) if not ok
]  # fmt: skip
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Poll a static file: in single-notebook mode ``/`` would execute the notebook."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"voila did not serve {url} within {timeout} s")


def test_headroom_slider_updates_summary_in_browser(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from concerto_lab.demo import load_demo
    from concerto_lab.present.panel import HEADROOM_STEP
    from concerto_lab.replay import replay

    trace, config, gpus = load_demo()
    before = replay(trace, config, gpus, warn=False).summary()
    after = replay(trace, config, gpus, headroom=config.headroom + HEADROOM_STEP, warn=False)
    after = after.summary()
    assert after["loads"] != before["loads"], "one step must change the result for this test"

    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), JUPYTER_PLATFORM_DIRS="1")
    port = _free_port()
    log = open(tmp_path / "voila.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(NOTEBOOK), f"--port={port}", "--no-browser",
         "--Voila.ip=127.0.0.1"],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/voila/static/voila.js", proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                env={**env, "HOME": str(home)},
            )  # fmt: skip
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(base + "/", timeout=120_000)
                now = page.locator(".concerto-summary .now-loads")
                expect(now).to_have_text(f"{before['loads']:,}", timeout=120_000)
                handle = page.locator(".widget-slider .noUi-handle").first
                handle.focus()
                handle.press("ArrowRight")
                expect(now).to_have_text(f"{after['loads']:,}", timeout=60_000)
                delta = page.locator(".concerto-summary .delta-loads")
                expect(delta).to_have_text(f"{after['loads'] - before['loads']:+,}")
                gb = (config.headroom + HEADROOM_STEP) / 1e9
                expect(page.locator(".concerto-summary")).to_contain_text(f"{gb:.2f} GB")
                page.screenshot(path=str(tmp_path / "voila_panel.png"), full_page=True)
            finally:
                browser.close()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        log.close()
    assert (tmp_path / "voila_panel.png").stat().st_size > 10_000
