"""BVH file -> canonical :class:`HumanMotion` (metres, Z up, floor at z = 0)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from humanoid_retarget.errors import InputFormatError, SkeletonError
from humanoid_retarget.human.motion import (
  CANONICAL_JOINTS,
  HumanMotion,
  J,
  frames_from_positions,
  matrices_to_wxyz,
  norm,
)
from humanoid_retarget.human.skeleton import detect_preset, fill_missing
from humanoid_retarget.io.bvh import BvhData, forward_kinematics, parse_bvh

# Unit candidates: metres per file unit.
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cgspeed": 0.056444}


@dataclass
class BvhImportConfig:
  """How to read a BVH file.

  Attributes:
    skeleton: name preset ('auto', 'bandai', 'lafan1', 'cmu').
    units: 'auto' or one of m, cm, mm, inch, cgspeed (CMU cgspeed conversion), or metres per unit as text.
    up_axis: 'auto' or one of x, y, z, -x, -y, -z (the file's up direction).
  """

  skeleton: str = "auto"
  units: str = "auto"
  up_axis: str = "auto"


def _up_rotation(up: np.ndarray) -> np.ndarray:
  """Proper rotation mapping the unit axis ``up`` to +Z (right-handedness kept)."""
  z = np.array([0.0, 0.0, 1.0])
  if np.all(np.abs(up - z) <= 1e-8 + 1e-5 * np.abs(z)):  # np.allclose, without its overhead
    return np.eye(3)
  if np.all(np.abs(up + z) <= 1e-8 + 1e-5 * np.abs(z)):
    return np.diag([1.0, -1.0, -1.0])
  # Y up -> the GMR/LAFAN convention (x, y, z) -> (x, -z, y); X up similar.
  axis = np.array([up[1], -up[0], 0.0])  # up x z
  axis /= np.linalg.norm(axis)
  ang = np.arccos(np.clip(np.dot(up, z), -1, 1))
  K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  return np.eye(3) + np.sin(ang) * K + (1 - np.cos(ang)) * K @ K


def _detect_up(pos: np.ndarray) -> np.ndarray:
  """The file's up axis: the axis along which head and neck sit above the ankles."""
  d = np.mean(pos[:, J("neck")] - 0.5 * (pos[:, J("left_ankle")] + pos[:, J("right_ankle")]), axis=0)
  k = int(np.argmax(np.abs(d)))
  up = np.zeros(3)
  up[k] = np.sign(d[k])
  return up


def _parse_up(s: str) -> np.ndarray:
  s = s.strip().lower()
  sign = -1.0 if s.startswith("-") else 1.0
  k = {"x": 0, "y": 1, "z": 2}.get(s.lstrip("+-"))
  if k is None:
    raise ValueError(f"bad up axis '{s}'")
  v = np.zeros(3)
  v[k] = sign
  return v


@dataclass
class BvhCalibration:
  """How raw BVH frames become canonical positions: the joint mapping, the turn to Z up, metres per
  unit and the floor height (metres, after scaling). Measured by :func:`calibrate_bvh`."""

  preset: str
  mapping: dict[str, str]
  up: np.ndarray  # (3,) the file's up axis
  R: np.ndarray  # (3, 3) turns the file's axes to Z up
  unit_name: str
  scale: float
  floor: float


def _mapped(bvh: BvhData, mapping: dict[str, str]) -> np.ndarray:
  """Canonical joint positions in file units and axes, (T, 22, 3); unmapped joints zero."""
  names = bvh.names
  canon = list(mapping)
  pos = np.zeros((bvh.num_frames, len(CANONICAL_JOINTS), 3))
  pos[:, [J(c) for c in canon]] = forward_kinematics(bvh, [names.index(mapping[c]) for c in canon])[0]
  return pos


def _calibrate_mapped(raw: np.ndarray, preset: str, mapping: dict[str, str], cfg: BvhImportConfig,
                      path: str) -> tuple[BvhCalibration, np.ndarray, list[str]]:
  """:func:`calibrate_bvh` on the mapped positions ``raw`` (T, 22, 3) (file units and axes).

  Returns the calibration and, as :func:`bvh_positions` would give them but before the floor shift, the
  canonical positions (T, 22, 3) and the list of interpolated joints.
  """
  # Up axis and units from the mapped joints.
  up = _detect_up(raw) if cfg.up_axis == "auto" else _parse_up(cfg.up_axis)
  R = _up_rotation(up)
  pos = raw @ R.T
  # Height of the skeleton (pelvis-to-ankle + pelvis-to-head distances), in file units.
  leg = np.median(
    norm(pos[:, J("left_hip")] - pos[:, J("left_knee")]) + norm(pos[:, J("left_knee")] - pos[:, J("left_ankle")]))
  if not np.isfinite(leg) or leg <= 0:
    raise SkeletonError("degenerate skeleton: zero leg length", path)
  if cfg.units == "auto":
    # An adult leg (hip to ankle) is 0.7-1.0 m; pick the unit that lands closest to 0.85 m.
    best = min(UNITS.items(), key=lambda kv: abs(np.log(leg * kv[1] / 0.85)))
    unit_name, scale = best
    if abs(np.log(leg * scale / 0.85)) > np.log(2.0):
      unit_name, scale = "normalised", 0.85 / leg
  else:
    unit_name = cfg.units
    scale = UNITS[cfg.units] if cfg.units in UNITS else float(cfg.units)
  pos, filled = fill_missing(pos * scale, set(mapping))
  # Floor at z = 0: the feet's low points over the clip.
  foot_z = np.minimum(pos[:, J("left_foot"), 2], pos[:, J("right_foot"), 2])
  ankle_z = np.minimum(pos[:, J("left_ankle"), 2], pos[:, J("right_ankle"), 2])
  low = np.minimum(foot_z, ankle_z - 0.05)
  floor = float(np.percentile(low, 2.0)) - 0.02  # toe joints sit ~2 cm above the sole
  cal = BvhCalibration(preset=preset, mapping=mapping, up=up, R=R, unit_name=unit_name, scale=float(scale),
                       floor=floor)
  return cal, pos, filled


def calibrate_bvh(bvh: BvhData, cfg: BvhImportConfig = BvhImportConfig()) -> BvhCalibration:
  """Mapping, up axis, units and floor measured on the frames of ``bvh`` (all of a clip, or the first
  frames of a live stream)."""
  preset, mapping = detect_preset(bvh.names, [j.parent for j in bvh.joints], cfg.skeleton, bvh.path)
  return _calibrate_mapped(_mapped(bvh, mapping), preset, mapping, cfg, bvh.path)[0]


def bvh_positions(bvh: BvhData, cal: BvhCalibration) -> tuple[np.ndarray, list[str]]:
  """Canonical positions (T, 22, 3) (metres, Z up, floor at z = 0) of the frames of ``bvh``, and the
  list of interpolated joints."""
  pos, filled = fill_missing(_mapped(bvh, cal.mapping) @ cal.R.T * cal.scale, set(cal.mapping))
  pos[..., 2] -= cal.floor
  return pos, filled


def bvh_to_human(bvh: BvhData, cfg: BvhImportConfig = BvhImportConfig()) -> HumanMotion:
  """The whole clip: :func:`calibrate_bvh` then :func:`bvh_positions`, with one forward kinematics pass."""
  path = bvh.path
  preset, mapping = detect_preset(bvh.names, [j.parent for j in bvh.joints], cfg.skeleton, path)
  cal, pos, filled = _calibrate_mapped(_mapped(bvh, mapping), preset, mapping, cfg, path)
  pos[..., 2] -= cal.floor
  rot = matrices_to_wxyz(frames_from_positions(pos))
  return HumanMotion(
    fps=bvh.fps, positions=pos, rotations=rot, source=os.path.basename(path),
    meta={"format": "bvh", "preset": cal.preset, "units": cal.unit_name, "metres_per_unit": cal.scale,
          "up_axis": cal.up.tolist(), "interpolated": filled, "mapping": cal.mapping},
  )


def load_bvh(path: str | os.PathLike, cfg: BvhImportConfig = BvhImportConfig()) -> HumanMotion:
  """Read a BVH file into the canonical human motion."""
  bvh = parse_bvh(path)
  hm = bvh_to_human(bvh, cfg)
  if not np.all(np.isfinite(hm.positions)):
    raise InputFormatError("non-finite joint positions after import", str(path))
  return hm
