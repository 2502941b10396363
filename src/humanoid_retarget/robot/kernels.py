"""Compiled (numba) kinematics kernels: forward kinematics of a hinge-joint tree, frame by frame.

Whole-clip numpy FK pays a numpy call per body and joint; these loops compile to straight-line code
over 3x3 matrices, about 10x faster for a 30-body humanoid. Every function takes plain arrays (the
``RobotModel`` fields) so the solver kernels in ``retarget/gn_kernel.py`` can call them per frame.
Compiled functions are cached on disk (``cache=True``) so only the first process pays the compile time.
"""

from __future__ import annotations

import numba as nb
import numpy as np

JIT = dict(cache=True, nogil=True)
# Solver kernels: reassociation lets LLVM vectorise the small dense loops; results match to ~1e-12.
JIT_FAST = dict(cache=True, nogil=True, fastmath=True)


@nb.njit(inline='always', **JIT)
def axis_angle(axis: np.ndarray, angle: float, out: np.ndarray) -> None:
  """Rotation matrix about unit ``axis`` (3,) by ``angle`` (Rodrigues) into ``out`` (3, 3)."""
  x, y, z = axis[0], axis[1], axis[2]
  c = np.cos(angle)
  s = np.sin(angle)
  C = 1.0 - c
  out[0, 0] = c + x * x * C
  out[0, 1] = x * y * C - z * s
  out[0, 2] = x * z * C + y * s
  out[1, 0] = y * x * C + z * s
  out[1, 1] = c + y * y * C
  out[1, 2] = y * z * C - x * s
  out[2, 0] = z * x * C - y * s
  out[2, 1] = z * y * C + x * s
  out[2, 2] = c + z * z * C


@nb.njit(inline='always', **JIT)
def rotvec_to_matrix(rx: float, ry: float, rz: float, out: np.ndarray) -> None:
  """Rotation vector -> matrix (3, 3), exact near zero."""
  th = np.sqrt(rx * rx + ry * ry + rz * rz)
  if th < 1e-12:
    ax = np.array([1.0, 0.0, 0.0])
    axis_angle(ax, 0.0, out)
    # First-order term, so tiny steps still move.
    out[0, 1] -= rz
    out[0, 2] += ry
    out[1, 0] += rz
    out[1, 2] -= rx
    out[2, 0] -= ry
    out[2, 1] += rx
    return
  ax = np.array([rx / th, ry / th, rz / th])
  axis_angle(ax, th, out)


@nb.njit(inline='always', **JIT)
def matrix_to_rotvec(R: np.ndarray, out: np.ndarray) -> None:
  """Rotation matrix (3, 3) -> rotation vector (3,), via the quaternion (stable at 0 and pi)."""
  tr = R[0, 0] + R[1, 1] + R[2, 2]
  if tr > R[0, 0] and tr > R[1, 1] and tr > R[2, 2]:
    s = np.sqrt(tr + 1.0) * 2.0
    w = 0.25 * s
    x = (R[2, 1] - R[1, 2]) / s
    y = (R[0, 2] - R[2, 0]) / s
    z = (R[1, 0] - R[0, 1]) / s
  elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
    s = np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2.0
    w = (R[2, 1] - R[1, 2]) / s
    x = 0.25 * s
    y = (R[0, 1] + R[1, 0]) / s
    z = (R[0, 2] + R[2, 0]) / s
  elif R[1, 1] > R[2, 2]:
    s = np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2.0
    w = (R[0, 2] - R[2, 0]) / s
    x = (R[0, 1] + R[1, 0]) / s
    y = 0.25 * s
    z = (R[1, 2] + R[2, 1]) / s
  else:
    s = np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2.0
    w = (R[1, 0] - R[0, 1]) / s
    x = (R[0, 2] + R[2, 0]) / s
    y = (R[1, 2] + R[2, 1]) / s
    z = 0.25 * s
  if w < 0.0:
    w, x, y, z = -w, -x, -y, -z
  n = np.sqrt(x * x + y * y + z * z)
  if n < 1e-12:
    out[0] = 2.0 * x
    out[1] = 2.0 * y
    out[2] = 2.0 * z
    return
  f = 2.0 * np.arctan2(n, w) / n
  out[0] = f * x
  out[1] = f * y
  out[2] = f * z


@nb.njit(**JIT)
def fk_frame(parent, body_pos, body_rot, joint_start, joint_axis, joint_anchor, root_pos, root_rot, q, pos, rot):
  """One configuration: root_pos (3,), root_rot (3, 3), q (J,) -> pos (B, 3), rot (B, 3, 3) in place.

  Bodies are in tree order (parent before child); the joints of body b are
  ``joint_start[b]:joint_start[b + 1]`` and apply in that order.
  """
  Rj = np.empty((3, 3))
  R = np.empty((3, 3))
  for b in range(parent.shape[0]):
    p = parent[b]
    if p < 0:
      for i in range(3):
        pos[b, i] = root_pos[i]
        for k in range(3):
          rot[b, i, k] = root_rot[i, k]
    else:
      for i in range(3):
        pos[b, i] = pos[p, i] + rot[p, i, 0] * body_pos[b, 0] + rot[p, i, 1] * body_pos[b, 1] + rot[p, i, 2] * body_pos[b, 2]
        for k in range(3):
          rot[b, i, k] = rot[p, i, 0] * body_rot[b, 0, k] + rot[p, i, 1] * body_rot[b, 1, k] + rot[p, i, 2] * body_rot[b, 2, k]
    for j in range(joint_start[b], joint_start[b + 1]):
      axis_angle(joint_axis[j], q[j], Rj)
      a = joint_anchor[j]
      if a[0] != 0.0 or a[1] != 0.0 or a[2] != 0.0:
        # The joint turns about its anchor: P += R (a - Rj a).
        d0 = a[0] - (Rj[0, 0] * a[0] + Rj[0, 1] * a[1] + Rj[0, 2] * a[2])
        d1 = a[1] - (Rj[1, 0] * a[0] + Rj[1, 1] * a[1] + Rj[1, 2] * a[2])
        d2 = a[2] - (Rj[2, 0] * a[0] + Rj[2, 1] * a[1] + Rj[2, 2] * a[2])
        for i in range(3):
          pos[b, i] += rot[b, i, 0] * d0 + rot[b, i, 1] * d1 + rot[b, i, 2] * d2
      for i in range(3):
        for k in range(3):
          R[i, k] = rot[b, i, 0] * Rj[0, k] + rot[b, i, 1] * Rj[1, k] + rot[b, i, 2] * Rj[2, k]
      for i in range(3):
        for k in range(3):
          rot[b, i, k] = R[i, k]


@nb.njit(**JIT)
def fk_batch(parent, body_pos, body_rot, joint_start, joint_axis, joint_anchor, root_pos, root_rot, q, pos, rot):
  """Batched :func:`fk_frame`: root_pos (T, 3), root_rot (T, 3, 3), q (T, J) -> pos (T, B, 3), rot (T, B, 3, 3)."""
  for t in range(q.shape[0]):
    fk_frame(parent, body_pos, body_rot, joint_start, joint_axis, joint_anchor, root_pos[t], root_rot[t], q[t],
             pos[t], rot[t])


@nb.njit(inline='always', **JIT)
def closest_points(p1, q1, p2, q2, c1, c2):
  """Closest points c1, c2 (3,) between segments [p1, q1] and [p2, q2] (3,) (Ericson, Real-Time Collision
  Detection 5.1.9; a degenerate segment is a point). Scalar code: no temporaries."""
  d10, d11, d12 = q1[0] - p1[0], q1[1] - p1[1], q1[2] - p1[2]
  d20, d21, d22 = q2[0] - p2[0], q2[1] - p2[1], q2[2] - p2[2]
  r0, r1, r2 = p1[0] - p2[0], p1[1] - p2[1], p1[2] - p2[2]
  a = d10 * d10 + d11 * d11 + d12 * d12
  e = d20 * d20 + d21 * d21 + d22 * d22
  f = d20 * r0 + d21 * r1 + d22 * r2
  c = d10 * r0 + d11 * r1 + d12 * r2
  b = d10 * d20 + d11 * d21 + d12 * d22
  eps = 1e-12
  denom = a * e - b * b
  s = 0.0
  if denom > eps:
    s = min(max((b * f - c * e) / denom, 0.0), 1.0)
  t = (b * s + f) / e if e > eps else 0.0
  if t < 0.0:
    s = min(max(-c / a, 0.0), 1.0) if a > eps else 0.0
    t = 0.0
  elif t > 1.0:
    s = min(max((b - c) / a, 0.0), 1.0) if a > eps else 0.0
    t = 1.0
  if a <= eps:
    s = 0.0
  if e <= eps and a > eps:
    s = min(max(-c / a, 0.0), 1.0)
  c1[0], c1[1], c1[2] = p1[0] + d10 * s, p1[1] + d11 * s, p1[2] + d12 * s
  c2[0], c2[1], c2[2] = p2[0] + d20 * t, p2[1] + d21 * t, p2[2] + d22 * t


@nb.njit(**JIT)
def closest_points_batch(p1, q1, p2, q2, c1, c2):
  """:func:`closest_points` for N segment pairs: p1, q1, p2, q2 (N, 3) -> c1, c2 (N, 3) in place."""
  for n in range(p1.shape[0]):
    closest_points(p1[n], q1[n], p2[n], q2[n], c1[n], c2[n])
