"""A tracker that needs no training: a whole-body QP (inverse dynamics with contact forces) at 50 Hz.

At every control step the controller reads the simulated state and solves one quadratic program (DAQP)
over generalised accelerations ``a`` (6 + J) and friction-pyramid edge forces ``l >= 0`` (4 edges per
load-bearing contact point):

  minimise   sum_k w_k^2 |A_k a + B_k l - b_k|^2 + w_f^2 |l|^2 + w_a^2 |a|^2
  subject to M_base a + h_base = (J_c^T E l)_base                    (floating-base dynamics, exact)
             -effort <= M_j a + h_j - (J_c^T E l)_j <= effort          (joint torque limits)
             J_foot a + Jdot_foot v = -k v_foot  for flat stance feet  (6 rows each)
             l >= 0                                                   (unilateral, inside the pyramids)

Load-bearing points are the MuJoCo floor contacts of the stance feet (at most the four extreme ones per
foot, in the sole frame); a foot whose contacts span the sole (heel to toe, side to side) is flat and held
by the 6-row equality, a foot on an edge or a toe gets weighted point rows instead. Tasks:
- centre of mass: the total contact force gives ``m (c'' - g)``. The reference CoM is first made
  feasible for the G1's small soles (:func:`feasible_com_trajectory`, LIP with the ZMP clamped to the
  reference stance soles); the horizontal acceleration comes from a divergent-component-of-motion law,
  ZMP command = reference ZMP + (1 + k / omega) DCM error, clamped to the actual load-bearing polygon;
  the height from PD;
- centroidal angular momentum damped towards zero (sum of (p_i - c) x f_i);
- pelvis orientation (PD, reference re-anchored as below);
- swing feet: 6-D PD on the reference foot pose raised by a swing bump (retargeted feet skim the floor),
  the sole kept level, its position shifted by the DCM error (capture-point foot placement), reaching
  below the floor once the reference has landed it;
- joints: reference accelerations plus PD, waist and arms weighted more than legs.

Drifting reference root: a planar transform (x, y; yaw optional) maps the reference into the simulation.
Each step it moves a fraction of the way towards aligning the reference stance feet with the simulated
ones, so targets are relative to where the robot actually stands and global errors do not accumulate
(MPJPE is pelvis-relative; W-MPJPE shows the drift). BeyondMimic's terminations use heights and tilt only.

Contact schedule: the motion file's labels and the simulated contacts. A foot on the floor is load-
bearing when the reference has it down; when the reference lifts it, it lifts once the other foot has
been down for ``ds_steps`` and (``capture_margin``) the capture point is over that foot, else it stays
loaded (``strict_schedule`` lifts on the reference's timing).

Joint torques ``tau = M_j a + h_j - (J_c^T E l)_j`` are sent to the position actuators as targets
``q + v dt/2 + (tau + kd v) / kp`` (the PD spring delivers ``tau`` at mid-step); mjlab's gains stay.

For references that step, :func:`track` lets :class:`humanoid_retarget.sim.search.FootstepSearch` choose each
swing's foothold offset (``step_bias``) and, when needed, a CoM-target offset (``com_bias``) by look-ahead
simulation (``TrackerConfig.search``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace

import mujoco
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation

from humanoid_retarget.robot.kernels import matrix_to_rotvec
from humanoid_retarget.sim.model import SimModel
from humanoid_retarget.sim.reference import Reference
from humanoid_retarget.sim.terminations import END_EFFECTORS, ANCHOR_BODY, TerminationConfig, termination_mask

# Sole corners in the ankle-roll body frame (foot capsules span x -0.054..0.132, y +-0.026, bottom z -0.035).
FOOT_CORNERS = np.array([[-0.05, -0.025, -0.035], [-0.05, 0.025, -0.035], [0.125, -0.025, -0.035],
                         [0.125, 0.025, -0.035]])
SIDES = ("left", "right")
GRAVITY = np.array([0.0, 0.0, -9.81])
_INF = 1e30


# Locomotion settings (used when the reference steps): found by random search over 20 parameters on every 4th
# Bandai-2 walk / turn / run clip (docs/physics.md), the rest held out. Stiff swing feet blended in from lift-off,
# near-flat stance feet held flat and levelled, capture-point stepping for the DCM error predicted up to 0.5 s
# ahead (<= 25 cm), a CoM PD (no DCM law) on the LIP-feasible path with a small CoM weight, stronger joint and
# pelvis-orientation tasks, little angular-momentum damping. Re-anchoring raised from 0.05 to 0.15 with the
# footstep search: its footholds drift from the reference's, and a CoM target 10-50 cm away from the robot made
# the CoM task push it over (0.3 tracks as well but lets a robot stepping in place wander 0.6 m).
STEPPING_OVERRIDES = dict(foot_kp=600.0, foot_kd=50.0, foot_rot_kp=400.0, foot_rot_kd=40.0, swing_blend_steps=3,
                          swing_pos_blend_steps=5, swing_weight_ramp=True, level_tilt=0.15, step_horizon=0.5,
                          step_gain=1.03, step_max=0.252, capture_margin=None,
                          dcm_control=False, w_com=9.16, com_kp=(30.0, 30.0, 99.0),
                          zmp_margin=0.00232, zmp_shrink=0.78,
                          w_joint=2.34, w_joint_arm=2.41, w_angmom=0.256,
                          w_foot=9.78, w_root_rot=33.4, drift_rate=0.15,
                          swing_clearance=0.0617, touchdown_depth=0.0202)


@dataclass
class TrackerConfig:
  """Gains (acceleration level: 1/s^2 and 1/s) and weights of the whole-body QP tracker."""

  com_kp: tuple[float, float, float] = (30.0, 30.0, 60.0)
  com_kd: tuple[float, float, float] = (11.0, 11.0, 15.0)
  root_rot_kp: float = 150.0
  root_rot_kd: float = 24.0
  joint_kp: float = 150.0
  joint_kd: float = 24.0
  foot_kp: float = 300.0
  foot_kd: float = 35.0
  flat_swing: bool = True  # swing feet keep the reference heading but a level sole
  swing_blend_steps: int = 8  # control steps over which a swing foot turns from its lift-off attitude
  swing_weight_ramp: bool = False  # the swing-foot task weight grows over those steps too
  swing_pos_blend_steps: int = 1  # ... and moves (horizontally) from its lift-off point to the target
  foot_rot_kp: float = 100.0
  foot_rot_kd: float = 20.0
  w_com: float = 10.0
  w_root_rot: float = 10.0
  w_angmom: float = 3.0  # centroidal angular momentum damping (rows in m^2/s^2 per kg)
  angmom_kd: float = 10.0
  w_joint: float = 1.0
  w_joint_waist: float = 5.0  # the waist carries the torso: keep it close to the reference
  w_joint_arm: float = 5.0  # arms: follow the reference rather than serve balance
  w_foot: float = 10.0
  w_contact: float = 30.0  # weight of the stance-corner rows when they are soft
  hard_contact: bool = True  # stance feet do not accelerate (equality) instead of a weighted task
  contact_kd: float = 20.0
  level_tilt: float = 0.0  # rad; a reference-flat stance foot tilted less than this is held flat and levelled
  level_ref_tilt: float = 0.1  # rad; ... when the reference sole is tilted less than this (not in heel-off)
  level_kp: float = 200.0  # 1/s^2, levelling of such a foot
  w_force: float = 0.03  # contact-force regulariser: without it internal (foot-to-foot) forces make the feet creep
  w_acc: float = 1e-3
  friction: float = 0.5  # pyramid coefficient used by the controller (the sim's foot friction is 0.6)
  touch_dist: float = 0.001  # m, MuJoCo floor contacts of a stance foot closer than this carry force
  flat_length: float = 0.1  # m, contacts spanning this along the sole and flat_width across: a flat foot
  flat_width: float = 0.02
  contact_margin: float = 0.002  # a foot touches the floor when a sole geom is within this distance
  dcm_control: bool = True  # horizontal CoM through a DCM law on the ZMP (else PD on the CoM)
  dcm_kp: float = 3.0  # 1/s
  zmp_shrink: float = 0.8  # the commanded ZMP stays in the load-bearing sole polygon scaled by this
  capture_margin: float | None = 0.03  # m; a touching foot stays loaded until the other foot alone can
  # hold the robot (capture point within its sole + margin); None: lift when the reference does
  contact_hold: int = 3  # a foot that bounced off the floor counts as on it for this many control steps
  strict_schedule: bool = False  # lift feet on the reference's schedule (ignores ds_steps / capture_margin)
  ds_steps: int = 3  # control steps a landed foot carries load before the other may lift
  touchdown_depth: float = 0.02  # m, a foot the reference has landed aims this far below it
  step_gain: float = 1.0  # capture-point foot placement (0 disables)
  step_max: float = 0.15  # m, largest placement correction
  step_horizon: float = 0.0  # s; > 0: place for the DCM error predicted at touchdown (at most this far ahead)
  drift_rate: float = 0.1  # per control step, re-anchoring of the reference to the stance feet (0: fixed)
  drift_yaw_rate: float = 0.0  # the same for the heading (feet yaw a lot in stance: off by default)
  feasible_com: bool = True  # track a CoM path whose ZMP stays on the G1's soles (LIP), not the mocap's
  zmp_margin: float = 0.01  # m, sole shrink for that path
  swing_clearance: float = 0.04  # m, added to the reference swing-foot height mid-swing
  effort_margin: float = 0.95  # fraction of the effort limits the QP may use
  settle: bool = True  # start with the reference's stance foot touching the floor (settle_on_floor)
  predict_vel: float = 1.0  # targets aim at the state predicted for mid-step (0 = the current state)
  # overrides used when the reference walks or runs (stepping_reference); None: one configuration for all clips
  stepping: dict | None = field(default_factory=lambda: dict(STEPPING_OVERRIDES))
  # footstep search by look-ahead simulation for stepping references (sim.search.SearchConfig fields); None: off
  search: dict | None = field(default_factory=dict)
  mode: str = "qp"  # 'qp': whole-body QP torques; 'pd': reference targets only (baseline)
  terminations: TerminationConfig = field(default_factory=TerminationConfig)


def stepping_reference(contact: np.ndarray, fps: float, min_swing_s: float = 0.3, rate: float = 0.8) -> bool:
  """Whether a reference walks or runs: its contact labels (T, 2) lift a foot for ``min_swing_s`` or longer
  at least ``rate`` times per second (and at least twice). Upper-body clips with a shuffle or two do not."""
  n = sum(1 for f in range(2) for v, s, e in _runs(contact[:, f]) if not v and (e - s) / fps >= min_swing_s)
  dur = max(len(contact) / fps, 1e-9)
  return n >= 2 and n / dur >= rate


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
  decisions: list = field(default_factory=list)  # footstep search: (step, foot, offset, CoM offset, score, n, early)

  @property
  def success(self) -> bool:
    return self.failed_at < 0

  @property
  def realtime_factor(self) -> float:
    return self.sim_time / max(self.wall_time, 1e-9)


def _pyramid(mu: float) -> np.ndarray:
  """(3, 4) edge directions of a 4-sided friction pyramid around +z."""
  return np.array([[mu, -mu, 0.0, 0.0], [0.0, 0.0, mu, -mu], [1.0, 1.0, 1.0, 1.0]])


def _rz(yaw: float) -> np.ndarray:
  c, s = np.cos(yaw), np.sin(yaw)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _yaw(R: np.ndarray) -> float:
  """Heading of a rotation matrix (its x axis projected on the floor)."""
  return float(np.arctan2(R[1, 0], R[0, 0]))


def _rotvec(R: np.ndarray) -> np.ndarray:
  """Rotation vector (3,) of a rotation matrix (3, 3) (the compiled kernel the retargeter uses)."""
  out = np.empty(3)
  matrix_to_rotvec(np.ascontiguousarray(R, dtype=np.float64), out)
  return out


def _quat_mat(q: np.ndarray) -> np.ndarray:
  """Rotation matrix (3, 3) of a unit quaternion (4,) wxyz."""
  out = np.zeros(9)
  mujoco.mju_quat2Mat(out, np.asarray(q, dtype=float))
  return out.reshape(3, 3)


def _wrap(a: float) -> float:
  return float((a + np.pi) % (2.0 * np.pi) - np.pi)


@dataclass
class RefFeatures:
  """Reference quantities the QP tracks, per control frame. T frames."""

  com: np.ndarray  # (T, 3)
  com_vel: np.ndarray  # (T, 3)
  com_acc: np.ndarray  # (T, 3)
  foot_pos: np.ndarray  # (T, 2, 3) ankle-roll body origins, left / right
  foot_vel: np.ndarray  # (T, 2, 3)
  foot_mat: np.ndarray  # (T, 2, 3, 3)
  sole_height: np.ndarray  # (T, 2) lowest sole corner
  contact: np.ndarray  # (T, 2) bool, reference foot on the floor
  zmp: np.ndarray  # (T, 2) zero-moment point of the CoM path (LIP)


def reference_features(sim: SimModel, ref: Reference, feasible_com: bool = True, zmp_margin: float = 0.01,
                       swing_clearance: float = 0.04) -> RefFeatures:
  """CoM and foot trajectories of ``ref`` (sim model FK) with smoothed derivatives.

  Foot contact follows the motion file's labels. With ``feasible_com`` the horizontal CoM path is
  replaced by :func:`feasible_com_trajectory`; swing feet get :func:`swing_lift` added to their height.
  """
  m = sim.model
  d = mujoco.MjData(m)
  T = ref.num_frames
  feet = [m.body(f"{s}_ankle_roll_link").id for s in SIDES]
  com = np.zeros((T, 3))
  fp = np.zeros((T, 2, 3))
  fm = np.zeros((T, 2, 3, 3))
  for t in range(T):
    d.qpos[:] = ref.qpos[t]
    mujoco.mj_kinematics(m, d)
    mujoco.mj_comPos(m, d)
    com[t] = d.subtree_com[1]
    for i, b in enumerate(feet):
      fp[t, i] = d.xpos[b]
      fm[t, i] = d.xmat[b].reshape(3, 3)
  sole = (fp[:, :, None, :] + np.einsum("tfij,cj->tfci", fm, FOOT_CORNERS))[..., 2].min(axis=2)
  dt = 1.0 / ref.fps

  def deriv(x):
    return gaussian_filter1d(np.gradient(x, dt, axis=0), 1.0, axis=0, mode="nearest") if T > 2 else np.zeros_like(x)

  cv = deriv(com)
  ca = deriv(cv)
  contact = ref.contacts.astype(bool)
  if feasible_com:
    com, cv, ca = feasible_com_trajectory(com, cv, ca, fp, fm, contact, dt, zmp_margin)
  fv = deriv(fp)
  if swing_clearance > 0:
    lift, dlift = swing_lift(contact, swing_clearance, dt)
    fp = fp.copy()
    fp[..., 2] += lift
    fv[..., 2] += dlift
  z = np.maximum(com[:, 2] - fp[:, :, 2].min(axis=1) + 0.035, 0.3)
  zmp = com[:, :2] - ca[:, :2] * z[:, None] / np.maximum(9.81 + ca[:, 2:3], 1.0)
  return RefFeatures(com=com, com_vel=cv, com_acc=ca, foot_pos=fp, foot_vel=fv, foot_mat=fm,
                     sole_height=sole, contact=contact, zmp=zmp)


def swing_lift(contact: np.ndarray, height: float, dt: float) -> tuple[np.ndarray, np.ndarray]:
  """Extra swing-foot height ``height sqrt(sin(pi phase))`` over each swing phase (between contacts), and its rate.

  Retargeted feet often skim the floor (1-2 cm) in swing; a simulated foot doing so scuffs and trips.
  Shapes: contact (T, 2) bool -> (T, 2), (T, 2).
  """
  T = len(contact)
  lift = np.zeros((T, 2))
  rate = np.zeros((T, 2))
  for f in range(2):
    t = 0
    while t < T:
      if contact[t, f]:
        t += 1
        continue
      s = t
      while t < T and not contact[t, f]:
        t += 1
      n = t - s
      if s == 0 and t == T:  # never on the floor
        continue
      # a phase cut by a clip end is taken as the second (start) or first (end) half of a swing
      span = 2 * n if (s == 0 or t == T) else n
      off = n if s == 0 else 0
      ph = (np.arange(n) + off + 0.5) / span
      sn = np.sin(np.pi * ph)
      lift[s:t, f] = height * np.sqrt(sn)  # rises fast, clears the toe early
      rate[s:t, f] = height * 0.5 / np.sqrt(np.maximum(sn, 1e-3)) * np.pi / (span * dt) * np.cos(np.pi * ph)
  return lift, rate


def _clamp_to_support(p: np.ndarray, corners: np.ndarray) -> np.ndarray:
  """The point of the convex hull of ``corners`` (N, 2) nearest to ``p`` (2,)."""
  ctr = corners.mean(axis=0)
  ang = np.arctan2(corners[:, 1] - ctr[1], corners[:, 0] - ctr[0])
  poly = corners[np.argsort(ang)]
  try:
    hull = ConvexHull(poly)
    poly = poly[hull.vertices]
  except Exception:  # degenerate (collinear) support: treat as a segment chain
    pass
  n = len(poly)
  inside = True
  best, best_d = p, np.inf
  for i in range(n):
    a, b = poly[i], poly[(i + 1) % n]
    e = b - a
    cross = e[0] * (p[1] - a[1]) - e[1] * (p[0] - a[0])
    if cross < 0:
      inside = False
    s = np.clip(np.dot(p - a, e) / max(np.dot(e, e), 1e-12), 0.0, 1.0)
    q = a + s * e
    dist = np.linalg.norm(p - q)
    if dist < best_d:
      best, best_d = q, dist
  return p if inside else best


def feasible_com_trajectory(com: np.ndarray, com_vel: np.ndarray, com_acc: np.ndarray, foot_pos: np.ndarray,
                            foot_mat: np.ndarray, contact: np.ndarray, dt: float, margin: float = 0.01
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A horizontal CoM path the robot's feet can support (linear inverted pendulum, DCM recursion).

  The reference ZMP ``p = c - c'' z / (g + z'')`` (T, 2) is clamped into the support polygon of the
  reference stance feet (the G1 sole shrunk by ``margin``; human feet are wider, so mocap ZMPs often lie
  outside it), then the divergent component ``xi = c + c' / omega`` is integrated backwards from the end,
  ``xi_k = p_k + exp(-omega dt) (xi_{k+1} - p_k)``, and the CoM forwards, ``c' = omega (xi - c)``.
  Frames without support (flight) keep the reference ZMP. Returns (com, com_vel, com_acc), (T, 3) each,
  z unchanged. Shapes: com (T, 3), foot_pos (T, 2, 3), foot_mat (T, 2, 3, 3), contact (T, 2).
  """
  T = len(com)
  if T < 3:
    return com, com_vel, com_acc
  z = np.maximum(com[:, 2] - foot_pos[:, :, 2].min(axis=1) + 0.035, 0.3)
  p = com[:, :2] - com_acc[:, :2] * z[:, None] / np.maximum(9.81 + com_acc[:, 2:3], 1.0)
  sole = np.array([[-0.05 + margin, -0.025 + margin, 0.0], [-0.05 + margin, 0.025 - margin, 0.0],
                   [0.125 - margin, -0.025 + margin, 0.0], [0.125 - margin, 0.025 - margin, 0.0]]) \
    + np.array([0.0, 0.0, -0.035])
  pc = p.copy()
  for t in range(T):
    feet = np.flatnonzero(contact[t])
    if len(feet) == 0:
      continue
    pts = np.concatenate([(foot_pos[t, f] + sole @ foot_mat[t, f].T)[:, :2] for f in feet])
    pc[t] = _clamp_to_support(p[t], pts)
  omega = np.sqrt(9.81 / z)
  xi = np.zeros((T, 2))
  xi[-1] = com[-1, :2] + com_vel[-1, :2] / omega[-1]
  for t in range(T - 2, -1, -1):
    a = np.exp(-omega[t] * dt)
    xi[t] = pc[t] + a * (xi[t + 1] - pc[t])
  c = np.zeros((T, 2))
  c[0] = com[0, :2]
  for t in range(T - 1):
    a = np.exp(-omega[t] * dt)
    c[t + 1] = xi[t] + (c[t] - xi[t]) * a
  out_c, out_v, out_a = com.copy(), com_vel.copy(), com_acc.copy()
  out_c[:, :2] = c
  out_v[:, :2] = omega[:, None] * (xi - c)
  out_a[:, :2] = omega[:, None] ** 2 * (c - pc)
  return out_c, out_v, out_a


def _runs(x: np.ndarray) -> list[tuple[bool, int, int]]:
  """Runs of equal values of a 1-D bool array: (value, start, end exclusive)."""
  out, s = [], 0
  for t in range(1, len(x) + 1):
    if t == len(x) or x[t] != x[s]:
      out.append((bool(x[s]), s, t))
      s = t
  return out


class WholeBodyQPTracker:
  """Whole-body QP controller for one MjData following one reference (see module docstring)."""

  def __init__(self, sim: SimModel, cfg: TrackerConfig | None = None):
    try:
      import daqp  # the QP solver
    except ImportError as e:  # pragma: no cover - depends on the environment
      raise ImportError("the whole-body QP tracker needs the 'daqp' package (pip install daqp)") from e

    self._daqp = daqp
    self.sim = sim
    self.cfg = cfg or TrackerConfig()
    m = sim.model
    self.m = m
    self.nv = m.nv
    self.J = sim.num_joints
    self.foot_body = [m.body(f"{s}_ankle_roll_link").id for s in SIDES]
    self.floor = m.geom("floor").id
    self.E = _pyramid(self.cfg.friction)
    self.mass = float(m.body_subtreemass[1])
    self.M = np.zeros((m.nv, m.nv))
    self.jacp = np.zeros((3, m.nv))
    self.jacr = np.zeros((3, m.nv))
    self.jdp = np.zeros((3, m.nv))
    self.jdr = np.zeros((3, m.nv))
    assert np.all(sim.dof_adr == np.arange(6, 6 + self.J)), "expects a free root then the actuated hinges"
    self.base_cfg = self.cfg
    self._set_weights()
    self.dbg: dict | None = None  # set to {} to collect per-step diagnostics (ZMP command, task residuals)
    self.reset()

  def _set_weights(self) -> None:
    c = self.cfg
    self.E = _pyramid(c.friction)
    self.w_joint = np.array([c.w_joint_waist if "waist" in n else c.w_joint_arm if re.search(r"shoulder|elbow|wrist", n)
                             else c.w_joint for n in self.sim.joint_names])

  def reset(self) -> None:
    """Forget the reference anchoring (call before a new rollout)."""
    self.anchor_R = np.eye(3)  # planar transform reference -> simulation: p_sim = R p_ref + t
    self.anchor_t = np.zeros(3)
    self.feat: RefFeatures | None = None
    self.on_count = np.zeros(2, dtype=np.int64)  # consecutive control steps each foot touched the floor
    self.off_count = np.full(2, 1000, dtype=np.int64)  # ... and did not
    self.step_off = np.zeros((2, 3))  # capture-point placement offset of each swing, held until touchdown
    self.was_stance = np.array([True, True])
    self.liftoff_R = np.tile(np.eye(3), (2, 1, 1))
    self.liftoff_p = np.zeros((2, 3))
    self.swing_age = np.zeros(2, dtype=np.int64)
    self.step_bias = np.zeros((2, 3))  # extra foothold offset of the current swing (set by a footstep search)
    self.com_bias = np.zeros(3)  # offset of the CoM target (set by a footstep search)
    self.swing_adv = np.zeros(2)  # control steps the current swing lands before the reference's (footstep search)
    self.lift_k = np.zeros(2, dtype=np.int64)  # control step each foot last lifted off

  _STATE = ("anchor_R", "anchor_t", "on_count", "off_count", "step_off", "was_stance", "liftoff_R", "liftoff_p",
            "swing_age", "step_bias", "com_bias", "swing_adv", "lift_k")

  def get_state(self) -> dict:
    """Copies of the controller's memory of this rollout (to run look-ahead rollouts from the same state)."""
    return {k: np.copy(getattr(self, k)) for k in self._STATE}

  def set_state(self, state: dict) -> None:
    for k, v in state.items():
      setattr(self, k, np.copy(v))

  def set_reference(self, sim_ref: Reference) -> None:
    self.reset()
    b = self.base_cfg
    self.stepping = bool(b.stepping) and stepping_reference(sim_ref.contacts, sim_ref.fps)
    self.cfg = replace(b, **b.stepping) if self.stepping else b
    self._set_weights()
    c = self.cfg
    self.feat = reference_features(self.sim, sim_ref, c.feasible_com, c.zmp_margin, c.swing_clearance)
    # control steps until the reference next puts each foot down (0 while it is down)
    con = self.feat.contact
    T = len(con)
    self.to_touchdown = np.zeros((T, 2))
    for i in range(2):
      nxt = T
      for t in range(T - 1, -1, -1):
        if con[t, i]:
          nxt = t
        self.to_touchdown[t, i] = nxt - t

  # ---------------------------------------------------------------- contacts and anchoring
  def _floor_contacts(self, d: mujoco.MjData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MuJoCo contacts between a foot geom and the floor: foot sides (N,) 0/1, distances (N,) and world
    positions (N, 3)."""
    n = d.ncon
    if n == 0:
      return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, 3))
    con = d.contact
    geom = con.geom[:n]
    other = np.where(geom[:, 0] == self.floor, geom[:, 1], np.where(geom[:, 1] == self.floor, geom[:, 0], -1))
    body = np.where(other >= 0, self.m.geom_bodyid[np.maximum(other, 0)], -1)
    side = np.where(body == self.foot_body[0], 0, np.where(body == self.foot_body[1], 1, -1))
    sel = np.flatnonzero(side >= 0)
    return side[sel], con.dist[sel], con.pos[sel]

  def feet_on_floor(self, d: mujoco.MjData, scan: tuple | None = None) -> np.ndarray:
    """(2,) bool: a foot geom of left / right within ``contact_margin`` of the floor (``scan``: a
    :meth:`_floor_contacts` result for ``d`` already at hand)."""
    side, dist, _ = scan if scan is not None else self._floor_contacts(d)
    out = np.zeros(2, dtype=bool)
    out[side[dist <= self.cfg.contact_margin]] = True
    return out

  def foot_contact_points(self, d: mujoco.MjData, scan: tuple | None = None) -> list[np.ndarray]:
    """Per foot (left, right): (N, 3) world positions of its MuJoCo floor contacts (penetrating or touching)."""
    side, dist, pos = scan if scan is not None else self._floor_contacts(d)
    near = dist <= self.cfg.touch_dist
    return [pos[near & (side == 0)], pos[near & (side == 1)]]

  def _fk(self, k: int, i: int) -> tuple[int, float]:
    """Reference step for foot ``i`` at control step ``k``, and its rate: a swing told to land ``swing_adv``
    steps early runs through the reference's swing that much faster (lift-off to touchdown), then waits on
    the floor until the reference catches up."""
    adv = self.swing_adv[i]
    if adv <= 0:
      return k, 1.0
    k0 = int(self.lift_k[i])
    dur = float(self.to_touchdown[k0, i])
    td = k0 + int(dur)
    if k >= td or dur <= adv:
      return k, 1.0
    rate = dur / (dur - adv)
    # A swing that runs past the clip's end (no touchdown left: td = T) waits on the last frame.
    return min(round(k0 + (k - k0) * rate), td, len(self.to_touchdown) - 1), rate

  def _map(self, p: np.ndarray) -> np.ndarray:
    return self.anchor_R @ p + self.anchor_t

  def _update_anchor(self, d: mujoco.MjData, k: int, both: np.ndarray) -> None:
    """Move the reference -> simulation transform towards matching the feet on the floor in both."""
    c = self.cfg
    if c.drift_rate <= 0 or not both.any():
      return
    f = self.feat
    dyaw, pivot, err = 0.0, np.zeros(3), np.zeros(3)
    n = 0
    for s in np.flatnonzero(both):
      b = self.foot_body[s]
      Rs = d.xmat[b].reshape(3, 3)
      dyaw += _wrap(_yaw(Rs) - _yaw(self.anchor_R @ f.foot_mat[self._fk(k, s)[0], s]))
      pivot += d.xpos[b]
      n += 1
    dyaw *= c.drift_yaw_rate / n
    pivot /= n
    # rotate the mapped reference about the stance point, then translate
    Rd = _rz(dyaw)
    self.anchor_R = Rd @ self.anchor_R
    self.anchor_t = Rd @ (self.anchor_t - pivot) + pivot
    for s in np.flatnonzero(both):
      err += d.xpos[self.foot_body[s]] - self._map(f.foot_pos[self._fk(k, s)[0], s])
    err[2] = 0.0
    self.anchor_t += c.drift_rate * err / n

  # ---------------------------------------------------------------- the QP
  def control(self, d: mujoco.MjData, ref: Reference, k: int) -> np.ndarray:
    """Position targets (J,) for control step ``k`` (needs ``mj_forward`` done on ``d``)."""
    s, c = self.sim, self.cfg
    qpos_r, qvel_r = ref.qpos[k], ref.qvel[k]
    if c.mode == "pd":
      return qpos_r[7:] + s.kd * qvel_r[6:] / s.kp
    if self.feat is None:
      self.set_reference(ref)
    tau, acc = self.solve(d, ref, k)
    tau = np.clip(tau, -s.effort, s.effort)
    dt = s.control_dt
    a = acc[6:]
    q = d.qpos[7:] + c.predict_vel * (0.5 * dt * d.qvel[6:] + dt * dt / 6.0 * a)
    v = d.qvel[6:] + c.predict_vel * 0.5 * dt * a
    return q + (tau + s.kd * v) / s.kp

  def stance(self, d: mujoco.MjData, k: int, scan: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(load-bearing feet, feet on the floor in both sim and reference), each (2,) bool.

    A foot on the floor carries load unless the reference lifts it and the other foot has been on the
    floor (and meant to be) for ``ds_steps`` control steps: lift-off waits for a short double support.
    """
    on = self.feet_on_floor(d, scan) | (self.off_count < self.cfg.contact_hold)
    ref_on = np.array([self.feat.contact[self._fk(k, i)[0], i] for i in range(2)])
    both = on & ref_on
    st = both.copy()
    for i in range(2):
      j = 1 - i
      if on[i] and not ref_on[i] and not (both[j] and self.on_count[j] >= self.cfg.ds_steps
                                          and self._captured_by(d, j)):
        st[i] = True
    if self.cfg.strict_schedule:
      # the reference's timing: a foot lifts when the reference lifts it, unless the other is not down
      st = both.copy()
      for i in range(2):
        if on[i] and not ref_on[i] and not on[1 - i]:
          st[i] = True
    return st, both

  def _captured_by(self, d: mujoco.MjData, j: int) -> bool:
    """Whether foot ``j`` alone can hold the robot: the divergent component of motion (instantaneous
    capture point) lies within its sole, grown by ``capture_margin``."""
    c = self.cfg
    if c.capture_margin is None:
      return True
    com = d.subtree_com[1]
    mujoco.mj_jacSubtreeCom(self.m, d, self.jacp, 1)
    dcom = self.jacp @ d.qvel
    b = self.foot_body[j]
    omega = np.sqrt(9.81 / max(com[2] - d.xpos[b][2] + 0.035, 0.3))
    xi = com + dcom / omega
    R = d.xmat[b].reshape(3, 3)
    loc = R.T @ (xi - d.xpos[b])
    lo = FOOT_CORNERS[:, :2].min(axis=0) - c.capture_margin
    hi = FOOT_CORNERS[:, :2].max(axis=0) + c.capture_margin
    return bool(np.all(loc[:2] >= lo) and np.all(loc[:2] <= hi))

  def _count_contacts(self, d: mujoco.MjData, scan: tuple | None = None) -> None:
    on = self.feet_on_floor(d, scan)
    self.on_count = np.where(on, self.on_count + 1, 0)
    self.off_count = np.where(on, 0, self.off_count + 1)

  def solve(self, d: mujoco.MjData, ref: Reference, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint torques (J,) and generalised accelerations (nv,) at control step ``k``."""
    c, m, nv, J, f = self.cfg, self.m, self.nv, self.J, self.feat
    scan = self._floor_contacts(d)
    self._count_contacts(d, scan)
    stance, both = self.stance(d, k, scan)
    self._update_anchor(d, k, both)
    mujoco.mj_fullM(m, d, self.M)
    h = d.qfrc_bias
    v = d.qvel
    # sole corners of stance feet: acceleration rows for all four, force columns for the low ones
    crow_A, crow_b, jcE, load_pts = [], [], [], []
    eq_A, eq_b = [], []  # flat stance feet: the whole foot does not accelerate (6 equality rows)
    touch = self.foot_contact_points(d, scan)
    for i in np.flatnonzero(stance):
      self.step_off[i] = 0.0
      self.step_bias[i] = 0.0
      b = self.foot_body[i]
      R = d.xmat[b].reshape(3, 3)
      pts = touch[i]
      if len(pts) == 0:  # held as stance after a bounce: no force this step
        continue
      loc = (pts - d.xpos[b]) @ R  # foot frame
      ext = np.unique([np.argmin(loc[:, 0]), np.argmax(loc[:, 0]), np.argmin(loc[:, 1]), np.argmax(loc[:, 1])])
      flat = c.hard_contact and np.ptp(loc[:, 0]) > c.flat_length and np.ptp(loc[:, 1]) > c.flat_width
      e_lvl = np.zeros(3)
      ki = self._fk(k, i)[0]
      if c.hard_contact and c.level_tilt > 0 and f.contact[ki, i]:
        tilt = np.arccos(np.clip(R[2, 2], -1.0, 1.0))
        ref_tilt = np.arccos(np.clip(f.foot_mat[ki, i][2, 2], -1.0, 1.0))
        if tilt < c.level_tilt and ref_tilt < c.level_ref_tilt:
          # the reference has this sole flat on the floor and the simulated one is close: hold it as a flat
          # foot (its sole corners carry force) and turn it level (a heel or edge that lifted comes back down)
          e_lvl = _rotvec(_rz(_yaw(R)) @ R.T)
          e_lvl[2] = 0.0
          if not flat:
            pts = d.xpos[b] + FOOT_CORNERS @ R.T
            ext = np.arange(len(pts))
            flat = True
      if flat:
        ctr = pts[ext].mean(axis=0)
        mujoco.mj_jac(m, d, self.jacp, self.jacr, ctr, b)
        mujoco.mj_jacDot(m, d, self.jdp, self.jdr, ctr, b)
        eq_A.append(np.vstack([self.jacp, self.jacr]))
        eq_b.append(np.concatenate([-c.contact_kd * (self.jacp @ v) - self.jdp @ v,
                                    c.level_kp * e_lvl - c.contact_kd * (self.jacr @ v) - self.jdr @ v]))
      for pw in pts[ext]:
        mujoco.mj_jac(m, d, self.jacp, None, pw, b)
        if not flat:
          mujoco.mj_jacDot(m, d, self.jdp, self.jdr, pw, b)
          crow_A.append(self.jacp.copy())
          crow_b.append(-c.contact_kd * (self.jacp @ v) - self.jdp @ v)
        jcE.append(self.jacp.T @ self.E)  # (nv, 4)
        load_pts.append(pw)
    P = len(jcE)
    nl = 4 * P
    n = nv + nl
    JcE = np.hstack(jcE) if P else np.zeros((nv, 0))
    rows_A, rows_b, rows_w = [], [], []

    def task(A, b, w):
      rows_A.append(A)
      rows_b.append(b)
      rows_w.append(w if isinstance(w, np.ndarray) else np.full(A.shape[0], w))

    # joints
    a_j = ref.qacc[k, 6:] + c.joint_kp * (ref.qpos[k, 7:] - d.qpos[7:]) + c.joint_kd * (ref.qvel[k, 6:] - v[6:])
    A = np.zeros((J, n))
    A[:, 6:nv] = np.eye(J)
    task(A, a_j, self.w_joint)
    # pelvis orientation (reference yaw re-anchored)
    Rq = _quat_mat(d.qpos[3:7])
    Rr = self.anchor_R @ _quat_mat(ref.qpos[k, 3:7])
    rel = Rq.T @ Rr
    a_r = rel @ ref.qacc[k, 3:6] + c.root_rot_kp * _rotvec(rel) + c.root_rot_kd * (rel @ ref.qvel[k, 3:6] - v[3:6])
    A = np.zeros((3, n))
    A[:, 3:6] = np.eye(3)
    task(A, a_r, c.w_root_rot)
    # centre of mass, relative to the stance feet, and its divergent-component error
    com = d.subtree_com[1].copy()
    mujoco.mj_jacSubtreeCom(m, d, self.jacp, 1)
    dcom = self.jacp @ v
    Ra = self.anchor_R
    c_des = self._map(f.com[k]) + self.com_bias
    dc_des = Ra @ f.com_vel[k]
    ddc = Ra @ f.com_acc[k] + np.asarray(c.com_kp) * (c_des - com) + np.asarray(c.com_kd) * (dc_des - dcom)
    omega = np.sqrt(9.81 / max(com[2] - min(d.xpos[b][2] for b in self.foot_body) + 0.035, 0.3))
    dcm_err = (com - c_des) + (dcom - dc_des) / omega
    dcm_err[2] = 0.0
    if c.dcm_control and load_pts:
      # divergent component of motion: ZMP command = reference ZMP + (1 + k / omega) * DCM error, kept on
      # the load-bearing soles; the horizontal CoM acceleration is what that ZMP produces (LIP)
      p_ref = (Ra @ np.array([f.zmp[k, 0], f.zmp[k, 1], 0.0]) + self.anchor_t)[:2]
      p_cmd = p_ref + (1.0 + c.dcm_kp / omega) * dcm_err[:2]
      pts = np.array(load_pts)[:, :2]
      ctr = pts.mean(axis=0)
      pts = ctr + (pts - ctr) * c.zmp_shrink
      p_raw = p_cmd
      p_cmd = _clamp_to_support(p_cmd, pts)
      ddc[:2] = omega ** 2 * (com[:2] - p_cmd)
      if self.dbg is not None:
        self.dbg.update(p_ref=p_ref - ctr, p_raw=p_raw - ctr, p_cmd=p_cmd - ctr, ddc=ddc.copy(), dcm_err=dcm_err.copy())
    if P:
      G = np.tile(self.E, (1, P)) / self.mass  # (3, nl): total contact force / mass
      A = np.zeros((3, n))
      A[:, nv:] = G
      task(A, ddc - GRAVITY, c.w_com)
      if c.w_angmom > 0:
        # centroidal angular momentum rate = sum (p_i - c) x f_i, damped towards zero (per unit mass)
        mujoco.mj_subtreeVel(m, d)
        L = d.subtree_angmom[1]
        Am = np.zeros((3, n))
        for j, pc in enumerate(load_pts):
          r = pc - com
          rx = np.array([[0.0, -r[2], r[1]], [r[2], 0.0, -r[0]], [-r[1], r[0], 0.0]])
          Am[:, nv + 4 * j: nv + 4 * j + 4] = rx @ self.E / self.mass
        task(Am, -c.angmom_kd * L / self.mass, c.w_angmom)
    # stance corners: hard equalities on the load-bearing feet (all four corners: the sole stays flat)
    Ceq = np.zeros((6 * len(eq_A), n))
    ceq = np.concatenate(eq_b) if eq_b else np.zeros(0)
    if eq_A:
      Ceq[:, :nv] = np.vstack(eq_A)
    if crow_A:
      A = np.zeros((3 * len(crow_A), n))
      A[:, :nv] = np.vstack(crow_A)
      task(A, np.concatenate(crow_b), c.w_contact)
    # swing feet
    step = np.clip(c.step_gain * dcm_err, -c.step_max, c.step_max)
    swing_rows = []
    for i in np.flatnonzero(~stance):
      b = self.foot_body[i]
      mujoco.mj_jacBody(m, d, self.jacp, self.jacr, b)
      mujoco.mj_jacDot(m, d, self.jdp, self.jdr, d.xpos[b], b)
      if self.was_stance[i]:  # lift-off: a new swing, on the reference's timing until told otherwise
        self.lift_k[i] = k
        self.swing_adv[i] = 0.0
      ki, rate = self._fk(k, i)
      p_des = self._map(f.foot_pos[ki, i])
      if not f.contact[ki, i]:
        if c.step_horizon > 0:
          # capture-point stepping: the DCM error expected at the reference's touchdown (it grows as exp(omega t))
          t_rem = min(self.to_touchdown[ki, i] / rate * self.sim.control_dt, c.step_horizon)
          self.step_off[i] = np.clip(c.step_gain * dcm_err * np.exp(omega * t_rem), -c.step_max, c.step_max)
        else:
          self.step_off[i] = step
      else:  # the reference has landed this foot: reach for the floor where the step was aimed
        p_des[2] -= c.touchdown_depth
      p_des = p_des + self.step_off[i] + self.step_bias[i]
      v_des = rate * (Ra @ f.foot_vel[ki, i])
      R_des = Ra @ f.foot_mat[ki, i]
      if c.flat_swing:  # keep the sole parallel to the floor (the reference's toe-off pitch scuffs the toe)
        R_des = _rz(_yaw(R_des))
      # from the lift-off attitude towards the target over the first steps of the swing
      if self.was_stance[i]:
        self.liftoff_R[i] = d.xmat[b].reshape(3, 3).copy()
        self.liftoff_p[i] = d.xpos[b].copy()
        self.swing_age[i] = 0
      a = min(1.0, self.swing_age[i] / max(c.swing_blend_steps, 1))
      ap = min(1.0, (self.swing_age[i] + 1) / max(c.swing_pos_blend_steps, 1))
      self.swing_age[i] += 1
      if a < 1.0:
        rv = _rotvec(R_des @ self.liftoff_R[i].T)
        R_des = Rotation.from_rotvec(a * rv).as_matrix() @ self.liftoff_R[i]
      if ap < 1.0:  # horizontally from the lift-off point towards the (offset) target
        p_des[:2] = self.liftoff_p[i, :2] + ap * (p_des[:2] - self.liftoff_p[i, :2])
        v_des = v_des.copy()
        v_des[:2] *= ap
      Rb = d.xmat[b].reshape(3, 3)
      e_rot = _rotvec(R_des @ Rb.T)
      lin = c.foot_kp * (p_des - d.xpos[b]) + c.foot_kd * (v_des - self.jacp @ v) - self.jdp @ v
      ang = c.foot_rot_kp * e_rot - c.foot_rot_kd * (self.jacr @ v) - self.jdr @ v
      A = np.zeros((6, n))
      A[:3, :nv] = self.jacp
      A[3:, :nv] = self.jacr
      task(A, np.concatenate([lin, ang]), c.w_foot * (ap if c.swing_weight_ramp else 1.0))
      swing_rows.append((i, A[:, :nv].copy(), np.concatenate([lin, ang])))
    A_all = np.vstack(rows_A)
    W2 = np.concatenate(rows_w) ** 2
    b_all = np.concatenate(rows_b)
    H = A_all.T @ (W2[:, None] * A_all)
    g = -A_all.T @ (W2 * b_all)
    H[np.arange(nv), np.arange(nv)] += c.w_acc ** 2
    if nl:
      H[np.arange(nv, n), np.arange(nv, n)] += c.w_force ** 2
    # constraints: base dynamics (equality), joint torques within limits; bounds: forces >= 0
    ne = len(ceq)
    Acon = np.vstack([np.hstack([self.M, -JcE]), Ceq])
    eff = c.effort_margin * self.sim.effort
    bu = np.concatenate([np.full(n, _INF), -h[:6], eff - h[6:], ceq])
    bl = np.concatenate([np.full(nv, -_INF), np.zeros(nl), -h[:6], -eff - h[6:], ceq])
    sense = np.zeros(n + nv + ne, dtype=np.int32)
    sense[n:n + 6] = 5
    sense[n + nv:] = 5
    x, _, flag, _ = self._daqp.solve(H, g, Acon, bu, bl, sense)
    if flag < 0 and ne:  # contacts and torque limits conflict: contacts become weighted rows
      H2 = H + c.w_contact ** 2 * Ceq.T @ Ceq
      g2 = g - c.w_contact ** 2 * Ceq.T @ ceq
      x, _, flag, _ = self._daqp.solve(H2, g2, Acon[:nv], bu[:n + nv], bl[:n + nv], sense[:n + nv])
    if flag < 0:  # still infeasible (numerics): no torque limits (clipped afterwards)
      bu[n + 6:n + nv], bl[n + 6:n + nv] = _INF, -_INF
      x, _, flag, _ = self._daqp.solve(H, g, Acon, bu, bl, sense)
    acc, lam = x[:nv], x[nv:]
    if self.dbg is not None:
      self.dbg["flag"] = flag
      r = (A_all @ x - b_all) * np.sqrt(W2)
      off = 0
      res = []
      for Ai in rows_A:
        res.append(round(float(np.linalg.norm(r[off:off + Ai.shape[0]])), 1))
        off += Ai.shape[0]
      self.dbg["res"] = res
    if P and self.dbg is not None:
      self.dbg["force"] = np.tile(self.E, (1, P)) @ lam
      self.dbg["ddc_qp"] = self.dbg["force"] / self.mass + GRAVITY
    self.last_swing = [(i, Af @ acc, bf) for i, Af, bf in swing_rows]  # (foot, planned, desired) for diagnostics
    self.was_stance = stance.copy()
    tau = self.M[6:] @ acc + h[6:] - JcE[6:] @ lam
    return tau, acc


def foot_floor_gap(sim: SimModel, d: mujoco.MjData) -> np.ndarray:
  """(2,) signed distance (m) from each foot's (left, right) collision geoms to the floor; needs kinematics."""
  m = sim.model
  floor = m.geom("floor").id
  return np.array([min(mujoco.mj_geomDistance(m, d, int(g), floor, 0.5, None) for g in sim.foot_geoms[side])
                   for side in SIDES])


def settle_on_floor(sim: SimModel, d: mujoco.MjData, contact: np.ndarray, max_shift: float = 0.03) -> float:
  """Shift the robot vertically so the lowest foot the reference has on the floor (``contact`` (2,) bool)
  touches it (0.5 mm deep): retargeted stance feet hover or sink a few millimetres, and a start with no foot on the floor
  starts as a fall. Returns the shift (m, at most ``max_shift`` either way; 0 without a stance foot)."""
  if not np.any(contact):
    return 0.0
  mujoco.mj_kinematics(sim.model, d)
  gap = float(np.min(foot_floor_gap(sim, d)[np.asarray(contact, dtype=bool)]))
  shift = float(np.clip(-gap - 0.0005, -max_shift, max_shift))  # 0.5 mm into it: MuJoCo reports the contact
  d.qpos[2] += shift
  mujoco.mj_forward(sim.model, d)
  return shift


def step_control(m: mujoco.MjModel, d: mujoco.MjData, ctrl: np.ndarray, decimation: int) -> None:
  """Hold ``ctrl`` for one control step (``decimation`` physics steps).

  ``d`` must have its position and velocity stages computed for the current state (``mj_forward`` or a
  previous call); on return they are computed for the new state (``mj_step1``), which is all the tracker and
  the terminations read. The same physics as ``mj_step`` x decimation, without a separate ``mj_forward``.
  """
  d.ctrl[:] = ctrl
  mujoco.mj_step2(m, d)
  for _ in range(decimation - 1):
    mujoco.mj_step(m, d)
  mujoco.mj_step1(m, d)


# Kept name: the tracker's public class (earlier code used InverseDynamicsTracker).
InverseDynamicsTracker = WholeBodyQPTracker


def track(sim: SimModel, ref: Reference, cfg: TrackerConfig | None = None, stop_on_fail: bool = True,
          tracker: WholeBodyQPTracker | None = None) -> TrackResult:
  """Simulate the robot following ``ref`` (at the control rate) from the reference's first state."""
  tr = tracker or WholeBodyQPTracker(sim, cfg)
  cfg = tr.cfg
  m = sim.model
  d = mujoco.MjData(m)
  d.qpos[:] = ref.qpos[0]
  d.qvel[:] = ref.qvel[0]
  mujoco.mj_forward(m, d)
  if cfg.mode != "pd" and cfg.settle:
    settle_on_floor(sim, d, ref.contacts[0])
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
  search = None
  if cfg.mode != "pd":
    tr.set_reference(ref)
    if isinstance(tr, WholeBodyQPTracker) and tr.stepping and tr.base_cfg.search is not None:
      from humanoid_retarget.sim.search import FootstepSearch, SearchConfig

      search = FootstepSearch(sim, tr, ref, SearchConfig(**tr.base_cfg.search))
  last = T - 1
  k = 0
  while k < T:
    qpos[k] = d.qpos
    body_pos[k] = d.xpos[1:]
    body_quat[k] = d.xquat[1:]
    contacts[k] = tr.feet_on_floor(d)
    if termination_mask(body_pos[k], body_quat[k], ref.body_pos[k], ref.body_quat[k], anchor, ees,
                        cfg.terminations):
      back = search.backtrack(d, k) if search is not None and failed < 0 else None
      if back is not None:  # an earlier footstep decision changed: simulate on from there
        k, ctrl = back
        step_control(m, d, ctrl, sim.config.decimation)
        k += 1
        continue
      failed = k if failed < 0 else failed
      if stop_on_fail:
        last = k
        break
    if k == T - 1:
      break
    before = tr.was_stance.copy() if search is not None else None
    ctrl = tr.control(d, ref, k)
    if search is not None:
      search.decide(d, k, ctrl, before)
    step_control(m, d, ctrl, sim.config.decimation)
    k += 1
  wall = time.perf_counter() - t0
  n = last + 1
  return TrackResult(qpos=qpos[:n], body_pos=body_pos[:n], body_quat=body_quat[:n], contacts=contacts[:n],
                     failed_at=failed, wall_time=wall, sim_time=(n - 1) * sim.control_dt,
                     decisions=search.decisions if search is not None else [])
