"""Whole-sequence kinematic retargeting.

All frames of a clip are solved together by damped Gauss-Newton (Levenberg-Marquardt per frame): each
iteration linearises every frame (compiled kernel, ``retarget/gn_kernel.py``: FK, sparse Jacobians of the
tracked link points and orientations, self-collision rows on the MJCF's capsules, a posture prior),
adds a temporal term that pulls each frame towards a low-pass filtered copy of the current solution,
and solves the T small normal systems. Joint limits are kept by projection with a margin; joint speed
by a forward-backward rate limit inside the last iterations and after; the feet by pinned contact
targets and a root height correction."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from humanoid_retarget.human.motion import HumanMotion
from humanoid_retarget.io.motion import RobotMotion
from humanoid_retarget.retarget.gn_kernel import ancestor_table, linearize, pair_distances, rate_limit_inplace
from humanoid_retarget.retarget.gn_kernel import step as gn_step
from humanoid_retarget.retarget.targets import TargetConfig, Targets, build_targets
from humanoid_retarget.robot.collision import capsule_distance
from humanoid_retarget.robot.config import Robot
from humanoid_retarget.robot.model import Capsule


@dataclass
class KinematicConfig:
  """Solver settings (defaults tuned once on Bandai clips, valid for any robot config)."""

  targets: TargetConfig = field(default_factory=TargetConfig)
  iterations: int = 8
  damping: float = 1e-3
  damping_start: float = 0.3  # Levenberg-Marquardt style: large early steps are damped, then relaxed
  posture_weight: float = 0.03
  smooth_weight: float = 0.3  # pull towards the low-pass filtered solution
  smooth_sigma_s: float = 0.035
  smooth_from: int = 5  # iteration from which the temporal term applies (limbs converge first: it also damps steps)
  rate_from: int = 6  # iteration from which the joint rate limit is enforced inside the solve
  collision_weight: float = 6.0
  collision_margin: float = 0.015  # metres of clearance the solver keeps between capsules
  contact_weight_gain: float = 3.0  # stance feet weigh this much more
  max_iter_step: float = 0.6  # rad per Gauss-Newton iteration (trust region)
  max_step_rad: float = 0.45  # per 1/30 s: hard cap on joint change (the joint-jump threshold is 0.5)
  floor_correction: bool = True
  collision_cleanup: bool = True  # after the solve, open capsule pairs that still overlap (minimum joint change)


@dataclass
class SolveStats:
  iterations: int = 0
  final_pos_rms: float = 0.0
  collision_pairs: int = 0


def merge_body_capsules(caps: list[Capsule]) -> list[Capsule]:
  """One bounding capsule per body for bodies with several parallel-ish capsules (e.g. a foot made
  of seven thin capsules): the longest capsule's axis, radius grown to cover the others. Bodies with
  one capsule keep it. The solver checks these; ``eval`` checks the exact MJCF geoms with MuJoCo."""
  by_body: dict[int, list[Capsule]] = {}
  for c in caps:
    by_body.setdefault(c.body, []).append(c)
  out = []
  for b, cs in by_body.items():
    if len(cs) == 1:
      out.append(cs[0])
      continue
    main = max(cs, key=lambda c: np.linalg.norm(c.b - c.a))
    u = main.b - main.a
    L = np.linalg.norm(u)
    u = u / L if L > 1e-9 else np.array([1.0, 0.0, 0.0])
    ends = np.array([e for c in cs for e in (c.a, c.b)])
    t = (ends - main.a) @ u
    lo, hi = t.min(), t.max()
    radius = 0.0
    for c in cs:
      for e in (c.a, c.b):
        te = (e - main.a) @ u
        radius = max(radius, np.linalg.norm(e - main.a - te * u) + c.radius)
    a = main.a + lo * u
    bb = main.a + hi * u
    # Shorten the segment by the radius gain so the ends do not grow past the original extent.
    out.append(Capsule(f"merged_{b}", b, a, bb, float(radius)))
  return out


class CollisionPairs:
  """Capsule pairs checked by the solver: different bodies, not parent/child, not touching at rest."""

  def __init__(self, robot: Robot):
    m = robot.model
    caps = merge_body_capsules(m.capsules)
    ignore = {frozenset(p) for p in robot.config.collision_ignore}
    rest_pos, rest_rot = robot.rest_body_pos, robot.rest_body_rot
    pairs = []
    for i in range(len(caps)):
      for j in range(i + 1, len(caps)):
        bi, bj = caps[i].body, caps[j].body
        if bi == bj or m.body_parent[bi] == bj or m.body_parent[bj] == bi:
          continue
        if frozenset((m.body_names[bi], m.body_names[bj])) in ignore:
          continue
        # Pairs that already overlap in the rest pose are part of the design (e.g. pelvis and hip): skipped.
        pi = rest_pos[bi] + rest_rot[bi] @ caps[i].a
        qi = rest_pos[bi] + rest_rot[bi] @ caps[i].b
        pj = rest_pos[bj] + rest_rot[bj] @ caps[j].a
        qj = rest_pos[bj] + rest_rot[bj] @ caps[j].b
        d, _, _ = capsule_distance(pi, qi, caps[i].radius, pj, qj, caps[j].radius)
        if d < 0.005:
          continue
        pairs.append((i, j))
    self.pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    self.cap_body = np.array([c.body for c in caps], dtype=np.int64)
    self.cap_a = np.array([c.a for c in caps]).reshape(-1, 3)
    self.cap_b = np.array([c.b for c in caps]).reshape(-1, 3)
    self.cap_r = np.array([c.radius for c in caps])

  def world_segments(self, pos: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    R = rot[:, self.cap_body]
    a = pos[:, self.cap_body] + np.einsum("tcij,cj->tci", R, self.cap_a)
    b = pos[:, self.cap_body] + np.einsum("tcij,cj->tci", R, self.cap_b)
    return a, b

  def distances(self, pos: np.ndarray, rot: np.ndarray, pairs: np.ndarray | None = None):
    """Signed distances (T, P) and closest points (T, P, 3) x 2 for ``pairs`` (default: all)."""
    pairs = self.pairs if pairs is None else pairs
    a, b = self.world_segments(pos, rot)
    i, j = pairs[:, 0], pairs[:, 1]
    return capsule_distance(a[:, i], b[:, i], self.cap_r[i], a[:, j], b[:, j], self.cap_r[j])

  def signed_distances(self, pos: np.ndarray, rot: np.ndarray, bound: float = 0.1) -> np.ndarray:
    """Signed distances (T, P) of all pairs (compiled, no closest points); exact up to ``bound`` metres,
    above it a lower bound."""
    d = np.empty((pos.shape[0], len(self.pairs)))
    pair_distances(pos, rot, self.cap_body, self.cap_a, self.cap_b, self.cap_r, self.pairs, bound, d)
    return d


_PAIR_CACHE: dict[int, tuple[Robot, CollisionPairs]] = {}


def collision_pairs(robot: Robot) -> CollisionPairs:
  """Pairs for ``robot``, cached per robot object (the robot is kept in the entry so its id is not reused)."""
  hit = _PAIR_CACHE.get(id(robot))
  if hit is None or hit[0] is not robot:
    hit = _PAIR_CACHE[id(robot)] = (robot, CollisionPairs(robot))
  return hit[1]


def rate_limit(q: np.ndarray, max_step: np.ndarray) -> np.ndarray:
  """Clamp per-frame joint changes of q (T, J) to ``max_step`` (J,) by a forward then backward pass.

  Clips within the bound are returned as they are; others as a clamped copy.
  """
  if q.shape[0] < 2 or not (np.abs(np.diff(q, axis=0)) > max_step).any():
    return q
  q = np.array(q, dtype=np.float64)
  rate_limit_inplace(q, np.asarray(max_step, dtype=np.float64))
  return q


_ANC_CACHE: dict[int, tuple[object, np.ndarray, np.ndarray]] = {}


def robot_ancestors(m) -> tuple[np.ndarray, np.ndarray]:
  """Joint indices above each body (B, A) padded with -1 and their counts (B,), cached per model."""
  hit = _ANC_CACHE.get(id(m))
  if hit is None or hit[0] is not m:
    hit = _ANC_CACHE[id(m)] = (m, *ancestor_table(m.ancestor_joint_mask))
  return hit[1], hit[2]


def solve(targets: Targets, robot: Robot, fps: float, cfg: KinematicConfig = KinematicConfig(),
          q_init: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, SolveStats]:
  """Solve for root position (T, 3), root rotation (T, 3, 3) and joints (T, J)."""
  m = robot.model
  links = robot.config.links
  T = targets.pos.shape[0]
  L = len(links)
  nq = m.num_joints
  nv = 6 + nq
  lo, hi = joint_limits(robot)
  q_nom = np.clip(np.zeros(nq), lo, hi)
  # Start joints that rest near a bound (knees) away from it, so the first steps can bend them either way.
  q_start = np.clip(np.zeros(nq), np.minimum(lo + 0.3, hi), np.maximum(hi - 0.3, lo))

  wpos = np.array([lk.position_weight for lk in links])
  wrot = np.array([lk.orientation_weight for lk in links])
  W_pos = np.broadcast_to(wpos, (T, L)).copy()
  W_rot = np.broadcast_to(wrot, (T, L)).copy()
  for s, side in enumerate(("left", "right")):
    for k, lk in enumerate(links):
      if lk.orientation == f"{side}_foot":
        gain = 1.0 + (cfg.contact_weight_gain - 1.0) * targets.contacts[:, s]
        W_pos[:, k] *= gain
        W_rot[:, k] *= gain
  rot_links = np.flatnonzero(wrot > 0)
  pos_links = np.flatnonzero(wpos > 0)
  link_body = robot.link_body
  link_point = robot.link_point

  # Initial guess: root at the root target, oriented as the pelvis target; joints at the nominal pose.
  root_k = next(k for k, lk in enumerate(links) if lk.mode == "root")
  root_rot = targets.rot[:, root_k] @ robot.rest_body_rot[link_body[root_k]].T
  root_pos = targets.pos[:, root_k] - np.einsum("tij,j->ti", root_rot, robot.rest_point(root_k))
  q = np.broadcast_to(q_start, (T, nq)).copy() if q_init is None else np.clip(q_init, lo, hi)

  cp = collision_pairs(robot)
  step = np.minimum(robot.velocity_limits / fps, cfg.max_step_rad * 30.0 / fps)
  sigma = max(cfg.smooth_sigma_s * fps, 0.5)
  posture_w = np.broadcast_to(cfg.posture_weight * robot.posture_weight, (nq,)).astype(np.float64)
  stats = SolveStats()
  anc_idx, anc_n = robot_ancestors(m)
  c64 = np.ascontiguousarray
  pos_body, pos_point = c64(link_body[pos_links]), c64(link_point[pos_links], dtype=np.float64)
  tgt_pos, w_pos = c64(targets.pos[:, pos_links], dtype=np.float64), c64(W_pos[:, pos_links], dtype=np.float64)
  rot_body = c64(link_body[rot_links])
  tgt_rot, w_rot = c64(targets.rot[:, rot_links], dtype=np.float64), c64(W_rot[:, rot_links], dtype=np.float64)
  root_pos, root_rot = c64(root_pos, dtype=np.float64), c64(root_rot, dtype=np.float64)
  q = c64(q, dtype=np.float64)
  no_pairs = np.zeros((0, 2), dtype=np.int64)
  active_pairs = cp.pairs
  # Normal equations of this iteration (new) and of the last accepted point (acc): swapped, not copied.
  H_new, H_acc = np.empty((T, nv, nv)), np.empty((T, nv, nv))
  g_new, g_acc = np.empty((T, nv)), np.empty((T, nv))
  cost_new, cost_acc = np.empty(T), np.empty(T)
  pos_sq = np.empty(T)
  lam = np.full(T, max(cfg.damping_start, cfg.damping))
  x_prev = None
  for it in range(cfg.iterations):
    # Collision rows from the second iteration on; the first such pass checks every pair and keeps the
    # ones that ever come near, later passes check only those (rows of pairs beyond the margin are zero).
    pairs = active_pairs if it >= 1 else no_pairs
    dist = np.empty((T, len(pairs)))
    linearize(*m.kinematic_arrays(), m.joint_body, anc_idx, anc_n, root_pos, root_rot, q,
              pos_body, pos_point, tgt_pos, w_pos, rot_body, tgt_rot, w_rot, q_nom, posture_w,
              cp.cap_body, cp.cap_a, cp.cap_b, cp.cap_r, pairs, cfg.collision_margin, cfg.collision_weight,
              H_new, g_new, cost_new, dist, pos_sq)
    stats.final_pos_rms = float(np.sqrt(pos_sq.sum() / (T * max(len(pos_links), 1))))
    if it == 1 and len(pairs):
      active_pairs = pairs[(dist < cfg.collision_margin + 0.05).any(axis=0)]
      stats.collision_pairs = int(len(active_pairs))
    if x_prev is not None and not (it == 1 and len(pairs)):
      # Levenberg-Marquardt per frame: a step that raised the cost is undone and retried with more damping.
      # (Skipped in the iteration that adds the collision rows: its cost is not comparable.)
      worse = cost_new > cost_acc * (1.0 + 1e-9)
      lam = np.where(worse, lam * 8.0, np.maximum(lam * 0.3, cfg.damping))
      if worse.any():
        for arr, old in zip((root_pos, root_rot, q, H_new, g_new, cost_new), (*x_prev, H_acc, g_acc, cost_acc)):
          arr[worse] = old[worse]
    x_prev = (root_pos.copy(), root_rot.copy(), q.copy())
    H_new, H_acc, g_new, g_acc, cost_new, cost_acc = H_acc, H_new, g_acc, g_new, cost_acc, cost_new
    # Temporal smoothness: proximal pull to the filtered current solution (after the first iterations).
    ws = 0.0
    q_s, p_s = q, root_pos
    if it >= cfg.smooth_from and T > 3 and cfg.smooth_weight > 0:
      ws = cfg.smooth_weight**2
      q_s = gaussian_filter1d(q, sigma, axis=0, mode="nearest")
      p_s = gaussian_filter1d(root_pos, sigma, axis=0, mode="nearest")
    gn_step(H_acc, g_acc, root_pos, root_rot, q, lam, q_s, p_s, ws, lo, hi, cfg.max_iter_step, 0.1)
    if it >= cfg.rate_from:
      # Joint speed as a constraint inside the solve: later iterations re-fit the other joints and the
      # root to the rate-limited joints (a limit applied only afterwards would let pinned feet slide).
      q = rate_limit(q, step)
    stats.iterations = it + 1
  if cfg.collision_cleanup and len(cp.pairs):
    q = _push_apart(robot, cp, root_pos, root_rot, q, lo, hi, cfg.collision_margin)
  # Joint speed: rate limit to the robot's velocity limits and the joint-jump bound.
  q = np.clip(rate_limit(q, step), lo, hi)
  return root_pos, root_rot, q, stats


def _push_apart(robot: Robot, cp: CollisionPairs, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray,
                lo: np.ndarray, hi: np.ndarray, margin: float, iterations: int = 8) -> np.ndarray:
  """Frames whose checked capsules still overlap after the solve (targets the robot's limits and shapes
  cannot follow, e.g. toes-out feet on an H1, whose hip-yaw housings meet): a joint change that opens
  every overlapping pair to ``margin`` while the tracked points stay where they are as far as possible
  (stiff collision rows, soft stay-put rows for the links). Other frames are left as they are."""
  m = robot.model
  kp = np.array([k for k, lk in enumerate(robot.config.links) if lk.position_weight > 0])
  wk = np.array([robot.config.links[k].position_weight for k in kp])
  q = q.copy()
  for _ in range(iterations):
    pos, rot = m.fk(root_pos, root_rot, q)
    tt = np.flatnonzero((cp.signed_distances(pos, rot, bound=0.0) < 0.0).any(axis=1))
    if not len(tt):
      break
    d, c1, c2 = cp.distances(pos[tt], rot[tt])
    pp = np.flatnonzero((d < 0.5 * margin).any(axis=0))  # pairs to open (near-misses too, so they stay open)
    d, c1, c2 = d[:, pp], c1[:, pp], c2[:, pp]
    bad = d < 0.5 * margin  # (n, P)
    anchors, axes = m.joint_world(pos[tt], rot[tt])
    n = c1 - c2
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
    Ja = m.point_jacobian(cp.cap_body[cp.pairs[pp, 0]], c1, root_pos[tt], anchors, axes)[..., 6:]
    Jb = m.point_jacobian(cp.cap_body[cp.pairs[pp, 1]], c2, root_pos[tt], anchors, axes)[..., 6:]
    jrow = 100.0 * np.einsum("tpa,tpav->tpv", n, Ja - Jb) * bad[..., None]  # (n, P, J)
    res = 100.0 * (margin - d) * bad
    b = robot.link_body[kp]
    pts = pos[tt][:, b] + np.einsum("tkij,kj->tki", rot[tt][:, b], robot.link_point[kp])
    Jl = m.point_jacobian(b, pts, root_pos[tt], anchors, axes)[..., 6:] * wk[None, :, None, None]
    Jl = Jl.reshape(len(tt), -1, m.num_joints)
    H = np.swapaxes(jrow, 1, 2) @ jrow + np.swapaxes(Jl, 1, 2) @ Jl + 1e-4 * np.eye(m.num_joints)
    dq = np.linalg.solve(H, np.einsum("tpv,tp->tv", jrow, res)[..., None])[..., 0]
    q[tt] = np.clip(q[tt] + dq, lo, hi)
  return q


def hold_stance_feet(robot: Robot, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray, contacts: np.ndarray,
                     fps: float, iterations: int = 4, foot_weight: float = 10.0, stay: float = 0.3,
                     ease_s: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Stance feet held still by small moves of the legs and root; the rest of the motion is kept.

  For a motion made elsewhere (the neural retargeter's): in each contact phase (``contacts`` (T, 2)) a foot
  link's target is its phase-mean position and orientation, eased in and out over ``ease_s``; a few
  Gauss-Newton steps of the solver's kernels on those links alone, with every joint and the root position
  pulled back to where it started (weight ``stay``) and the root orientation held, move it there.

  Args: root_pos (T, 3), root_rot (T, 3, 3), q (T, J). Returns the three, changed.
  """
  from humanoid_retarget.human.contacts import contact_phases

  m = robot.model
  links = robot.config.links
  T = q.shape[0]
  feet = [(s, k) for s, side in enumerate(("left", "right")) for k, lk in enumerate(links)
          if lk.orientation == f"{side}_foot"]
  if T < 2 or not feet or not contacts.any():
    return root_pos, root_rot, q
  c64 = np.ascontiguousarray
  root_pos, root_rot, q = (c64(a, dtype=np.float64).copy() for a in (root_pos, root_rot, q))
  ks = np.array([k for _, k in feet])
  fb = c64(robot.link_body[ks])
  fp = c64(robot.link_point[ks], dtype=np.float64)
  pos, rot = m.fk(root_pos, root_rot, q)
  pts = pos[:, fb] + np.einsum("tkij,kj->tki", rot[:, fb], fp)  # (T, F, 3)
  tgt_pos, tgt_rot = pts.copy(), rot[:, fb].copy()
  w = np.zeros((T, len(feet)))
  ease = max(ease_s * fps, 1.0)
  for i, (s, _) in enumerate(feet):
    for a, b in contact_phases(contacts[:, s]):
      tgt_pos[a:b, i] = pts[a:b, i].mean(axis=0)
      tgt_rot[a:b, i] = Rotation.from_matrix(tgt_rot[a:b, i]).mean().as_matrix()
      t = np.arange(b - a)
      w[a:b, i] = foot_weight * np.minimum(np.minimum(t + 1, b - a - t) / ease, 1.0)
  # The root orientation is held by an orientation residual on the root body (the proximal pull of the
  # step covers the root position and the joints).
  root_b = m.body_index(robot.config.root_body)
  rot_body = np.append(fb, root_b).astype(np.int64)
  tgt_rot = c64(np.concatenate([tgt_rot, root_rot[:, None]], axis=1))
  w_rot = c64(np.concatenate([w, np.full((T, 1), foot_weight)], axis=1))
  lo, hi = joint_limits(robot)
  nq, nv = m.num_joints, 6 + m.num_joints
  anc_idx, anc_n = robot_ancestors(m)
  H, g, cost, pos_sq = np.empty((T, nv, nv)), np.empty((T, nv)), np.empty(T), np.empty(T)
  no_pairs = np.zeros((0, 2), dtype=np.int64)
  cp = collision_pairs(robot)
  q_start, p_start = q.copy(), root_pos.copy()
  lam = np.full(T, 1e-3)
  for _ in range(iterations):
    linearize(*m.kinematic_arrays(), m.joint_body, anc_idx, anc_n, root_pos, root_rot, q, fb, fp, c64(tgt_pos),
              c64(w), rot_body, tgt_rot, w_rot, np.zeros(nq), np.zeros(nq), cp.cap_body, cp.cap_a, cp.cap_b,
              cp.cap_r, no_pairs, 0.0, 0.0, H, g, cost, np.empty((T, 0)), pos_sq)
    gn_step(H, g, root_pos, root_rot, q, lam, q_start, p_start, stay**2, lo, hi, 0.3, 0.05)
  return root_pos, root_rot, q


def joint_limits(robot: Robot) -> tuple[np.ndarray, np.ndarray]:
  """Joint bounds (J,) tightened by the config's margin (the middle of the range where it is too narrow)."""
  rng = robot.model.joint_range
  lo = rng[:, 0] + robot.config.joint_limit_margin
  hi = rng[:, 1] - robot.config.joint_limit_margin
  mid = 0.5 * (rng[:, 0] + rng[:, 1])
  return np.where(lo > hi, mid, lo), np.where(lo > hi, mid, hi)


def foot_lowest(robot: Robot, pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
  """Lowest sole point height of each foot, (T, 2)."""
  out = []
  for side in ("left", "right"):
    b = robot.foot_bodies[side]
    pts = pos[:, b, None, :] + np.einsum("tij,pj->tpi", rot[:, b], robot.foot_points[side])
    out.append(pts[..., 2].min(axis=1))
  return np.stack(out, axis=1)


def floor_correction(robot: Robot, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray,
                     contacts: np.ndarray, fps: float) -> np.ndarray:
  """Shift the root vertically so that stance feet touch the floor and no foot goes through it."""
  pos, rot = robot.model.fk(root_pos, root_rot, q)
  low = foot_lowest(robot, pos, rot)  # (T, 2)
  T = low.shape[0]
  want = np.full(T, np.nan)
  stance = contacts.any(axis=1)
  lowest_stance = np.where(contacts, low, np.inf).min(axis=1)
  want[stance] = -lowest_stance[stance]
  if stance.any():
    t = np.arange(T)
    want = np.interp(t, t[stance], want[stance])
  else:
    want = np.zeros(T)
  if T > 3:
    want = gaussian_filter1d(want, max(0.05 * fps, 0.5), mode="nearest")
  need = -low.min(axis=1)  # shift that puts the lowest point exactly on the floor
  shift = np.maximum(want, need - 0.0)
  # A second smoothing that never drops below the non-penetration bound.
  if T > 3:
    shift = np.maximum(gaussian_filter1d(shift, max(0.03 * fps, 0.5), mode="nearest"), need)
  out = root_pos.copy()
  out[:, 2] += shift
  return out


def retarget_kinematic(human: HumanMotion, robot: Robot, cfg: KinematicConfig = KinematicConfig()) -> RobotMotion:
  """Human motion -> robot motion (format 1) at the human's fps."""
  targets = build_targets(human, robot, cfg.targets)
  root_pos, root_rot, q, _ = solve(targets, robot, human.fps, cfg)
  if cfg.floor_correction:
    root_pos = floor_correction(robot, root_pos, root_rot, q, targets.contacts, human.fps)
  return make_motion(robot, root_pos, root_rot, q, targets.contacts, human.fps, "kinematic", human.source)


def make_motion(robot: Robot, root_pos: np.ndarray, root_rot: np.ndarray, q: np.ndarray, contacts: np.ndarray,
                fps: float, method: str, source: str) -> RobotMotion:
  m = robot.model
  pos, rot = m.fk(root_pos, root_rot, q)
  T = q.shape[0]
  # FK composes exact rotations: no re-orthogonalisation needed (assume_valid skips scipy's SVD check).
  quat = Rotation.from_matrix(rot.reshape(-1, 3, 3), assume_valid=True).as_quat(scalar_first=True).reshape(T, -1, 4)
  # Keep each quaternion track continuous (no sign flips between frames).
  dots = np.sum(quat[1:] * quat[:-1], axis=-1)
  flips = np.cumsum(dots < 0, axis=0) % 2
  quat[1:] *= np.where(flips[..., None] == 1, -1.0, 1.0)
  root_k = m.body_index(robot.config.root_body)
  return RobotMotion(
    robot=robot.name, fps=float(fps), joint_names=list(m.joint_names), dof_pos=q, root_pos=pos[:, root_k],
    root_quat=quat[:, root_k], body_names=list(m.body_names), body_pos_w=pos, body_quat_w=quat,
    contacts=contacts.astype(bool), method=method, source=source,
  )
