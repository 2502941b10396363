"""Closed-form capsule-capsule distances, vectorised."""

from __future__ import annotations

import numpy as np


def segment_closest_points(p1: np.ndarray, q1: np.ndarray, p2: np.ndarray, q2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Closest points between segments [p1, q1] and [p2, q2] (Ericson, Real-Time Collision Detection 5.1.9).

  Args: (..., 3) arrays. Returns: c1, c2 (..., 3), the closest points on each segment.
  """
  d1 = q1 - p1
  d2 = q2 - p2
  r = p1 - p2
  a = np.sum(d1 * d1, -1)
  e = np.sum(d2 * d2, -1)
  f = np.sum(d2 * r, -1)
  c = np.sum(d1 * r, -1)
  b = np.sum(d1 * d2, -1)
  eps = 1e-12
  denom = a * e - b * b
  with np.errstate(divide="ignore", invalid="ignore"):
    s = np.where(denom > eps, np.clip((b * f - c * e) / np.where(denom > eps, denom, 1.0), 0.0, 1.0), 0.0)
    t = np.where(e > eps, (b * s + f) / np.where(e > eps, e, 1.0), 0.0)
    # Clamp t and recompute s.
    t_c = np.clip(t, 0.0, 1.0)
    s = np.where(t < 0.0, np.clip(-c / np.where(a > eps, a, 1.0), 0.0, 1.0), s)
    s = np.where(t > 1.0, np.clip((b - c) / np.where(a > eps, a, 1.0), 0.0, 1.0), s)
    t = t_c
    s = np.where(a > eps, s, 0.0)
    # Degenerate second segment: t = 0, s from projection.
    s = np.where((e <= eps) & (a > eps), np.clip(-c / np.where(a > eps, a, 1.0), 0.0, 1.0), s)
  c1 = p1 + d1 * s[..., None]
  c2 = p2 + d2 * t[..., None]
  return c1, c2


def capsule_distance(p1, q1, r1, p2, q2, r2):
  """Signed surface distance between capsules (negative when they overlap) and closest points."""
  c1, c2 = segment_closest_points(p1, q1, p2, q2)
  d = np.linalg.norm(c1 - c2, axis=-1)
  return d - r1 - r2, c1, c2
