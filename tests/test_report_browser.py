"""The report in real headless Chromium (Debian's ``chromium``), driven over the DevTools protocol.

Checks: the page loads from ``file://``; no console error, no uncaught exception, no failed
load; every request is ``file:`` or ``data:`` (nothing from the network); every ``<img>`` has
``naturalWidth > 0``; no ``<script>``. Writes a full-page screenshot PNG. Set
``RD_BROWSER_ARTIFACTS=<folder>`` to keep the report and the screenshot there for a look.

Needs ``websocket-client`` (test extra). Skips only when chromium is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.report_fixtures import make_fake_report

pytestmark = pytest.mark.browser

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1280,900", "--remote-debugging-port=0",
         "--remote-allow-origins=*"]


class CDP:
    """A minimal DevTools-protocol client over one page websocket."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev["method"] == method:
                return ev
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg
        raise TimeoutError(method)

    def evaluate(self, expr: str):
        res = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(res["exceptionDetails"])
        return res["result"].get("value")

    def close(self):
        self.ws.close()


def _stop(proc: subprocess.Popen) -> None:
    """End the chromium we started and its helper processes (its own process group)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def _start_chromium(user_dir: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={user_dir}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = user_dir / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.is_file() and port_file.read_text().strip():
            return proc, int(port_file.read_text().split()[0])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode} before opening DevTools")
        time.sleep(0.1)
    _stop(proc)
    raise TimeoutError("chromium did not open its DevTools port within 60 s")


def _page_ws(port: int) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:  # local DevTools only
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.2)
    raise TimeoutError("no page target")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)")
def test_report_in_headless_chromium(tmp_path):
    report = make_fake_report(
        tmp_path / "data", categories=("brick", "grass"), seeds=(0, 1, 2), epochs=4, failure_k=2, failure_size=64,
        arms=("resnet18/baseline", "convnext_pico/baseline", "convnext_pico/tuned", "efficientnet_lite0/baseline"),
        comparisons=[("resnet18/baseline", "convnext_pico/baseline"), ("resnet18/baseline", "convnext_pico/tuned"),
                     ("convnext_pico/baseline", "convnext_pico/tuned"),
                     ("resnet18/baseline", "efficientnet_lite0/baseline")])
    html_path = report["out"].resolve()
    user_dir = tmp_path / "chromium-profile"
    user_dir.mkdir()
    proc, port = _start_chromium(user_dir)
    try:
        cdp = CDP(_page_ws(port))
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.send(f"{domain}.enable")
        t0 = time.monotonic()
        cdp.send("Page.navigate", url=html_path.as_uri())
        cdp.wait_event("Page.loadEventFired")
        load_s = time.monotonic() - t0
        # full-page screenshot of the page as a reader first sees it (folded parts closed)
        first = cdp.evaluate("({height: document.documentElement.scrollHeight})")
        cdp.send("Emulation.setDeviceMetricsOverride", width=1280, height=min(int(first["height"]), 16000),
                 deviceScaleFactor=1, mobile=False)
        shot = cdp.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        png = base64.b64decode(shot["data"])
        shot_path = tmp_path / "report.png"
        shot_path.write_bytes(png)
        # then open every <details> so the folded figures are laid out too, and check every image
        cdp.evaluate("document.querySelectorAll('details').forEach(d => d.open = true); true")
        images = cdp.evaluate("""(async () => {
            const imgs = [...document.images];
            await Promise.all(imgs.map(i => i.decode().catch(() => null)));
            return imgs.map(i => ({src: i.src.slice(0, 40), w: i.naturalWidth, h: i.naturalHeight, ok: i.complete}));
        })()""")
        info = cdp.evaluate("""({title: document.title, scripts: document.scripts.length,
            sections: [...document.querySelectorAll('section[id]')].map(s => s.id),
            details: document.querySelectorAll('details').length,
            height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth})""")
        time.sleep(0.2)
        try:  # drain late events without blocking
            cdp.ws.settimeout(0.5)
            while True:
                cdp.events.append(json.loads(cdp.ws.recv()))
        except Exception:
            pass
        cdp.close()
    finally:
        _stop(proc)

    keep = os.environ.get("RD_BROWSER_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot_path, Path(keep) / "report.png")
        shutil.copy(html_path, Path(keep) / "report.html")

    errors = []
    for ev in cdp.events:
        m, p = ev["method"], ev.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(f"console.{p['type']}: {p.get('args')}")
        elif m == "Runtime.exceptionThrown":
            errors.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Network.loadingFailed":
            errors.append(f"load failed: {p.get('errorText')}")
    requests = [ev["params"]["request"]["url"] for ev in cdp.events if ev["method"] == "Network.requestWillBeSent"]
    print(f"\nchromium: load {load_s:.2f} s, {len(images)} images, page {info['width']}x{info['height']} px, "
          f"screenshot {shot_path} ({len(png) // 1024} KiB)")

    assert errors == [], errors
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests
    assert info["scripts"] == 0
    assert info["sections"] == ["run", "fairness", "results", "statistics", "cost", "curves", "defects",
                                "failures", "reproduce"]
    assert info["details"] > 5
    assert len(images) >= 12
    bad = [i for i in images if not (i["ok"] and i["w"] > 0 and i["h"] > 0)]
    assert bad == [], bad
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    assert info["width"] <= 1280 + 2, "no horizontal page overflow at 1280 px"
