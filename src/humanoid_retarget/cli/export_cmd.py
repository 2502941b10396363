"""``humanoid-retarget export``."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Literal

import tyro


def export(
  motion: tyro.conf.Positional[str],
  output: Annotated[str, tyro.conf.arg(aliases=("-o",))],
  format: Literal["mjlab", "beyondmimic", "csv", "gmr"] = "mjlab",
  fps: float = 50.0,
  robot: str = "",
) -> int:
  """Export a motion file (.npz, format 1) for a tracking stack.

  Args:
    motion: motion file written by `retarget`.
    output: output file.
    format: mjlab (tracking npz, MuJoCo depth-first bodies), beyondmimic (tracking npz, PhysX
      breadth-first order for IsaacLab), csv (36-column G1 CSV, xyzw, no header), gmr (GMR pickle).
    fps: frame rate of the tracking npz (mjlab and beyondmimic; 50 by convention).
    robot: robot config or name (default: the robot named in the motion file).
  """
  from humanoid_retarget.io.export import export_motion
  from humanoid_retarget.io.motion import load_motion
  from humanoid_retarget.pipeline import robot_for_motion

  m = load_motion(motion)
  rob = robot_for_motion(m, robot) if format in ("mjlab", "beyondmimic") else None
  export_motion(m, format, output, robot=rob, fps=fps)
  print(f"wrote {output} ({format}, {os.path.getsize(output)} bytes)", file=sys.stderr)
  return 0
