"""BeyondMimic's motion-tracking task as a vectorised CPU environment over N MuJoCo copies of the G1.

One :meth:`TrackingEnv.step` advances all N environments by one 50 Hz control step (``BatchSim``:
``mujoco.rollout`` threads, 4 physics steps of 5 ms) and returns numpy arrays. Shapes: N envs, J = 29
joints, K = 14 tracked bodies (``terminations.TRACKED_BODIES``), anchor = torso.

Action (N, J): joint-position offsets around the reference's next frame, scaled per joint by
``0.25 * effort / kp`` (BeyondMimic's scale), sent as position targets to mjlab's PD actuators.

Observations (``policy`` group, (N, 5 J + 15) = (N, 160)):
  reference joint positions and velocities of the next frame (2 J), anchor position error (3) and
  orientation error (6, first two columns of R_robot^T R_ref) in the robot's anchor frame, pelvis linear
  and angular velocity in the pelvis frame (6), joint positions relative to the default pose and joint
  velocities (2 J), last action (J). The ``critic`` group adds the noise-free tracked body positions (3 K)
  and orientations (6 K) relative to the robot's anchor frame.

Rewards (BeyondMimic's terms and weights; kernels exp(-err / sigma^2), err = mean over bodies of the
squared error): anchor position (0.5, sigma 0.3 m) and orientation (0.5, 0.4 rad), body positions
(1.0, 0.3) and orientations (1.0, 0.4) of the reference re-anchored at the robot's anchor (yaw and
horizontal position), body linear (1.0, 1.0 m/s) and angular velocities (1.0, 3.14 rad/s); action rate
(-0.1, |a_t - a_{t-1}|^2), joint limits (-10, radians beyond 90% of the range), self-collisions (-0.1 per
contact between two robot geoms). The sum is multiplied by the control period (IsaacLab's convention).
The kernels' sigmas are multiplied by a factor that decays linearly from ``sigma_loose`` to
``sigma_tight`` over ``sigma_decay_steps`` environment steps (NMR's schedule: loose early, tight late).

Terminations: BeyondMimic's (``terminations.termination_mask``): anchor height error > 0.25 m, anchor
projected-gravity z error > 0.8, ankle or wrist height error > 0.25 m. Episodes are truncated (time out)
when the clip's last frame is reached.

Start times are sampled per clip from bins of ``bin_s`` seconds, weighted by each bin's recent failure
rate (terminations per visited step, exponentially forgotten), smoothed towards earlier bins and mixed
with a uniform share (BeyondMimic's adaptive sampling). Light domain randomisation: foot friction and
torso mass (drawn per model variant, each env draws a variant at reset), velocity pushes every 1-3 s,
joint encoder offsets (the policy sees q + bias and its targets are shifted by -bias).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import mujoco
import numpy as np

from humanoid_retarget.io.motion import RobotMotion
from humanoid_retarget.sim.model import SimModel
from humanoid_retarget.sim.parallel import BatchSim
from humanoid_retarget.sim.reference import Reference, make_reference
from humanoid_retarget.sim.terminations import (
  ANCHOR_BODY, END_EFFECTORS, TRACKED_BODIES, TerminationConfig, termination_mask,
)

# ----------------------------------------------------------------------------- quaternions (wxyz, numpy)


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Hamilton product of (..., 4) wxyz quaternions."""
  aw, ax, ay, az = np.moveaxis(a, -1, 0)
  bw, bx, by, bz = np.moveaxis(b, -1, 0)
  return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                   aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quat_conj(q: np.ndarray) -> np.ndarray:
  return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_apply(q: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Rotate vectors (..., 3) by unit quaternions (..., 4)."""
  w = q[..., :1]
  u = q[..., 1:]
  t = 2.0 * np.cross(u, v)
  return v + w * t + np.cross(u, t)


def quat_to_mat(q: np.ndarray) -> np.ndarray:
  """(..., 4) wxyz -> (..., 3, 3)."""
  w, x, y, z = np.moveaxis(q, -1, 0)
  return np.stack([
    np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
    np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
    np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
  ], -2)


def yaw_quat(q: np.ndarray) -> np.ndarray:
  """The yaw-only part (rotation about world z) of (..., 4) quaternions."""
  w, x, y, z = np.moveaxis(q, -1, 0)
  yaw = np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
  out = np.zeros(q.shape)
  out[..., 0] = np.cos(0.5 * yaw)
  out[..., 3] = np.sin(0.5 * yaw)
  return out


def quat_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Rotation angle (...,) in radians between (..., 4) quaternions a and b."""
  d = quat_mul(quat_conj(a), b)
  return 2.0 * np.arctan2(np.linalg.norm(d[..., 1:], axis=-1), np.abs(d[..., 0]))


# ----------------------------------------------------------------------------- configuration


@dataclass
class RewardConfig:
  """Weights and kernel widths (BeyondMimic's G1 tracking values)."""

  anchor_pos_w: float = 0.5
  anchor_pos_sigma: float = 0.3
  anchor_ori_w: float = 0.5
  anchor_ori_sigma: float = 0.4
  body_pos_w: float = 1.0
  body_pos_sigma: float = 0.3
  body_ori_w: float = 1.0
  body_ori_sigma: float = 0.4
  body_lin_vel_w: float = 1.0
  body_lin_vel_sigma: float = 1.0
  body_ang_vel_w: float = 1.0
  body_ang_vel_sigma: float = 3.14
  action_rate_w: float = -0.1
  joint_limit_w: float = -10.0
  soft_limit_factor: float = 0.9
  self_collision_w: float = -0.1


@dataclass
class DomainRandConfig:
  """Light domain randomisation. Ranges are (low, high); pushes add a velocity to the pelvis."""

  enabled: bool = True
  variants: int = 8  # randomised model copies (copying the G1 model costs ~0.15 s each)
  foot_friction: tuple[float, float] = (0.4, 1.2)
  torso_mass_add: tuple[float, float] = (-1.0, 2.0)  # kg
  push_interval_s: tuple[float, float] = (1.0, 3.0)
  push_lin_xy: float = 0.3  # m/s, uniform in +-
  push_lin_z: float = 0.1
  push_ang: float = 0.3  # rad/s, uniform in +-
  joint_offset: float = 0.01  # rad, encoder bias uniform in +-


@dataclass
class ObsNoiseConfig:
  """Uniform noise (+-) on the policy observations (the critic sees clean values)."""

  enabled: bool = True
  anchor_pos: float = 0.05
  anchor_ori: float = 0.02
  lin_vel: float = 0.1
  ang_vel: float = 0.1
  joint_pos: float = 0.01
  joint_vel: float = 0.5


@dataclass
class SamplingConfig:
  """Adaptive start-time sampling (BeyondMimic-like)."""

  adaptive: bool = True
  bin_s: float = 0.5
  uniform_ratio: float = 0.2  # share of starts drawn uniformly over the bins
  kernel_size: int = 2  # a failure in bin i also raises bins i-1 .. i-k+1
  kernel_lambda: float = 0.8
  decay: float = 0.999  # per control step: forgetting of failure and visit counts


@dataclass
class TrackingEnvConfig:
  num_envs: int = 64
  nthread: int = 2
  action_scale: float = 0.25  # times effort / kp per joint
  action_clip: float = 10.0
  rewards: RewardConfig = field(default_factory=RewardConfig)
  termination: TerminationConfig = field(default_factory=TerminationConfig)
  randomization: DomainRandConfig = field(default_factory=DomainRandConfig)
  noise: ObsNoiseConfig = field(default_factory=ObsNoiseConfig)
  sampling: SamplingConfig = field(default_factory=SamplingConfig)
  sigma_loose: float = 2.0  # kernel-width factor at the start of training
  sigma_tight: float = 1.0  # ... at the end of the decay
  sigma_decay_steps: int = 0  # control steps (per env) of the linear decay; 0: always tight
  init_pos_noise: float = 0.02  # m, root xy at reset
  init_rot_noise: float = 0.05  # rad, root roll/pitch/yaw at reset
  init_joint_noise: float = 0.05  # rad
  init_vel_noise: float = 0.1  # m/s and rad/s on the root, rad/s on joints
  evaluation: bool = False  # start every env at frame 0 of clip (env % clips), no noise, no randomisation
  seed: int = 0

  def for_evaluation(self, num_envs: int) -> TrackingEnvConfig:
    """A copy for deterministic evaluation: strict terminations, no noise, randomisation or pushes."""
    c = copy.deepcopy(self)
    c.num_envs = num_envs
    c.evaluation = True
    c.noise.enabled = False
    c.randomization.enabled = False
    c.sigma_decay_steps = 0
    return c


# ----------------------------------------------------------------------------- reference tables


@dataclass
class ReferenceTable:
  """All clips' reference frames concatenated (F frames in total, C clips)."""

  qpos: np.ndarray  # (F, nq)
  qvel: np.ndarray  # (F, nv)
  body_pos: np.ndarray  # (F, K, 3) tracked bodies, world
  body_quat: np.ndarray  # (F, K, 4)
  body_lin_vel: np.ndarray  # (F, K, 3) world
  body_ang_vel: np.ndarray  # (F, K, 3) world
  start: np.ndarray  # (C,) first frame of each clip
  length: np.ndarray  # (C,) frames of each clip
  names: list[str]


def _raw_kinematics(m: mujoco.MjModel, d: mujoco.MjData, qpos: np.ndarray, qvel: np.ndarray, bodies: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Positions (K, 3), quaternions (K, 4), com-based velocities ``cvel`` (K, 6) and their reference points
  (K, 3) of ``bodies``; leaves ``d`` with kinematics done (ready for ``mj_collision``)."""
  d.qpos[:] = qpos
  d.qvel[:] = qvel
  mujoco.mj_kinematics(m, d)
  mujoco.mj_comPos(m, d)
  mujoco.mj_comVel(m, d)
  return d.xpos[bodies], d.xquat[bodies], d.cvel[bodies], d.subtree_com[m.body_rootid[bodies]]


def _point_velocity(pos: np.ndarray, cvel: np.ndarray, com: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """World linear velocity at ``pos`` and angular velocity from MuJoCo's ``cvel`` [angular, linear at com]."""
  ang = cvel[..., :3]
  return cvel[..., 3:] + np.cross(ang, pos - com), ang.copy()


def body_kinematics(m: mujoco.MjModel, d: mujoco.MjData, qpos: np.ndarray, qvel: np.ndarray, bodies: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Positions (K, 3), quaternions (K, 4), world linear (K, 3) and angular (K, 3) velocities of ``bodies``
  (MuJoCo body ids) at one state."""
  pos, quat, cvel, com = _raw_kinematics(m, d, qpos, qvel, bodies)
  lin, ang = _point_velocity(pos, cvel, com)
  return pos.copy(), quat.copy(), lin, ang


def build_reference_table(sim: SimModel, refs: list[Reference], names: list[str]) -> ReferenceTable:
  m = sim.model
  d = mujoco.MjData(m)
  bodies = np.array([m.body(n).id for n in TRACKED_BODIES])
  qpos = np.concatenate([r.qpos for r in refs])
  qvel = np.concatenate([r.qvel for r in refs])
  F, K = qpos.shape[0], len(bodies)
  bp, bq, bl, ba = np.zeros((F, K, 3)), np.zeros((F, K, 4)), np.zeros((F, K, 3)), np.zeros((F, K, 3))
  for f in range(F):
    bp[f], bq[f], bl[f], ba[f] = body_kinematics(m, d, qpos[f], qvel[f], bodies)
  length = np.array([r.num_frames for r in refs])
  start = np.concatenate([[0], np.cumsum(length)[:-1]])
  return ReferenceTable(qpos, qvel, bp, bq, bl, ba, start, length, list(names))


# ----------------------------------------------------------------------------- adaptive sampling


class AdaptiveStartSampler:
  """Start frames drawn from time bins weighted by their failure rate.

  Bins of ``bin_frames`` frames per clip; ``visits`` and ``fails`` are exponentially forgotten counts of
  control steps spent in and terminations that happened in each bin. Bin weights: the failure rate
  ``fails / visits`` smoothed towards earlier bins (kernel lambda^k, k < kernel_size), normalised, mixed
  with a uniform share. Shapes: the bins of all clips are concatenated (nbins total).
  """

  def __init__(self, lengths: np.ndarray, bin_frames: int, cfg: SamplingConfig, rng: np.random.Generator):
    self.cfg = cfg
    self.rng = rng
    self.bin_frames = max(int(bin_frames), 1)
    # Starts may be any frame but the last (an episode needs one step).
    self.nb = np.maximum(np.ceil((np.asarray(lengths) - 1) / self.bin_frames).astype(int), 1)
    self.offset = np.concatenate([[0], np.cumsum(self.nb)[:-1]])
    self.lengths = np.asarray(lengths)
    total = int(self.nb.sum())
    self.visits = np.zeros(total)
    self.fails = np.zeros(total)

  def bin_of(self, clip: np.ndarray, frame: np.ndarray) -> np.ndarray:
    b = np.minimum(np.asarray(frame) // self.bin_frames, self.nb[clip] - 1)
    return self.offset[clip] + b

  def update(self, clip: np.ndarray, frame: np.ndarray, failed: np.ndarray) -> None:
    """Record one control step of every env: its clip/frame (N,) and whether it terminated (N,)."""
    self.visits *= self.cfg.decay
    self.fails *= self.cfg.decay
    b = self.bin_of(clip, frame)
    np.add.at(self.visits, b, 1.0)
    np.add.at(self.fails, b[failed], 1.0)

  def probabilities(self, clip: int) -> np.ndarray:
    """(nb,) start-bin probabilities of ``clip``."""
    s = slice(self.offset[clip], self.offset[clip] + self.nb[clip])
    n = self.nb[clip]
    uniform = np.full(n, 1.0 / n)
    if not self.cfg.adaptive:
      return uniform
    rate = self.fails[s] / np.maximum(self.visits[s], 1.0)
    k = np.arange(max(self.cfg.kernel_size, 1))
    kern = self.cfg.kernel_lambda ** k
    smooth = np.zeros(n)
    for i in range(n):
      hi = min(i + len(kern), n)
      smooth[i] = np.dot(kern[:hi - i], rate[i:hi])
    if smooth.sum() <= 0:
      return uniform
    u = self.cfg.uniform_ratio
    return (1.0 - u) * smooth / smooth.sum() + u * uniform

  def sample(self, clip: np.ndarray) -> np.ndarray:
    """Start frames (N,) for envs on clips ``clip`` (N,)."""
    out = np.zeros(len(clip), dtype=np.int64)
    for c in np.unique(clip):
      idx = np.flatnonzero(clip == c)
      bins = self.rng.choice(self.nb[c], size=len(idx), p=self.probabilities(int(c)))
      lo = bins * self.bin_frames
      hi = np.minimum(lo + self.bin_frames, self.lengths[c] - 1)
      out[idx] = lo + (self.rng.random(len(idx)) * np.maximum(hi - lo, 1)).astype(np.int64)
      out[idx] = np.minimum(out[idx], max(self.lengths[c] - 2, 0))
    return out


# ----------------------------------------------------------------------------- the environment


class _VariantBatchSim(BatchSim):
  """``BatchSim`` whose envs may each use one of several model variants (domain randomisation)."""

  def __init__(self, sim: SimModel, num_envs: int, nthread: int, variants: list[mujoco.MjModel]):
    super().__init__(sim, num_envs, nthread)
    self.variants = variants
    self.variant = np.zeros(num_envs, dtype=np.int64)

  def step(self, ctrl: np.ndarray) -> np.ndarray:
    if len(self.variants) == 1:
      return super().step(ctrl)
    dec = self.sim.config.decimation
    c = np.repeat(np.asarray(ctrl, dtype=np.float64)[:, None, :], dec, axis=1)
    models = [self.variants[v] for v in self.variant]
    if self._roll is not None:
      self._roll.rollout(models, self.datas, self.state, c, nstep=dec, state=self._out)
    else:
      from mujoco import rollout
      rollout.rollout(models, self.datas[0], self.state, c, nstep=dec, state=self._out)
    self.state[:] = self._out[:, -1]
    return self.state


@dataclass
class StepResult:
  """What :meth:`TrackingEnv.step` returns. Shapes (N, ...)."""

  obs: dict[str, np.ndarray]
  reward: np.ndarray  # (N,)
  terminated: np.ndarray  # (N,) bool: a BeyondMimic termination
  truncated: np.ndarray  # (N,) bool: reached the clip's last frame
  terms: dict[str, np.ndarray]  # unweighted reward terms (N,)
  body_pos: np.ndarray  # (N, K, 3) tracked bodies after the step, before any reset


class TrackingEnv:
  """N tracking environments over one or more clips (each reset draws a clip uniformly)."""

  def __init__(self, sim: SimModel, motions: list[RobotMotion] | list[Reference], cfg: TrackingEnvConfig,
               names: list[str] | None = None):
    self.sim = sim
    self.cfg = cfg
    self.m = sim.model
    self.N = cfg.num_envs
    self.J = sim.num_joints
    self.dt = sim.control_dt
    self.rng = np.random.default_rng(cfg.seed)
    refs = [r if isinstance(r, Reference) else make_reference(r, sim) for r in motions]
    if not refs:
      raise ValueError("TrackingEnv needs at least one motion")
    if any(r.num_frames < 3 for r in refs):
      raise ValueError("every clip needs at least 3 frames at the control rate")
    self.ref = build_reference_table(sim, refs, names or [f"clip{i}" for i in range(len(refs))])
    self.num_clips = len(refs)
    self.tracked = np.array([self.m.body(n).id for n in TRACKED_BODIES])
    self.anchor = TRACKED_BODIES.index(ANCHOR_BODY)
    self.pelvis = TRACKED_BODIES.index("pelvis")
    self.ees = np.array([TRACKED_BODIES.index(n) for n in END_EFFECTORS])
    self.action_scale = cfg.action_scale * sim.effort / sim.kp  # (J,)
    jid = self.m.actuator_trnid[:, 0]
    lo, hi = self.m.jnt_range[jid, 0], self.m.jnt_range[jid, 1]
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo) * cfg.rewards.soft_limit_factor
    self.soft_lo, self.soft_hi = mid - half, mid + half
    self.joint_lo, self.joint_hi = lo, hi
    self.default_joint_pos = self.m.qpos0[sim.qpos_adr].copy()
    self.floor_geom = mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    self.sampler = AdaptiveStartSampler(self.ref.length, int(round(cfg.sampling.bin_s / self.dt)), cfg.sampling,
                                        self.rng)
    self.bsim = _VariantBatchSim(sim, self.N, cfg.nthread, self._model_variants())
    self._kin_data = mujoco.MjData(self.m)
    self._blank_state = self.bsim.state[0].copy()
    # per-env state
    self.clip = np.zeros(self.N, dtype=np.int64)
    self.frame = np.zeros(self.N, dtype=np.int64)  # current reference frame (clip-local)
    self.episode_length = np.zeros(self.N, dtype=np.int64)
    self.last_action = np.zeros((self.N, self.J))
    self.joint_bias = np.zeros((self.N, self.J))
    self.push_timer = np.zeros(self.N)
    self.common_step_counter = 0
    K = len(self.tracked)
    self.body_pos = np.zeros((self.N, K, 3))
    self.body_quat = np.zeros((self.N, K, 4))
    self.body_lin_vel = np.zeros((self.N, K, 3))
    self.body_ang_vel = np.zeros((self.N, K, 3))
    self.self_contacts = np.zeros(self.N)
    self.reset()

  # ---- construction helpers

  def _model_variants(self) -> list[mujoco.MjModel]:
    dr = self.cfg.randomization
    if not dr.enabled or dr.variants <= 1:
      return [self.m]
    torso = self.m.body(ANCHOR_BODY).id
    feet = np.concatenate([self.sim.foot_geoms["left"], self.sim.foot_geoms["right"]])
    out = []
    for _ in range(dr.variants):
      v = copy.copy(self.m)
      v.geom_friction[feet, 0] = self.rng.uniform(*dr.foot_friction)
      mass = self.m.body_mass[torso]
      new = max(mass + self.rng.uniform(*dr.torso_mass_add), 0.2 * mass)
      v.body_mass[torso] = new
      v.body_inertia[torso] = self.m.body_inertia[torso] * new / mass
      out.append(v)
    return out

  @property
  def sigma_scale(self) -> float:
    """Current kernel-width factor (linear decay from ``sigma_loose`` to ``sigma_tight``)."""
    c = self.cfg
    if c.sigma_decay_steps <= 0:
      return c.sigma_tight
    p = min(self.common_step_counter / c.sigma_decay_steps, 1.0)
    return c.sigma_loose + (c.sigma_tight - c.sigma_loose) * p

  @property
  def num_obs(self) -> int:
    return 5 * self.J + 15

  @property
  def num_critic_obs(self) -> int:
    return self.num_obs + 9 * len(self.tracked)

  # ---- state

  def _global(self, envs: np.ndarray | slice = slice(None), offset: int = 0) -> np.ndarray:
    return self.ref.start[self.clip[envs]] + self.frame[envs] + offset

  def _update_kinematics(self, envs: np.ndarray) -> None:
    m, d = self.m, self._kin_data
    qpos, qvel = self.bsim.qpos, self.bsim.qvel
    floor = self.floor_geom
    cvel = np.zeros((len(envs), len(self.tracked), 6))
    com = np.zeros((len(envs), len(self.tracked), 3))
    for k, i in enumerate(envs):
      self.body_pos[i], self.body_quat[i], cvel[k], com[k] = _raw_kinematics(m, d, qpos[i], qvel[i], self.tracked)
      mujoco.mj_collision(m, d)
      n = d.ncon
      if n:
        g = d.contact.geom[:n]
        self.self_contacts[i] = np.count_nonzero((g[:, 0] != floor) & (g[:, 1] != floor) & (d.contact.dist[:n] < 0))
      else:
        self.self_contacts[i] = 0
    self.body_lin_vel[envs], self.body_ang_vel[envs] = _point_velocity(self.body_pos[envs], cvel, com)

  def reset(self, envs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Reset ``envs`` (default: all) to a sampled clip and start frame; returns all observations."""
    envs = np.arange(self.N) if envs is None else np.asarray(envs, dtype=np.int64)
    if len(envs):
      self._reset_envs(envs)
    return self.observations()

  def _reset_envs(self, envs: np.ndarray) -> None:
    c, n = self.cfg, len(envs)
    if c.evaluation:
      self.clip[envs] = envs % self.num_clips
      self.frame[envs] = 0
    else:
      self.clip[envs] = self.rng.integers(0, self.num_clips, n)
      self.frame[envs] = self.sampler.sample(self.clip[envs])
    g = self._global(envs)
    qpos = self.ref.qpos[g].copy()
    qvel = self.ref.qvel[g].copy()
    if not c.evaluation:
      qpos[:, :2] += self.rng.uniform(-c.init_pos_noise, c.init_pos_noise, (n, 2))
      rv = self.rng.uniform(-c.init_rot_noise, c.init_rot_noise, (n, 3))
      ang = np.linalg.norm(rv, axis=1, keepdims=True)
      axis = rv / np.maximum(ang, 1e-9)
      dq = np.concatenate([np.cos(0.5 * ang), axis * np.sin(0.5 * ang)], axis=1)
      qpos[:, 3:7] = quat_mul(dq, qpos[:, 3:7])
      qpos[:, 7:] = np.clip(qpos[:, 7:] + self.rng.uniform(-c.init_joint_noise, c.init_joint_noise, (n, self.J)),
                            self.joint_lo, self.joint_hi)
      qvel += self.rng.uniform(-c.init_vel_noise, c.init_vel_noise, qvel.shape)
    self.bsim.state[envs] = self._blank_state
    self.bsim.set_qpos_qvel(qpos, qvel, envs)
    dr = c.randomization
    if dr.enabled and not c.evaluation:
      self.bsim.variant[envs] = self.rng.integers(0, len(self.bsim.variants), n)
      self.joint_bias[envs] = self.rng.uniform(-dr.joint_offset, dr.joint_offset, (n, self.J))
      self.push_timer[envs] = self.rng.uniform(*dr.push_interval_s, n)
    else:
      self.bsim.variant[envs] = 0
      self.joint_bias[envs] = 0.0
      self.push_timer[envs] = np.inf
    self.last_action[envs] = 0.0
    self.episode_length[envs] = 0
    self._update_kinematics(envs)

  # ---- observations

  def observations(self) -> dict[str, np.ndarray]:
    """``policy`` (N, num_obs) and ``critic`` (N, num_critic_obs) float32 observations."""
    N, J = self.N, self.J
    g = self._global()
    gn = self.ref.start[self.clip] + np.minimum(self.frame + 1, self.ref.length[self.clip] - 1)
    qpos, qvel = self.bsim.qpos, self.bsim.qvel
    a_pos, a_quat = self.body_pos[:, self.anchor], self.body_quat[:, self.anchor]
    r_pos, r_quat = self.ref.body_pos[g, self.anchor], self.ref.body_quat[g, self.anchor]
    Ra = quat_to_mat(a_quat)  # (N, 3, 3) robot anchor -> world
    Rat = np.swapaxes(Ra, -1, -2)
    anchor_pos_b = np.einsum("nij,nj->ni", Rat, r_pos - a_pos)
    rel = Rat @ quat_to_mat(r_quat)
    anchor_ori_b = np.concatenate([rel[:, :, 0], rel[:, :, 1]], axis=1)
    pelvis_R = quat_to_mat(qpos[:, 3:7])
    lin_b = np.einsum("nji,nj->ni", pelvis_R, qvel[:, :3])
    ang_b = qvel[:, 3:6]
    jpos = qpos[:, 7:] + self.joint_bias - self.default_joint_pos
    jvel = qvel[:, 6:]
    ref_j = self.ref.qpos[gn, 7:]
    ref_v = self.ref.qvel[gn, 6:]
    parts = [ref_j, ref_v, anchor_pos_b, anchor_ori_b, lin_b, ang_b, jpos, jvel, self.last_action]
    clean = np.concatenate(parts, axis=1)
    nz = self.cfg.noise
    if nz.enabled and not self.cfg.evaluation:
      scale = np.concatenate([np.zeros(2 * J), np.full(3, nz.anchor_pos), np.full(6, nz.anchor_ori),
                              np.full(3, nz.lin_vel), np.full(3, nz.ang_vel), np.full(J, nz.joint_pos),
                              np.full(J, nz.joint_vel), np.zeros(J)])
      policy = clean + self.rng.uniform(-1.0, 1.0, clean.shape) * scale
    else:
      policy = clean
    # privileged: tracked bodies in the robot's anchor frame
    bp = np.einsum("nij,nkj->nki", Rat, self.body_pos - a_pos[:, None])
    bR = Rat[:, None] @ quat_to_mat(self.body_quat)
    bo = np.concatenate([bR[..., 0], bR[..., 1]], axis=-1)
    critic = np.concatenate([clean, bp.reshape(N, -1), bo.reshape(N, -1)], axis=1)
    return {"policy": policy.astype(np.float32), "critic": critic.astype(np.float32)}

  # ---- rewards and terminations

  def reward_terms(self, action: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Unweighted terms (N,) against the current reference frame: kernels in [0, 1], penalties >= 0."""
    rc, s = self.cfg.rewards, self.sigma_scale
    g = self._global()
    rp, rq = self.ref.body_pos[g], self.ref.body_quat[g]
    a = self.anchor
    out = {}
    out["anchor_pos"] = np.exp(-np.sum((rp[:, a] - self.body_pos[:, a]) ** 2, -1) / (rc.anchor_pos_sigma * s) ** 2)
    out["anchor_ori"] = np.exp(-quat_angle(rq[:, a], self.body_quat[:, a]) ** 2 / (rc.anchor_ori_sigma * s) ** 2)
    # reference re-anchored at the robot's anchor: robot's horizontal position and yaw, reference height
    delta_pos = self.body_pos[:, a].copy()
    delta_pos[:, 2] = rp[:, a, 2]
    delta_q = yaw_quat(quat_mul(self.body_quat[:, a], quat_conj(rq[:, a])))  # (N, 4)
    dq = np.broadcast_to(delta_q[:, None], rq.shape)
    rel_pos = delta_pos[:, None] + quat_apply(dq, rp - rp[:, a:a + 1])
    rel_quat = quat_mul(dq, rq)
    e_pos = np.sum((rel_pos - self.body_pos) ** 2, -1).mean(-1)
    e_ori = (quat_angle(rel_quat, self.body_quat) ** 2).mean(-1)
    e_lin = np.sum((self.ref.body_lin_vel[g] - self.body_lin_vel) ** 2, -1).mean(-1)
    e_ang = np.sum((self.ref.body_ang_vel[g] - self.body_ang_vel) ** 2, -1).mean(-1)
    out["body_pos"] = np.exp(-e_pos / (rc.body_pos_sigma * s) ** 2)
    out["body_ori"] = np.exp(-e_ori / (rc.body_ori_sigma * s) ** 2)
    out["body_lin_vel"] = np.exp(-e_lin / (rc.body_lin_vel_sigma * s) ** 2)
    out["body_ang_vel"] = np.exp(-e_ang / (rc.body_ang_vel_sigma * s) ** 2)
    act = self.last_action if action is None else action
    out["action_rate"] = np.sum((act - self.last_action) ** 2, -1)
    q = self.bsim.qpos[:, 7:]
    out["joint_limit"] = np.sum(np.clip(self.soft_lo - q, 0, None) + np.clip(q - self.soft_hi, 0, None), -1)
    out["self_collision"] = self.self_contacts.copy()
    return out

  def weighted_reward(self, terms: dict[str, np.ndarray]) -> np.ndarray:
    rc = self.cfg.rewards
    w = {"anchor_pos": rc.anchor_pos_w, "anchor_ori": rc.anchor_ori_w, "body_pos": rc.body_pos_w,
         "body_ori": rc.body_ori_w, "body_lin_vel": rc.body_lin_vel_w, "body_ang_vel": rc.body_ang_vel_w,
         "action_rate": rc.action_rate_w, "joint_limit": rc.joint_limit_w, "self_collision": rc.self_collision_w}
    return sum(w[k] * terms[k] for k in w) * self.dt

  def terminated(self) -> np.ndarray:
    g = self._global()
    return termination_mask(self.body_pos, self.body_quat, self.ref.body_pos[g], self.ref.body_quat[g],
                            self.anchor, self.ees, self.cfg.termination)

  # ---- step

  def targets(self, action: np.ndarray) -> np.ndarray:
    """Position targets (N, J) of ``action`` (N, J): next reference frame + scaled offsets - encoder bias."""
    gn = self._global(offset=1)
    return self.ref.qpos[gn, 7:] + self.action_scale * action - self.joint_bias

  def step(self, action: np.ndarray) -> StepResult:
    c = self.cfg
    a = np.clip(np.asarray(action, dtype=np.float64), -c.action_clip, c.action_clip)
    self.bsim.step(self.targets(a))
    self.frame += 1
    self.episode_length += 1
    self.common_step_counter += 1
    if c.randomization.enabled and not c.evaluation:
      self.push_timer -= self.dt
      push = np.flatnonzero(self.push_timer <= 0)
      if len(push):
        dr = c.randomization
        dv = np.concatenate([self.rng.uniform(-dr.push_lin_xy, dr.push_lin_xy, (len(push), 2)),
                             self.rng.uniform(-dr.push_lin_z, dr.push_lin_z, (len(push), 1)),
                             self.rng.uniform(-dr.push_ang, dr.push_ang, (len(push), 3))], axis=1)
        self.bsim.qvel[push, :6] += dv  # qvel is a view into the state
        self.push_timer[push] = self.rng.uniform(*dr.push_interval_s, len(push))
    self._update_kinematics(np.arange(self.N))
    terms = self.reward_terms(a)
    reward = self.weighted_reward(terms)
    term = self.terminated()
    trunc = ~term & (self.frame >= self.ref.length[self.clip] - 1)
    if not c.evaluation:
      self.sampler.update(self.clip, self.frame, term)
    self.last_action = a
    body_pos = self.body_pos.copy()
    done = np.flatnonzero(term | trunc)
    if len(done):
      self._reset_envs(done)
    return StepResult(self.observations(), reward, term, trunc, terms, body_pos)

  def close(self) -> None:
    self.bsim.close()
