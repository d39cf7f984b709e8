"""End-to-end harness: a real ComfyUI server (CPU) with this pack, driven in headless Chromium.

Needs ``COMFYUI_PATH`` (a ComfyUI checkout whose requirements are installed in the Python running
pytest), Debian's ``chromium`` and ``chromium-driver`` and ``selenium`` (the ``e2e`` extra). Selenium is
pointed at the system chromedriver, so nothing downloads a browser. Every test here is skipped when
one of those is missing. Screenshots are written to ``tests/artifacts/e2e/`` (kept as test artefacts).

Run::

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfy-venv/bin/pytest tests/e2e -v
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "e2e"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_PATH", "/usr/bin/chromedriver")
READY_TIMEOUT_S = 300


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = []
    if not os.environ.get("COMFYUI_PATH"):
        reasons.append("COMFYUI_PATH is not set")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        reasons.append(f"no {CHROMIUM} / {CHROMEDRIVER} (Debian: apt install chromium chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        reasons.append("selenium is not installed (pip install -e .[e2e])")
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.comfy)
            item.add_marker(pytest.mark.e2e)
            if reasons:
                item.add_marker(pytest.mark.skip(reason="; ".join(reasons)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running ComfyUI: its URL and folders."""

    url: str
    input_dir: Path
    output_dir: Path
    temp_dir: Path
    models_dir: Path
    log: Path
    process: subprocess.Popen = field(repr=False)

    def get(self, route: str) -> Any:
        with urllib.request.urlopen(self.url + route, timeout=30) as r:
            return json.loads(r.read())

    def post(self, route: str, payload: dict) -> Any:
        req = urllib.request.Request(
            self.url + route, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def view(self, record: dict) -> bytes:
        """The bytes of an image the server lists (``{filename, subfolder, type}``), through ``/view``."""
        q = urllib.parse.urlencode(
            {"filename": record["filename"], "subfolder": record.get("subfolder", ""), "type": record.get("type", "output")}
        )
        with urllib.request.urlopen(f"{self.url}/view?{q}", timeout=30) as r:
            return r.read()

    def wait_history(self, prompt_id: str, timeout: float = 180) -> dict:
        """The finished history entry of a prompt (raises if it errors or takes too long)."""
        end = time.time() + timeout
        while time.time() < end:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                status = entry["status"]
                if status.get("status_str") == "error":
                    raise AssertionError(f"prompt failed: {json.dumps(status)[:3000]}")
                if status.get("completed"):
                    return entry
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} not finished after {timeout}s; log: {self.log}")


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    comfy = Path(os.environ["COMFYUI_PATH"]).resolve()
    base = tmp_path_factory.mktemp("comfy_e2e")
    dirs = {n: base / n for n in ("input", "output", "temp", "user", "models", "custom_nodes")}
    for d in dirs.values():
        d.mkdir()
    for sub in ("checkpoints", "controlnet", "annotators"):
        (dirs["models"] / sub).mkdir()
    (dirs["custom_nodes"] / "affordance").symlink_to(ROOT, target_is_directory=True)
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(
        "e2e:\n"
        f"  base_path: {dirs['models']}\n"
        "  is_default: true\n"
        "  checkpoints: checkpoints/\n  controlnet: controlnet/\n  annotators: annotators/\n"
        f"  custom_nodes: {dirs['custom_nodes']}\n"
    )
    port = _free_port()
    log = base / "server.log"
    cmd = [
        sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
        "--input-directory", str(dirs["input"]), "--output-directory", str(dirs["output"]),
        "--temp-directory", str(dirs["temp"]), "--user-directory", str(dirs["user"]),
        "--database-url", f"sqlite:///{dirs['user'] / 'comfyui.db'}", "--extra-model-paths-config", str(yaml),
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=comfy, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(
        f"http://127.0.0.1:{port}", dirs["input"], dirs["output"], dirs["temp"], dirs["models"], log, proc
    )
    try:
        end = time.time() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited during start-up:\n{log.read_text()[-4000:]}")
            try:
                server.get("/system_stats")
                break
            except OSError:
                if time.time() > end:
                    raise TimeoutError(f"ComfyUI not ready after {READY_TIMEOUT_S}s; log {log}") from None
                time.sleep(1)
        if "AST_ScribbleCanvas" not in server.get("/object_info/AST_ScribbleCanvas"):
            raise RuntimeError(f"the pack did not load in ComfyUI:\n{log.read_text(errors='replace')[-4000:]}")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


class Page:
    """The ComfyUI frontend in a Chromium tab, with helpers for our tests."""

    def __init__(self, driver: Any, server: Server) -> None:
        self.driver = driver
        self.server = server

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def js_async(self, body: str, *args: Any) -> Any:
        """Run an async function body; its return value (JSON-able) comes back, an exception fails the test."""
        wrapped = (
            "const done = arguments[arguments.length - 1];"
            f"(async (...args) => {{ {body} }})(...Array.from(arguments).slice(0, -1))"
            ".then(v => done({ok: v}), e => done({err: String(e && e.stack || e)}));"
        )
        out = self.driver.execute_async_script(wrapped, *args)
        if "err" in out:
            raise AssertionError(f"page script failed: {out['err']}")
        return out.get("ok")

    def wait(self, script: str, timeout: float = 30, *args: Any) -> Any:
        """Poll a JS expression (``return ...``) until it is truthy; returns its value."""
        end = time.time() + timeout
        last = None
        while time.time() < end:
            last = self.js(script, *args)
            if last:
                return last
            time.sleep(0.2)
        raise TimeoutError(f"condition not met in {timeout}s: {script} (last {last!r})")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def screenshot_node(self, node_id: int, name: str, pad: int = 12) -> Path:
        """A screenshot cropped to one node (title included), via the DevTools protocol."""
        box = self.js(
            """const n = app.graph.getNodeById(arguments[0]); const c = app.canvas; const ds = c.ds;
            const r = c.canvas.getBoundingClientRect(); const th = LiteGraph.NODE_TITLE_HEIGHT;
            return [r.left + (n.pos[0] + ds.offset[0]) * ds.scale, r.top + (n.pos[1] - th + ds.offset[1]) * ds.scale,
                    n.size[0] * ds.scale, (n.size[1] + th) * ds.scale];""",
            node_id,
        )
        x, y, w, h = box
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "clip": {"x": max(0, x - pad), "y": max(0, y - pad), "width": w + 2 * pad,
                                       "height": h + 2 * pad, "scale": 1}},
        )  # fmt: skip
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def console_errors(self, ours_only: bool = True) -> list[str]:
        """Errors logged by the page since the last call (only those from our files with ``ours_only``)."""
        entries = self.driver.get_log("browser")
        errors = [e["message"] for e in entries if e["level"] == "SEVERE"]
        errors += self.js("const e = window.__astErrors || []; window.__astErrors = []; return e;")
        if ours_only:
            errors = [m for m in errors if "extensions/affordance" in m or "affordance" in m.lower()]
        return errors

    def load(self) -> None:
        """(Re)load the frontend, with the page's errors recorded for :meth:`console_errors`."""
        self.driver.get(self.server.url)
        self.wait("return !!(window.app && window.app.graph && window.app.canvas && window.app.extensionManager?.setting)", 180)
        self.js(
            "window.__astErrors = [];"
            "window.addEventListener('error', e => window.__astErrors.push(`${e.message} @ ${e.filename}:${e.lineno}`));"
            "window.addEventListener('unhandledrejection', e => window.__astErrors.push(`unhandled: ${e.reason && (e.reason.stack || e.reason)}`));"
        )
        self.wait("return Object.keys(LiteGraph.registered_node_types).some(t => t.startsWith('AST_'))", 60)

    def close_dialogs(self) -> None:
        """Close what a page load may open over the canvas: PrimeVue dialogs, and on frontends >= 1.4x reka-ui ones
        (the Templates browser opens on the first load)."""
        self.js("for (const d of document.querySelectorAll('.p-dialog-close-button')) d.click();")
        self.js("for (const b of document.querySelectorAll('[role=dialog] button[aria-label=\"Close dialog\"]')) b.click();")
        self.wait("return !document.querySelector('[role=dialog]');", 10)

    def clear_graph(self) -> None:
        """An empty graph with a new id (frontends >= 1.4x keep widget values by graph id and node id, and clear()
        forgets them only once, so a new node could come back with the last test's values)."""
        self.js("app.graph.configure({version: 0.4, nodes: [], links: [], groups: []}); app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0]; app.canvas.setDirty(true, true);")

    def add_node(self, node_type: str, pos: tuple[int, int] = (80, 80)) -> int:
        return self.js(
            "const n = LiteGraph.createNode(arguments[0]); if (!n) throw new Error('unknown node ' + arguments[0]);"
            "n.pos = arguments[1]; app.graph.add(n); app.canvas.setDirty(true, true); return n.id;",
            node_type,
            list(pos),
        )


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1100",
                "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--force-device-scale-factor=1"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def page(browser: Any, comfy_server: Server) -> Page:
    """The frontend, loaded once per session, with display-only settings for clean screenshots."""
    p = Page(browser, comfy_server)
    p.load()
    p.js_async(
        "const s = app.extensionManager.setting;"
        "for (const [k, v] of [['Comfy.Minimap.Visible', false], ['Comfy.Graph.CanvasInfo', false],"
        " ['Comfy.TutorialCompleted', true]]) { try { await s.set(k, v); } catch (e) {} }"
    )
    time.sleep(1.0)
    return p


@pytest.fixture
def fresh(page: Page) -> Page:
    """The page with an empty graph and no pending console errors."""
    page.close_dialogs()
    page.clear_graph()
    page.console_errors(ours_only=False)
    return page


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def copy_artifact(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
