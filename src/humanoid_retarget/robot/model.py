"""A robot as data: kinematic tree, joints, limits and collision capsules read from its MJCF.

Forward kinematics (compiled, robot/kernels.py) and point Jacobians (numpy) run over whole clips at once (checked against
``mujoco.mj_kinematics`` in the tests). Only hinge joints below a free-floating root are supported,
which covers humanoids described for position control.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from humanoid_retarget.errors import RobotConfigError
from humanoid_retarget.robot.kernels import fk_batch


@dataclass
class Capsule:
  """A collision primitive: a capsule (a sphere when ``a == b``) fixed to ``body``."""

  name: str
  body: int
  a: np.ndarray  # (3,) segment end in body frame
  b: np.ndarray  # (3,)
  radius: float


@dataclass
class RobotModel:
  """Kinematics of a floating-base robot with hinge joints.

  Attributes:
    body_names: (B,) names of the bodies, MuJoCo order without the world body (root first).
    body_parent: (B,) parent index, -1 for the root.
    body_pos, body_rot: (B, 3), (B, 3, 3) body frame in its parent at q = 0.
    joint_names: (J,) hinge joint names, MJCF order (= qpos order after the free joint).
    joint_body: (J,) body each joint moves; joint_axis: (J, 3) in that body's frame;
    joint_anchor: (J, 3) joint position in that body's frame.
    joint_range: (J, 2) lower, upper bounds [rad].
  """

  mjcf_path: str
  mj_model: mujoco.MjModel
  body_names: list[str]
  body_parent: np.ndarray
  body_pos: np.ndarray
  body_rot: np.ndarray
  joint_names: list[str]
  joint_body: np.ndarray
  joint_axis: np.ndarray
  joint_anchor: np.ndarray
  joint_range: np.ndarray
  capsules: list[Capsule] = field(default_factory=list)
  root_z0: float = 0.0  # root height in the MJCF's default pose

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)

  @property
  def num_bodies(self) -> int:
    return len(self.body_names)

  def body_index(self, name: str) -> int:
    try:
      return self.body_names.index(name)
    except ValueError:
      raise RobotConfigError(
        f"body '{name}' does not exist in the model; bodies: {', '.join(self.body_names)}",
        self.mjcf_path) from None

  @cached_property
  def body_joints(self) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(self.num_bodies)]
    for j, b in enumerate(self.joint_body):
      out[b].append(j)
    return out

  @cached_property
  def ancestor_joint_mask(self) -> np.ndarray:
    """(B, J) bool: joint j moves body b (j on the path from the root to b)."""
    M = np.zeros((self.num_bodies, self.num_joints), dtype=bool)
    for b in range(self.num_bodies):
      k = b
      while k >= 0:
        for j in self.body_joints[k]:
          M[b, j] = True
        k = int(self.body_parent[k])
    return M

  @cached_property
  def is_ancestor(self) -> np.ndarray:
    """(B, B) bool: a is b or an ancestor of b."""
    A = np.zeros((self.num_bodies, self.num_bodies), dtype=bool)
    for b in range(self.num_bodies):
      k = b
      while k >= 0:
        A[k, b] = True
        k = int(self.body_parent[k])
    return A

  @cached_property
  def joint_start(self) -> np.ndarray:
    """(B + 1,) the joints of body b are ``joint_start[b]:joint_start[b + 1]`` (MJCF order is body order)."""
    if np.any(np.diff(self.joint_body) < 0):
      raise RobotConfigError("joints are not in body order", self.mjcf_path)
    return np.searchsorted(self.joint_body, np.arange(self.num_bodies + 1)).astype(np.int64)

  def kinematic_arrays(self) -> tuple[np.ndarray, ...]:
    """The tree as the compiled kernels take it: parent, body_pos, body_rot, joint_start, axis, anchor."""
    return (self.body_parent, self.body_pos, self.body_rot, self.joint_start, self.joint_axis, self.joint_anchor)

  def fk(self, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics for a batch of configurations (compiled, ``robot/kernels.py``).

    Args:
      root_pos: (T, 3); root_rot: (T, 3, 3); q: (T, J).
    Returns:
      body positions (T, B, 3) and rotations (T, B, 3, 3), world frame.
    """
    T = q.shape[0]
    pos = np.empty((T, self.num_bodies, 3))
    rot = np.empty((T, self.num_bodies, 3, 3))
    f64 = np.ascontiguousarray
    fk_batch(*self.kinematic_arrays(), f64(root_pos, dtype=np.float64), f64(root_rot, dtype=np.float64),
             f64(q, dtype=np.float64), pos, rot)
    return pos, rot

  def joint_world(self, pos: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World joint anchors (T, J, 3) and axes (T, J, 3) from body poses."""
    R = rot[:, self.joint_body]  # (T, J, 3, 3)
    axes = np.einsum("tjab,jb->tja", R, self.joint_axis)
    anchors = pos[:, self.joint_body] + np.einsum("tjab,jb->tja", R, self.joint_anchor)
    return anchors, axes

  def point_jacobian(self, bodies: np.ndarray, points: np.ndarray, root_pos: np.ndarray,
                     anchors: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Position Jacobians of world points fixed to ``bodies``.

    Columns: root translation (3), root rotation (3, world-frame rotation vector), joints (J).

    Args:
      bodies: (K,) body index of each point; points: (T, K, 3) world positions;
      root_pos: (T, 3); anchors, axes: (T, J, 3) from :meth:`joint_world`.
    Returns:
      (T, K, 3, 6 + J).
    """
    T, K, _ = points.shape
    Jm = np.zeros((T, K, 3, 6 + self.num_joints))
    Jm[:, :, 0, 0] = Jm[:, :, 1, 1] = Jm[:, :, 2, 2] = 1.0
    r = points - root_pos[:, None, :]
    # d p / d omega = omega x r -> -[r]x
    Jm[:, :, 0, 4], Jm[:, :, 0, 5] = r[..., 2], -r[..., 1]
    Jm[:, :, 1, 3], Jm[:, :, 1, 5] = -r[..., 2], r[..., 0]
    Jm[:, :, 2, 3], Jm[:, :, 2, 4] = r[..., 1], -r[..., 0]
    mask = self.ancestor_joint_mask[bodies].astype(float)  # (K, J)
    # column = axis x (p - anchor) = axis x p - axis x anchor, written out per component (faster than np.cross).
    ax, ay, az = axes[..., 0][:, None], axes[..., 1][:, None], axes[..., 2][:, None]  # (T, 1, J)
    c0 = np.cross(axes, anchors)  # (T, J, 3)
    px, py, pz = points[..., 0][..., None], points[..., 1][..., None], points[..., 2][..., None]  # (T, K, 1)
    Jm[:, :, 0, 6:] = (ay * pz - az * py - c0[:, None, :, 0]) * mask
    Jm[:, :, 1, 6:] = (az * px - ax * pz - c0[:, None, :, 1]) * mask
    Jm[:, :, 2, 6:] = (ax * py - ay * px - c0[:, None, :, 2]) * mask
    return Jm

  def rotation_jacobian(self, bodies: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Angular-velocity Jacobians (world frame) of ``bodies``: (T, K, 3, 6 + J)."""
    T = axes.shape[0]
    K = len(bodies)
    Jm = np.zeros((T, K, 3, 6 + self.num_joints))
    Jm[:, :, 0, 3] = Jm[:, :, 1, 4] = Jm[:, :, 2, 5] = 1.0
    mask = self.ancestor_joint_mask[bodies]
    Jm[:, :, :, 6:] = np.swapaxes(axes[:, None, :, :] * mask[None, :, :, None], 2, 3)
    return Jm


def load_robot_model(mjcf_path: str | os.PathLike) -> RobotModel:
  """Read kinematics and collision primitives from an MJCF file."""
  mjcf_path = str(mjcf_path)
  try:
    m = mujoco.MjModel.from_xml_path(mjcf_path)
  except Exception as e:  # mujoco raises ValueError with a multi-line message
    msg = str(e).strip().splitlines()
    raise RobotConfigError(f"cannot load MJCF ({msg[0] if msg else e})", mjcf_path) from None
  names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, b) for b in range(1, m.nbody)]
  parent = np.array([m.body_parentid[b] - 1 for b in range(1, m.nbody)], dtype=np.int64)
  roots = np.flatnonzero(parent < 0)
  if len(roots) != 1:
    raise RobotConfigError(f"expected one root body under the world, found {len(roots)}", mjcf_path)
  body_pos = m.body_pos[1:].copy()
  body_rot = Rotation.from_quat(m.body_quat[1:], scalar_first=True).as_matrix()
  jnames, jbody, jaxis, janchor, jrange = [], [], [], [], []
  has_free = False
  for j in range(m.njnt):
    t = int(m.jnt_type[j])
    if t == int(mujoco.mjtJoint.mjJNT_FREE):
      if m.jnt_bodyid[j] != roots[0] + 1:
        raise RobotConfigError("free joint on a non-root body", mjcf_path)
      has_free = True
      continue
    if t != int(mujoco.mjtJoint.mjJNT_HINGE):
      raise RobotConfigError(
        f"joint '{mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j)}' is not a hinge (only hinge joints are supported)",
        mjcf_path)
    jnames.append(mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j))
    jbody.append(m.jnt_bodyid[j] - 1)
    jaxis.append(m.jnt_axis[j] / np.linalg.norm(m.jnt_axis[j]))
    janchor.append(m.jnt_pos[j].copy())
    rng = m.jnt_range[j].copy() if m.jnt_limited[j] else np.array([-np.pi, np.pi])
    jrange.append(rng)
  if not has_free:
    raise RobotConfigError("the root body has no free joint (a floating base is required)", mjcf_path)
  caps: list[Capsule] = []
  for g in range(m.ngeom):
    if m.geom_contype[g] == 0 and m.geom_conaffinity[g] == 0:
      continue
    b = m.geom_bodyid[g] - 1
    if b < 0:
      continue
    gt = int(m.geom_type[g])
    R = Rotation.from_quat(m.geom_quat[g], scalar_first=True).as_matrix()
    c = m.geom_pos[g]
    size = m.geom_size[g]
    gname = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or f"geom{g}"
    if gt == int(mujoco.mjtGeom.mjGEOM_SPHERE):
      caps.append(Capsule(gname, b, c.copy(), c.copy(), float(size[0])))
    elif gt in (int(mujoco.mjtGeom.mjGEOM_CAPSULE), int(mujoco.mjtGeom.mjGEOM_CYLINDER)):
      half = R[:, 2] * size[1]
      caps.append(Capsule(gname, b, c - half, c + half, float(size[0])))
    elif gt == int(mujoco.mjtGeom.mjGEOM_BOX):
      # Approximate by a capsule along the longest axis.
      k = int(np.argmax(size[:3]))
      others = [i for i in range(3) if i != k]
      r = float(np.max(size[others]))
      half = R[:, k] * max(size[k] - r, 0.0)
      caps.append(Capsule(gname, b, c - half, c + half, r))
    elif gt == int(mujoco.mjtGeom.mjGEOM_PLANE):
      continue
    else:
      # Meshes and others: a sphere around the geom's bounding radius is too coarse to help; skip.
      continue
  d = mujoco.MjData(m)
  mujoco.mj_forward(m, d)
  root_z0 = float(d.xpos[roots[0] + 1][2])
  return RobotModel(
    mjcf_path=mjcf_path, mj_model=m, body_names=names, body_parent=parent, body_pos=body_pos,
    body_rot=body_rot, joint_names=jnames, joint_body=np.array(jbody, dtype=np.int64),
    joint_axis=np.array(jaxis), joint_anchor=np.array(janchor), joint_range=np.array(jrange),
    capsules=caps, root_z0=root_z0,
  )
