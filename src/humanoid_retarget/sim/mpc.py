"""Sampling-based predictive control around the whole-body QP tracker (predictive sampling, MJPC style).

Every control step: the QP gives the nominal first action; the nominal plan for the rest of the horizon is
the reference PD targets plus the QP's current offset from them (decaying). ``samples`` perturbed plans
(piecewise-linear offsets on the leg and waist targets between two knots) are rolled out in parallel
from the current state with ``mujoco.rollout`` (C threads), scored against the reference with
BeyondMimic-like errors (anchor height and tilt, end-effector heights, pelvis-relative body positions,
a large penalty once a termination condition is met), and the best plan's first action is applied. The
best offsets are kept (shifted) as one of the next step's samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import mujoco
import numpy as np
from mujoco import rollout

from humanoid_retarget.sim.model import SimModel
from humanoid_retarget.sim.reference import Reference
from humanoid_retarget.sim.terminations import (ANCHOR_BODY, END_EFFECTORS, TRACKED_BODIES, gravity_z_in_body,
                                                termination_mask)
from humanoid_retarget.sim.tracker import TrackerConfig, WholeBodyQPTracker

STATE = mujoco.mjtState.mjSTATE_FULLPHYSICS


@dataclass
class SamplingConfig:
  """Predictive sampling settings (horizon in control steps of 20 ms)."""

  samples: int = 16
  horizon: int = 10
  sigma: float = 0.15  # rad, std of the knot offsets
  joints: str = r"hip|knee|ankle|waist"  # joints whose targets are perturbed
  nominal_decay: float = 0.8  # per control step, of the QP offset over the horizon
  nthread: int = 2
  w_anchor_z: float = 400.0  # 1/m^2
  w_gravity: float = 100.0
  w_ee_z: float = 100.0
  w_body: float = 100.0  # pelvis-relative body position error, 1/m^2
  fail_cost: float = 1000.0
  seed: int = 0
  qp: TrackerConfig = field(default_factory=TrackerConfig)


class SamplingTracker:
  """The QP tracker with a predictive-sampling correction (same interface as the QP tracker)."""

  def __init__(self, sim: SimModel, cfg: SamplingConfig | None = None):
    self.sim = sim
    self.scfg = cfg or SamplingConfig()
    self.qp = WholeBodyQPTracker(sim, self.scfg.qp)
    self.cfg = self.qp.cfg
    m = sim.model
    self.m = m
    s = self.scfg
    self.rng = np.random.default_rng(s.seed)
    self.mask = np.array([bool(re.search(s.joints, n)) for n in sim.joint_names])
    self.datas = [mujoco.MjData(m) for _ in range(max(s.nthread, 1))]
    self.kin = mujoco.MjData(m)
    self.roll = rollout.Rollout(nthread=s.nthread) if s.nthread > 1 else None
    self.nstate = mujoco.mj_stateSize(m, STATE)
    self.best = np.zeros((2, sim.num_joints))  # knot offsets of the last best plan
    self.replaced = 0
    self.anchor = sim.body_index(ANCHOR_BODY)
    self.ees = np.array([sim.body_index(n) for n in END_EFFECTORS])
    self.tracked = np.array([sim.body_index(n) for n in TRACKED_BODIES])
    self.pelvis = sim.body_index("pelvis")

  def close(self) -> None:
    if self.roll is not None:
      self.roll.close()
      self.roll = None

  def set_reference(self, ref: Reference) -> None:
    self.qp.set_reference(ref)
    self.best[:] = 0.0
    self.replaced = 0  # control steps where a perturbed plan beat the nominal one

  def feet_on_floor(self, d: mujoco.MjData) -> np.ndarray:
    return self.qp.feet_on_floor(d)

  def _ref_targets(self, ref: Reference, k: int) -> np.ndarray:
    s = self.sim
    k = min(k, ref.num_frames - 1)
    return ref.qpos[k, 7:] + s.kd * ref.qvel[k, 6:] / s.kp

  def control(self, d: mujoco.MjData, ref: Reference, k: int) -> np.ndarray:
    s, sim, m = self.scfg, self.sim, self.m
    u0 = self.qp.control(d, ref, k)
    H, N, J = s.horizon, s.samples, sim.num_joints
    dec = sim.config.decimation
    off0 = u0 - self._ref_targets(ref, k)
    decay = s.nominal_decay ** np.arange(H)
    nominal = np.stack([self._ref_targets(ref, k + h) for h in range(H)]) + decay[:, None] * off0  # (H, J)
    nominal[0] = u0
    knots = self.rng.normal(0.0, s.sigma, (N, 2, J)) * self.mask
    knots[0] = 0.0
    knots[1] = np.stack([self.best[1], self.best[1]])  # previous best, shifted to start at its end value
    w = np.linspace(0.0, 1.0, H)[None, :, None]
    offs = knots[:, :1] * (1.0 - w) + knots[:, 1:] * w  # (N, H, J)
    plans = nominal[None] + offs
    ctrl = np.repeat(plans, dec, axis=1)  # (N, H*dec, J)
    s0 = np.zeros(self.nstate)
    mujoco.mj_getState(m, d, s0, STATE)
    init = np.tile(s0, (N, 1))
    out = np.zeros((N, H * dec, self.nstate))
    if self.roll is not None:
      self.roll.rollout(m, self.datas, init, ctrl, nstep=H * dec, state=out)
    else:
      rollout.rollout(m, self.datas[0], init, ctrl, nstep=H * dec, state=out)
    cost = self._cost(out[:, dec - 1::dec], ref, k)
    b = int(np.argmin(cost))
    self.best = knots[b]
    self.replaced += b != 0
    return plans[b, 0]

  def _cost(self, states: np.ndarray, ref: Reference, k: int) -> np.ndarray:
    """(N,) cost of states (N, H, nstate) at the control steps k+1 .. k+H."""
    s, m = self.scfg, self.m
    N, H = states.shape[:2]
    nq = m.nq
    d = self.kin
    cost = np.zeros(N)
    failed = np.zeros(N, dtype=bool)
    T = ref.num_frames
    for h in range(H):
      r = min(k + 1 + h, T - 1)
      rp, rq = ref.body_pos[r], ref.body_quat[r]
      rrel = rp[self.tracked] - rp[self.pelvis]
      for n in range(N):
        d.qpos[:] = states[n, h, 1:1 + nq]
        mujoco.mj_kinematics(m, d)
        bp, bq = d.xpos[1:], d.xquat[1:]
        c = s.w_anchor_z * (bp[self.anchor, 2] - rp[self.anchor, 2]) ** 2
        c += s.w_gravity * (gravity_z_in_body(bq[self.anchor]) - gravity_z_in_body(rq[self.anchor])) ** 2
        c += s.w_ee_z * np.sum((bp[self.ees, 2] - rp[self.ees, 2]) ** 2)
        c += s.w_body * np.mean(np.sum((bp[self.tracked] - bp[self.pelvis] - rrel) ** 2, axis=-1))
        cost[n] += c
        if not failed[n] and termination_mask(bp, bq, rp, rq, self.anchor, self.ees, self.cfg.terminations):
          failed[n] = True
          cost[n] += s.fail_cost * (H - h)
    return cost
