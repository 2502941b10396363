"""Shared pieces of the renderers and the viewer: motion discovery, human placement, colours."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from humanoid_retarget.human.motion import CANONICAL_PARENTS, J, HumanMotion
from humanoid_retarget.io.motion import RobotMotion

# (r, g, b) in 0..1: robot A, robot B (compare), human skeleton.
ROBOT_COLORS = ((0.72, 0.74, 0.78), (0.35, 0.55, 0.95), (0.9, 0.45, 0.35))
HUMAN_COLOR = (0.98, 0.6, 0.12)

# Bones of the canonical skeleton: (child, parent) index pairs.
BONES: tuple[tuple[int, int], ...] = tuple((j, p) for j, p in enumerate(CANONICAL_PARENTS) if p >= 0)


def motion_files(paths: list[str]) -> list[str]:
  """Motion files (.npz) named directly or found (recursively) in folders, in the given order."""
  out: list[str] = []
  for p in paths:
    if os.path.isdir(p):
      found = []
      for d, _, fs in os.walk(p):
        found += [os.path.join(d, f) for f in fs if f.endswith(".npz") and not f.startswith(".")]
      out += sorted(found)
    else:
      out.append(p)
  return out


def stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def human_index(paths: list[str]) -> dict[str, str]:
  """Stem -> human file for human files and folders (searched recursively)."""
  from humanoid_retarget.human.load import list_inputs

  out: dict[str, str] = {}
  for p in paths:
    for f in list_inputs(p):
      out.setdefault(stem(f), f)
  return out


def match_human(motion_path: str, motion: RobotMotion, index: dict[str, str]) -> str | None:
  """The human file of a motion: same stem as the motion file, or as the source it records."""
  for key in (stem(motion_path), os.path.splitext(os.path.basename(motion.source))[0]):
    if key and key in index:
      return index[key]
  return None


def heading(quat_wxyz: np.ndarray) -> float:
  """Yaw (rad) of a body's x axis from a wxyz quaternion."""
  w, x, y, z = quat_wxyz
  return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def frame_index(num_frames: int, fps: float, t: np.ndarray) -> np.ndarray:
  """Nearest frame of a clip at times ``t`` (s), held at the ends."""
  return np.clip(np.rint(np.asarray(t) * fps).astype(np.int64), 0, num_frames - 1)


def human_size_ratio(human: HumanMotion, robot_root_height: float) -> float:
  """Robot root height over the human's standing pelvis height (above the lowest foot joint)."""
  p = human.positions
  feet = p[:, [J("left_ankle"), J("right_ankle"), J("left_foot"), J("right_foot")], 2].min(axis=1)
  h = float(np.percentile(p[:, J("pelvis"), 2] - feet, 90))
  return robot_root_height / h if h > 1e-3 else 1.0


@dataclass
class PlacedHuman:
  """Human joint positions placed in the robot's world: (T, 22, 3) at the motion's frame rate."""

  positions: np.ndarray
  scale: float


def place_human(human: HumanMotion, motion: RobotMotion, scale: float = 1.0) -> PlacedHuman:
  """Resample a human clip to the motion's frames and put it where the robot starts.

  The skeleton is scaled by ``scale`` about the floor point under its first pelvis position and
  shifted horizontally (once, not per frame, so its feet do not slide) so that this point lies under
  the robot's first root position. Frames beyond the human clip hold its last pose.
  """
  h = human.resample(motion.fps) if abs(human.fps - motion.fps) > 1e-6 else human
  T = motion.num_frames
  pos = h.positions[frame_index(h.num_frames, 1.0, np.arange(T))].copy()
  anchor = np.array([pos[0, J("pelvis"), 0], pos[0, J("pelvis"), 1], 0.0])
  pos = (pos - anchor) * scale
  pos[..., 0] += motion.root_pos[0, 0]
  pos[..., 1] += motion.root_pos[0, 1]
  return PlacedHuman(pos, scale)
