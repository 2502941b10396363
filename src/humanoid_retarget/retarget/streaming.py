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
import math
import re
from dataclasses import dataclass, field

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from humanoid_retarget.human.bvh_import import BvhCalibration, BvhImportConfig, bvh_positions, calibrate_bvh
from humanoid_retarget.human.contacts import ContactConfig, contact_step
from humanoid_retarget.human.motion import NUM_JOINTS, HumanMotion, J
from humanoid_retarget.human.skeleton import fill_missing
from humanoid_retarget.io.bvh import BvhData, parse_bvh, with_ancestors
from humanoid_retarget.retarget.kinematic import KinematicConfig, _push_apart, collision_pairs, foot_lowest, solve
from humanoid_retarget.retarget.targets import Targets, build_targets, foot_links, leg_chains
from humanoid_retarget.robot.config import Robot
from humanoid_retarget.robot.collision import capsule_distance
from humanoid_retarget.robot.model import RobotModel

_BVH_AXES = {"X": 0, "Y": 1, "Z": 2}
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
    fast: the per-frame fast path (precomputed tables, MuJoCo kinematics and Jacobians; see
      :class:`_FrameSolver`); False runs the offline functions on each frame (the reference it is tested
      against; several times slower).
    rate_in_solve: the joint rate limit (against the last output) is enforced inside the solver's
      iterations (fast path), as offline from ``rate_from``, so the root and the other joints re-fit to
      it; it is applied to the result in any case.
    reach_after_pin: the leg-reach fit runs again on the pinned targets (fast path), as offline where feet
      are pinned before it: a stance foot pinned behind a running body lowers the body instead of being
      pulled out of its pin (which made live runs skate at toe-off).
    reach_drop_rate: m/s, how fast that extra lowering may grow or shrink. Unlimited, the body jumped by up
      to 7 cm in one frame at 120 Hz and walking skated more (17 against 10 cm/s); 0.25-2 m/s all help,
      1 m/s skated least on the shared walks (bench_stream clips and two more, 0.2-5.3 cm/s).
    pin_at_robot_foot: a foot entering contact is pinned where the robot's foot is (the last output), so
      holding it needs no motion; False pins it at its current target.
    contact_settle_s: a foot enters contact only if its low point was slow (below the contact entry
      speed) over this much of the past, not just in the current frame; 0 = current frame only.
    pin_xy_at_contact: a foot entering contact is pinned horizontally where it is at once (no jump, as
      the pin starts at the current position) and eased down to the sole height over ``pin_blend_s``;
      False eases the horizontal pin in too (the foot then keeps sliding while the pin fades in).
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
  fast: bool = True
  contact_settle_s: float = 0.05
  pin_xy_at_contact: bool = True
  pin_at_robot_foot: bool = True
  rate_in_solve: bool = True
  reach_after_pin: bool = True
  reach_drop_rate: float = 1.0


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
    self._solver = _FrameSolver(self.live, self.kcfg) if cfg.fast else None
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
    self._fk: _BvhFrameFK | None = None  # fast path tables, built on the first frame
    self._ft: _FrameTargets | None = None
    self._raw: collections.deque = collections.deque(maxlen=8 + 2 * self.lookahead + int(self.fps / 10))
    self._meta: collections.deque = collections.deque()
    self._contact = [False, False]
    self._foot_now: list[np.ndarray | None] = [None, None]
    self._legs: tuple | None = None
    self._drop = 0.0
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
      if self._bvh_cal is None:
        b = BvhData(joints=self.bvh.joints, frame_time=1.0 / self.fps, motion=v[None], path="<stream>")
        self._bvh_cal = calibrate_bvh(b, self.cfg.bvh)
        if self.cfg.fast:
          self._fk = _BvhFrameFK(self.bvh, self._bvh_cal)
      if self._fk is not None:
        P = self._fk(v)
      else:
        b = BvhData(joints=self.bvh.joints, frame_time=1.0 / self.fps, motion=v[None], path="<stream>")
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
    h = None if self._solver is not None and self._calib is not None else \
      HumanMotion(fps=self.fps, positions=P[None], rotations=_IDENTITY_QUATS)
    if self._calib is None:
      self._calib = build_targets(h, self.live, self.tcfg, contacts=c[None])
      # Standing heights for the contact detector: the lower foot of the calibration frame.
      ank = min(P[J("left_ankle"), 2], P[J("right_ankle"), 2])
      toe = min(P[J("left_foot"), 2], P[J("right_foot"), 2])
      self._stand_h = (ank, toe)
      c = self._contacts(raw, i)
      if self._solver is not None:
        self._ft = _FrameTargets(self.live, self._calib)
    try:
      if self._solver is not None:
        tpos, trot = self._ft(P, c)
        self._pin_feet(tpos, self._calib.sole_height, c)
        self._reach_after_pin(tpos, c)
        root_pos, root_rot, q = self._solver.solve(tpos, trot, c, self.q,
                                                   self.step if self.cfg.rate_in_solve else None)
      else:
        tg = build_targets(h, self.live, self.tcfg, calib=self._calib, contacts=c[None])
        self._pin_feet(tg.pos[0], tg.sole_height, c)
        self._reach_after_pin(tg.pos[0], c)
        q_init = None if self.q is None else self.q[None]
        root_pos, root_rot, q, _ = solve(tg, self.live, self.fps, self.kcfg, q_init=q_init)
        root_pos, root_rot, q = root_pos[0], root_rot[0], q[0]
      if not (np.all(np.isfinite(q)) and np.all(np.isfinite(root_pos)) and np.all(np.isfinite(root_rot))):
        raise ValueError("non-finite solution")
    except (ValueError, np.linalg.LinAlgError):
      if self.q is None:
        raise
      self.solver_errors += 1  # counted and reported; the frame is answered with the last pose
      root_pos, root_rot, q = self.root_pos, self.root_rot, self.q
    if self.q is not None:
      q = np.clip(q, self.q - self.step, self.q + self.step)
    self.q = q
    self.root_pos, self.root_rot = root_pos, root_rot
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
    settle = int(round(self.cfg.contact_settle_s * self.fps))
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
      if not self._contact[s] and settle > 0 and i > 0:
        # Entering contact: the low point must have been slow over the settle window, not only now.
        seg = np.asarray(raw[max(i - settle, 0): i + 1])[:, j, :2]
        v = max(v, float(np.sqrt(np.sum(np.diff(seg, axis=0) ** 2, axis=-1)).max()) * self.fps)
      out[s] = contact_step(self._contact[s], min(h_ank, h_toe), v, self.cfg.contact)
    if self._calib is not None:
      self._contact = [bool(out[0]), bool(out[1])]
    return out

  def _pin_feet(self, pos: np.ndarray, sole_height: float, c: np.ndarray) -> None:
    """Causal pinning of the link targets ``pos`` (L, 3), in place: a stance foot target is held at its
    position where the contact began (horizontally at once with ``pin_xy_at_contact``, else eased in; the
    height eased to the sole height over a few frames), and the correction fades out after release."""
    blend = max(int(round(self.cfg.pin_blend_s * self.fps)), 1)
    for s, side in enumerate(("left", "right")):
      k = self._feet.get(side)
      if k is None:
        continue
      st = self._pin[s]
      p = pos[k]
      if c[s]:
        if st["anchor"] is None:
          # Pinned where the robot's foot is (last output), so holding it needs no motion; or at the target.
          a = self._foot_now[s] if self.cfg.pin_at_robot_foot and self._foot_now[s] is not None else p
          st["anchor"] = a[:2].copy()
          st["age"] = 0
        st["age"] += 1
        d = np.array([st["anchor"][0] - p[0], st["anchor"][1] - p[1], sole_height - p[2]])
        w = min(1.0, st["age"] / blend)
        if self.cfg.pin_xy_at_contact:
          d[2] *= w
          st["delta"] = d
        else:
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
      pos[k] = p + st["delta"]

  def _reach_after_pin(self, pos: np.ndarray, c: np.ndarray) -> None:
    """The leg-reach fit again on the pinned targets ``pos`` (L, 3), in place, as offline where feet are
    pinned before it: a stance foot pinned behind a running body lowers the body instead of being pulled out
    of its pin. The extra lowering is rate-limited (``reach_drop_rate``, m/s; offline it is smoothed over
    0.1 s, which a live stream cannot look ahead for); what it cannot yet cover pulls the foot in."""
    if not self.cfg.reach_after_pin:
      return
    if self._legs is None:
      self._legs = _leg_table(self.live)
    legs, not_feet = self._legs
    step = self.cfg.reach_drop_rate / self.fps
    need = _reach_drop(pos, legs, c)
    self._drop = float(np.clip(need, self._drop - step, self._drop + step))
    _apply_reach(pos, legs, not_feet, max(self._drop, 0.0))

  def _floor(self, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray, c: np.ndarray) -> float:
    """Causal floor correction: the root shift that puts the lowest stance foot on the floor (held
    while no foot is in contact), smoothed, never less than the shift that keeps both feet above it."""
    if self._solver is not None:
      low = self._solver.foot_lowest(root_pos, root_rot, q)
      pos, rot = self._solver.d.xpos[1:], self._solver.d.xmat[1:].reshape(-1, 3, 3)
    else:
      pos, rot = self.live.model.fk(root_pos[None], root_rot[None], q[None])
      low = foot_lowest(self.robot, pos, rot)[0]
      pos, rot = pos[0], rot[0]
    for s, side in enumerate(("left", "right")):  # where the robot's feet are now (for the next pin)
      k = self._feet.get(side)
      if k is not None:
        b = self.robot.link_body[k]
        self._foot_now[s] = pos[b] + rot[b] @ self.robot.link_point[k]
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
    if self._solver is not None:
      self._solver.solve(tg.pos[0], tg.rot[0], tg.contacts[0], None)
      _FrameTargets(self.live, tg)(h.positions[0], tg.contacts[0])

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


# ---- the per-frame fast path ---------------------------------------------------------------------------
#
# The offline building blocks are written for whole clips: on one frame their cost is numpy call overhead
# (hundreds of tiny array operations, each a few microseconds) and work that is constant after calibration
# (segment lengths, percentiles, chain reaches, link tables, the collision pair list). The three classes
# below compute the same quantities for a single frame with everything constant precomputed:
# :class:`_BvhFrameFK` (``bvh_positions``), :class:`_FrameTargets` (``build_targets`` with ``calib``) and
# :class:`_FrameSolver` (``solve`` with T = 1, MuJoCo's C kinematics and Jacobians). The tests check each
# against the offline function it stands in for.


class _BvhFrameFK:
  """``bvh_positions`` for one frame: precomputed channel index arrays, one vectorised Euler conversion for
  all joints (every joint padded to three elementary rotations), the tree walked level by level, and only
  the joints the canonical mapping needs (and their ancestors)."""

  def __init__(self, bvh: BvhData, cal: BvhCalibration):
    joints = bvh.joints
    names = bvh.names
    self.cal = cal
    src = {canon: names.index(s) for canon, s in cal.mapping.items()}
    order = with_ancestors(bvh, list(src.values()))
    local = {j: i for i, j in enumerate(order)}
    n = len(order)
    C = bvh.motion.shape[1]
    self.C = C
    self.trans0 = np.array([joints[j].offset for j in order], dtype=np.float64).reshape(n, 3)
    pos_dst, pos_src = [], []
    rot_cols = np.full((n, 3), C, dtype=np.int64)  # channel C is a constant 0 (identity padding)
    rot_axes = np.zeros((n, 3), dtype=np.int64)
    for i, j in enumerate(order):
      rk = 0
      for k, ch in enumerate(joints[j].channels):
        ax = _BVH_AXES[ch[0].upper()]
        if ch[1:].lower() == "position":
          pos_dst.append(3 * i + ax)
          pos_src.append(joints[j].channel_start + k)
        else:
          rot_cols[i, rk] = joints[j].channel_start + k
          rot_axes[i, rk] = ax
          rk += 1
    self.pos_dst = np.array(pos_dst, dtype=np.int64)
    self.pos_src = np.array(pos_src, dtype=np.int64)
    self.rot_cols = rot_cols.ravel()
    # Flat indices into (n * 3, 3, 3) elementary rotations: R_axis = 1 on (a, a), c on (b, b) and (e, e),
    # -s on (b, e), s on (e, b), with b, e the next axes after a.
    K = 3 * n
    a = rot_axes.ravel()
    b, e = (a + 1) % 3, (a + 2) % 3
    base = 9 * np.arange(K)
    self.i_one, self.i_c1, self.i_c2 = base + 4 * a, base + 4 * b, base + 4 * e
    self.i_ms, self.i_s = base + 3 * b + e, base + 3 * e + b
    self.E = np.zeros(9 * K)
    self.vext = np.zeros(C + 1)
    parents = np.array([local.get(joints[j].parent, -1) for j in order], dtype=np.int64)
    depth = np.zeros(n, dtype=np.int64)
    for i in range(n):
      depth[i] = 0 if parents[i] < 0 else depth[parents[i]] + 1
    self.levels = [(np.flatnonzero(depth == d), parents[depth == d]) for d in range(1, int(depth.max()) + 1)]
    self.roots = np.flatnonzero(depth == 0)
    self.canon = np.array([J(c) for c in src], dtype=np.int64)
    self.srcl = np.array([local[s] for s in src.values()], dtype=np.int64)
    self.have = set(cal.mapping)
    self.RT = np.ascontiguousarray(cal.R.T)
    self.pos = np.zeros((n, 3))
    self.rot = np.zeros((n, 3, 3))

  def __call__(self, v: np.ndarray) -> np.ndarray:
    """Channel values (C,) -> canonical positions (22, 3), metres, Z up, floor at 0."""
    vx = self.vext
    vx[: self.C] = v
    th = np.radians(vx[self.rot_cols])
    c, s = np.cos(th), np.sin(th)
    E = self.E
    E[self.i_one] = 1.0
    E[self.i_c1] = c
    E[self.i_c2] = c
    E[self.i_ms] = -s
    E[self.i_s] = s
    E3 = E.reshape(-1, 3, 3, 3)
    local = E3[:, 0] @ E3[:, 1] @ E3[:, 2]  # intrinsic: first channel's rotation outermost
    trans = self.trans0.copy()
    trans.ravel()[self.pos_dst] = v[self.pos_src]
    pos, rot = self.pos, self.rot
    r = self.roots
    pos[r] = trans[r]
    rot[r] = local[r]
    for idx, par in self.levels:
      rp = rot[par]
      pos[idx] = pos[par] + (rp @ trans[idx, :, None])[..., 0]
      rot[idx] = rp @ local[idx]
    P = np.zeros((1, NUM_JOINTS, 3))
    P[0, self.canon] = pos[self.srcl]
    P = P @ self.RT * self.cal.scale
    P, _ = fill_missing(P, self.have)
    P[..., 2] -= self.cal.floor
    return P[0]


def _unit(v: np.ndarray) -> np.ndarray:
  return v / max(float(np.sqrt(v @ v)), 1e-9)


def _frame_from_lateral(y_hint: np.ndarray, z_hint: np.ndarray) -> np.ndarray:
  """``frame_from_lateral`` for one frame."""
  y = _unit(y_hint)
  z = _unit(z_hint - (z_hint @ y) * y)
  out = np.empty((3, 3))
  out[:, 1] = y
  out[:, 2] = z
  out[0, 0] = y[1] * z[2] - y[2] * z[1]  # x = y cross z
  out[1, 0] = y[2] * z[0] - y[0] * z[2]
  out[2, 0] = y[0] * z[1] - y[1] * z[0]
  return out


def _rz_ry(yaw: float, pitch: float) -> np.ndarray:
  """``Rotation.from_euler("ZY", [yaw, pitch]).as_matrix()``."""
  cz, sz, cy, sy = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
  return np.array([[cz * cy, -sz, cz * sy], [sz * cy, cz, sz * sy], [-sy, 0.0, cy]])


class _FrameTargets:
  """``build_targets(one frame, calib=...)`` with the calibration's scales, standing ankle height and foot
  pitch, and everything else that does not change between frames precomputed (link tables, rest offsets,
  chain reaches). No per-frame medians or percentiles (``build_targets`` measures them and then replaces
  them by ``calib``'s). Smoothing and pinning are off, as in the live ``TargetConfig``."""

  _LIMIT = math.radians(70)

  def __init__(self, robot: Robot, calib: Targets):
    links = robot.config.links
    L = len(links)
    index = {lk.name: k for k, lk in enumerate(links)}
    self.L = L
    self.A = np.zeros((L, NUM_JOINTS))  # human point of each link = A @ P
    for k, lk in enumerate(links):
      for n in lk.human:
        self.A[k, J(n)] += 1.0 / len(lk.human)
    rest_pts = np.array([robot.rest_point(k) for k in range(L)])
    self.rest_rot = robot.rest_body_rot[robot.link_body]
    self.orient = [lk.orientation for lk in links]
    self.oriented = [(k, o) for k, o in enumerate(self.orient) if o != "none"]
    self.rot0 = np.broadcast_to(np.eye(3), (L, 3, 3)).copy()
    self.scale = np.asarray(calib.scale, dtype=np.float64)
    self.root_scale, self.ank_h, self.sole = calib.root_scale, calib.ankle_height, calib.sole_height
    self.pitch_ref = calib.foot_pitch
    # Per link: (kind, k, parent, frame link, rigid offset in the frame link's frame, reach-clamp root, reach).
    self.plan = []
    for k, lk in enumerate(links):
      if lk.mode == "root":
        self.plan.append(("root", k, -1, -1, None, -1, 0.0))
      elif lk.mode == "rigid":
        pk, fk = index[lk.parent], index[lk.frame or lk.parent]
        off = self.rest_rot[fk].T @ (rest_pts[k] - rest_pts[pk])
        self.plan.append(("rigid", k, pk, fk, off, -1, 0.0))
      else:
        pk = index[lk.parent]
        gk = index.get(links[pk].parent, -1) if links[pk].mode == "bone" else -1
        reach = 0.995 * robot.chain_reach(gk, k) if gk >= 0 else 0.0
        self.plan.append(("bone", k, pk, -1, None, gk, reach))
    self.feet = foot_links(robot)
    self.sep = robot.config.min_foot_separation
    self.sep_k = 0 if links[0].orientation != "none" else -1
    self.sole_pts = {side: np.ascontiguousarray(robot.foot_points[side].T) for side in self.feet}
    self.legs, self.not_feet = _leg_table(robot)

  def _foot_frame(self, P: np.ndarray, side: str, contact: bool, pitch_ref: float, Rp: np.ndarray) -> np.ndarray:
    v = P[J(f"{side}_foot")] - P[J(f"{side}_ankle")]
    h = math.hypot(v[0], v[1])
    n = max(math.sqrt(h * h + v[2] * v[2]), 1e-9)
    yaw_p = math.atan2(Rp[1, 0], Rp[0, 0])
    d = math.atan2(v[1], v[0]) - yaw_p
    rel = math.atan2(math.sin(d), math.cos(d))
    back = math.cos(rel) < 0.0  # toe behind the pelvis: pitched past vertical, not turned round
    if back:
      rel = math.atan2(-math.sin(rel), -math.cos(rel))
    conf = min(max((h / n - 0.3) / 0.4, 0.0), 1.0)
    rel = min(max(rel, -self._LIMIT), self._LIMIT) * conf
    pitch = 0.0 if contact else math.atan2(-v[2], -h if back else h) - pitch_ref
    return _rz_ry(yaw_p + rel, pitch)

  def __call__(self, P: np.ndarray, contacts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical positions (22, 3) and contacts (2,) -> link target positions (L, 3), rotations (L, 3, 3)."""
    # Pelvis and chest frames (``trunk_frames``).
    up = P[J("spine1")] - P[J("pelvis")]
    if math.sqrt(up @ up) < 1e-3:
      up = P[J("spine3")] - P[J("pelvis")]
    Rp = _frame_from_lateral(P[J("left_hip")] - P[J("right_hip")], up)
    lat_sh = P[J("left_shoulder")] - P[J("right_shoulder")]
    Rj = Rp
    for j, child in ((3, 6), (6, 9), (9, 12)):
      d = P[child] - P[j]
      Rj = _frame_from_lateral(lat_sh, d if math.sqrt(d @ d) >= 1e-3 else Rj[:, 2])
    frames = {"pelvis": Rp, "chest": Rj}
    if "left_foot" in self.orient:
      frames["left_foot"] = self._foot_frame(P, "left", bool(contacts[0]), self.pitch_ref[0], Rp)
    if "right_foot" in self.orient:
      frames["right_foot"] = self._foot_frame(P, "right", bool(contacts[1]), self.pitch_ref[1], Rp)
    L = self.L
    rot = self.rot0.copy()
    for k, o in self.oriented:
      rot[k] = frames[o] @ self.rest_rot[k]
    hp = self.A @ P
    pos = np.zeros((L, 3))
    for kind, k, pk, fk, off, gk, reach in self.plan:
      if kind == "root":
        pos[k] = hp[k] * self.root_scale
        pos[k, 2] = (hp[k, 2] - self.ank_h) * self.root_scale + self.sole
      elif kind == "rigid":
        pos[k] = pos[pk] + rot[fk] @ off
      else:
        pos[k] = pos[pk] + (hp[k] - hp[pk]) * self.scale[k]
        if gk >= 0:
          v = pos[k] - pos[gk]
          pos[k] = pos[gk] + v * min(1.0, reach / max(math.sqrt(v @ v), 1e-9))
    feet = self.feet
    if "left" in feet and "right" in feet and self.sep > 0:
      y = (rot[self.sep_k] if self.sep_k >= 0 else Rp)[:, 1].copy()
      y[2] = 0.0
      y = _unit(y)
      kl, kr = feet["left"], feet["right"]
      push = max(self.sep - (pos[kl] - pos[kr]) @ y, 0.0)
      pos[kl] += 0.5 * push * y
      pos[kr] -= 0.5 * push * y
    for side, k in feet.items():
      pos[k, 2] = max(pos[k, 2], -float((rot[k, 2] @ self.sole_pts[side]).min()))
    # ``_fit_leg_reach`` for one frame (its temporal filters are the identity on one frame).
    _apply_reach(pos, self.legs, self.not_feet, _reach_drop(pos, self.legs, contacts))
    return pos, rot


def _leg_table(robot: Robot) -> tuple[list[tuple[int, int, int, float]], np.ndarray]:
  """Per leg (side, hip link, ankle link, 0.985 x reach) and the links that are not feet, as
  ``_fit_leg_reach`` uses them."""
  feet = set(foot_links(robot).values())
  not_feet = np.array([k for k in range(len(robot.config.links)) if k not in feet], dtype=np.int64)
  return leg_chains(robot), not_feet


def _reach_drop(pos: np.ndarray, legs: list, contacts: np.ndarray) -> float:
  """How far the body must come down so every stance foot of ``pos`` (L, 3) is within its leg's reach."""
  drop = 0.0
  for s, k, ka, reach in legs:
    v = pos[ka] - pos[k]
    need = -v[2] - math.sqrt(max(reach * reach - v[0] * v[0] - v[1] * v[1], 0.0))
    if contacts[s]:
      drop = max(drop, need)
  return drop


def _apply_reach(pos: np.ndarray, legs: list, not_feet: np.ndarray, drop: float) -> None:
  """Lower the body by ``drop`` and pull any foot still out of reach in towards its hip, in place."""
  if drop > 0:
    pos[not_feet, 2] -= drop
  for s, k, ka, reach in legs:
    v = pos[ka] - pos[k]
    pos[ka] = pos[k] + v * min(1.0, reach / max(math.sqrt(v @ v), 1e-9))


def _rotvec(R: np.ndarray, quat: np.ndarray) -> np.ndarray:
  """Rotation vector of a rotation matrix (``Rotation.from_matrix(R).as_rotvec()``), via MuJoCo's robust
  matrix-to-quaternion conversion."""
  mujoco.mju_mat2Quat(quat, R.ravel())
  w, v = quat[0], quat[1:]
  if w < 0:
    w, v = -w, -v
  n = math.sqrt(v @ v)
  return v * (2.0 * math.atan2(n, w) / n) if n > 1e-12 else v * (2.0 / w)


def _expmap(rv: np.ndarray) -> np.ndarray:
  """Rotation matrix of a rotation vector (Rodrigues)."""
  th = math.sqrt(rv @ rv)
  K = np.array([[0.0, -rv[2], rv[1]], [rv[2], 0.0, -rv[0]], [-rv[1], rv[0], 0.0]])
  if th < 1e-12:
    return np.eye(3) + K
  return np.eye(3) + (math.sin(th) / th) * K + ((1.0 - math.cos(th)) / (th * th)) * (K @ K)


class _FrameSolver:
  """:func:`~humanoid_retarget.retarget.kinematic.solve` for one frame (T = 1), warm started: the same
  residuals and weights (link positions, orientations with the stance-foot gain, posture prior), the same
  damped Gauss-Newton with its Levenberg-Marquardt retries and trust region, joint limits with the
  config's margin, the self-collision rows and the final push-apart of overlapping capsules. Kinematics and
  Jacobians come from MuJoCo (``mj_kinematics``, ``mj_comPos``, ``mj_jac``) into preallocated arrays; the
  normal equations are a dense 35 x 35 solve (float64; the batched offline solver forms them in float32).
  The collision rows are computed only for capsule pairs a bounding-sphere test (exact lower bound of the
  capsule distance) cannot rule out, so the pair pruning is the offline one, at a fraction of the cost.
  (The offline temporal smoothness term needs several frames; for one frame it is off there too.)
  """

  def __init__(self, robot: Robot, cfg: KinematicConfig):
    self.robot, self.cfg = robot, cfg
    m = robot.model
    self.mjm = m.mj_model
    self.d = mujoco.MjData(self.mjm)
    links = robot.config.links
    nq = self.nq = m.num_joints
    self.nv = nv = 6 + nq
    lo = m.joint_range[:, 0] + robot.config.joint_limit_margin
    hi = m.joint_range[:, 1] - robot.config.joint_limit_margin
    bad = lo > hi
    mid = 0.5 * (m.joint_range[:, 0] + m.joint_range[:, 1])
    self.lo, self.hi = np.where(bad, mid, lo), np.where(bad, mid, hi)
    self.q_nom = np.clip(np.zeros(nq), self.lo, self.hi)
    self.q_start = np.clip(np.zeros(nq), np.minimum(self.lo + 0.3, self.hi), np.maximum(self.hi - 0.3, self.lo))
    self.wpos = np.array([lk.position_weight for lk in links])
    self.wrot = np.array([lk.orientation_weight for lk in links])
    self.foot_links = [(s, k) for s, side in enumerate(("left", "right"))
                       for k, lk in enumerate(links) if lk.orientation == f"{side}_foot"]
    self.pos_links = np.flatnonzero(self.wpos > 0)
    self.rot_links = np.flatnonzero(self.wrot > 0)
    self.link_body = robot.link_body
    self.link_point = robot.link_point
    self.root_k = next(k for k, lk in enumerate(links) if lk.mode == "root")
    self.root_rest_rotT = robot.rest_body_rot[robot.link_body[self.root_k]].T.copy()
    self.root_rest_pt = robot.rest_point(self.root_k)
    # One mj_jac call per tracked link (rotation Jacobian too where the link has an orientation weight).
    jl = sorted(set(self.pos_links.tolist()) | set(self.rot_links.tolist()))
    self.jac_links = np.array(jl, dtype=np.int64)
    self.Jp = np.zeros((len(jl), 3, nv))
    self.Jr = np.zeros((len(jl), 3, nv))
    want_rot = set(self.rot_links.tolist())
    self.jac_calls = [(i, int(self.link_body[k]) + 1, k in want_rot) for i, k in enumerate(jl)]
    slot = {k: i for i, k in enumerate(jl)}
    self.pos_slot = np.array([slot[k] for k in self.pos_links], dtype=np.int64)
    self.rot_slot = np.array([slot[k] for k in self.rot_links], dtype=np.int64)
    self.jc = np.zeros((2, 3, nv))
    self.posture_w = cfg.posture_weight * robot.posture_weight
    self.quat = np.zeros(4)
    self.qtmp = np.zeros(4)
    # Collision pairs (the offline list) and each capsule's bounding sphere in its body frame.
    cp = self.cp = collision_pairs(robot)
    self.pairs = cp.pairs
    self.cap_mid = 0.5 * (cp.cap_a + cp.cap_b)
    self.cap_bound = 0.5 * np.linalg.norm(cp.cap_b - cp.cap_a, axis=-1) + cp.cap_r
    self.near = cfg.collision_margin + 0.05
    self.iterations = cfg.iterations
    self.rows_pos = 3 * len(self.pos_links)
    self.rows_rot = 3 * len(self.rot_links)

  # ---- kinematics ----
  def fk(self, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray, jac: bool = False):
    """Body positions (B, 3) and rotations (B, 3, 3) (views of MuJoCo's arrays, valid until the next call)."""
    d = self.d
    mujoco.mju_mat2Quat(self.quat, root_rot.ravel())
    d.qpos[:3] = root_pos
    d.qpos[3:7] = self.quat
    d.qpos[7:] = q
    mujoco.mj_kinematics(self.mjm, d)
    if jac:
      mujoco.mj_comPos(self.mjm, d)
    return d.xpos[1:], d.xmat[1:].reshape(-1, 3, 3)

  def point_jac(self, out: np.ndarray, point: np.ndarray, body: int, root_rot: np.ndarray,
                out_rot: np.ndarray | None = None) -> None:
    """Jacobian of a world point fixed to ``body`` (model body index) w.r.t. the solver's parameters (root
    translation, world-frame root rotation vector, joints), into ``out`` (3, nv). MuJoCo's free-joint
    angular velocity is in the root body's frame: those columns are turned to world (times R^T)."""
    mujoco.mj_jac(self.mjm, self.d, out, out_rot, point, body + 1)
    out[:, 3:6] = out[:, 3:6] @ root_rot.T
    if out_rot is not None:
      out_rot[:, 3:6] = out_rot[:, 3:6] @ root_rot.T

  def _link_jacobians(self, pts: np.ndarray, root_rot: np.ndarray) -> None:
    m, d, Jp, Jr = self.mjm, self.d, self.Jp, self.Jr
    for i, b, rot in self.jac_calls:
      mujoco.mj_jac(m, d, Jp[i], Jr[i] if rot else None, pts[i], b)
    RT = root_rot.T
    Jp[:, :, 3:6] = Jp[:, :, 3:6] @ RT
    if len(self.rot_slot):
      Jr[self.rot_slot, :, 3:6] = Jr[self.rot_slot, :, 3:6] @ RT

  def _segments(self, pos: np.ndarray, rot: np.ndarray):
    cp = self.cp
    R = rot[cp.cap_body]
    p = pos[cp.cap_body]
    a = p + (R @ cp.cap_a[:, :, None])[..., 0]
    b = p + (R @ cp.cap_b[:, :, None])[..., 0]
    return a, b

  def candidates(self, pos: np.ndarray, rot: np.ndarray, pairs: np.ndarray, below: float) -> np.ndarray:
    """The pairs whose capsule distance may be below ``below`` (bounding spheres; never misses one)."""
    cp = self.cp
    c = pos[cp.cap_body] + (rot[cp.cap_body] @ self.cap_mid[:, :, None])[..., 0]
    i, j = pairs[:, 0], pairs[:, 1]
    lb = np.linalg.norm(c[i] - c[j], axis=-1) - self.cap_bound[i] - self.cap_bound[j]
    return pairs[lb < below]

  def distances(self, pos: np.ndarray, rot: np.ndarray, pairs: np.ndarray):
    a, b = self._segments(pos, rot)
    i, j = pairs[:, 0], pairs[:, 1]
    r = self.cp.cap_r
    return capsule_distance(a[i], b[i], r[i], a[j], b[j], r[j])

  # ---- the solve ----
  def solve(self, tpos: np.ndarray, trot: np.ndarray, contacts: np.ndarray, q_init: np.ndarray | None,
            step: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets (L, 3), (L, 3, 3), contacts (2,), previous joints (J,) or None -> root_pos, root_rot, q.

    ``step`` (J,): the joint rate limit against ``q_init``, enforced inside the iterations (as the offline
    solver does from ``rate_from``), so the root and the joints that are not at their limit re-fit to it
    (a limit applied only afterwards lets pinned feet slide). None: no rate limit here."""
    cfg = self.cfg
    nv = self.nv
    W_pos, W_rot = self.wpos.copy(), self.wrot.copy()
    for s, k in self.foot_links:
      gain = 1.0 + (cfg.contact_weight_gain - 1.0) * float(contacts[s])
      W_pos[k] *= gain
      W_rot[k] *= gain
    wp = W_pos[self.pos_links][:, None]
    wr = W_rot[self.rot_links][:, None]
    tp = tpos[self.pos_links]
    trT = np.swapaxes(trot[self.rot_links], -1, -2)
    root_rot = trot[self.root_k] @ self.root_rest_rotT
    root_pos = tpos[self.root_k] - root_rot @ self.root_rest_pt
    q = self.q_start.copy() if q_init is None else np.clip(q_init, self.lo, self.hi)
    lo, hi = self.lo, self.hi
    if step is not None and q_init is not None:
      lo, hi = np.maximum(lo, q - step), np.minimum(hi, q + step)
    lb_pos, lb_body = self.link_point[self.jac_links], self.link_body[self.jac_links]
    active = self.pairs
    lam = max(cfg.damping_start, cfg.damping)
    posture_w2 = self.posture_w ** 2
    prev = None
    for it in range(self.iterations):
      pos, rot = self.fk(root_pos, root_rot, q, jac=True)
      pts = pos[lb_body] + (rot[lb_body] @ lb_pos[:, :, None])[..., 0]
      self._link_jacobians(pts, root_rot)
      rows_J = [(self.Jp[self.pos_slot] * wp[..., None]).reshape(-1, nv)]
      rows_r = [((pts[self.pos_slot] - tp) * wp).ravel()]
      n_rows = self.rows_pos + self.rows_rot
      if len(self.rot_links):
        Rc = rot[self.link_body[self.rot_links]]
        e = np.array([_rotvec(Rc[i] @ trT[i], self.qtmp) for i in range(len(self.rot_links))])
        rows_J.append((self.Jr[self.rot_slot] * wr[..., None]).reshape(-1, nv))
        rows_r.append((e * wr).ravel())
      if len(active) and it >= 1:
        if it == 1:
          cand = self.candidates(pos, rot, active, self.near)
          d, c1, c2 = self.distances(pos, rot, cand)
          keep = d < self.near
          active, d, c1, c2 = cand[keep], d[keep], c1[keep], c2[keep]
        else:
          d, c1, c2 = self.distances(pos, rot, active)
        n_rows += len(active)
        viol = np.flatnonzero(d < cfg.collision_margin)
        if len(viol):
          cb = self.cp.cap_body
          rows = np.empty((len(viol), nv))
          for r_i, p_i in enumerate(viol):
            n = c1[p_i] - c2[p_i]
            n /= max(math.sqrt(n @ n), 1e-9)
            self.point_jac(self.jc[0], c1[p_i], int(cb[active[p_i, 0]]), root_rot)
            self.point_jac(self.jc[1], c2[p_i], int(cb[active[p_i, 1]]), root_rot)
            rows[r_i] = n @ (self.jc[0] - self.jc[1])
          rows_J.append(-cfg.collision_weight * rows)
          rows_r.append(cfg.collision_weight * (cfg.collision_margin - d[viol]))
      Jall = np.concatenate(rows_J, axis=0)
      rall = np.concatenate(rows_r)
      dq0 = q - self.q_nom
      cost = float(rall @ rall + (posture_w2 * dq0) @ dq0)
      if prev is not None and prev["n"] == n_rows:
        worse = cost > prev["cost"] * (1.0 + 1e-9)
        lam = lam * 8.0 if worse else max(lam * 0.3, cfg.damping)
        if worse:
          root_pos, root_rot, q = prev["root_pos"], prev["root_rot"], prev["q"]
          Jall, rall, cost = prev["J"], prev["r"], prev["cost"]
      prev = {"cost": cost, "root_pos": root_pos, "root_rot": root_rot, "q": q, "J": Jall, "r": rall,
              "n": n_rows}
      H = Jall.T @ Jall
      g = Jall.T @ rall
      idx = np.arange(6, nv)
      H[idx, idx] += posture_w2 + lam
      H[[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]] += lam
      g[6:] += posture_w2 * (q - self.q_nom)
      dx = -np.linalg.solve(H, g)
      big = max(np.abs(dx[3:]).max() / cfg.max_iter_step, np.abs(dx[:3]).max() / 0.1)
      if big > 1.0:
        dx /= big
      root_pos = root_pos + dx[:3]
      root_rot = _expmap(dx[3:6]) @ root_rot
      q = np.clip(q + dx[6:], lo, hi)
    if cfg.collision_cleanup and len(self.pairs):
      pos, rot = self.fk(root_pos, root_rot, q)
      cand = self.candidates(pos, rot, self.pairs, 0.0)
      if len(cand) and (self.distances(pos, rot, cand)[0] < 0.0).any():
        q = _push_apart(self.robot, self.cp, root_pos[None], root_rot[None], q[None], self.lo, self.hi,
                        cfg.collision_margin)[0]
    return root_pos, root_rot, np.clip(q, self.lo, self.hi)

  def foot_lowest(self, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``foot_lowest`` for one configuration: (2,) lowest sole point height of the left and right foot."""
    pos, rot = self.fk(root_pos, root_rot, q)
    out = np.empty(2)
    for s, side in enumerate(("left", "right")):
      b = self.robot.foot_bodies[side]
      out[s] = pos[b, 2] + (rot[b, 2] @ self.robot.foot_points[side].T).min()
    return out
