"""Footstep search by look-ahead simulation: the QP tracker's walking, made robust with the true dynamics.

The whole-body QP (:mod:`humanoid_retarget.sim.tracker`) follows a retargeted walk for a few steps, then a
small lateral or forward error of the divergent component of motion grows until the robot falls (the G1's
soles are 5 cm wide; human footholds are not placed for them). Model-based step adjustment alone did not fix
this (docs/physics.md). This layer decides each foothold by simulation instead: whenever a swing starts, a few
candidate offsets of that swing's foothold are each rolled out ``horizon`` control steps ahead with the full
MuJoCo model and the same controller, and the candidate that survives (no BeyondMimic termination) with the
most upright torso and the DCM closest to the feet is kept. When no candidate survives, a wider set is tried
that also shifts the CoM target by a few centimetres (ordered from small to large changes, the first survivor
taken), and after it, as a last resort, candidates that also land the swing foot 4 or 8 control steps before the
reference does (step-timing adjustment: the swing runs through the reference's swing faster, then waits on the
floor; :meth:`WholeBodyQPTracker._fk`). Rollouts restore the controller's memory
(:meth:`WholeBodyQPTracker.get_state`) and the MuJoCo state (``mj_copyData``) before each candidate, so the main
rollout is unaffected. When the main rollout fails anyway, :meth:`FootstepSearch.backtrack` revisits an earlier
decision.

Only references that step (walk, turn, run; :func:`~humanoid_retarget.sim.tracker.stepping_reference`) use it;
others are tracked exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from humanoid_retarget.sim.reference import Reference
from humanoid_retarget.sim.tracker import step_control
from humanoid_retarget.sim.terminations import ANCHOR_BODY, END_EFFECTORS, gravity_z_in_body


@dataclass
class SearchConfig:
  """Candidates and scoring of the footstep search (offsets in m; forward along the walking direction,
  lateral outwards from the stance foot)."""

  horizon: int = 90  # control steps (1.8 s at 50 Hz) simulated per candidate
  forward: tuple = (-0.08, 0.0, 0.08)
  lateral: tuple = (0.0, 0.06)
  extended: bool = True  # when no candidate survives the horizon, try the wider set below
  ext_forward: tuple = (-0.2, -0.1, 0.0, 0.1, 0.2)
  ext_lateral: tuple = (-0.08, 0.0, 0.08, 0.16)
  ext_com: tuple = ((0.0, 0.0), (0.0, 0.03), (0.0, -0.03), (0.03, 0.0), (-0.03, 0.0))  # CoM offsets (fwd, lat)
  # last resort, when nothing above survives: the swing also lands this many control steps early
  # (step-timing adjustment), with these foothold offsets
  timing: tuple = (4, 8)
  timing_forward: tuple = (-0.1, 0.0, 0.1)
  timing_lateral: tuple = (-0.08, 0.0, 0.08, 0.16)
  # when the main rollout fails anyway: go back to an earlier decision and take another candidate that survives
  # past the failure point by backtrack_margin steps (at most `backtrack` re-decisions per clip, each trying at
  # most backtrack_candidates candidates, within backtrack_window steps before the failure); 0: off
  backtrack: int = 6
  backtrack_margin: int = 25
  backtrack_candidates: int = 30
  backtrack_window: int = 150
  accept_score: float | None = -0.6  # a main candidate scoring at least this ends the search (None: try all)
  greedy_extended: bool = True  # the wider set stops at its first survivor (they are sorted small to large)
  tilt_weight: float = 1.0  # score: - tilt_weight * torso tilt error - dcm_weight * DCM distance from the feet ...
  dcm_weight: float = 5.0
  offset_weight: float = 2.0  # ... - offset_weight * (|foothold offset| + |CoM offset|): the least change wins ties


def candidate_offsets(cfg: SearchConfig) -> tuple[list, list]:
  """The main and the extended candidate lists, (forward, lateral, com_forward, com_lateral, steps early)
  each. The extended list is sorted by the size of the change (CoM offsets counted twice) and ends with the
  early-touchdown candidates (fewer steps early first, then smaller offsets)."""
  main = sorted(((fx, fy, 0.0, 0.0, 0) for fx in cfg.forward for fy in cfg.lateral),
                key=lambda c: abs(c[0]) + abs(c[1]))
  ext = [(fx, fy, cx, cy, 0) for fx in cfg.ext_forward for fy in cfg.ext_lateral for cx, cy in cfg.ext_com]
  ext.sort(key=lambda c: abs(c[0]) + abs(c[1]) + 2.0 * (abs(c[2]) + abs(c[3])))
  early = [(fx, fy, 0.0, 0.0, n) for n in cfg.timing for fx in cfg.timing_forward for fy in cfg.timing_lateral]
  early.sort(key=lambda c: (c[4], abs(c[0]) + abs(c[1])))
  return main, ext + early if cfg.extended else []


def dcm_distance(xi: np.ndarray, feet: np.ndarray) -> float:
  """Distance (m) of the DCM ``xi`` (2,) from the segment between the two feet ``feet`` (2, 2)."""
  ab = feet[1] - feet[0]
  t = np.clip(np.dot(xi - feet[0], ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
  return float(np.linalg.norm(xi - (feet[0] + t * ab)))


class FootstepSearch:
  """Chooses each swing's foothold offset (and, if needed, a CoM offset) for a tracker by look-ahead rollouts."""

  def __init__(self, sim, tracker, ref: Reference, cfg: SearchConfig | None = None):
    self.sim, self.tr, self.ref = sim, tracker, ref
    self.cfg = cfg or SearchConfig()
    self.m = sim.model
    self.d2 = mujoco.MjData(self.m)
    self.jac = np.zeros((3, self.m.nv))
    self.anchor = sim.body_index(ANCHOR_BODY)
    self.ees = np.array([sim.body_index(n) for n in END_EFFECTORS])
    self.main, self.ext = candidate_offsets(self.cfg)
    self.all = self.main + self.ext
    self.checkpoints: list[dict] = []  # per decision, for backtracking: state, control, next untried candidate
    self.budget = self.cfg.backtrack  # re-decisions left
    # the terminations' reference terms per control step, for a scalar check in the rollouts
    self._ref_z = ref.body_pos[:, self.anchor, 2]
    self._ref_g = gravity_z_in_body(ref.body_quat[:, self.anchor])
    self._ref_ee = ref.body_pos[:, self.ees, 2]
    self._tc = tracker.base_cfg.terminations
    # (step, foot, foothold offset xy, CoM offset xy, score, survivors, control steps early)
    self.decisions: list[tuple] = []

  def _rollout(self, k0: int, ctrl0: np.ndarray, horizon: int) -> int:
    """Control steps survived (<= horizon) from ``d2`` at step ``k0`` with first targets ``ctrl0``."""
    m, d2, ref, tr = self.m, self.d2, self.ref, self.tr
    T = ref.num_frames
    ctrl = ctrl0
    for j in range(horizon):
      kk = k0 + j + 1
      step_control(m, d2, ctrl, self.sim.config.decimation)
      if kk >= T - 1:
        return horizon
      if self._fails(kk):
        return j
      ctrl = tr.control(d2, ref, kk)
    return horizon

  @property
  def backtracks(self) -> int:
    """Re-decisions made so far."""
    return self.cfg.backtrack - self.budget

  def _fails(self, k: int) -> bool:
    """BeyondMimic's terminations (:func:`~humanoid_retarget.sim.terminations.termination_mask`) for ``d2``
    against reference step ``k``, one state at a time."""
    xpos, tc = self.d2.xpos, self._tc
    a = self.anchor + 1  # body ids: 0 is the world
    if abs(xpos[a, 2] - self._ref_z[k]) > tc.anchor_height:
      return True
    if abs(gravity_z_in_body(self.d2.xquat[a]) - self._ref_g[k]) > tc.anchor_gravity_z:
      return True
    return bool(np.any(np.abs(xpos[self.ees + 1, 2] - self._ref_ee[k]) > tc.ee_height))

  def _score(self, k: int, survived: int, horizon: int) -> float:
    if survived < horizon:
      return survived - 1000.0
    d2, ref = self.d2, self.ref
    a = self.anchor
    tilt = abs(gravity_z_in_body(d2.xquat[a + 1]) - gravity_z_in_body(ref.body_quat[min(k, ref.num_frames - 1), a]))
    mujoco.mj_jacSubtreeCom(self.m, d2, self.jac, 1)
    com = d2.subtree_com[1]
    v = self.jac @ d2.qvel
    xi = com[:2] + v[:2] / np.sqrt(9.81 / max(com[2], 0.3))
    feet = np.array([d2.xpos[b][:2] for b in self.tr.foot_body])
    return -self.cfg.tilt_weight * tilt - self.cfg.dcm_weight * dcm_distance(xi, feet)

  def _frame(self, d: mujoco.MjData, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Walking direction (the mean of the feet's forward axes) and the outward direction of swing foot ``i``."""
    tr = self.tr
    h = d.xmat[tr.foot_body[0]].reshape(3, 3)[:2, 0] + d.xmat[tr.foot_body[1]].reshape(3, 3)[:2, 0]
    h = h / max(np.linalg.norm(h), 1e-9)
    return h, np.array([-h[1], h[0]]) * (1.0 if i == 0 else -1.0)

  def _apply(self, state: dict, i: int, cand: tuple, h: np.ndarray, lat: np.ndarray) -> None:
    """Restore the controller's memory ``state`` and set candidate ``cand`` for swing foot ``i``."""
    fx, fy, cx, cy, early = cand
    tr = self.tr
    tr.set_state(state)
    tr.step_bias[i] = 0.0
    tr.step_bias[i, :2] = fx * h + fy * lat
    tr.com_bias = np.zeros(3)
    tr.com_bias[:2] = cx * h + cy * lat
    tr.swing_adv[i] = early

  def _try(self, d: mujoco.MjData, k: int, ctrl: np.ndarray, state: dict, i: int, cand: tuple, h: np.ndarray,
           lat: np.ndarray, H: int) -> tuple[int, float]:
    """Roll candidate ``cand`` out ``H`` steps from ``d``: (steps survived, score)."""
    self._apply(state, i, cand, h, lat)
    mujoco.mj_copyData(self.d2, self.m, d)
    surv = self._rollout(k, ctrl, H)
    fx, fy, cx, cy, _ = cand
    return surv, self._score(k + surv, surv, H) - self.cfg.offset_weight * (np.hypot(fx, fy) + np.hypot(cx, cy))

  def decide(self, d: mujoco.MjData, k: int, ctrl: np.ndarray, was_stance: np.ndarray) -> None:
    """Call after ``tracker.control(d, ref, k)`` returned ``ctrl``; ``was_stance`` (2,) is the tracker's
    stance flags before that call. When a swing started, sets the tracker's offsets for it."""
    tr = self.tr
    new = [i for i in range(2) if was_stance[i] and not tr.was_stance[i]]
    if not new:
      return
    # both at once (the first step of a clip): the foot the reference has in the air
    i = next((j for j in new if not self.tr.feat.contact[k, j]), new[0])
    state = tr.get_state()
    h, lat = self._frame(d, i)
    H = min(self.cfg.horizon, self.ref.num_frames - 1 - k)
    best, best_s, survivors, j = 0, -np.inf, 0, 0
    n_main = len(self.main)
    while j < len(self.all):
      surv, score = self._try(d, k, ctrl, state, i, self.all[j], h, lat, H)
      survivors += surv >= H
      if score > best_s:
        best, best_s = j, score
      if j >= n_main and self.cfg.greedy_extended and surv >= H:
        break
      if j < n_main and self.cfg.accept_score is not None and score >= self.cfg.accept_score:
        break  # good enough: the smallest changes are tried first
      j += 1
      if j == n_main and survivors:
        break
    self._apply(state, i, self.all[best], h, lat)
    self._record(k, i, best, best_s, survivors)
    if self.cfg.backtrack > 0 and survivors:  # (when nothing survived the horizon, nothing will survive longer)
      d_copy = mujoco.MjData(self.m)
      mujoco.mj_copyData(d_copy, self.m, d)
      self.checkpoints.append(dict(k=k, i=i, d=d_copy, ctrl=ctrl.copy(), state=state, h=h, lat=lat, next=0,
                                   taken={best}, n=len(self.decisions) - 1))

  def _record(self, k: int, i: int, c: int, score: float, survivors: int) -> None:
    early = self.all[c][4]
    tr = self.tr
    self.decisions.append((k, i, np.round(tr.step_bias[i, :2], 3).tolist(), np.round(tr.com_bias[:2], 3).tolist(),
                           round(float(score), 3), int(survivors), early))

  def backtrack(self, d: mujoco.MjData, k_fail: int) -> tuple[int, np.ndarray] | None:
    """The main rollout failed at step ``k_fail``: go back to the latest decision (within ``backtrack_window``
    steps) that has candidates left and take the first of them (in the search's order, all but those already
    taken) that survives past the failure point (``backtrack_margin`` steps). Restores ``d`` and the controller to that decision and returns (its step,
    its control targets), or None when the budget (``backtrack`` re-decisions) is spent or nothing survives."""
    cfg = self.cfg
    while self.budget > 0 and self.checkpoints:
      c = self.checkpoints[-1]
      if c["k"] >= k_fail or c["next"] >= len(self.all) or c["k"] < k_fail - cfg.backtrack_window:
        if c["k"] < k_fail - cfg.backtrack_window:
          return None
        self.checkpoints.pop()
        continue
      self.budget -= 1
      H = min(max(cfg.horizon, k_fail - c["k"] + cfg.backtrack_margin), self.ref.num_frames - 1 - c["k"])
      tried = 0
      while c["next"] < len(self.all) and tried < cfg.backtrack_candidates:
        j = c["next"]
        c["next"] += 1
        if j in c["taken"]:
          continue
        tried += 1
        surv, score = self._try(c["d"], c["k"], c["ctrl"], c["state"], c["i"], self.all[j], c["h"], c["lat"], H)
        if surv >= H:
          c["taken"].add(j)
          self._apply(c["state"], c["i"], self.all[j], c["h"], c["lat"])
          del self.decisions[c["n"]:]
          self._record(c["k"], c["i"], j, score, 1)
          mujoco.mj_copyData(d, self.m, c["d"])
          return c["k"], c["ctrl"]
      self.checkpoints.pop()  # nothing there survives: an earlier decision
    return None
