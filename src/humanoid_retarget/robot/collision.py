"""Closed-form capsule-capsule distances on arrays (the per-pair kernel is ``robot.kernels.closest_points``)."""

from __future__ import annotations

import numpy as np

from humanoid_retarget.robot.kernels import closest_points_batch


def segment_closest_points(p1: np.ndarray, q1: np.ndarray, p2: np.ndarray, q2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Closest points between segments [p1, q1] and [p2, q2] (Ericson, Real-Time Collision Detection 5.1.9).

  Args: (..., 3) arrays (broadcast). Returns: c1, c2 (..., 3), the closest points on each segment.
  """
  shape = np.broadcast_shapes(np.shape(p1), np.shape(q1), np.shape(p2), np.shape(q2))
  flat = [np.ascontiguousarray(np.broadcast_to(x, shape), dtype=np.float64).reshape(-1, 3) for x in (p1, q1, p2, q2)]
  c1, c2 = np.empty_like(flat[0]), np.empty_like(flat[0])
  closest_points_batch(*flat, c1, c2)
  return c1.reshape(shape), c2.reshape(shape)


def capsule_distance(p1, q1, r1, p2, q2, r2):
  """Signed surface distance between capsules (negative when they overlap) and closest points."""
  c1, c2 = segment_closest_points(p1, q1, p2, q2)
  d = np.linalg.norm(c1 - c2, axis=-1)
  return d - r1 - r2, c1, c2
