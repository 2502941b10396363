"""``humanoid-retarget sample``."""

from __future__ import annotations

import sys
from typing import Annotated

import tyro


def sample(
  output: Annotated[str, tyro.conf.arg(aliases=("-o",))] = "sample_walk.bvh",
  seconds: float = 4.0,
  fps: float = 30.0,
) -> int:
  """Write the built-in sample human motion: a procedural walk as a LAFAN1-style BVH (cm, Y up).

  Args:
    output: BVH file to write.
    seconds: clip length.
    fps: frame rate.
  """
  from humanoid_retarget.human.sample import sample_walk_bvh
  from humanoid_retarget.io.motion import atomic_write_bytes

  atomic_write_bytes(output, sample_walk_bvh(seconds, fps).encode())
  print(f"wrote {output}", file=sys.stderr)
  return 0
