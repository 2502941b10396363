"""``humanoid-retarget robot init``: a robot config generated from an MJCF."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import tyro

from humanoid_retarget.errors import RetargetError


def init(
  model: tyro.conf.Positional[str],
  output: Annotated[str, tyro.conf.arg(aliases=("-o",))] = "",
  overwrite: bool = False,
) -> int:
  """Generate a robot config (TOML) from an MJCF: which body follows which human joint, feet, hands,
  collision, limits. Prints every decision with its reason; the file is commented for editing.

  Args:
    model: the robot's MJCF (.xml); a floating base and hinge joints.
    output: config file to write (default: MODEL's name with .toml, beside it).
    overwrite: replace an existing output file.
  """
  from humanoid_retarget.robot.autoconfig import generate_config
  from humanoid_retarget.io.motion import atomic_write_bytes
  from humanoid_retarget.robot.config import load_robot

  out = output or os.path.splitext(model)[0] + ".toml"
  if os.path.exists(out) and not overwrite:
    raise RetargetError("output exists (use --overwrite to replace it)", out)
  text, decisions = generate_config(model, out)
  print(f"robot config for {model}:", file=sys.stderr)
  for d in decisions:
    print(f"  - {d}", file=sys.stderr)
  atomic_write_bytes(out, text.encode())
  robot = load_robot(out)  # the file must load as written
  print(f"wrote {out} ({len(robot.config.links)} tracked links, {robot.model.num_joints} joints); "
        f"check it with: humanoid-retarget retarget CLIP.bvh -o out.npz --robot {out}", file=sys.stderr)
  return 0
