"""The canonical human motion: 22 SMPL body joints, global positions (m, Z up) and orientations.

Orientation convention (for every joint): identity when the body stands in a T-pose facing +X
with Z up (x forward, y left, z up), as SMPL's rest pose after turning it to face +X. Readers that
only see joint positions (BVH) derive the frames from the bone geometry (see ``frames_from_positions``);
readers with a body model (AMASS) give the model's own rotations, turned into this convention.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

CANONICAL_JOINTS: tuple[str, ...] = (
  "pelvis",
  "left_hip",
  "right_hip",
  "spine1",
  "left_knee",
  "right_knee",
  "spine2",
  "left_ankle",
  "right_ankle",
  "spine3",
  "left_foot",
  "right_foot",
  "neck",
  "left_collar",
  "right_collar",
  "head",
  "left_shoulder",
  "right_shoulder",
  "left_elbow",
  "right_elbow",
  "left_wrist",
  "right_wrist",
)
CANONICAL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
JOINT_INDEX: dict[str, int] = {n: i for i, n in enumerate(CANONICAL_JOINTS)}
NUM_JOINTS = len(CANONICAL_JOINTS)


def J(name: str) -> int:
  """Index of a canonical joint by name."""
  return JOINT_INDEX[name]


@dataclass
class HumanMotion:
  """A human motion on the canonical skeleton.

  Attributes:
    fps: frames per second.
    positions: (T, 22, 3) global joint positions, metres, Z up, floor at z = 0.
    rotations: (T, 22, 4) global joint orientations, quaternion wxyz (convention in module doc).
    joint_names: the 22 canonical names, in order.
    source: file name the motion came from.
    meta: free-form facts about the import (preset, units, up axis, interpolated joints).
  """

  fps: float
  positions: np.ndarray
  rotations: np.ndarray
  joint_names: tuple[str, ...] = CANONICAL_JOINTS
  source: str = ""
  meta: dict = field(default_factory=dict)

  def __post_init__(self) -> None:
    self.positions = np.asarray(self.positions, dtype=np.float64)
    self.rotations = np.asarray(self.rotations, dtype=np.float64)
    T = self.positions.shape[0]
    if self.positions.shape != (T, NUM_JOINTS, 3):
      raise ValueError(f"positions must be (T, {NUM_JOINTS}, 3), got {self.positions.shape}")
    if self.rotations.shape != (T, NUM_JOINTS, 4):
      raise ValueError(f"rotations must be (T, {NUM_JOINTS}, 4), got {self.rotations.shape}")

  @property
  def num_frames(self) -> int:
    return int(self.positions.shape[0])

  @property
  def duration(self) -> float:
    return (self.num_frames - 1) / self.fps

  def resample(self, fps: float) -> "HumanMotion":
    """Resample to ``fps``: positions linearly interpolated, orientations slerped."""
    if abs(fps - self.fps) < 1e-9 or self.num_frames < 2:
      return HumanMotion(self.fps if self.num_frames < 2 else fps, self.positions.copy(),
                         self.rotations.copy(), self.joint_names, self.source, dict(self.meta))
    t_src = np.arange(self.num_frames) / self.fps
    n_new = int(np.floor(t_src[-1] * fps + 1e-9)) + 1
    t_new = np.arange(n_new) / fps
    pos = np.empty((n_new, NUM_JOINTS, 3))
    for d in range(3):
      for j in range(NUM_JOINTS):
        pos[:, j, d] = np.interp(t_new, t_src, self.positions[:, j, d])
    rot = np.empty((n_new, NUM_JOINTS, 4))
    for j in range(NUM_JOINTS):
      r = Rotation.from_quat(self.rotations[:, j], scalar_first=True)
      rot[:, j] = Slerp(t_src, r)(t_new).as_quat(scalar_first=True)
    return HumanMotion(fps, pos, rot, self.joint_names, self.source, dict(self.meta))

  def slice(self, start: int, stop: int) -> "HumanMotion":
    return HumanMotion(self.fps, self.positions[start:stop].copy(), self.rotations[start:stop].copy(),
                       self.joint_names, self.source, dict(self.meta))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """``np.cross(a, b)`` for (..., 3) arrays, same arithmetic; about 2x faster on the small arrays here,
  where np.cross's own overhead dominates."""
  a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
  b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
  return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def dot(a: np.ndarray, b: np.ndarray, keepdims: bool = False) -> np.ndarray:
  """``np.sum(a * b, axis=-1)`` for a short last axis (2 or 3), the same sum in the same order: 2-3x faster
  on these arrays, where numpy's reduction over a length-3 axis is mostly overhead."""
  s = a[..., 0] * b[..., 0]
  for i in range(1, a.shape[-1]):
    s = s + a[..., i] * b[..., i]
  return s[..., None] if keepdims else s


def norm(v: np.ndarray, keepdims: bool = False) -> np.ndarray:
  """``np.linalg.norm(v, axis=-1)`` for a short last axis, the same arithmetic (see :func:`dot`)."""
  return np.sqrt(dot(v, v, keepdims))


def _normalize(v: np.ndarray, eps: float = 1e-9) -> np.ndarray:
  return v / np.maximum(norm(v, keepdims=True), eps)


def frame_from_axes(x_hint: np.ndarray, z_axis: np.ndarray) -> np.ndarray:
  """Right-handed frames with z along ``z_axis`` and x as close as possible to ``x_hint``.

  Args: x_hint, z_axis: (..., 3). Returns: (..., 3, 3) rotation matrices (columns x, y, z).
  """
  z = _normalize(z_axis)
  x = x_hint - dot(x_hint, z, keepdims=True) * z
  x = _normalize(x)
  y = _cross(z, x)
  return np.stack([x, y, z], axis=-1)


def frame_from_lateral(y_hint: np.ndarray, z_hint: np.ndarray) -> np.ndarray:
  """Frames with y along ``y_hint`` (the left direction) and z as close as possible to ``z_hint``."""
  y = _normalize(y_hint)
  z = z_hint - dot(z_hint, y, keepdims=True) * y
  z = _normalize(z)
  x = _cross(y, z)
  return np.stack([x, y, z], axis=-1)


# Direction of each bone (joint -> its first child) in the canonical T-pose facing +X, Z up.
_REST_CHILD: dict[int, int] = {
  0: 3, 3: 6, 6: 9, 9: 12, 12: 15,
  1: 4, 4: 7, 7: 10, 2: 5, 5: 8, 8: 11,
  13: 16, 16: 18, 18: 20, 14: 17, 17: 19, 19: 21,
}
_REST_DIR: dict[int, np.ndarray] = {}
for _j in (0, 3, 6, 9, 12):
  _REST_DIR[_j] = np.array([0.0, 0.0, 1.0])
for _j in (1, 2, 4, 5):
  _REST_DIR[_j] = np.array([0.0, 0.0, -1.0])
for _j in (7, 8):
  _REST_DIR[_j] = np.array([1.0, 0.0, -0.3]) / np.linalg.norm([1.0, 0.0, -0.3])
_REST_DIR[13] = _REST_DIR[16] = _REST_DIR[18] = np.array([0.0, 1.0, 0.0])
_REST_DIR[14] = _REST_DIR[17] = _REST_DIR[19] = np.array([0.0, -1.0, 0.0])


# The limb joints of :func:`frames_from_positions`, one tree level at a time (each level's parents are
# already known): hips and collars, knees and shoulders, ankles and elbows.
_LIMB_LEVELS: tuple[tuple[int, ...], ...] = ((1, 2, 13, 14), (4, 5, 16, 17), (7, 8, 18, 19))


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Smallest rotations taking unit vectors a to b. a, b: (..., 3), broadcast -> (..., 3, 3)."""
  a = _normalize(a)
  b = _normalize(b)
  v = _cross(a, b)
  c = dot(a, b, keepdims=True)
  s = norm(v, keepdims=True)
  axis = np.where(s > 1e-9, v / np.maximum(s, 1e-12), np.array([0.0, 0.0, 1.0]))
  opposite = (s < 1e-9) & (c < 0)
  if opposite.any():  # any axis perpendicular to a
    perp = _cross(a, np.array([1.0, 0.0, 0.0]))
    perp = np.where(norm(perp, keepdims=True) < 1e-6, _cross(a, np.array([0.0, 1.0, 0.0])), perp)
    axis = np.where(opposite, _normalize(perp), axis)
  ang = np.arctan2(s, c)
  return Rotation.from_rotvec((axis * ang).reshape(-1, 3)).as_matrix().reshape(axis.shape + (3,))


def frames_from_positions(pos: np.ndarray) -> np.ndarray:
  """Global orientations of the 22 canonical joints derived from joint positions alone.

  Pelvis: y along right hip -> left hip, z towards spine1. Spine chain and neck: y along the shoulder
  line, z along the bone. Head: that of the neck. Limbs: the parent's frame swung so the rest bone
  direction meets the observed one (twist about the bone is not observable from positions and is
  taken from the parent). End joints (feet, wrists) take their parent's frame.

  Args: pos: (T, 22, 3). Returns: (T, 22, 3, 3).
  """
  R = trunk_frames(pos)
  for level in _LIMB_LEVELS:
    j = list(level)
    Rp = R[:, [CANONICAL_PARENTS[k] for k in j]]  # (T, 4, 3, 3)
    d_obs = pos[:, [_REST_CHILD[k] for k in j]] - pos[:, j]
    d_local = np.einsum("tkji,tkj->tki", Rp, d_obs)  # Rp^T d
    R[:, j] = Rp @ _swing(np.array([_REST_DIR[k] for k in j]), d_local)
  for j in (10, 11, 20, 21):
    R[:, j] = R[:, CANONICAL_PARENTS[j]]
  return R


def trunk_frames(pos: np.ndarray) -> np.ndarray:
  """The pelvis, spine, neck and head frames of :func:`frames_from_positions` alone (cheap).

  Args: pos: (T, 22, 3). Returns: (T, 22, 3, 3), zero for the limb joints.
  """
  T = pos.shape[0]
  R = np.zeros((T, NUM_JOINTS, 3, 3))
  up_pelvis = pos[:, J("spine1")] - pos[:, J("pelvis")]
  # Spine1 may coincide with the pelvis in some skeletons; fall back to spine3.
  weak = norm(up_pelvis) < 1e-3
  up_pelvis[weak] = (pos[:, J("spine3")] - pos[:, J("pelvis")])[weak]
  lat_sh = pos[:, J("left_shoulder")] - pos[:, J("right_shoulder")]
  # The pelvis and the spine chain (spine1, spine2, spine3, neck: z along the bone to the next) at once.
  chain = [0, 3, 6, 9, 12]
  d = pos[:, [3, 6, 9, 12, 15]] - pos[:, chain]
  d[:, 0] = up_pelvis
  lat = np.broadcast_to(lat_sh[:, None], d.shape).copy()
  lat[:, 0] = pos[:, J("left_hip")] - pos[:, J("right_hip")]
  R[:, chain] = frame_from_lateral(lat, d)
  # Spine bones of zero length take the z-axis of their parent, in chain order.
  weak = norm(d) < 1e-3
  for i in np.flatnonzero(weak[:, 1:].any(axis=0)) + 1:
    j, w = chain[i], weak[:, i]
    d[w, i] = R[w, CANONICAL_PARENTS[j], :, 2]
    R[:, j] = frame_from_lateral(lat_sh, d[:, i])
  R[:, 15] = R[:, 12]
  return R


def _is_rotation(R: np.ndarray, tol: float = 1e-9) -> bool:
  """Whether every matrix of R (N, 3, 3) is a rotation within ``tol``: columns x, y orthonormal, z = x cross y."""
  x, y = R[:, :, 0], R[:, :, 1]
  err = np.stack([dot(x, x) - 1.0, dot(y, y) - 1.0, dot(x, y)], axis=-1)
  return bool(np.abs(err).max() <= tol and np.abs(_cross(x, y) - R[:, :, 2]).max() <= tol)


# Newer scipy can skip the orthogonalisation in Rotation.from_matrix (assume_valid), 90% of its cost.
_HAS_ASSUME_VALID = "assume_valid" in inspect.signature(Rotation.from_matrix).parameters


def matrices_to_wxyz(R: np.ndarray) -> np.ndarray:
  """Rotation matrices (..., 3, 3) -> quaternions (..., 4), wxyz."""
  shp = R.shape[:-2]
  R = R.reshape(-1, 3, 3)
  fast = {"assume_valid": True} if _HAS_ASSUME_VALID and _is_rotation(R) else {}
  q = Rotation.from_matrix(R, **fast).as_quat(scalar_first=True)
  return q.reshape(*shp, 4)
