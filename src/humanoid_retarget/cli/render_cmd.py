"""``humanoid-retarget render``."""

from __future__ import annotations

import os
from typing import Annotated, Literal

import tyro

from humanoid_retarget.errors import RetargetError


def render(
  motion: tyro.conf.Positional[str],
  output: Annotated[str, tyro.conf.arg(aliases=("-o",))] = "",
  human: str = "",
  compare: list[str] = [],
  layout: Literal["side", "overlay"] = "side",
  width: int = 640,
  height: int = 480,
  fps: float = 30.0,
  start: float = 0.0,
  duration: float = 0.0,
  human_scale: float = 0.0,
  azimuth: float | None = None,
  elevation: float = -15.0,
  distance: float = 0.0,
  robot: str = "",
  no_labels: bool = False,
  shadows: bool = False,
  quiet: bool = False,
) -> int:
  """Film a robot motion with MuJoCo offscreen (headless: OSMesa or EGL) into an mp4, a GIF or a PNG.

  Args:
    motion: robot motion file (.npz).
    output: .mp4 (H.264), .gif (looping) or .png (one frame, at --start); default: MOTION with .mp4.
    human: the source human file (BVH / AMASS), drawn as a skeleton beside or over the robot.
    compare: further motion files of the same clip (another method), shown as more robots.
    layout: side (figures side by side) or overlay (on top of each other, robots see-through).
    width: image width (pixels).
    height: image height (pixels).
    fps: output frame rate (0 = the motion's rate).
    start: first second to film.
    duration: seconds to film (0 = to the end).
    human_scale: human skeleton scale (0 = true size side by side, robot size when overlaid).
    azimuth: camera azimuth in degrees (default: three-quarter front view of the robot).
    elevation: camera elevation in degrees.
    distance: camera distance in metres (0 = fit the figures).
    robot: robot config or name (default: the robot each motion file records).
    no_labels: no legend or time stamp in the frames.
    shadows: cast shadows (about half the speed with software OpenGL).
    quiet: no progress bar.
  """
  from humanoid_retarget.viz.render import ensure_gl_backend

  ensure_gl_backend()  # before mujoco is imported
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.io.motion import load_motion
  from humanoid_retarget.pipeline import robot_for_motion
  from humanoid_retarget.viz.render import VIDEO_EXTENSIONS, RenderError, RenderOptions, render_to_file

  out = output or os.path.splitext(motion)[0] + ".mp4"
  if not out.lower().endswith(VIDEO_EXTENSIONS):
    raise RenderError(f"output must end in {', '.join(VIDEO_EXTENSIONS)}", out)
  paths = [motion, *compare]
  motions = [load_motion(p) for p in paths]
  robots = [robot_for_motion(m, robot) for m in motions]
  h = load_human(human) if human else None
  labels = [f"{m.method}: {os.path.basename(p)}" for m, p in zip(motions, paths)]
  opts = RenderOptions(width=width, height=height, fps=fps, start=start, duration=duration, layout=layout,
                       human_scale=human_scale, azimuth=azimuth, elevation=elevation, distance=distance,
                       labels=not no_labels, shadows=shadows)
  try:
    n = render_to_file(out, motions, [r.model.mjcf_path for r in robots], h, labels, opts,
                       robot_root_height=robots[0].model.root_z0, progress=not quiet)
  except (RetargetError, KeyboardInterrupt):
    raise
  except Exception as e:  # GL context creation and codec failures surface as assorted exceptions
    msg = str(e).strip().splitlines()
    raise RenderError(f"rendering failed: {type(e).__name__}: {msg[0] if msg else ''} "
                      "(headless machines need MUJOCO_GL=osmesa with libosmesa6, or egl)", out) from None
  if not quiet:
    print(f"wrote {out} ({n} frames, {width}x{height})")
  return 0
