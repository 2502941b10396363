"""``humanoid-retarget view``."""

from __future__ import annotations

import os
import signal
import sys
import threading

import tyro

from humanoid_retarget.errors import RetargetError


def view(
  clips: tyro.conf.Positional[list[str]],
  human: list[str] = [],
  host: str = "127.0.0.1",
  port: int = 8080,
  robot_color: str = "",
  seconds: float = 0.0,
) -> int:
  """Interactive 3D viewer in the browser (viser): play, pause, scrub, speed, clip list, robot and human.

  Open the printed address in a browser; stop with Ctrl-C.

  Args:
    clips: robot motion files (.npz) or folders of them.
    human: source human files or folders (BVH / AMASS), matched to clips by file stem or recorded source.
    host: address to listen on (0.0.0.0 to serve other machines).
    port: port to listen on.
    robot_color: recolour the robot, as hex RGB (e.g. 3366dd; default: the MJCF's colours).
    seconds: stop after this many seconds (0 = run until interrupted).
  """
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.io.motion import load_motion
  from humanoid_retarget.viz.common import human_index, match_human, motion_files, stem

  color = None
  if robot_color:
    h = robot_color.lstrip("#")
    if len(h) != 6 or any(c not in "0123456789abcdefABCDEF" for c in h):
      raise RetargetError(f"--robot-color must be six hex digits like 3366dd, got '{robot_color}'")
    color = tuple(int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4))
  files = motion_files(clips)
  if not files:
    raise RetargetError("no motion files (.npz) found", " ".join(clips))
  try:
    from humanoid_retarget.viz.viewer import Clip, MotionViewer
  except ImportError as e:
    raise RetargetError(f"the viewer needs viser ({e.name} is missing): pip install 'humanoid-retarget[viz]'") from None
  index = human_index(human) if human else {}
  items, names = [], set()
  for f in files:
    m = load_motion(f)
    hp = match_human(f, m, index) if index else None
    name = stem(f)
    if name in names:  # same stem in two folders: tell them apart
      name = os.path.relpath(f)
    names.add(name)
    items.append(Clip(name, m, load_human(hp) if hp else None, hp or ""))
  n_h = sum(c.human is not None for c in items)
  try:
    viewer = MotionViewer(items, host=host, port=port, robot_color=color)
  except OSError as e:
    raise RetargetError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
  shown = "localhost" if host in ("0.0.0.0", "127.0.0.1", "::") else host
  print(f"viewer: http://{shown}:{viewer.port}  ({len(items)} clips, {n_h} with a human skeleton; Ctrl-C stops)",
        flush=True)
  done = threading.Event()

  def _on_signal(signum, frame):  # SIGTERM and SIGINT stop cleanly
    done.set()

  old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    done.wait(seconds if seconds > 0 else None)
  finally:
    for s, h in old.items():
      signal.signal(s, h)
    viewer.stop()
    print("viewer: stopped", file=sys.stderr, flush=True)
  return 0
