"""A GMR-style retargeting baseline (per-frame two-stage differential IK with mink), for benchmarks.

It follows the design of GMR (YanjieZe/GMR, ``motion_retarget.py``) without its code:

- one ``mink.FrameTask`` per tracked robot body, with a position and an orientation cost;
- stage 1 tracks fewer bodies with the emphasis on orientation, stage 2 tracks every body;
- each stage runs up to ``max_iter`` IK steps (``daqp`` QP solver, damping 0.5) until the task error
  stops falling, and every frame starts from the previous frame's solution;
- joint limits by ``mink.ConfigurationLimit``, a 3*pi rad/s ``mink.VelocityLimit`` on every hinge,
  integrated over the model timestep per IK step exactly as GMR does (so one frame, 2 x 10 steps of
  2 ms, moves a joint by at most 0.38 rad: 11 rad/s at 30 fps);
- human positions scaled by one uniform factor (GMR's ``human_height_assumption`` idea), here
  measured per clip as robot / human leg length (standing hip height);
- constant position offsets per body (GMR's hand-set ``pos_offset``), here computed from the rest
  geometry of both skeletons;
- per-body orientation offsets between a human joint frame and a robot body frame. GMR's are
  hand-tuned per (skeleton, robot) pair; here they are computed automatically, once per clip, from a
  neutral frame: the first frame with both feet on the ground (frame 0 if there is none);
- after solving, the clip is shifted vertically so its lowest body point is at z = 0.

The output is a :class:`humanoid_retarget.io.motion.RobotMotion` built by the same ``make_motion``
as our retargeter, so both go through identical metrics. Needs the ``bench`` extra (mink, daqp).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from humanoid_retarget.batch import Task
from humanoid_retarget.human.contacts import detect_contacts
from humanoid_retarget.human.load import load_human
from humanoid_retarget.human.motion import HumanMotion, J
from humanoid_retarget.io.motion import RobotMotion, save_motion
from humanoid_retarget.retarget.kinematic import foot_lowest, make_motion
from humanoid_retarget.robot.config import Robot

METHOD = "gmr_baseline"


@dataclass(frozen=True)
class BodyMatch:
  """One tracked robot body (one FrameTask), as a row of GMR's ``ik_match_table``.

  Attributes:
    body: robot body name (the FrameTask frame).
    human_pos: canonical joint(s) whose scaled position (their mean) the body's joint centre follows;
      empty: orientation only.
    human_rot: canonical joint whose global frame the body orientation follows.
    centre: robot bodies whose origins (their mean, at q = 0) are the joint centre matched to
      ``human_pos``; empty: the body's own origin. This plays the role of GMR's position offsets.
    stage1, stage2: (position cost, orientation cost) in each stage; (0, 0) leaves the body out.
    shift: (human joint, robot body, human frame joint): the position target moves by a constant
      vector in that human frame, so that the joint sits at the robot's lateral offset and at the
      robot's distance from the hip centre (keeping the human's direction in that frame), the joint
      being the robot body's origin at rest. GMR's hand-set position offsets do this job (widen narrow
      hips, lengthen a short trunk); here they come from the data. () = no shift.
    calibrate_rot: how the calibration (see ``GmrRetargeter._calibrate``) also fixes this body's
      orientation. 'frame': the human frame itself, as the canonical pelvis and chest frames and the
      G1 pelvis and torso at q = 0 all face +X with Z up (removes the pelvis-back / torso-forward null
      space of position-only IK); 'flat': level, turned to the human frame's heading (feet, which
      stand on the floor in the neutral frame); '': position only.
  """

  body: str
  human_pos: tuple[str, ...]
  human_rot: str
  centre: tuple[str, ...] = ()
  stage1: tuple[float, float] = (0.0, 0.0)
  stage2: tuple[float, float] = (0.0, 0.0)
  shift: tuple[str, ...] = ()
  calibrate_rot: str = ""


def _pair(side: str, body: str, pos: str, rot: str, centre: str, s1, s2, group: str, cal: str = "") -> BodyMatch:
  shift = {"hips": (f"{side}_hip", f"{side}_hip_roll_link", "pelvis"),
           "shoulders": (f"{side}_shoulder", f"{side}_shoulder_roll_link", "spine3")}[group]
  return BodyMatch(f"{side}_{body}", (f"{side}_{pos}",) if pos else (), f"{side}_{rot}",
                   (f"{side}_{centre}",) if centre else (), s1, s2, shift, cal)


# The G1 table, after GMR's bvh/smplx -> g1 configs: pelvis, hips, knees, feet, torso, shoulders,
# elbows, wrists; stage 1 = positions of pelvis and feet plus orientations, stage 2 = everything.
# The G1 MJCF has no toe link, so the feet are the ankle roll links (the foot bodies).
G1_MATCHES: tuple[BodyMatch, ...] = (
  BodyMatch("pelvis", ("left_hip", "right_hip"), "pelvis", ("left_hip_roll_link", "right_hip_roll_link"),
            (100.0, 10.0), (100.0, 5.0), calibrate_rot="frame"),
  *[m for side in ("left", "right") for m in (
    _pair(side, "hip_roll_link", "hip", "hip", "", (0.0, 10.0), (10.0, 5.0), "hips"),
    _pair(side, "knee_link", "knee", "knee", "", (0.0, 10.0), (10.0, 5.0), "hips"),
    _pair(side, "ankle_roll_link", "ankle", "ankle", "", (100.0, 10.0), (100.0, 50.0), "hips", "flat"),
  )],
  BodyMatch("torso_link", (), "spine3", (), (0.0, 10.0), (0.0, 10.0), calibrate_rot="frame"),
  *[m for side in ("left", "right") for m in (
    _pair(side, "shoulder_yaw_link", "shoulder", "shoulder", "shoulder_roll_link", (0.0, 10.0), (10.0, 5.0),
          "shoulders"),
    _pair(side, "elbow_link", "elbow", "elbow", "", (0.0, 10.0), (10.0, 5.0), "shoulders"),
    # BVH gives no hand orientation (the wrist frame is the forearm's), so wrists join in stage 2 only.
    _pair(side, "wrist_yaw_link", "wrist", "wrist", "", (0.0, 0.0), (10.0, 5.0), "shoulders"),
  )],
)

_HIP_CENTRE = ("left_hip", "right_hip")
_ROBOT_HIP_CENTRE = ("left_hip_roll_link", "right_hip_roll_link")


@dataclass
class GmrConfig:
  """Solver settings (GMR's values where GMR has one).

  Attributes:
    matches: tracked bodies and their costs.
    solver: qpsolvers backend.
    damping: Levenberg-Marquardt damping of ``mink.solve_ik`` (all dofs).
    lm_damping: per-task error-scaled damping of each FrameTask.
    max_iter: IK steps per frame per stage at most.
    min_decrease: a stage stops when its cost-weighted error norm falls by less than this.
    velocity_limit: rad/s on every hinge, over the model timestep per IK step (as GMR).
    calibration_iter: IK steps (no velocity limit) that pose the robot like the neutral frame, and
      again like frame 0 before the motion starts.
  """

  matches: tuple[BodyMatch, ...] = G1_MATCHES
  solver: str = "daqp"
  damping: float = 0.5
  lm_damping: float = 1.0
  max_iter: int = 10
  min_decrease: float = 0.01
  velocity_limit: float = 3.0 * np.pi
  calibration_iter: int = 60


def _require_mink():
  try:
    import mink  # noqa: F401
    import daqp  # noqa: F401
  except ImportError as e:
    raise ImportError(f"the GMR baseline needs mink and daqp ({e.name} is missing): pip install -e '.[bench]'") from None
  return mink


def _mean_point(P: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
  """Mean position of canonical joints: (T, 22, 3) -> (T, 3)."""
  return np.mean([P[:, J(n)] for n in names], axis=0)


def _offset_shift(off_h: np.ndarray, off_r: np.ndarray) -> np.ndarray:
  """Shift (3,) taking the human offset ``off_h`` to the robot's lateral (y) offset and to the robot's
  distance in the sagittal (x-z) plane, keeping the human's sagittal direction (posture)."""
  new = off_h.copy()
  new[1] = off_r[1]
  d_h = float(np.hypot(off_h[0], off_h[2]))
  if d_h > 1e-3:
    new[[0, 2]] *= float(np.hypot(off_r[0], off_r[2])) / d_h
  return new - off_h


def height_scale(human: HumanMotion, robot: Robot) -> float:
  """Uniform human -> robot scale from standing hip height: robot leg length / human leg length.

  GMR multiplies its scale table by actual height / assumed height; we measure both legs instead
  (hip -> knee -> ankle; human: median over the clip, both sides; robot: at q = 0).
  """
  P = human.positions
  rp = robot.rest_body_pos
  idx = robot.model.body_index
  leg_h = 0.0
  for side in ("left", "right"):
    for a, b in ((f"{side}_hip", f"{side}_knee"), (f"{side}_knee", f"{side}_ankle")):
      leg_h += 0.5 * float(np.median(np.linalg.norm(P[:, J(b)] - P[:, J(a)], axis=-1)))
  leg_r = sum(float(np.linalg.norm(rp[idx(b)] - rp[idx(a)]))
              for a, b in (("left_hip_roll_link", "left_knee_link"), ("left_knee_link", "left_ankle_roll_link")))
  if not np.isfinite(leg_h) or leg_h < 1e-3:
    raise ValueError(f"{human.source or 'human motion'}: degenerate skeleton (leg length {leg_h:.4f} m)")
  return leg_r / leg_h


class GmrRetargeter:
  """Per-frame two-stage IK on one robot. Build once per process, call :meth:`retarget` per clip."""

  def __init__(self, robot: Robot, cfg: GmrConfig | None = None):
    mink = _require_mink()
    import mujoco

    self.mink = mink
    self.robot = robot
    self.cfg = cfg or GmrConfig()
    self.model = robot.model.mj_model
    m = robot.model
    hinge = [mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_JOINT, j)
             for j in range(self.model.njnt) if self.model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    if self.model.jnt_type[0] != mujoco.mjtJoint.mjJNT_FREE or hinge != list(m.joint_names):
      raise ValueError(f"{m.mjcf_path}: expected a free root joint followed by the hinges {m.joint_names}")
    self.dt = float(self.model.opt.timestep)
    self.limits = [mink.ConfigurationLimit(self.model),
                   mink.VelocityLimit(self.model, {n: self.cfg.velocity_limit for n in hinge})]
    self.body_ids = [m.body_index(bm.body) for bm in self.cfg.matches]
    # Joint centre of each matched body in its own frame (q = 0); GMR's hand-set position offsets.
    rp, rr = robot.rest_body_pos, robot.rest_body_rot
    self.centre = np.zeros((len(self.cfg.matches), 3))
    for k, bm in enumerate(self.cfg.matches):
      if bm.centre:
        c = np.mean([rp[m.body_index(n)] for n in bm.centre], axis=0)
        self.centre[k] = rr[self.body_ids[k]].T @ (c - rp[self.body_ids[k]])
    self.tasks1 = self._tasks(1)
    self.tasks2 = self._tasks(2)

  def _tasks(self, stage: int) -> list[tuple[int, object]]:
    out = []
    for k, bm in enumerate(self.cfg.matches):
      pc, oc = bm.stage1 if stage == 1 else bm.stage2
      if pc > 0 or oc > 0:
        out.append((k, self.mink.FrameTask(bm.body, "body", position_cost=pc, orientation_cost=oc,
                                           lm_damping=self.cfg.lm_damping)))
    return out

  def _body_rot(self, conf, k: int) -> np.ndarray:
    return conf.data.xmat[self.body_ids[k] + 1].reshape(3, 3)  # MuJoCo ids count the world body

  def _set_targets(self, tasks, pos: np.ndarray, rot: np.ndarray, target_rot: np.ndarray | None = None) -> None:
    """Targets for the body origins: joint centre at ``pos`` (K, 3), body frame at ``rot`` (K, 3, 3);
    ``target_rot`` (default ``rot``) is the orientation target when it differs from the frame used to
    place the joint centre."""
    mink = self.mink
    target_rot = rot if target_rot is None else target_rot
    for k, task in tasks:
      origin = pos[k] - rot[k] @ self.centre[k]
      task.set_target(mink.SE3.from_rotation_and_translation(mink.SO3.from_matrix(target_rot[k]), origin))

  @staticmethod
  def _error(conf, tasks) -> float:
    """Norm of the stacked cost-weighted task errors (what the QP minimises).

    GMR stops on the unweighted norm (m and rad) falling by < 1e-3; with the per-step velocity cap
    that stops too early (on 6 Bandai clips: 6.6 IK steps/frame and 5.5 cm key-point error, against
    11.7 steps/frame and 1.8 cm with this measure and a 0.01 threshold).
    """
    return float(np.sqrt(sum(float(np.sum((task.cost * task.compute_error(conf)) ** 2)) for _, task in tasks)))

  def _stage(self, conf, tasks) -> int:
    mink, cfg = self.mink, self.cfg
    ts = [t for _, t in tasks]
    err = self._error(conf, tasks)
    n = 0
    for n in range(1, cfg.max_iter + 1):
      vel = mink.solve_ik(conf, ts, self.dt, cfg.solver, cfg.damping, limits=self.limits)
      conf.integrate_inplace(vel, self.dt)
      new = self._error(conf, tasks)
      if err - new < cfg.min_decrease:
        break
      err = new
    return n

  def _iterate(self, conf, tasks, n: int, pos: np.ndarray | None = None, rot: np.ndarray | None = None) -> None:
    """Up to ``n`` IK steps without the velocity limit (not part of the motion), until converged.

    With ``pos`` (K, 3), origin targets follow the current body rotations (a joint centre off the body
    origin needs the body's rotation); ``rot`` (K, 3, 3) then gives the orientation targets of tasks
    that have an orientation cost.
    """
    mink, cfg = self.mink, self.cfg
    ts = [t for _, t in tasks]
    err = np.inf
    for _ in range(n):
      if pos is not None:
        cur = np.array([self._body_rot(conf, k) for k in range(len(cfg.matches))])
        self._set_targets(tasks, pos, cur, rot)
      new = self._error(conf, tasks)
      if err - new < 1e-6:
        break
      err = new
      vel = mink.solve_ik(conf, ts, self.dt, cfg.solver, cfg.damping, limits=self.limits[:1])
      conf.integrate_inplace(vel, self.dt)

  def _calibrate(self, conf, pos_c: np.ndarray, rot_hc: np.ndarray) -> np.ndarray:
    """Rotation offsets (K, 3, 3) between human joint frames and robot body frames.

    GMR's ``rot_offset`` quaternions are hand-tuned per skeleton and robot. Here they are computed once
    per clip from a neutral frame c: the robot is posed like frame c by IK on the joint-centre
    positions plus the pelvis, chest and foot orientations (``BodyMatch.calibrate_rot``); rotations
    that these do not fix, such as the forearm twist, stay near q = 0. The offset of body k is then
    R_human,k(c)^T R_body,k(q_c).
    """
    ms = self.cfg.matches
    tasks = [(k, self.mink.FrameTask(bm.body, "body", position_cost=max(bm.stage1[0], bm.stage2[0]),
                                     orientation_cost=max(bm.stage1[1], bm.stage2[1]) if bm.calibrate_rot else 0.0,
                                     lm_damping=self.cfg.lm_damping))
             for k, bm in enumerate(ms) if bm.human_pos or bm.calibrate_rot]
    want = rot_hc.copy()
    for k, bm in enumerate(ms):
      if bm.calibrate_rot == "flat":
        x = rot_hc[k][:, 0]
        want[k] = Rotation.from_euler("z", np.arctan2(x[1], x[0])).as_matrix()
    rest = self.robot.rest_body_rot[self.body_ids]  # (K, 3, 3)
    self._iterate(conf, tasks, self.cfg.calibration_iter, pos=pos_c, rot=want @ rest)
    return np.array([rot_hc[k].T @ self._body_rot(conf, k) for k in range(len(self.cfg.matches))])

  def solve(self, human: HumanMotion) -> tuple[np.ndarray, dict]:
    """qpos (T, 7 + J) of the robot (MuJoCo layout: root xyz, root wxyz, hinges) and solve stats."""
    mink, cfg, m = self.mink, self.cfg, self.robot.model
    T = human.num_frames
    if T < 1:
      raise ValueError(f"{human.source or 'human motion'}: no frames")
    if not (np.isfinite(human.positions).all() and np.isfinite(human.rotations).all()):
      raise ValueError(f"{human.source or 'human motion'}: non-finite joint positions or rotations")
    scale = height_scale(human, self.robot)
    P = human.positions * scale  # uniform scale about the floor origin: the floor stays at z = 0
    K = len(cfg.matches)
    pos = np.zeros((T, K, 3))
    for k, bm in enumerate(cfg.matches):
      if bm.human_pos:
        pos[:, k] = _mean_point(P, bm.human_pos)
    # Constant offsets (see BodyMatch.shift): robot rest geometry minus the scaled human's.
    Rq = Rotation.from_quat(human.rotations.reshape(-1, 4), scalar_first=True).as_matrix().reshape(T, -1, 3, 3)
    rp, rr = self.robot.rest_body_pos, self.robot.rest_body_rot
    pelvis_b = m.body_index(self.robot.config.root_body)
    centre_r = np.mean([rp[m.body_index(n)] for n in _ROBOT_HIP_CENTRE], axis=0)
    centre_h = _mean_point(P, _HIP_CENTRE)
    for k, bm in enumerate(cfg.matches):
      if bm.shift:
        hj, rb, hf = bm.shift
        Rf = Rq[:, J(hf)]
        off_h = np.median(np.einsum("tji,tj->ti", Rf, P[:, J(hj)] - centre_h), axis=0)
        off_r = rr[pelvis_b].T @ (rp[m.body_index(rb)] - centre_r)
        pos[:, k] += Rf @ _offset_shift(off_h, off_r)
    rot_idx = [J(bm.human_rot) for bm in cfg.matches]
    Rh = Rotation.from_quat(human.rotations[:, rot_idx].reshape(-1, 4), scalar_first=True)
    Rh = Rh.as_matrix().reshape(T, K, 3, 3)
    # Neutral frame for the offsets: the first with both feet on the ground (flat feet), else frame 0.
    contacts = detect_contacts(human)
    both = np.flatnonzero(contacts.all(axis=1))
    c = int(both[0]) if len(both) else 0
    # Start: root on the pelvis target facing as the human pelvis, joints at zero.
    q0 = np.zeros(self.model.nq)
    kp = next(k for k, bm in enumerate(cfg.matches) if bm.body == self.robot.config.root_body)
    R0 = Rh[c, kp] @ self.robot.rest_body_rot[self.body_ids[kp]]
    q0[:3] = pos[c, kp] - R0 @ self.centre[kp]
    q0[3:7] = Rotation.from_matrix(R0).as_quat(scalar_first=True)
    q0[7:] = np.clip(0.0, m.joint_range[:, 0], m.joint_range[:, 1])
    conf = mink.Configuration(self.model, q=q0)
    offsets = self._calibrate(conf, pos[c], Rh[c])
    rot = Rh @ offsets  # (T, K, 3, 3) body orientation targets
    # Warm start for frame 0: converge on its full stage-2 targets once (GMR would instead lag behind
    # the velocity limit over the first frames, starting from its default pose).
    self._set_targets(self.tasks2, pos[0], rot[0])
    self._iterate(conf, self.tasks2, cfg.calibration_iter)
    out = np.zeros((T, self.model.nq))
    iters = 0
    for t in range(T):
      self._set_targets(self.tasks1, pos[t], rot[t])
      self._set_targets(self.tasks2, pos[t], rot[t])
      iters += self._stage(conf, self.tasks1)
      iters += self._stage(conf, self.tasks2)
      out[t] = conf.q
    return out, {"scale": scale, "ik_steps": iters, "neutral_frame": c, "contacts": contacts}

  def retarget(self, human: HumanMotion) -> RobotMotion:
    """Human motion -> robot motion (format 1) at the human's fps, floor-shifted like GMR."""
    qpos, stats = self.solve(human)
    robot = self.robot
    root_pos = qpos[:, :3].copy()
    root_rot = Rotation.from_quat(qpos[:, 3:7], scalar_first=True).as_matrix()
    q = qpos[:, 7:]
    # Ground: the lowest body point over the clip (body origins and foot soles) goes to z = 0.
    bpos, brot = robot.model.fk(root_pos, root_rot, q)
    lowest = min(float(bpos[..., 2].min()), float(foot_lowest(robot, bpos, brot).min()))
    root_pos[:, 2] -= lowest
    motion = make_motion(robot, root_pos, root_rot, q, stats["contacts"], human.fps, METHOD, human.source)
    motion.extras.update({"uniform_scale": np.float64(stats["scale"]), "ik_steps": np.int64(stats["ik_steps"]),
                          "neutral_frame": np.int64(stats["neutral_frame"])})
    return motion


_CACHE: dict[str, GmrRetargeter] = {}


def cached_retargeter(robot_spec: str = "unitree_g1_29dof") -> GmrRetargeter:
  """One retargeter per robot per process (mink setup and the robot model are reused across clips)."""
  if robot_spec not in _CACHE:
    from humanoid_retarget.pipeline import cached_robot

    _CACHE[robot_spec] = GmrRetargeter(cached_robot(robot_spec))
  return _CACHE[robot_spec]


def gmr_file(path: str | os.PathLike, robot_spec: str = "unitree_g1_29dof") -> RobotMotion:
  """Load a human file and retarget it with the baseline (the end-to-end unit that is timed)."""
  return cached_retargeter(robot_spec).retarget(load_human(os.fspath(path)))


def gmr_task(task: Task) -> int:
  """Batch unit for :func:`humanoid_retarget.batch.run_batch`: retarget and write ``task.output``."""
  motion = gmr_file(task.input)
  save_motion(task.output, motion)
  return motion.num_frames
