"""A motion file as a tracking reference: resampled to the control rate, with velocities and accelerations.

Generalised coordinates follow MuJoCo's free joint: ``qpos = [root_pos (3), root_quat wxyz (4), joints (J)]``
and ``qvel = [root linear velocity, world frame (3), root angular velocity, root frame (3), joints (J)]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation, Slerp

from humanoid_retarget.io.motion import RobotMotion
from humanoid_retarget.sim.model import SimModel


@dataclass
class Reference:
  """Reference trajectory at rate ``fps``. T frames, J joints, B bodies (sim model order)."""

  fps: float
  qpos: np.ndarray  # (T, 7 + J)
  qvel: np.ndarray  # (T, 6 + J)
  qacc: np.ndarray  # (T, 6 + J)
  body_pos: np.ndarray  # (T, B, 3) world, from the sim model's FK
  body_quat: np.ndarray  # (T, B, 4) wxyz
  contacts: np.ndarray  # (T, 2) bool

  @property
  def num_frames(self) -> int:
    return int(self.qpos.shape[0])

  @property
  def duration(self) -> float:
    return (self.num_frames - 1) / self.fps


def _joint_order(motion: RobotMotion, sim: SimModel) -> np.ndarray:
  idx = {n: i for i, n in enumerate(motion.joint_names)}
  missing = [n for n in sim.joint_names if n not in idx]
  if missing:
    raise ValueError(f"motion lacks joints {missing[:3]}... of the simulation model")
  return np.array([idx[n] for n in sim.joint_names])


def forward_bodies(sim: SimModel, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Body positions (T, B, 3) and quaternions (T, B, 4) of the sim model at ``qpos`` (T, nq)."""
  m = sim.model
  d = mujoco.MjData(m)
  T = qpos.shape[0]
  pos = np.zeros((T, m.nbody - 1, 3))
  quat = np.zeros((T, m.nbody - 1, 4))
  for t in range(T):
    d.qpos[:] = qpos[t]
    mujoco.mj_kinematics(m, d)
    pos[t] = d.xpos[1:]
    quat[t] = d.xquat[1:]
  return pos, quat


def make_reference(motion: RobotMotion, sim: SimModel, fps: float | None = None,
                   smooth_s: float = 0.02, ground: bool = True) -> Reference:
  """Resample ``motion`` to ``fps`` (default: the control rate) with smooth derivatives.

  Joints and root position use cubic splines, the root rotation slerp; velocities and accelerations are
  finite differences of the resampled signals, low-pass filtered by a Gaussian of ``smooth_s`` seconds.
  With ``ground``, the whole clip is shifted vertically so the lowest foot point of the first frame
  touches the floor (the simulation starts in contact, neither sinking nor dropping).
  """
  fps = fps or 1.0 / sim.control_dt
  T0 = motion.num_frames
  t0 = np.arange(T0) / motion.fps
  dur = t0[-1]
  T = max(int(np.floor(dur * fps + 1e-9)) + 1, 2)
  t = np.minimum(np.arange(T) / fps, dur)
  order = _joint_order(motion, sim)
  dof = motion.dof_pos[:, order]
  rot0 = Rotation.from_quat(motion.root_quat, scalar_first=True)
  if T0 >= 2:
    dof_t = CubicSpline(t0, dof, axis=0)(t)
    pos_t = CubicSpline(t0, motion.root_pos, axis=0)(t)
    rot = Slerp(t0, rot0)(t)
  else:
    dof_t = np.repeat(dof, T, axis=0)
    pos_t = np.repeat(motion.root_pos, T, axis=0)
    rot = Rotation.from_quat(np.repeat(motion.root_quat, T, axis=0), scalar_first=True)
  quat = rot.as_quat(scalar_first=True)
  quat *= np.where(quat[:, :1] < 0, -1.0, 1.0)
  dt = 1.0 / fps
  sig = smooth_s * fps
  lin = np.gradient(pos_t, dt, axis=0)
  jv = np.gradient(dof_t, dt, axis=0)
  # Root angular velocity in the root frame: log(R_t^T R_{t+1}) / dt, centred.
  R = rot.as_matrix()
  rel = Rotation.from_matrix(np.einsum("tji,tjk->tik", R[:-1], R[1:])).as_rotvec() / dt
  ang = np.zeros((T, 3))
  ang[1:-1] = 0.5 * (rel[:-1] + rel[1:])
  ang[0], ang[-1] = rel[0], rel[-1]
  qvel = np.concatenate([lin, ang, jv], axis=1)
  if sig > 0.3:
    qvel = gaussian_filter1d(qvel, sig, axis=0, mode="nearest")
  qacc = np.gradient(qvel, dt, axis=0)
  if sig > 0.3:
    qacc = gaussian_filter1d(qacc, sig, axis=0, mode="nearest")
  qpos = np.concatenate([pos_t, quat, dof_t], axis=1)
  body_pos, body_quat = forward_bodies(sim, qpos)
  if ground:
    dz = _lowest_foot_point(sim, qpos[0])
    qpos[:, 2] -= dz
    body_pos[..., 2] -= dz
  cidx = np.clip(np.round(t * motion.fps).astype(int), 0, T0 - 1)
  return Reference(fps=fps, qpos=qpos, qvel=qvel, qacc=qacc, body_pos=body_pos, body_quat=body_quat,
                   contacts=motion.contacts[cidx].astype(bool))


def _lowest_foot_point(sim: SimModel, qpos: np.ndarray) -> float:
  """Height of the lowest point of the foot collision geoms at ``qpos``."""
  m = sim.model
  d = mujoco.MjData(m)
  d.qpos[:] = qpos
  mujoco.mj_kinematics(m, d)
  low = np.inf
  for side in ("left", "right"):
    for g in sim.foot_geoms[side]:
      half = m.geom_size[g, 1]
      axis = d.geom_xmat[g].reshape(3, 3)[:, 2]
      z = d.geom_xpos[g, 2] - abs(axis[2]) * half - m.geom_size[g, 0]
      low = min(low, z)
  return float(low)
