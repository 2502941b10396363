"""Screenshots of web pages with a headless Chromium driven by chromedriver (W3C WebDriver over HTTP).

Used by the tests and to make the README pictures of the viewer and the report. Only the standard
library is needed; Chromium and chromedriver come from the system (Debian: chromium,
chromium-driver). Chromium runs with networking features off, so pages load only what they name.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
  "--enable-unsafe-swiftshader",  # software WebGL for the viewer without a GPU
)


class BrowserUnavailable(RuntimeError):
  """Chromium or chromedriver is not installed."""


def find_chromium() -> tuple[str, str]:
  """Paths of the Chromium binary and of chromedriver; raises BrowserUnavailable."""
  browser = os.environ.get("CHROMIUM") or next((p for p in map(shutil.which, CHROMIUM_CANDIDATES) if p), None)
  driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
  missing = [n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p]
  if missing:
    raise BrowserUnavailable(f"{' and '.join(missing)} not found (Debian: apt-get install chromium chromium-driver)")
  return browser, driver


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class HeadlessChromium:
  """A headless Chromium session. Use as a context manager; ``screenshot_png`` returns PNG bytes."""

  def __init__(self, width: int = 1000, height: int = 650, timeout: float = 60.0):
    self.browser, driver = find_chromium()
    self.width, self.height, self.timeout = width, height, timeout
    self.port = free_port()
    self._profile = tempfile.mkdtemp(prefix="hr-chromium-")
    self._driver = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
    self.session = ""
    try:
      self._wait_driver()
      args = [*CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}"]
      caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": self.browser, "args": args}}}}
      self.session = self._call("POST", "/session", caps)["sessionId"]
      self._fit_viewport()
    except BaseException:
      self.close()
      raise

  def _call(self, method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
      with urllib.request.urlopen(req, timeout=self.timeout) as r:
        out = json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
      detail = e.read().decode(errors="replace")[:500]
      raise RuntimeError(f"chromedriver {method} {path}: HTTP {e.code}: {detail}") from None
    v = out.get("value", out)
    return v if v is not None else {}

  def _wait_driver(self) -> None:
    t_end = time.monotonic() + 20.0
    while time.monotonic() < t_end:
      if self._driver.poll() is not None:
        raise BrowserUnavailable(f"chromedriver exited with status {self._driver.returncode}")
      try:
        if self._call("GET", "/status").get("ready", False):
          return
      except (OSError, RuntimeError):
        pass
      time.sleep(0.1)
    raise BrowserUnavailable("chromedriver did not start within 20 s")

  def _fit_viewport(self) -> None:
    """Resize the window so that the page viewport (not the window) is width x height."""
    dw, dh = self.run_js("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];")
    if dw or dh:
      self._call("POST", f"/session/{self.session}/window/rect",
                 {"width": self.width + int(dw), "height": self.height + int(dh)})

  def open(self, url: str) -> None:
    self._call("POST", f"/session/{self.session}/url", {"url": url})

  def run_js(self, script: str, *args):
    return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

  def screenshot_png(self) -> bytes:
    return base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))

  def close(self) -> None:
    if self.session:
      try:
        self._call("DELETE", f"/session/{self.session}")
      except Exception:  # noqa: BLE001 - closing anyway
        pass
      self.session = ""
    if self._driver.poll() is None:
      self._driver.terminate()
      try:
        self._driver.wait(10)
      except subprocess.TimeoutExpired:
        self._driver.kill()
        self._driver.wait()
    shutil.rmtree(self._profile, ignore_errors=True)

  def __enter__(self) -> "HeadlessChromium":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def screenshot(url: str, path: str | None = None, width: int = 1000, height: int = 650, wait=None,
               timeout: float = 45.0, settle: float = 0.5, script: str = "") -> bytes:
  """Load ``url`` and return a PNG screenshot of the window (also written to ``path`` when given).

  Args:
    wait: optional predicate on the PNG bytes; screenshots repeat until it holds (or ``timeout``
      passes, then the last one is returned).
    settle: seconds to wait after loading before the first screenshot.
    script: JavaScript to run in the page before each screenshot (open sections, scroll, ...).
  """
  with HeadlessChromium(width, height, timeout=max(timeout, 30.0)) as b:
    b.open(url)
    time.sleep(settle)
    t_end = time.monotonic() + timeout
    while True:
      if script:
        b.run_js(script)
        time.sleep(0.2)
      png = b.screenshot_png()
      if wait is None or wait(png) or time.monotonic() >= t_end:
        break
      time.sleep(0.5)
  if path:
    with open(path, "wb") as f:
      f.write(png)
  return png
