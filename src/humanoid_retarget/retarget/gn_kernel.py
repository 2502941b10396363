"""Compiled per-frame kernels of the whole-clip Gauss-Newton solver (``retarget/kinematic.py``).

One linearisation builds, for every frame, the normal equations ``H = J^T J`` and ``g = J^T r`` of the
weighted link-position, link-orientation, self-collision and posture residuals, straight from the
kinematic tree: a link point's Jacobian has non-zero columns only for the root (6) and the joints above
its body, so each 3-row block adds a small dense square to ``H`` instead of a (rows x 35) product.
One step adds the temporal and damping terms and solves each frame's system by Cholesky.

Unknowns per frame (nv = 6 + J): root translation (3), root rotation as a world-frame rotation vector
(3), joints (J) - the same columns as ``RobotModel.point_jacobian`` / ``rotation_jacobian``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from humanoid_retarget.robot.kernels import JIT_FAST as JIT
from humanoid_retarget.robot.kernels import closest_points, fk_frame, matrix_to_rotvec, rotvec_to_matrix


def ancestor_table(ancestor_joint_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(B, J) bool mask -> joint indices moving each body (B, A) padded with -1, and their counts (B,)."""
  counts = ancestor_joint_mask.sum(axis=1).astype(np.int64)
  table = np.full((ancestor_joint_mask.shape[0], max(int(counts.max(initial=0)), 1)), -1, dtype=np.int64)
  for b, row in enumerate(ancestor_joint_mask):
    idx = np.flatnonzero(row)
    table[b, :len(idx)] = idx
  return table, counts


@nb.njit(inline='always', **JIT)
def _capsule_world(pos, rot, body, ca, cb, a, b):
  """World ends a, b (3,) of a capsule with body-frame ends ca, cb (3,) on ``body`` of pos (B, 3), rot (B, 3, 3)."""
  for i in range(3):
    a[i] = pos[body, i] + rot[body, i, 0] * ca[0] + rot[body, i, 1] * ca[1] + rot[body, i, 2] * ca[2]
    b[i] = pos[body, i] + rot[body, i, 0] * cb[0] + rot[body, i, 1] * cb[1] + rot[body, i, 2] * cb[2]


@nb.njit(inline='always', **JIT)
def _pair_scratch():
  """Six (3,) work vectors for :func:`_pair_distance`: two segments' ends and their closest points."""
  w = np.empty((6, 3))
  return w[0], w[1], w[2], w[3], w[4], w[5]


@nb.njit(inline='always', **JIT)
def _pair_distance(pos, rot, cap_body, cap_a, cap_b, cap_r, ia, ib, bound, a1, b1, a2, b2, c1, c2):
  """Signed distance of capsules ia, ib at body poses pos (B, 3), rot (B, 3, 3); closest points into c1, c2.

  Pairs whose bounding spheres are more than ``bound`` apart return that sphere gap (a lower bound on
  the distance) without the segment test; c1, c2 are then not set.
  """
  _capsule_world(pos, rot, cap_body[ia], cap_a[ia], cap_b[ia], a1, b1)
  _capsule_world(pos, rot, cap_body[ib], cap_a[ib], cap_b[ib], a2, b2)
  h0, h1, h2 = 0.5 * (a1[0] + b1[0] - a2[0] - b2[0]), 0.5 * (a1[1] + b1[1] - a2[1] - b2[1]), 0.5 * (a1[2] + b1[2] - a2[2] - b2[2])
  u0, u1, u2 = b1[0] - a1[0], b1[1] - a1[1], b1[2] - a1[2]
  v0, v1, v2 = b2[0] - a2[0], b2[1] - a2[1], b2[2] - a2[2]
  la = 0.5 * np.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
  lb = 0.5 * np.sqrt(v0 * v0 + v1 * v1 + v2 * v2)
  gap = np.sqrt(h0 * h0 + h1 * h1 + h2 * h2) - la - lb - cap_r[ia] - cap_r[ib]
  if gap > bound:
    return gap
  closest_points(a1, b1, a2, b2, c1, c2)
  n0, n1, n2 = c1[0] - c2[0], c1[1] - c2[1], c1[2] - c2[2]
  return np.sqrt(n0 * n0 + n1 * n1 + n2 * n2) - cap_r[ia] - cap_r[ib]


@nb.njit(inline='always', **JIT)
def _add_block(H, g, Jb, r, cols, nc, w2):
  """H[cols, cols] += w2 Jb^T Jb (upper triangle), g[cols] += w2 Jb^T r; Jb (3, nc), r (3,)."""
  for a in range(nc):
    ca = cols[a]
    j0, j1, j2 = w2 * Jb[0, a], w2 * Jb[1, a], w2 * Jb[2, a]
    g[ca] += j0 * r[0] + j1 * r[1] + j2 * r[2]
    for b in range(a, nc):
      H[ca, cols[b]] += j0 * Jb[0, b] + j1 * Jb[1, b] + j2 * Jb[2, b]


@nb.njit(inline='always', **JIT)
def _point_block(p, rp, b, anc_idx, anc_n, axes_w, anchors_w, Jb, cols):
  """Jacobian block (3, 6 + n) of world point p (3,) on body b, and its columns; returns n columns."""
  for i in range(3):
    for k in range(6):
      Jb[i, k] = 0.0
    Jb[i, i] = 1.0
    cols[i] = i
    cols[3 + i] = 3 + i
  r0, r1, r2 = p[0] - rp[0], p[1] - rp[1], p[2] - rp[2]
  # d p / d omega = omega x r.
  Jb[0, 4], Jb[0, 5] = r2, -r1
  Jb[1, 3], Jb[1, 5] = -r2, r0
  Jb[2, 3], Jb[2, 4] = r1, -r0
  n = anc_n[b]
  for a in range(n):
    j = anc_idx[b, a]
    ax = axes_w[j]
    d0, d1, d2 = p[0] - anchors_w[j, 0], p[1] - anchors_w[j, 1], p[2] - anchors_w[j, 2]
    Jb[0, 6 + a] = ax[1] * d2 - ax[2] * d1
    Jb[1, 6 + a] = ax[2] * d0 - ax[0] * d2
    Jb[2, 6 + a] = ax[0] * d1 - ax[1] * d0
    cols[6 + a] = 6 + j
  return 6 + n


@nb.njit(**JIT)
def linearize(parent, body_pos, body_rot, joint_start, joint_axis, joint_anchor, joint_body, anc_idx, anc_n,
              root_pos, root_rot, q,
              pos_body, pos_point, tgt_pos, w_pos,
              rot_body, tgt_rot, w_rot,
              q_nom, posture_w,
              cap_body, cap_a, cap_b, cap_r, pairs, margin, coll_w,
              H, g, cost, dist, pos_sq):
  """Normal equations of every frame at the current solution.

  Args:
    root_pos (T, 3), root_rot (T, 3, 3), q (T, J): current solution.
    pos_body (Kp,), pos_point (Kp, 3), tgt_pos (T, Kp, 3), w_pos (T, Kp): tracked points and weights.
    rot_body (Kr,), tgt_rot (T, Kr, 3, 3), w_rot (T, Kr): tracked orientations and weights.
    q_nom (J,), posture_w (J,): posture prior.
    cap_body (C,), cap_a, cap_b (C, 3), cap_r (C,): capsules; pairs (P, 2) capsule indices to check;
    margin, coll_w: clearance kept and weight of the collision rows.
  Outputs (written in place):
    H (T, nv, nv), g (T, nv): J^T J and J^T r (weights squared in); cost (T,): sum of squared residuals;
    dist (T, P): signed capsule distances; pos_sq (T,): sum of unweighted squared point errors.
  """
  T = q.shape[0]
  B = parent.shape[0]
  J = q.shape[1]
  nv = 6 + J
  pos = np.empty((B, 3))
  rot = np.empty((B, 3, 3))
  axes_w = np.empty((J, 3))
  anchors_w = np.empty((J, 3))
  Jb = np.zeros((3, nv))
  Jb2 = np.zeros((3, nv))
  cols = np.empty(nv, dtype=np.int64)
  cols2 = np.empty(nv, dtype=np.int64)
  p = np.empty(3)
  r = np.empty(3)
  Rc = np.empty((3, 3))
  e = np.empty(3)
  a1, b1, a2, b2, c1, c2 = _pair_scratch()
  row = np.empty(nv)
  for t in range(T):
    fk_frame(parent, body_pos, body_rot, joint_start, joint_axis, joint_anchor, root_pos[t], root_rot[t], q[t],
             pos, rot)
    for j in range(J):
      bj = joint_body[j]
      for i in range(3):
        axes_w[j, i] = rot[bj, i, 0] * joint_axis[j, 0] + rot[bj, i, 1] * joint_axis[j, 1] + rot[bj, i, 2] * joint_axis[j, 2]
        anchors_w[j, i] = pos[bj, i] + rot[bj, i, 0] * joint_anchor[j, 0] + rot[bj, i, 1] * joint_anchor[j, 1] + rot[bj, i, 2] * joint_anchor[j, 2]
    Ht = H[t]
    gt = g[t]
    Ht[:, :] = 0.0
    gt[:] = 0.0
    c = 0.0
    sq = 0.0
    rp = root_pos[t]
    # Link positions.
    for k in range(pos_body.shape[0]):
      b = pos_body[k]
      for i in range(3):
        p[i] = pos[b, i] + rot[b, i, 0] * pos_point[k, 0] + rot[b, i, 1] * pos_point[k, 1] + rot[b, i, 2] * pos_point[k, 2]
        r[i] = p[i] - tgt_pos[t, k, i]
      e2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2]
      sq += e2
      w2 = w_pos[t, k] * w_pos[t, k]
      c += w2 * e2
      nc = _point_block(p, rp, b, anc_idx, anc_n, axes_w, anchors_w, Jb, cols)
      _add_block(Ht, gt, Jb, r, cols, nc, w2)
    # Link orientations: world-frame rotation vector of R_cur R_tgt^T.
    for k in range(rot_body.shape[0]):
      b = rot_body[k]
      for i in range(3):
        for m in range(3):
          Rc[i, m] = rot[b, i, 0] * tgt_rot[t, k, m, 0] + rot[b, i, 1] * tgt_rot[t, k, m, 1] + rot[b, i, 2] * tgt_rot[t, k, m, 2]
      matrix_to_rotvec(Rc, e)
      w2 = w_rot[t, k] * w_rot[t, k]
      c += w2 * (e[0] * e[0] + e[1] * e[1] + e[2] * e[2])
      n = anc_n[b]
      for i in range(3):
        for m in range(6):
          Jb[i, m] = 0.0
        Jb[i, 3 + i] = 1.0
        cols[i] = i
        cols[3 + i] = 3 + i
      for a in range(n):
        j = anc_idx[b, a]
        for i in range(3):
          Jb[i, 6 + a] = axes_w[j, i]
        cols[6 + a] = 6 + j
      _add_block(Ht, gt, Jb, e, cols, 6 + n, w2)
    # Self-collision: one row per pair closer than the margin, d(distance)/dx = n . (J_a - J_b).
    for k in range(pairs.shape[0]):
      ia = pairs[k, 0]
      ib = pairs[k, 1]
      ba = cap_body[ia]
      bb = cap_body[ib]
      d = _pair_distance(pos, rot, cap_body, cap_a, cap_b, cap_r, ia, ib, margin + 0.06, a1, b1, a2, b2, c1, c2)
      dist[t, k] = d
      if d >= margin:
        continue
      n0, n1, n2 = c1[0] - c2[0], c1[1] - c2[1], c1[2] - c2[2]
      nn = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2)
      nn = max(nn, 1e-9)
      n0, n1, n2 = n0 / nn, n1 / nn, n2 / nn
      row[:] = 0.0
      na = _point_block(c1, rp, ba, anc_idx, anc_n, axes_w, anchors_w, Jb, cols)
      for m in range(na):
        row[cols[m]] += n0 * Jb[0, m] + n1 * Jb[1, m] + n2 * Jb[2, m]
      nb_ = _point_block(c2, rp, bb, anc_idx, anc_n, axes_w, anchors_w, Jb2, cols2)
      for m in range(nb_):
        row[cols2[m]] -= n0 * Jb2[0, m] + n1 * Jb2[1, m] + n2 * Jb2[2, m]
      # Residual coll_w (margin - d), Jacobian -coll_w row.
      res = coll_w * (margin - d)
      c += res * res
      w2 = coll_w * coll_w
      for u in range(nv):
        if row[u] == 0.0:
          continue
        gt[u] += -coll_w * row[u] * res
        for v in range(u, nv):
          Ht[u, v] += w2 * row[u] * row[v]
    # Posture prior.
    for j in range(J):
      pw2 = posture_w[j] * posture_w[j]
      dq = q[t, j] - q_nom[j]
      c += pw2 * dq * dq
      Ht[6 + j, 6 + j] += pw2
      gt[6 + j] += pw2 * dq
    for u in range(nv):
      for v in range(u + 1, nv):
        Ht[v, u] = Ht[u, v]
    cost[t] = c
    pos_sq[t] = sq


@nb.njit(**JIT)
def _cholesky_solve(A, b, x, inv_diag):
  """Solve A x = b for symmetric positive definite A (n, n); A's lower triangle is overwritten by its
  Cholesky factor (inv_diag (n,): scratch for the factor's inverse diagonal, multiplications instead of
  divisions in the inner loops)."""
  n = A.shape[0]
  for j in range(n):
    s = A[j, j]
    for k in range(j):
      s -= A[j, k] * A[j, k]
    inv = 1.0 / np.sqrt(max(s, 1e-300))
    inv_diag[j] = inv
    for i in range(j + 1, n):
      v = A[i, j]
      for k in range(j):
        v -= A[i, k] * A[j, k]
      A[i, j] = v * inv
  for i in range(n):
    v = b[i]
    for k in range(i):
      v -= A[i, k] * x[k]
    x[i] = v * inv_diag[i]
  for i in range(n - 1, -1, -1):
    v = x[i]
    for k in range(i + 1, n):
      v -= A[k, i] * x[k]
    x[i] = v * inv_diag[i]


@nb.njit(**JIT)
def step(H, g, root_pos, root_rot, q, lam, q_s, p_s, ws, lo, hi, max_iter_step, max_root_step):
  """One damped Gauss-Newton step per frame, in place on root_pos (T, 3), root_rot (T, 3, 3), q (T, J).

  Adds a proximal pull ``ws`` towards the filtered solution (q_s (T, J), p_s (T, 3); ws = 0 disables it)
  and ``lam`` (T,) damping to H (T, nv, nv), g (T, nv); scales each frame's step so no joint or root angle
  moves more than ``max_iter_step`` and the root no more than ``max_root_step``; clips joints to lo/hi (J,).
  """
  T, J = q.shape
  nv = 6 + J
  A = np.empty((nv, nv))
  b = np.empty(nv)
  dx = np.empty(nv)
  inv_diag = np.empty(nv)
  Rd = np.empty((3, 3))
  Rn = np.empty((3, 3))
  for t in range(T):
    for u in range(nv):
      for v in range(nv):
        A[u, v] = H[t, u, v]
      A[u, u] += lam[t]
      b[u] = g[t, u]
    if ws > 0.0:
      for j in range(J):
        A[6 + j, 6 + j] += ws
        b[6 + j] += ws * (q[t, j] - q_s[t, j])
      for i in range(3):
        A[i, i] += ws
        b[i] += ws * (root_pos[t, i] - p_s[t, i])
    _cholesky_solve(A, b, dx, inv_diag)
    big_ang = 0.0
    for u in range(3, nv):
      big_ang = max(big_ang, abs(dx[u]))
    big_lin = max(abs(dx[0]), abs(dx[1]), abs(dx[2]))
    scale = max(big_ang / max_iter_step, big_lin / max_root_step, 1.0)
    for u in range(nv):
      dx[u] = -dx[u] / scale
    for i in range(3):
      root_pos[t, i] += dx[i]
    rotvec_to_matrix(dx[3], dx[4], dx[5], Rd)
    for i in range(3):
      for k in range(3):
        Rn[i, k] = Rd[i, 0] * root_rot[t, 0, k] + Rd[i, 1] * root_rot[t, 1, k] + Rd[i, 2] * root_rot[t, 2, k]
    for i in range(3):
      for k in range(3):
        root_rot[t, i, k] = Rn[i, k]
    for j in range(J):
      q[t, j] = min(max(q[t, j] + dx[6 + j], lo[j]), hi[j])


@nb.njit(**JIT)
def rate_limit_inplace(q, max_step):
  """Clamp per-frame changes of q (T, J) to max_step (J,): a forward then a backward pass, in place."""
  T, J = q.shape
  for t in range(1, T):
    for j in range(J):
      q[t, j] = min(max(q[t, j], q[t - 1, j] - max_step[j]), q[t - 1, j] + max_step[j])
  for t in range(T - 2, -1, -1):
    for j in range(J):
      q[t, j] = min(max(q[t, j], q[t + 1, j] - max_step[j]), q[t + 1, j] + max_step[j])


@nb.njit(**JIT)
def pair_distances(pos, rot, cap_body, cap_a, cap_b, cap_r, pairs, bound, dist):
  """Signed capsule distances dist (T, P) of ``pairs`` (P, 2) from body poses pos (T, B, 3), rot (T, B, 3, 3).

  Exact up to ``bound``; a pair farther apart gets a lower bound above ``bound`` (bounding spheres).
  """
  a1, b1, a2, b2, c1, c2 = _pair_scratch()
  for t in range(pos.shape[0]):
    for k in range(pairs.shape[0]):
      dist[t, k] = _pair_distance(pos[t], rot[t], cap_body, cap_a, cap_b, cap_r, pairs[k, 0], pairs[k, 1], bound,
                                  a1, b1, a2, b2, c1, c2)
