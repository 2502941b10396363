"""Videos (MuJoCo offscreen), the browser viewer (viser + headless Chromium) and the HTML report.

System dependencies (libosmesa6, chromium, chromium-driver: .ci/setup-system.sh) and the viz extra
(imageio[ffmpeg], viser) are needed; without them these tests skip, except under CI where they fail.
"""

from __future__ import annotations

import ctypes.util
import html.parser
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CI = bool(os.environ.get("CI"))
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
ENV.pop("DISPLAY", None)  # headless path, as on CI


def _need(ok: bool, why: str) -> None:
  if not ok:
    if CI:
      pytest.fail(f"{why}; CI is set, so this is an error (run .ci/setup-system.sh)")
    pytest.skip(why)


def _need_module(name: str, extra: str = "viz") -> None:
  try:
    __import__(name)
  except ImportError:
    _need(False, f"python package {name} missing (pip install 'humanoid-retarget[{extra}]')")


def _need_gl() -> None:
  gl = os.environ.get("MUJOCO_GL", "")
  _need(gl in ("egl", "glfw") or ctypes.util.find_library("OSMesa") is not None,
        "no headless OpenGL for MuJoCo: libosmesa6 missing (apt-get install libosmesa6)")


def _need_chromium() -> None:
  from humanoid_retarget.viz.browser import BrowserUnavailable, find_chromium

  try:
    find_chromium()
  except BrowserUnavailable as e:
    _need(False, str(e))


def _cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "humanoid_retarget.cli.main", *args], capture_output=True, text=True,
                        timeout=timeout, env=ENV)


def _rgb(png_or_array) -> np.ndarray:
  from PIL import Image

  if isinstance(png_or_array, (bytes, bytearray)):
    return np.asarray(Image.open(io.BytesIO(png_or_array)).convert("RGB")).astype(np.int32)
  return np.asarray(png_or_array)[..., :3].astype(np.int32)


def _distinct_colours(a: np.ndarray) -> int:
  flat = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
  return len(np.unique(flat))


def _not_blank(a: np.ndarray) -> None:
  assert a.std() > 8.0, f"image looks blank (std {a.std():.1f})"
  assert _distinct_colours(a) > 40, f"image has only {_distinct_colours(a)} colours"


def _orange(a: np.ndarray) -> int:  # the human skeleton (viz.common.HUMAN_COLOR), shaded
  r, g, b = a[..., 0], a[..., 1], a[..., 2]
  return int(((r > 150) & (r - b > 90) & (g > 0.35 * r) & (g < 0.85 * r)).sum())


def _blue(a: np.ndarray) -> int:  # a blue robot (viz.common.ROBOT_COLORS[1] or --robot-color 3366dd)
  r, g, b = a[..., 0], a[..., 1], a[..., 2]
  return int(((b > 90) & (b - r > 50) & (b - g > 25)).sum())


@pytest.fixture(scope="module")
def clip(sample_bvh, tmp_path_factory) -> dict:
  """The sample walk retargeted (kinematic), plus a copy with injected joint jumps as method 'noisy'."""
  from humanoid_retarget.io.motion import save_motion
  from humanoid_retarget.pipeline import RetargetOptions, retarget_file

  d = tmp_path_factory.mktemp("viz")
  m = retarget_file(str(sample_bvh), RetargetOptions())
  a = d / "walk.npz"
  save_motion(a, m)
  m.method = "noisy"
  m.dof_pos = m.dof_pos.copy()
  m.dof_pos[30:34, 3] += 1.0  # left knee: jumps in, stays 4 frames, jumps out
  b = d / "noisy" / "walk.npz"
  b.parent.mkdir()
  save_motion(b, m)
  return {"dir": d, "motion": a, "noisy": b, "human": Path(sample_bvh), "frames": m.num_frames, "fps": m.fps}


# --- pure helpers --------------------------------------------------------------------------------


def test_place_human_starts_under_robot_root(clip):
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.human.motion import J
  from humanoid_retarget.io.motion import load_motion
  from humanoid_retarget.viz.common import place_human

  m = load_motion(clip["motion"])
  h = load_human(clip["human"])
  for scale in (1.0, 0.7):
    p = place_human(h, m, scale)
    assert p.positions.shape == (m.num_frames, 22, 3)
    np.testing.assert_allclose(p.positions[0, J("pelvis"), :2], m.root_pos[0, :2], atol=1e-9)
    # Heights scale about the floor; the skeleton keeps its shape (bone lengths scale uniformly).
    np.testing.assert_allclose(p.positions[0, J("head"), 2], scale * h.positions[0, J("head"), 2], rtol=1e-6)


def test_svg_plot_helpers():
  from humanoid_retarget.viz.svgplot import Plot, decimate, nice_ticks, runs

  assert runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
  assert nice_ticks(0.0, 1.0, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
  x = np.arange(10000.0)
  y = np.zeros_like(x)
  y[5000] = 9.0  # a one-frame spike must survive decimation
  xd, yd = decimate(x, y, 200)
  assert len(xd) <= 200 and yd.max() == 9.0
  p = Plot(300, 100, (0, 1), (0, 1), title="a<b")
  p.line(np.array([0.0, 1.0]), np.array([0.0, 1.0]), "#123456")
  s = p.svg()
  assert s.startswith("<svg") and s.endswith("</svg>") and "a&lt;b" in s and "polyline" in s


# --- render --------------------------------------------------------------------------------------


def test_render_mp4_gif_png(clip, tmp_path):
  _need_gl()
  _need_module("imageio_ffmpeg")
  import imageio.v3 as iio
  from PIL import Image

  mp4, gif, png = tmp_path / "walk.mp4", tmp_path / "walk.gif", tmp_path / "cmp.png"
  common = ["--width", "320", "--height", "240", "--fps", "10", "--duration", "0.8", "--quiet"]
  r = _cli("render", str(clip["motion"]), "--human", str(clip["human"]), "-o", str(mp4), *common)
  assert r.returncode == 0, r.stderr
  frames = iio.imread(mp4, plugin="pyav") if _has_pyav() else np.stack(list(iio.imiter(mp4)))
  assert frames.shape[0] == 8 and frames.shape[1:3] == (240, 320)
  for f in frames[[0, -1]]:
    _not_blank(_rgb(f))
    assert _orange(_rgb(f)) > 30, "no human skeleton in the video"
  assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1.0, "the video does not move"

  r = _cli("render", str(clip["motion"]), "-o", str(gif), "--layout", "overlay", *common)
  assert r.returncode == 0, r.stderr
  with Image.open(gif) as im:
    assert im.size == (320, 240) and im.n_frames == 8
    im.seek(3)
    _not_blank(_rgb(im.convert("RGB")))

  # Two methods side by side with the human: one PNG frame; the second robot is tinted blue.
  r = _cli("render", str(clip["motion"]), "--compare", str(clip["noisy"]), "--human", str(clip["human"]),
           "-o", str(png), "--width", "320", "--height", "240", "--start", "1.0", "--quiet")
  assert r.returncode == 0, r.stderr
  a = _rgb(Image.open(png))
  assert a.shape == (240, 320, 3)
  _not_blank(a)
  assert _blue(a) > 100 and _orange(a) > 30


def _has_pyav() -> bool:
  try:
    import av  # noqa: F401
  except ImportError:
    return False
  return True


def test_render_rejects_bad_output(clip, tmp_path):
  r = _cli("render", str(clip["motion"]), "-o", str(tmp_path / "walk.avi"))
  assert r.returncode == 2 and "error:" in r.stderr and ".mp4" in r.stderr
  r = _cli("render", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.gif"))
  assert r.returncode == 2 and "missing.npz" in r.stderr


# --- viewer --------------------------------------------------------------------------------------


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_viewer_state(clip):
  """Clip switching, scrubbing and playback move the robot bodies to the motion's poses (no browser)."""
  _need_module("viser")
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.io.motion import load_motion
  from humanoid_retarget.viz.viewer import Clip, MotionViewer

  a, b = load_motion(clip["motion"]), load_motion(clip["noisy"])
  v = MotionViewer([Clip("walk", a, load_human(clip["human"]), str(clip["human"])), Clip("noisy", b)],
                   port=_free_port())
  try:
    pelvis = v._body_frames["pelvis"]
    knee = v._body_frames["left_knee_link"]
    ki = a.body_names.index("left_knee_link")
    v.gui_frame.value = 40
    np.testing.assert_allclose(pelvis.position, a.body_pos_w[40, 0], atol=1e-5)
    np.testing.assert_allclose(knee.wxyz, a.body_quat_w[40, ki], atol=1e-5)
    assert v._bones.visible and np.asarray(v._bones.points).shape == (21, 2, 3)
    v.gui_clip.value = "noisy"
    assert v.clip.name == "noisy" and v.frame == 0 and not v._bones.visible
    v.gui_frame.value = 31
    np.testing.assert_allclose(knee.wxyz, b.body_quat_w[31, ki], atol=1e-5)
    v.gui_speed.value = 2.0
    v.play()
    t_end = time.monotonic() + 10.0
    while v.frame < 35 and time.monotonic() < t_end:
      time.sleep(0.05)
    v.pause()
    assert v.frame >= 35, "playback did not advance"
  finally:
    v.stop()


def test_viewer_in_headless_chromium(clip):
  """`view` serves the page; Chromium renders robot (blue) and human (orange); SIGTERM stops it."""
  _need_module("viser")
  _need_chromium()
  from humanoid_retarget.viz.browser import screenshot

  port = _free_port()
  proc = subprocess.Popen(
    [sys.executable, "-m", "humanoid_retarget.cli.main", "view", str(clip["motion"]), str(clip["noisy"]),
     "--human", str(clip["human"]), "--port", str(port), "--robot-color", "3366dd"],
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
  try:
    url = f"http://127.0.0.1:{port}/"
    t_end = time.monotonic() + 60.0
    while True:
      assert proc.poll() is None, proc.stdout.read()
      try:
        with urllib.request.urlopen(url, timeout=2) as r:
          assert r.status == 200 and b"<html" in r.read(2000).lower()
        break
      except OSError:
        assert time.monotonic() < t_end, "viewer did not start"
        time.sleep(0.3)
    seen = {}

    def ready(png: bytes) -> bool:
      a = _rgb(png)
      seen.update(blue=_blue(a), orange=_orange(a))
      return seen["blue"] > 300 and seen["orange"] > 50

    png = screenshot(url, width=900, height=600, wait=ready, timeout=45.0, settle=1.0)
    a = _rgb(png)
    assert a.shape == (600, 900, 3)
    _not_blank(a)
    assert ready(png), f"robot or human not visible in the page: {seen}"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    out = proc.stdout.read()
    assert f"http://localhost:{port}" in out and "viewer: stopped" in out
    with pytest.raises(OSError):
      urllib.request.urlopen(url, timeout=2)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


# --- report --------------------------------------------------------------------------------------


class _Checker(html.parser.HTMLParser):
  VOID = {"meta", "br", "img", "hr", "input", "link", "col", "wbr", "source", "area", "base", "embed", "param", "track"}
  SVG_EMPTY = {"rect", "line", "polyline", "circle", "path"}

  def __init__(self):
    super().__init__()
    self.stack: list[str] = []
    self.counts: dict[str, int] = {}
    self.attrs: list[tuple[str, str]] = []
    self.errors: list[str] = []

  def handle_starttag(self, tag, attrs):
    self.counts[tag] = self.counts.get(tag, 0) + 1
    self.attrs += [(k, v or "") for k, v in attrs]
    if tag not in self.VOID:
      self.stack.append(tag)

  def handle_startendtag(self, tag, attrs):
    self.counts[tag] = self.counts.get(tag, 0) + 1
    self.attrs += [(k, v or "") for k, v in attrs]

  def handle_endtag(self, tag):
    if not self.stack or self.stack[-1] != tag:
      self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
      return
    self.stack.pop()


def _parse(text: str) -> _Checker:
  c = _Checker()
  c.feed(text)
  c.close()
  assert not c.errors, c.errors[:5]
  assert c.stack == [], f"unclosed tags {c.stack}"
  return c


def _no_external_refs(text: str, c: _Checker) -> None:
  assert "http://" not in text and "https://" not in text
  for k, v in c.attrs:
    if k in ("src", "href", "xlink:href"):
      assert v.startswith(("#", "data:")), f"external reference {k}={v}"


def test_report(clip, tmp_path):
  from humanoid_retarget.cli.main import main

  ev = tmp_path / "eval.json"
  assert main(["eval", str(clip["motion"]), str(clip["noisy"]), "--json", str(ev), "--quiet"]) == 0
  doc = json.loads(ev.read_text())
  assert all("motion" in c for c in doc["clips"]), "eval JSON lacks the motion path of each clip"
  out = tmp_path / "report.html"
  assert main(["report", str(ev), "-o", str(out), "--quiet"]) == 0
  text = out.read_text(encoding="utf-8")
  c = _parse(text)
  _no_external_refs(text, c)
  assert c.counts.get("table", 0) >= 3  # summary + one per method
  assert "Method: kinematic" in text and "Method: noisy" in text
  n_joints = len(json.loads(json.dumps(np.load(clip["motion"])["joint_names"].tolist())))
  assert c.counts.get("svg", 0) == 2 * (2 + n_joints)  # per clip: events, feet, one panel per joint
  # The noisy clip: its jump frames are marked (red circles) and counted on the event line.
  sections = {("noisy" if "walk.npz · noisy</summary>" in s else "kinematic"): s for s in text.split("<details")[1:]}
  assert set(sections) == {"noisy", "kinematic"}
  assert sections["noisy"].count('<circle') >= 2 and "joint jump (0.0%)" not in sections["noisy"]
  assert "joint jump (0.0%)" in sections["kinematic"] and "<circle" not in sections["kinematic"]

  # Without motion paths: tables only, and the page says why.
  for row in doc["clips"]:
    row.pop("motion")
  ev2 = tmp_path / "eval_tables.json"
  ev2.write_text(json.dumps(doc))
  assert main(["report", str(ev2), "-o", str(tmp_path / "t.html"), "--quiet"]) == 0
  t = (tmp_path / "t.html").read_text(encoding="utf-8")
  c2 = _parse(t)
  assert c2.counts.get("svg", 0) == 0 and c2.counts.get("table", 0) >= 3 and "no per-clip plots" in t

  assert main(["report", str(tmp_path / "nope.json"), "-o", str(tmp_path / "x.html")]) == 2
