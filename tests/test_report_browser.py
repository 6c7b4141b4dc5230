"""The report as a reader sees it: `snakemake --report` of the whole toy DAG opened in headless Chromium.

The page must load without a console error or uncaught exception; its menu must list every table and figure the run
made (found in the results folder, each looked up in the report's own listing of its category); and one figure of
each kind (each folder of figures/), opened as a reader opens it, must load and be painted: its area of a screenshot
is not blank.

Needs Debian's chromium (the README's test command installs it with tests/report/browser.sh install); elsewhere
these tests are skipped. Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe), so no
client package and no port are needed.
"""

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from conftest import run_snakemake

CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.slow,  # the whole toy DAG, then a browser
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: bash tests/report/browser.sh install"),
]

# Headless, as root in a container, and quiet on a machine without internet (no update, sync or field-trial calls).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--window-size=1400,1000",
    "--remote-debugging-pipe",
]


class Chromium:
    """A headless Chromium and one page, driven over the DevTools protocol on file descriptors 3 and 4; it keeps the
    page's console errors, uncaught exceptions and error log entries in ``errors``."""

    def __init__(self, profile: Path, timeout: float = 60):
        self.timeout = timeout
        self.errors: list[str] = []
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []
        to_browser, self._send_fd = os.pipe()
        self._recv_fd, from_browser = os.pipe()

        def protocol_fds():
            # Chromium reads commands on fd 3 and answers on fd 4; copy above 10 first so neither dup2 overwrites
            # the other pipe end.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.log = profile.parent / "chromium.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=(3, 4),
                preexec_fn=protocol_fds,
            )
        os.close(to_browser)
        os.close(from_browser)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def close(self):
        try:
            self.call("Browser.close")
        except (OSError, TimeoutError, RuntimeError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._send_fd)
        os.close(self._recv_fd)

    def call(self, method: str, session: bool = False, **params) -> dict:
        """Send one command (to the page's session if ``session``) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def wait_for_event(self, method: str) -> dict:
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == method:
                    return self._events.pop(i)["params"]
            self._receive()

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page, awaited if it is a promise."""
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(details.get("exception", {}).get("description") or details["text"])
        return result["result"].get("value")

    def screenshot(self) -> Image.Image:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def _receive(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._recv_fd], [], [], left)[0]:
                raise TimeoutError(f"Chromium sent nothing for {self.timeout} s")
            chunk = os.read(self._recv_fd, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed its pipe (exit code {self.process.poll()}; see {self.log})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self._record(message)
            self._events.append(message)
        return message

    def _record(self, event: dict):
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
            self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(f"uncaught: {details.get('exception', {}).get('description') or details['text']}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"log ({entry['source']}): {entry['text']} {entry.get('url', '')}".strip())


# The reader's moves, as functions in the page: back to the menu, a category's listing (the label cells of each row,
# over all its subcategories), and a category's first figure opened (its image loaded and where it is on the screen).
READER = """
const frame = () => new Promise((done) => setTimeout(done, 20));
const until = async (what, test) => {
  for (const start = Date.now(); Date.now() - start < 20000; await frame()) {
    const value = test();
    if (value) return value;
  }
  throw new Error("timed out waiting for " + what);
};
const link = (text) => [...document.querySelectorAll("nav a")].find((a) => a.textContent.trim() === text);
const rows = () => [...document.querySelectorAll("nav table tbody tr")];
const shown = () => document.querySelector("#app div.grow img");
window.reader = {
  async home() {
    const crumb = document.querySelector("nav nav ol li a");  // the breadcrumbs' first: the menu
    if (crumb) crumb.click();
    await until("the menu", () => link("Workflow"));
    const names = [...document.querySelectorAll("nav a")].map((a) => a.textContent.trim());
    return names.slice(names.indexOf("About") + 1);
  },
  async listing(name) {
    await reader.home();
    link(name).click();
    const subcategories = Object.keys(categories[name]);
    const listed = [];
    for (const subcategory of subcategories) {
      if (subcategories.length > 1) (await until(subcategory, () => link(subcategory))).click();
      await until(name + " rows", () => rows().length === categories[name][subcategory].length);
      const cells = (tr) => [...tr.querySelectorAll("td")].slice(0, -1);  // the last holds the buttons
      listed.push(...rows().map((tr) => cells(tr).map((td) => td.textContent.trim())));
      if (subcategories.length > 1) link(name).click();
    }
    return listed;
  },
  async figure(name) {
    await reader.listing(name);
    if (Object.keys(categories[name]).length > 1) link(Object.keys(categories[name])[0]).click();
    const before = shown() && shown().src;
    (await until(name + " rows", () => rows()[0])).querySelector("td:last-child a").click();  // its eye button
    const img = await until(name + " figure", () => shown() && shown().src !== before && shown());
    await until(name + " figure to load", () => img.complete);
    const box = img.getBoundingClientRect();
    return {src: img.getAttribute("src"), width: img.naturalWidth, box: [box.left, box.top, box.right, box.bottom]};
  },
};
"""


def test_report_renders_in_chromium(toy_pipeline, tmp_path):
    results, config_file = toy_pipeline
    code, output = run_snakemake("--configfile", str(config_file), "--report", str(tmp_path / "report.zip"))
    assert code == 0, output[-3000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        archive.extractall(tmp_path / "report")
    (page,) = (tmp_path / "report").rglob("report.html")
    tables = sorted(results.glob("tables/*.csv"))
    figures = sorted(results.glob("figures/*/*.png"))
    assert tables and figures, f"no tables or figures in {results}"

    browser = Chromium(tmp_path / "profile")
    try:
        browser.call("Page.navigate", session=True, url=page.as_uri())
        browser.wait_for_event("Page.loadEventFired")
        browser.evaluate(READER)
        entries, categories = browser.evaluate("[results, categories]")
        menu = browser.evaluate("reader.home()")
        listed = {name: browser.evaluate(f"reader.listing({json.dumps(name)})") for name in menu}
        opened, shots = {}, {}
        for folder in sorted({path.parent.name for path in figures}):  # one figure of each kind
            category = _category(categories, next(p for p in figures if p.parent.name == folder))
            opened[folder] = browser.evaluate(f"reader.figure({json.dumps(category)})")
            shots[folder] = browser.screenshot()
    except (RuntimeError, TimeoutError) as error:  # a page that broke shows why in its errors
        raise AssertionError(f"{error}\nthe page's errors:\n" + "\n".join(browser.errors)) from error
    finally:
        browser.close()
    for folder, shot in shots.items():
        shot.save(tmp_path / f"{folder}.png")

    assert not browser.errors, "the report's page logged errors:\n" + "\n".join(browser.errors)
    assert sorted(menu) == sorted(categories), menu
    for path in tables + figures:
        category = _category(categories, path)
        assert _cells(categories[category], entries, path) in [sorted(row) for row in listed[category]], (
            f"{path} not listed in {category}: {listed[category]}"
        )
    for folder, figure in opened.items():
        assert figure["width"] > 0, f"a figure of figures/{folder} did not load: {figure}"
        # The figure as painted on the screen: many colours and some contrast, not a blank area.
        left, top, right, bottom = (round(v) for v in figure["box"])
        area = shots[folder].crop((left, top, min(right, shots[folder].width), min(bottom, shots[folder].height)))
        colours = len(area.getcolors(maxcolors=1 << 24))
        spread = ImageStat.Stat(area.convert("L")).stddev[0]
        assert area.width > 100 and area.height > 100 and colours > 64 and spread > 10, (
            f"{folder}: {area.size} px, {colours} colours, grey spread {spread:.1f}: {tmp_path / folder}.png"
        )


def _cells(subcategories: dict, entries: dict, path: Path) -> list[str]:
    """The cells of ``path``'s row in its category's listing, sorted: its label values where every result beside it
    has labels, else its path (as the report's listing does)."""
    (beside,) = (paths for paths in subcategories.values() if str(path) in paths)
    if all(entries[other]["labels"] for other in beside):
        return sorted(entries[str(path)]["labels"].values())
    return [str(path)]


def _category(categories: dict, path: Path) -> str:
    """The report category that lists ``path``."""
    for name, subcategories in categories.items():
        if any(str(path) in paths for paths in subcategories.values()):
            return name
    raise AssertionError(f"{path} is not in the report")
