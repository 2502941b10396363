"""A tracker that needs no training: whole-body inverse dynamics with contact forces, at 50 Hz.

At every control step the controller reads the simulated state and solves one small least-squares
problem with non-negative contact forces:

  find generalised accelerations a (6 + J) and friction-pyramid edge forces l >= 0 (4 per contact point,
  4 corner points per foot on the floor) minimising
    w_dyn^2 |M_base a + h_base - J_c,base^T E l|^2      (the floating base is moved only by contacts)
  + w_c^2   |J_c a + k_c J_c v|^2                        (stance feet do not slide or sink)
  + |W (a - a_des)|^2                                    (track the reference)
  + w_f^2   |l|^2

where a_des = reference acceleration + PD feedback on the root pose (balance) and on the joints. The
accelerations are eliminated (QR projection) and the forces found by NNLS. Joint torques follow from the
joint rows of the dynamics, tau = M_j a + h_j - J_c,j^T E l, clipped to the effort limits, and are sent to
the position actuators as targets ``q + v dt/2 + (tau + kd v) / kp`` (the PD spring delivers ``tau`` at
mid-step). Torque, not the PD gains, does the tracking; the gains stay mjlab's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import mujoco
import numpy as np
from scipy.optimize import nnls
from scipy.spatial.transform import Rotation

from humanoid_retarget.sim.model import SimModel
from humanoid_retarget.sim.reference import Reference
from humanoid_retarget.sim.terminations import END_EFFECTORS, ANCHOR_BODY, TerminationConfig, termination_mask

# Sole corners in the ankle-roll body frame (from the foot capsules: x -0.05..0.125, y +-0.026, z -0.035).
FOOT_CORNERS = np.array([[-0.05, -0.025, -0.035], [-0.05, 0.025, -0.035], [0.12, -0.025, -0.035],
                         [0.12, 0.025, -0.035]])


@dataclass
class TrackerConfig:
  """Gains and weights of the inverse-dynamics tracker (acceleration-level PD gains, 1/s^2 and 1/s)."""

  root_pos_kp: tuple[float, float, float] = (20.0, 20.0, 60.0)
  root_pos_kd: tuple[float, float, float] = (9.0, 9.0, 15.0)
  root_rot_kp: float = 150.0
  root_rot_kd: float = 24.0
  joint_kp: float = 150.0
  joint_kd: float = 24.0
  w_root_pos: float = 3.0
  w_root_rot: float = 10.0
  w_joint: float = 1.0
  w_dyn: float = 3.0
  w_contact: float = 30.0
  contact_damping: float = 20.0
  w_force: float = 1e-3
  friction: float = 0.5  # pyramid coefficient used by the controller (the sim's foot friction is 0.6)
  contact_margin: float = 0.01
  mode: str = "id"  # 'id': inverse-dynamics torques; 'pd': reference targets only (baseline)
  contact_source: str = "height"  # 'sim': feet with MuJoCo floor contacts; 'height': sole corners near the floor
  contact_height: float = 0.01  # sole corners lower than this may push on the floor
  predict_vel: float = 1.0  # targets aim at the state predicted for mid-step (0 = the current state)
  predict_acc: float = 1.0  # a foot counts as on the floor when a sole geom is within this distance
  terminations: TerminationConfig = field(default_factory=TerminationConfig)


@dataclass
class TrackResult:
  """One tracked clip at the control rate. T frames, B bodies (sim model order)."""

  qpos: np.ndarray  # (T, nq) simulated
  body_pos: np.ndarray  # (T, B, 3)
  body_quat: np.ndarray  # (T, B, 4)
  contacts: np.ndarray  # (T, 2) bool, feet on the floor
  failed_at: int  # first failing control step, -1 when the clip reached the end
  wall_time: float
  sim_time: float

  @property
  def success(self) -> bool:
    return self.failed_at < 0

  @property
  def realtime_factor(self) -> float:
    return self.sim_time / max(self.wall_time, 1e-9)


def _pyramid(mu: float) -> np.ndarray:
  """(3, 4) edge directions of a 4-sided friction pyramid around +z."""
  return np.array([[mu, -mu, 0.0, 0.0], [0.0, 0.0, mu, -mu], [1.0, 1.0, 1.0, 1.0]])


class InverseDynamicsTracker:
  """Whole-body inverse-dynamics controller for one MjData (see module docstring)."""

  def __init__(self, sim: SimModel, cfg: TrackerConfig | None = None):
    self.sim = sim
    self.cfg = cfg or TrackerConfig()
    m = sim.model
    self.m = m
    self.nv = m.nv
    self.J = sim.num_joints
    self.foot_body = {s: m.body(f"{s}_ankle_roll_link").id for s in ("left", "right")}
    self.floor = m.geom("floor").id
    self.E = _pyramid(self.cfg.friction)
    self.M = np.zeros((m.nv, m.nv))
    self.jacp = np.zeros((3, m.nv))
    c = self.cfg
    w = np.concatenate([np.full(3, c.w_root_pos), np.full(3, c.w_root_rot), np.full(self.J, c.w_joint)])
    self.w_task = w
    self.dof_adr = sim.dof_adr
    # actuator order equals joint order in the dofs after the free joint (checked here)
    assert np.all(self.dof_adr == np.arange(6, 6 + self.J)), "expects a free root then the actuated hinges"

  def feet_on_floor(self, d: mujoco.MjData) -> dict[str, bool]:
    out = {"left": False, "right": False}
    gb = self.m.geom_bodyid
    for i in range(d.ncon):
      con = d.contact[i]
      if con.dist > self.cfg.contact_margin:
        continue
      g = con.geom2 if con.geom1 == self.floor else con.geom1 if con.geom2 == self.floor else -1
      if g < 0:
        continue
      for s, b in self.foot_body.items():
        if gb[g] == b:
          out[s] = True
    return out

  def desired_acc(self, d: mujoco.MjData, qpos_r: np.ndarray, qvel_r: np.ndarray, qacc_r: np.ndarray) -> np.ndarray:
    c = self.cfg
    a = qacc_r.copy()
    a[:3] += np.asarray(c.root_pos_kp) * (qpos_r[:3] - d.qpos[:3]) + np.asarray(c.root_pos_kd) * (qvel_r[:3] - d.qvel[:3])
    R = Rotation.from_quat(d.qpos[3:7], scalar_first=True)
    Rr = Rotation.from_quat(qpos_r[3:7], scalar_first=True)
    e_rot = (R.inv() * Rr).as_rotvec()  # root frame
    w_r = (R.inv() * Rr).apply(qvel_r[3:6])  # reference angular velocity in the current root frame
    a[3:6] = (R.inv() * Rr).apply(qacc_r[3:6]) + c.root_rot_kp * e_rot + c.root_rot_kd * (w_r - d.qvel[3:6])
    a[6:] += c.joint_kp * (qpos_r[7:] - d.qpos[7:]) + c.joint_kd * (qvel_r[6:] - d.qvel[6:])
    return a

  def solve(self, d: mujoco.MjData, a_des: np.ndarray) -> np.ndarray:
    """Joint torques (J,) for the current state (needs ``mj_forward`` done on ``d``)."""
    c, m, nv = self.cfg, self.m, self.nv
    mujoco.mj_fullM(m, d, self.M)
    h = d.qfrc_bias.copy()
    jc = []
    feet = self.feet_on_floor(d) if c.contact_source == "sim" else {"left": True, "right": True}
    for s, b in self.foot_body.items():
      if not feet[s]:
        continue
      R = d.xmat[b].reshape(3, 3)
      for p in FOOT_CORNERS:
        pw = d.xpos[b] + R @ p
        if c.contact_source == "height" and pw[2] > c.contact_height:
          continue
        mujoco.mj_jac(m, d, self.jacp, None, pw, b)
        jc.append(self.jacp.copy())
    W = np.diag(self.w_task)
    if not jc:
      # Flight: no forces; accelerations of the base follow from the dynamics alone.
      A1 = np.vstack([c.w_dyn * self.M[:6], W])
      b = np.concatenate([-c.w_dyn * h[:6], self.w_task * a_des])
      acc = np.linalg.lstsq(A1, b, rcond=None)[0]
      return self.M[6:] @ acc + h[6:], acc
    Jc = np.vstack(jc)  # (3P, nv)
    P = len(jc)
    JcE = np.zeros((nv, 4 * P))  # generalised force per edge magnitude: Jc^T E
    for k in range(P):
      JcE[:, 4 * k: 4 * k + 4] = Jc[3 * k: 3 * k + 3].T @ self.E
    nl = 4 * P
    vc = Jc @ d.qvel
    # Rows: dynamics of the base, contact acceleration, task, force regulariser.
    A1 = np.vstack([c.w_dyn * self.M[:6], c.w_contact * Jc, W, np.zeros((nl, nv))])
    A2 = np.vstack([-c.w_dyn * JcE[:6], np.zeros((3 * P, nl)), np.zeros((nv, nl)), c.w_force * np.eye(nl)])
    b = np.concatenate([-c.w_dyn * h[:6], -c.w_contact * c.contact_damping * vc, self.w_task * a_des, np.zeros(nl)])
    Q, _ = np.linalg.qr(A1)
    A2p = A2 - Q @ (Q.T @ A2)
    bp = b - Q @ (Q.T @ b)
    lam, _ = nnls(A2p, bp, maxiter=50 * nl)
    acc = np.linalg.lstsq(A1, b - A2 @ lam, rcond=None)[0]
    tau = self.M[6:] @ acc + h[6:] - JcE[6:] @ lam
    return tau, acc

  def control(self, d: mujoco.MjData, qpos_r: np.ndarray, qvel_r: np.ndarray, qacc_r: np.ndarray) -> np.ndarray:
    """Position targets (J,) for the next control step."""
    s = self.sim
    if self.cfg.mode == "pd":
      return qpos_r[7:] + s.kd * qvel_r[6:] / s.kp
    tau, acc = self.solve(d, self.desired_acc(d, qpos_r, qvel_r, qacc_r))
    tau = np.clip(tau, -s.effort, s.effort)
    dt = s.control_dt
    a = acc[6:] * self.cfg.predict_acc
    q = d.qpos[7:] + self.cfg.predict_vel * (0.5 * dt * d.qvel[6:] + dt * dt / 6.0 * a)
    v = d.qvel[6:] + self.cfg.predict_vel * 0.5 * dt * a
    return q + (tau + s.kd * v) / s.kp


def track(sim: SimModel, ref: Reference, cfg: TrackerConfig | None = None, stop_on_fail: bool = True,
          tracker: InverseDynamicsTracker | None = None) -> TrackResult:
  """Simulate the robot following ``ref`` (at the control rate) from the reference's first state."""
  tr = tracker or InverseDynamicsTracker(sim, cfg)
  cfg = tr.cfg
  m = sim.model
  d = mujoco.MjData(m)
  d.qpos[:] = ref.qpos[0]
  d.qvel[:] = ref.qvel[0]
  mujoco.mj_forward(m, d)
  T = ref.num_frames
  B = m.nbody - 1
  qpos = np.zeros((T, m.nq))
  body_pos = np.zeros((T, B, 3))
  body_quat = np.zeros((T, B, 4))
  contacts = np.zeros((T, 2), dtype=bool)
  anchor = sim.body_index(ANCHOR_BODY)
  ees = np.array([sim.body_index(n) for n in END_EFFECTORS])
  failed = -1
  t0 = time.perf_counter()
  last = T - 1
  for k in range(T):
    qpos[k] = d.qpos
    body_pos[k] = d.xpos[1:]
    body_quat[k] = d.xquat[1:]
    f = tr.feet_on_floor(d)
    contacts[k] = (f["left"], f["right"])
    if termination_mask(body_pos[k], body_quat[k], ref.body_pos[k], ref.body_quat[k], anchor, ees,
                        cfg.terminations):
      failed = k if failed < 0 else failed
      if stop_on_fail:
        last = k
        break
    if k == T - 1:
      break
    d.ctrl[:] = tr.control(d, ref.qpos[k], ref.qvel[k], ref.qacc[k])
    for _ in range(sim.config.decimation):
      mujoco.mj_step(m, d)
    mujoco.mj_forward(m, d)
  wall = time.perf_counter() - t0
  n = last + 1
  return TrackResult(qpos=qpos[:n], body_pos=body_pos[:n], body_quat=body_quat[:n], contacts=contacts[:n],
                     failed_at=failed, wall_time=wall, sim_time=(n - 1) * sim.control_dt)
