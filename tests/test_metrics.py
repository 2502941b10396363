"""Metrics against hand-computed truth."""

from __future__ import annotations

import copy

import numpy as np

from humanoid_retarget.eval.metrics import aggregate, evaluate_motion, joint_jump_mask, self_collision_mask
from humanoid_retarget.retarget.kinematic import make_motion


def _standing(g1, T=10):
  rp = np.tile([0.0, 0.0, 0.793], (T, 1))
  rr = np.broadcast_to(np.eye(3), (T, 3, 3)).copy()
  q = np.zeros((T, 29))
  return rp, rr, q


def test_joint_jump_mask():
  q = np.zeros((7, 2))
  q[3, 1] = 0.6  # a 0.6 rad jump into frame 3 and back out at frame 4
  np.testing.assert_array_equal(joint_jump_mask(q, 30.0), [0, 0, 0, 1, 1, 0, 0])
  # At 120 fps the step is 4 frames: a ramp of 0.15 rad per frame moves 0.6 rad per 1/30 s.
  q = np.outer(np.arange(12) * 0.15, [1.0])
  m = joint_jump_mask(q, 120.0)
  assert not m[:4].any() and m[4:].all()


def test_standing_pose_metrics(g1):
  rp, rr, q = _standing(g1)
  m = make_motion(g1, rp, rr, q, np.ones((10, 2), bool), 30.0, "test", "stand")
  r = evaluate_motion(g1, m)
  assert r.joint_jump_pct == 0 and r.self_collision_pct == 0 and r.penetration_pct == 0
  # Knee bound is -0.0873 rad: q = 0 is 0.087 from it, so not "near a limit" (0.05 rad).
  assert r.joint_limit_pct == 0
  # The G1's sole is 0.793 - 0.0 ... measure: root at its MJCF height puts the soles near the floor.
  assert abs(r.lowest_foot_mean_cm) < 3.0
  assert r.foot_skate_cms == 0.0


def test_limit_penetration_collision_detected(g1):
  rp, rr, q = _standing(g1)
  q[2:4, 3] = g1.model.joint_range[3, 1] - 0.01  # left knee at its upper bound in frames 2, 3
  rp[5, 2] -= 0.1  # frame 5 sunk 10 cm into the floor
  # Frame 7: left hip roll pulled far inwards crosses the legs.
  q[7, 1] = -0.4
  q[7, 7] = 0.4
  m = make_motion(g1, rp, rr, q, np.zeros((10, 2), bool), 30.0, "test", "x")
  r = evaluate_motion(g1, m)
  assert r.joint_limit_pct == 20.0
  assert r.penetration_pct == 10.0
  coll = self_collision_mask(g1, m)
  assert coll[7] and not coll[0]


def test_skate_speed(g1):
  rp, rr, q = _standing(g1, T=31)
  rp[:, 0] = np.arange(31) * 0.01  # whole robot slides at 0.3 m/s
  m = make_motion(g1, rp, rr, q, np.ones((31, 2), bool), 30.0, "test", "slide")
  r = evaluate_motion(g1, m)
  assert abs(r.foot_skate_cms - 30.0) < 1e-6


def test_aggregate_frame_weighted(g1):
  rp, rr, q = _standing(g1)
  m = make_motion(g1, rp, rr, q, np.zeros((10, 2), bool), 30.0, "t", "a")
  a = evaluate_motion(g1, m)
  b = copy.copy(a)
  b.frames, b.penetration_pct = 30, 40.0
  agg = aggregate([a, b])
  assert agg["frames"] == 40 and abs(agg["penetration_pct"] - 30.0) < 1e-9
