"""Live retargeting: one human frame in, one robot frame out, using only the past (plus an optional
fixed look-ahead of a few frames).

The offline pipeline's own pieces do the work, per frame:

- BVH frames become canonical joints with :func:`~humanoid_retarget.human.bvh_import.calibrate_bvh`
  (mapping, up axis, units, floor; measured once, on the first frame) and
  :func:`~humanoid_retarget.human.bvh_import.bvh_positions`.
- Link targets come from :func:`~humanoid_retarget.retarget.targets.build_targets` on the current frame,
  with the scales, standing ankle height and foot pitch of the first frame (``calib``) and causally
  detected contacts (the hysteresis of :func:`~humanoid_retarget.human.contacts.contact_step`).
- The robot pose comes from :func:`~humanoid_retarget.retarget.kinematic.solve` on that one frame, warm
  started from the previous frame's joints (same weights, posture prior, joint limits with margin and
  self-collision penalties as offline), with forward kinematics for single frames done by MuJoCo's
  ``mj_kinematics`` (the same kinematics as ``RobotModel.fk``; the tests check they agree).

What is causal here and not offline: target smoothing (a one-sided Gaussian window over the past frames,
plus the look-ahead frames if any), the joint rate limit (each frame clamped against the last output,
so no joint moves more than ``max_step_rad`` per 1/30 s), foot pinning (a stance foot is held where its
contact began and released smoothly), and the floor correction (root shifted so stance feet touch the
floor and no foot goes through it, exponentially smoothed, never below the non-penetration bound).

Network trouble is handled one level up (``humanoid-retarget stream``); this object offers
:meth:`StreamingRetargeter.idle` for a stalled source (hold the last pose, then ease to standing) and
:meth:`StreamingRetargeter.set_header` for a source that reconnects with a (possibly new) skeleton.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from dataclasses import dataclass, field

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from humanoid_retarget.human.bvh_import import BvhCalibration, BvhImportConfig, bvh_positions, calibrate_bvh
from humanoid_retarget.human.contacts import ContactConfig, contact_step
from humanoid_retarget.human.motion import NUM_JOINTS, HumanMotion, J
from humanoid_retarget.io.bvh import BvhData, parse_bvh
from humanoid_retarget.retarget.kinematic import KinematicConfig, foot_lowest, solve
from humanoid_retarget.retarget.targets import Targets, build_targets
from humanoid_retarget.robot.config import Robot
from humanoid_retarget.robot.model import RobotModel

_IDENTITY_QUATS = np.tile(np.array([1.0, 0.0, 0.0, 0.0]), (1, NUM_JOINTS, 1))


@dataclass
class StreamConfig:
  """Live settings. Robot, scaling, limits, collision and foot settings are the offline ones.

  Attributes:
    kinematic: the offline solver settings; ``iterations`` is replaced by ``iterations`` below.
    iterations: Gauss-Newton iterations per frame (warm started from the previous frame).
    lookahead: frames of look-ahead (0 = none); adds lookahead / fps of latency.
    contact: foot contact thresholds (the offline ones; hysteresis only, no look-back gap filling).
    pin_blend_s: a released foot's pin correction fades out over this time.
    floor_tau_s: time constant of the causal floor correction filter.
    hold_s: a stalled source's last pose is held this long ...
    ease_speed: ... then the robot eases to the standing pose at this joint speed (rad/s).
    bvh: how to read BVH frames (units, up axis, skeleton preset).
  """

  kinematic: KinematicConfig = field(default_factory=KinematicConfig)
  iterations: int = 3
  lookahead: int = 0
  contact: ContactConfig = field(default_factory=ContactConfig)
  pin_blend_s: float = 0.1
  floor_tau_s: float = 0.04
  hold_s: float = 0.5
  ease_speed: float = 0.8
  bvh: BvhImportConfig = field(default_factory=BvhImportConfig)


@dataclass
class RobotFrame:
  """One live output frame.

  Attributes:
    frame: the input frame number it answers.
    time: that frame's time stamp (s).
    root_pos: (3,) m; root_quat: (4,) wxyz, the root body's pose in the world.
    q: (J,) joint positions, rad, in ``StreamingRetargeter.joint_names`` order.
    contacts: (2,) bool, left and right foot.
    status: 'live', 'hold' (stalled source, last pose held), 'easing' (towards standing), 'standing'.
  """

  frame: int
  time: float
  root_pos: np.ndarray
  root_quat: np.ndarray
  q: np.ndarray
  contacts: np.ndarray
  status: str = "live"


class _MjFkModel(RobotModel):
  """The robot's model with single-frame forward kinematics by ``mujoco.mj_kinematics`` (fast);
  batches still use the numpy FK."""

  def fk(self, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if q.shape[0] != 1:
      return super().fk(root_pos, root_rot, q)
    d = self.__dict__.get("_mj_data")
    if d is None:
      d = self.__dict__["_mj_data"] = mujoco.MjData(self.mj_model)
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(root_rot[0], dtype=np.float64).ravel())
    d.qpos[:3] = root_pos[0]
    d.qpos[3:7] = quat
    d.qpos[7:] = q[0]
    mujoco.mj_kinematics(self.mj_model, d)
    pos = d.xpos[1:][None].copy()
    rot = d.xmat[1:].reshape(1, -1, 3, 3).copy()
    return pos, rot


def live_robot(robot: Robot) -> Robot:
  """The same robot with MuJoCo single-frame FK (see :class:`_MjFkModel`)."""
  m = robot.model
  if m.mj_model.nq != 7 + m.num_joints:
    return robot  # not a free root + hinges layout MuJoCo's qpos maps onto; keep the numpy FK
  fast = _MjFkModel(**{f.name: getattr(m, f.name) for f in dataclasses.fields(RobotModel)})
  out = dataclasses.replace(robot, model=fast)
  if "_reach_cache" in robot.__dict__ or hasattr(robot, "chain_reach"):
    out.__dict__["_reach_cache"] = robot.__dict__.setdefault("_reach_cache", {})
  return out


def parse_bvh_header(text: str, fps: float | None = None) -> BvhData:
  """A BVH header (HIERARCHY ... and optionally MOTION / Frames / Frame Time) -> BvhData with 0 frames."""
  k = text.upper().find("MOTION")
  head = text if k < 0 else text[:k]
  ft = None
  if k >= 0:
    m = re.search(r"Frame\s+Time:\s*([0-9.eE+-]+)", text[k:], re.I)
    if m:
      ft = float(m.group(1))
  if fps:
    ft = 1.0 / fps
  if not ft or not np.isfinite(ft) or ft <= 0:
    ft = 1.0 / 30.0
  n_ch = sum(int(n) for n in re.findall(r"CHANNELS\s+(\d+)", head, re.I))
  stub = f"{head.rstrip()}\nMOTION\nFrames: 1\nFrame Time: {ft!r}\n" + " ".join(["0"] * n_ch) + "\n"
  b = parse_bvh("<stream header>", text=stub)
  return BvhData(joints=b.joints, frame_time=ft, motion=np.zeros((0, n_ch)), path="<stream>")


class StreamingRetargeter:
  """Human frames in, robot frames out (see the module doc).

  Args:
    robot: a loaded robot (``load_robot``).
    header: the source skeleton: BVH header text, a parsed :class:`BvhData` (frames ignored), or None
      for canonical input (push (22, 3) joint positions, metres, Z up, floor at z = 0).
    fps: the input frame rate (default: the BVH header's).
    lookahead: frames of look-ahead (overrides ``cfg.lookahead`` when given).
    cfg: live settings.
  """

  def __init__(self, robot: Robot, header: str | BvhData | None = None, fps: float | None = None,
               lookahead: int | None = None, cfg: StreamConfig | None = None):
    self.cfg = cfg = cfg or StreamConfig()
    self.robot = robot
    self.live = live_robot(robot)
    self.lookahead = int(cfg.lookahead if lookahead is None else lookahead)
    if self.lookahead < 0:
      raise ValueError("lookahead must be >= 0")
    self.bvh: BvhData | None = None
    self.fps = float(fps) if fps else 30.0
    self.set_header(header, fps)
    kc = cfg.kinematic
    self.kcfg = dataclasses.replace(kc, iterations=cfg.iterations)
    if hasattr(kc, "damping_start"):  # warm started: no large early damping (offline starts cold)
      self.kcfg = dataclasses.replace(self.kcfg, damping_start=kc.damping)
    self.tcfg = dataclasses.replace(kc.targets, smooth_sigma_s=0.0, pin_feet=False, contact=cfg.contact)
    m = robot.model
    self.step = np.minimum(robot.velocity_limits / self.fps, kc.max_step_rad * 30.0 / self.fps)
    links = robot.config.links
    self._feet = {side: next(k for k, lk in enumerate(links) if lk.orientation == f"{side}_foot")
                  for side in ("left", "right") if any(lk.orientation == f"{side}_foot" for lk in links)}
    self._root_body = m.body_index(robot.config.root_body)
    self.q: np.ndarray | None = None  # last output joints (J,)
    self.root_pos = np.zeros(3)
    self.root_rot = np.eye(3)
    self.last: RobotFrame | None = None
    self._quat_prev = np.array([1.0, 0.0, 0.0, 0.0])
    self._floor_want = 0.0
    self._floor_shift: float | None = None
    self._stand = self._standing_pose()
    self.frames_in = 0
    self.frames_out = 0
    self.solver_errors = 0
    self._warm_up()

  # ---- source skeleton ------------------------------------------------------------------------------

  @property
  def latency_s(self) -> float:
    """Latency the look-ahead adds (s)."""
    return self.lookahead / self.fps

  @property
  def joint_names(self) -> list[str]:
    return list(self.robot.model.joint_names)

  @property
  def num_channels(self) -> int:
    return 0 if self.bvh is None else int(self.bvh.motion.shape[1])

  def set_header(self, header: str | BvhData | None, fps: float | None = None) -> None:
    """(Re)start on a source skeleton: the human side is calibrated again on the next frame; the robot
    side keeps its state, so the output stays continuous (rate limited) across a reconnection."""
    if isinstance(header, str):
      header = parse_bvh_header(header, fps)
    self.bvh = header
    if fps:
      self.fps = float(fps)
    elif header is not None:
      self.fps = float(header.fps)
    self._bvh_cal: BvhCalibration | None = None
    self._calib: Targets | None = None
    self._raw: collections.deque = collections.deque(maxlen=8 + 2 * self.lookahead + int(self.fps / 10))
    self._meta: collections.deque = collections.deque()
    self._contact = [False, False]
    self._stand_h = (0.0, 0.0)
    self._pin: list[dict] = [{"anchor": None, "delta": np.zeros(3), "release": np.zeros(3), "age": 0, "since": 10**9}
                             for _ in range(2)]

  def canonical(self, frame) -> np.ndarray:
    """One input frame -> canonical joint positions (22, 3). Raises ValueError on a malformed frame."""
    if self.bvh is None:
      P = np.asarray(frame, dtype=np.float64)
      if P.shape != (NUM_JOINTS, 3):
        raise ValueError(f"canonical frame must be ({NUM_JOINTS}, 3), got {P.shape}")
    else:
      if isinstance(frame, (str, bytes)):
        frame = np.array(frame.split(), dtype=np.float64)
      v = np.asarray(frame, dtype=np.float64).ravel()
      if v.size != self.num_channels:
        raise ValueError(f"expected {self.num_channels} channel values, got {v.size}")
      b = BvhData(joints=self.bvh.joints, frame_time=1.0 / self.fps, motion=v[None], path="<stream>")
      if self._bvh_cal is None:
        self._bvh_cal = calibrate_bvh(b, self.cfg.bvh)
      P = bvh_positions(b, self._bvh_cal)[0][0]
    if not np.all(np.isfinite(P)):
      raise ValueError("non-finite joint positions")
    return P

  # ---- per frame ------------------------------------------------------------------------------------

  def push(self, frame, frame_number: int | None = None, time: float | None = None) -> RobotFrame | None:
    """Feed one frame (BVH channel values as an array or a text line, or canonical (22, 3) positions).

    Returns the robot frame for input frame ``n - lookahead`` (None while the look-ahead fills).
    Raises ValueError for a malformed frame (the state is unchanged then).
    """
    P = self.canonical(frame)
    n = self.frames_in if frame_number is None else int(frame_number)
    t = n / self.fps if time is None else float(time)
    self.frames_in += 1
    self._raw.append(P)
    self._meta.append((n, t))
    if len(self._meta) <= self.lookahead:
      return None
    return self._solve_next(future=self.lookahead)

  def flush(self) -> list[RobotFrame]:
    """The frames still held back by the look-ahead (at the end of a stream)."""
    out = []
    while self._meta and len(self._meta) > 0 and self.lookahead > 0:
      fut = len(self._meta) - 1
      out.append(self._solve_next(future=fut))
      if fut == 0:
        break
    return out

  def _solve_next(self, future: int) -> RobotFrame:
    n, t = self._meta.popleft()
    raw = list(self._raw)
    i = len(raw) - 1 - future  # index of the frame being answered
    P = self._smoothed(raw, i)
    c = self._contacts(raw, i)
    h = HumanMotion(fps=self.fps, positions=P[None], rotations=_IDENTITY_QUATS)
    if self._calib is None:
      self._calib = build_targets(h, self.live, self.tcfg, contacts=c[None])
      # Standing heights for the contact detector: the lower foot of the calibration frame.
      ank = min(P[J("left_ankle"), 2], P[J("right_ankle"), 2])
      toe = min(P[J("left_foot"), 2], P[J("right_foot"), 2])
      self._stand_h = (ank, toe)
      c = self._contacts(raw, i)
    tg = build_targets(h, self.live, self.tcfg, calib=self._calib, contacts=c[None])
    self._pin_feet(tg, c)
    q_init = None if self.q is None else self.q[None]
    try:
      root_pos, root_rot, q, _ = solve(tg, self.live, self.fps, self.kcfg, q_init=q_init)
    except (ValueError, np.linalg.LinAlgError):
      if self.q is None:
        raise
      self.solver_errors += 1  # counted and reported; the frame is answered with the last pose
      root_pos, root_rot, q = self.root_pos[None], self.root_rot[None], self.q[None]
    q = q[0]
    if self.q is not None:
      q = np.clip(q, self.q - self.step, self.q + self.step)
    self.q = q
    self.root_pos, self.root_rot = root_pos[0], root_rot[0]
    out_pos = self.root_pos.copy()
    out_pos[2] += self._floor(self.root_pos, self.root_rot, q, c)
    return self._emit(n, t, out_pos, self.root_rot, q, c, "live")

  def _smoothed(self, raw: list[np.ndarray], i: int) -> np.ndarray:
    """Gaussian-weighted mean of the frames around ``i`` (past and the look-ahead frames only)."""
    sigma = self.cfg.kinematic.targets.smooth_sigma_s * self.fps
    if sigma <= 0:
      return raw[i]
    k = np.arange(len(raw)) - i
    w = np.exp(-0.5 * (k / sigma) ** 2)
    w[np.abs(k) > 3 * sigma + 1] = 0.0
    w /= w.sum()
    return np.tensordot(w, np.asarray(raw), axes=1)

  def _contacts(self, raw: list[np.ndarray], i: int) -> np.ndarray:
    """Causal foot contacts with hysteresis: height above standing and speed of the foot's low point."""
    out = np.zeros(2, dtype=bool)
    P = raw[i]
    prev = raw[i - 1] if i > 0 else None
    nxt = raw[i + 1] if i + 1 < len(raw) else None
    for s, side in enumerate(("left", "right")):
      h_ank = P[J(f"{side}_ankle"), 2] - self._stand_h[0]
      h_toe = P[J(f"{side}_foot"), 2] - self._stand_h[1]
      j = J(f"{side}_ankle") if h_ank <= h_toe else J(f"{side}_foot")
      if prev is not None and nxt is not None:
        v = np.linalg.norm(nxt[j, :2] - prev[j, :2]) * self.fps / 2.0
      elif prev is not None:
        v = np.linalg.norm(P[j, :2] - prev[j, :2]) * self.fps
      else:
        v = 0.0
      out[s] = contact_step(self._contact[s], min(h_ank, h_toe), v, self.cfg.contact)
    if self._calib is not None:
      self._contact = [bool(out[0]), bool(out[1])]
    return out

  def _pin_feet(self, tg: Targets, c: np.ndarray) -> None:
    """Causal pinning: a stance foot target is held at its position where the contact began (eased in
    over a few frames), and the correction fades out after release."""
    blend = max(int(round(self.cfg.pin_blend_s * self.fps)), 1)
    for s, side in enumerate(("left", "right")):
      k = self._feet.get(side)
      if k is None:
        continue
      st = self._pin[s]
      p = tg.pos[0, k]
      if c[s]:
        if st["anchor"] is None:
          st["anchor"] = p[:2].copy()
          st["age"] = 0
        st["age"] += 1
        d = np.array([st["anchor"][0] - p[0], st["anchor"][1] - p[1], tg.sole_height - p[2]])
        w = min(1.0, st["age"] / blend)
        st["delta"] = d * w
        st["since"] = 0
      else:
        if st["anchor"] is not None:
          st["release"] = st["delta"]
          st["anchor"] = None
        st["since"] += 1
        if st["since"] <= blend:
          st["delta"] = st["release"] * (1.0 - st["since"] / (blend + 1))
        else:
          st["delta"] = np.zeros(3)
      tg.pos[0, k] = p + st["delta"]

  def _floor(self, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray, c: np.ndarray) -> float:
    """Causal floor correction: the root shift that puts the lowest stance foot on the floor (held
    while no foot is in contact), smoothed, never less than the shift that keeps both feet above it."""
    pos, rot = self.live.model.fk(root_pos[None], root_rot[None], q[None])
    low = foot_lowest(self.robot, pos, rot)[0]
    if c.any():
      self._floor_want = -float(np.min(low[c]))
    need = -float(low.min())
    a = 1.0 - np.exp(-1.0 / (self.cfg.floor_tau_s * self.fps))
    if self._floor_shift is None:
      self._floor_shift = max(self._floor_want, need)
    else:
      self._floor_shift += a * (max(self._floor_want, need) - self._floor_shift)
    return max(self._floor_shift, need)

  def _emit(self, n: int, t: float, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray,
            c: np.ndarray, status: str) -> RobotFrame:
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(root_rot).ravel())
    if np.dot(quat, self._quat_prev) < 0:
      quat = -quat
    self._quat_prev = quat
    fr = RobotFrame(frame=n, time=t, root_pos=root_pos.copy(), root_quat=quat, q=q.copy(),
                    contacts=np.asarray(c, dtype=bool).copy(), status=status)
    self.last = fr
    self.frames_out += 1
    return fr

  def _warm_up(self) -> None:
    """Build the one-off caches (collision pairs, chain reaches) before the first live frame."""
    from humanoid_retarget.human.bvh_import import bvh_to_human
    from humanoid_retarget.human.sample import sample_walk_bvh

    h = bvh_to_human(parse_bvh("<warm-up>", text=sample_walk_bvh())).slice(0, 1)
    tg = build_targets(h, self.live, self.tcfg, contacts=np.ones((1, 2), dtype=bool))
    solve(tg, self.live, self.fps, self.kcfg)

  # ---- stalled source -----------------------------------------------------------------------------

  def _standing_pose(self) -> tuple[np.ndarray, float]:
    """Joints of the safe standing pose (the posture prior's nominal pose within the limits) and the
    root height that puts its feet on the floor."""
    m = self.robot.model
    lo = m.joint_range[:, 0] + self.robot.config.joint_limit_margin
    hi = m.joint_range[:, 1] - self.robot.config.joint_limit_margin
    q = np.clip(np.zeros(m.num_joints), np.minimum(lo, hi), np.maximum(lo, hi))
    pos, rot = self.live.model.fk(np.zeros((1, 3)), np.eye(3)[None], q[None])
    z = -float(foot_lowest(self.robot, pos, rot)[0].min())
    return q, z

  def idle(self, stalled_s: float) -> RobotFrame | None:
    """An output frame while the source is silent for ``stalled_s`` seconds: the last pose held for
    ``hold_s``, then eased to standing (rate limited) at ``ease_speed``. Call it at the output rate.
    None before the first frame."""
    if self.last is None or self.q is None:
      return None
    last = self.last
    if stalled_s < self.cfg.hold_s:
      fr = dataclasses.replace(last, status="hold")
      self.last = fr
      return fr
    q_st, z_st = self._stand
    step = np.minimum(self.step, self.cfg.ease_speed / self.fps)
    q = self.q + np.clip(q_st - self.q, -step, step)
    # Root: level the pelvis about its heading and settle to the standing height.
    R = Rotation.from_quat(last.root_quat, scalar_first=True)
    x = R.as_matrix()[:, 0]
    yaw = Rotation.from_euler("z", np.arctan2(x[1], x[0]))
    dr = (yaw * R.inv()).as_rotvec()
    ang = np.linalg.norm(dr)
    max_ang = self.cfg.ease_speed / self.fps
    if ang > max_ang:
      dr *= max_ang / ang
    R_new = (Rotation.from_rotvec(dr) * R).as_matrix()
    pos = last.root_pos.copy()
    dz = z_st - pos[2]
    pos[2] += np.clip(dz, -0.3 / self.fps, 0.3 / self.fps)
    done = np.allclose(q, q_st, atol=1e-6) and abs(dz) < 1e-4 and ang < 1e-4
    self.q = q
    self.root_pos, self.root_rot = pos.copy(), R_new
    self._floor_shift = 0.0
    return self._emit(last.frame, last.time, pos, R_new, q, np.zeros(2, dtype=bool),
                      "standing" if done else "easing")
