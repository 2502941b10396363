"""Compiled kernels against numpy / scipy / MuJoCo truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanoid_retarget.pipeline import cached_robot
from humanoid_retarget.retarget import gn_kernel as G
from humanoid_retarget.retarget.kinematic import collision_pairs, robot_ancestors
from humanoid_retarget.robot import kernels as K
from humanoid_retarget.robot.collision import segment_closest_points


def test_rotvec_roundtrip_matches_scipy():
  rng = np.random.default_rng(0)
  # Include angles near 0 and near pi, where naive formulas lose precision.
  rv = np.concatenate([rng.normal(size=(50, 3)), 1e-9 * rng.normal(size=(3, 3))])
  rv = np.concatenate([rv, np.array([[np.pi - 1e-7, 0, 0], [0, 0, -np.pi + 1e-9]])])
  for v in rv:
    R = np.empty((3, 3))
    K.rotvec_to_matrix(v[0], v[1], v[2], R)
    np.testing.assert_allclose(R, Rotation.from_rotvec(v).as_matrix(), atol=1e-12)
    out = np.empty(3)
    K.matrix_to_rotvec(R, out)
    ref = Rotation.from_matrix(R).as_rotvec()
    if np.linalg.norm(ref) > np.pi - 1e-5:  # +-pi is the same rotation
      np.testing.assert_allclose(Rotation.from_rotvec(out).as_matrix(), R, atol=1e-9)
    else:
      np.testing.assert_allclose(out, ref, atol=1e-9)


def test_closest_points_hand_cases_and_brute_force():
  # Hand cases: crossing segments 1 m apart along z meet at the crossing; parallel overlapping segments
  # 0.5 m apart give a pair 0.5 m apart; a point against a segment projects onto it (clamped at the end).
  c1, c2 = segment_closest_points(np.array([-1.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0, -1.0, 1]),
                                  np.array([0, 1.0, 1]))
  np.testing.assert_allclose(c1, [0, 0, 0])
  np.testing.assert_allclose(c2, [0, 0, 1])
  c1, c2 = segment_closest_points(np.array([0.0, 0, 0]), np.array([2.0, 0, 0]), np.array([1.0, 0.5, 0]),
                                  np.array([3.0, 0.5, 0]))
  assert abs(np.linalg.norm(c1 - c2) - 0.5) < 1e-12 and 1.0 - 1e-12 <= c1[0] <= 2.0 + 1e-12
  c1, c2 = segment_closest_points(np.array([3.0, 1, 0]), np.array([3.0, 1, 0]), np.array([0.0, 0, 0]),
                                  np.array([2.0, 0, 0]))
  np.testing.assert_allclose(c1, [3, 1, 0])
  np.testing.assert_allclose(c2, [2, 0, 0])
  # Random segments (some degenerate): no pair of sampled points is closer than the returned pair, and
  # the returned points lie on their segments.
  rng = np.random.default_rng(1)
  P = rng.normal(size=(200, 4, 3))
  P[:20, 3] = P[:20, 2]
  P[20:40, 1] = P[20:40, 0]
  c1, c2 = segment_closest_points(P[:, 0], P[:, 1], P[:, 2], P[:, 3])
  s = np.linspace(0.0, 1.0, 101)
  A = P[:, None, 0] + s[None, :, None] * (P[:, None, 1] - P[:, None, 0])  # (N, S, 3)
  B = P[:, None, 2] + s[None, :, None] * (P[:, None, 3] - P[:, None, 2])
  brute = np.linalg.norm(A[:, :, None] - B[:, None, :], axis=-1).min(axis=(1, 2))
  d = np.linalg.norm(c1 - c2, axis=-1)
  assert np.all(d <= brute + 1e-12)
  assert np.all(brute - d < 0.05)  # the grid is 1/100 of each segment
  for c, (p, q) in ((c1, (P[:, 0], P[:, 1])), (c2, (P[:, 2], P[:, 3]))):
    u = q - p
    t = np.einsum("ni,ni->n", c - p, u) / np.maximum(np.einsum("ni,ni->n", u, u), 1e-300)
    assert np.all((t > -1e-9) & (t < 1 + 1e-9))
    np.testing.assert_allclose(p + t[:, None] * u, c, atol=1e-9)


def _random_state(robot, T=7, seed=2):
  rng = np.random.default_rng(seed)
  m = robot.model
  lo, hi = m.joint_range[:, 0], m.joint_range[:, 1]
  q = rng.uniform(lo, hi, size=(T, m.num_joints))
  root_pos = rng.normal(size=(T, 3)) * 0.2 + [0, 0, 0.8]
  root_rot = Rotation.from_rotvec(rng.normal(size=(T, 3)) * 0.3).as_matrix()
  return root_pos, root_rot, q


def test_pair_distances_match_numpy():
  robot = cached_robot("unitree_g1_29dof")
  cp = collision_pairs(robot)
  root_pos, root_rot, q = _random_state(robot, T=40)
  pos, rot = robot.model.fk(root_pos, root_rot, q)
  ref, _, _ = cp.distances(pos, rot)
  d = cp.signed_distances(pos, rot, bound=0.1)
  near = ref < 0.1
  np.testing.assert_allclose(d[near], ref[near], atol=1e-9)
  assert np.all(d[~near] <= ref[~near] + 1e-9)  # a lower bound beyond the bound
  assert np.all(d[~near] > 0.1)


def test_linearize_matches_dense_jacobians():
  """H = J^T J and g = J^T r from the sparse kernel equal the dense numpy Jacobians' products."""
  robot = cached_robot("unitree_g1_29dof")
  m = robot.model
  T = 5
  root_pos, root_rot, q = _random_state(robot, T=T)
  links = robot.config.links
  pl = np.array([k for k, lk in enumerate(links) if lk.position_weight > 0])
  rl = np.array([k for k, lk in enumerate(links) if lk.orientation_weight > 0])
  rng = np.random.default_rng(3)
  tgt_pos = rng.normal(size=(T, len(pl), 3))
  tgt_rot = Rotation.random(T * len(rl), random_state=4).as_matrix().reshape(T, len(rl), 3, 3)
  w_pos = rng.uniform(0.5, 2.0, size=(T, len(pl)))
  w_rot = rng.uniform(0.1, 1.0, size=(T, len(rl)))
  q_nom = np.zeros(m.num_joints)
  pw = np.full(m.num_joints, 0.05)
  cp = collision_pairs(robot)
  nv = 6 + m.num_joints
  H, g, cost, pos_sq = np.empty((T, nv, nv)), np.empty((T, nv)), np.empty(T), np.empty(T)
  no_pairs = np.zeros((0, 2), dtype=np.int64)
  anc_idx, anc_n = robot_ancestors(m)
  G.linearize(*m.kinematic_arrays(), m.joint_body, anc_idx, anc_n, root_pos, root_rot, q,
              robot.link_body[pl].astype(np.int64), np.ascontiguousarray(robot.link_point[pl]), tgt_pos, w_pos,
              robot.link_body[rl].astype(np.int64), tgt_rot, w_rot, q_nom, pw,
              cp.cap_body, cp.cap_a, cp.cap_b, cp.cap_r, no_pairs, 0.015, 6.0, H, g, cost, np.empty((T, 0)), pos_sq)
  pos, rot = m.fk(root_pos, root_rot, q)
  anchors, axes = m.joint_world(pos, rot)
  pts = pos[:, robot.link_body[pl]] + np.einsum("tkij,kj->tki", rot[:, robot.link_body[pl]], robot.link_point[pl])
  Jp = m.point_jacobian(robot.link_body[pl], pts, root_pos, anchors, axes) * w_pos[..., None, None]
  rp = (pts - tgt_pos) * w_pos[..., None]
  Rc = rot[:, robot.link_body[rl]] @ np.swapaxes(tgt_rot, -1, -2)
  e = Rotation.from_matrix(Rc.reshape(-1, 3, 3)).as_rotvec().reshape(T, len(rl), 3) * w_rot[..., None]
  Jr = m.rotation_jacobian(robot.link_body[rl], axes) * w_rot[..., None, None]
  Jall = np.concatenate([Jp.reshape(T, -1, nv), Jr.reshape(T, -1, nv)], axis=1)
  rall = np.concatenate([rp.reshape(T, -1), e.reshape(T, -1)], axis=1)
  H_ref = np.swapaxes(Jall, 1, 2) @ Jall
  H_ref[:, np.arange(6, nv), np.arange(6, nv)] += pw**2
  g_ref = np.einsum("tmv,tm->tv", Jall, rall)
  g_ref[:, 6:] += pw**2 * (q - q_nom)
  np.testing.assert_allclose(H, H_ref, rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(cost, np.sum(rall**2, 1) + np.sum((pw * (q - q_nom)) ** 2, 1), rtol=1e-9)
  np.testing.assert_allclose(pos_sq, np.sum((pts - tgt_pos) ** 2, axis=(1, 2)), rtol=1e-9)


def test_step_solves_damped_system():
  """One step equals -(H + lam I)^-1 g for an unconstrained frame (far from limits, small step)."""
  rng = np.random.default_rng(5)
  T, J = 3, 4
  nv = 6 + J
  A = rng.normal(size=(T, nv, nv))
  H = np.einsum("tij,tkj->tik", A, A) + np.eye(nv)
  g = rng.normal(size=(T, nv)) * 1e-3
  lam = np.array([0.1, 1.0, 10.0])
  root_pos = np.zeros((T, 3))
  root_rot = np.broadcast_to(np.eye(3), (T, 3, 3)).copy()
  q = np.zeros((T, J))
  G.step(H, g, root_pos, root_rot, q, lam, q, root_pos.copy(), 0.0, np.full(J, -1.0), np.full(J, 1.0), 0.6, 0.1)
  dx = -np.linalg.solve(H + lam[:, None, None] * np.eye(nv), g[..., None])[..., 0]
  np.testing.assert_allclose(root_pos, dx[:, :3], atol=1e-12)
  np.testing.assert_allclose(q, dx[:, 6:], atol=1e-12)
  np.testing.assert_allclose(Rotation.from_matrix(root_rot).as_rotvec(), dx[:, 3:6], atol=1e-10)


def test_rate_limit_kernel_hand_case():
  q = np.array([[0.0], [1.0], [1.0], [0.0]])
  G.rate_limit_inplace(q, np.array([0.4]))
  # Forward: 0, 0.4, 0.8 (towards 1), 0.4 (towards 0); backward keeps it (all steps <= 0.4).
  np.testing.assert_allclose(q[:, 0], [0.0, 0.4, 0.8, 0.4])
  assert np.all(np.abs(np.diff(q[:, 0])) <= 0.4 + 1e-12)


@pytest.mark.parametrize("T", [1, 3])
def test_fk_matches_mujoco(T):
  import mujoco

  robot = cached_robot("unitree_g1_29dof")
  m = robot.model
  root_pos, root_rot, q = _random_state(robot, T=T, seed=6)
  pos, rot = m.fk(root_pos, root_rot, q)
  d = mujoco.MjData(m.mj_model)
  for t in range(T):
    d.qpos[:3] = root_pos[t]
    d.qpos[3:7] = Rotation.from_matrix(root_rot[t]).as_quat(scalar_first=True)
    d.qpos[7:] = q[t]
    mujoco.mj_kinematics(m.mj_model, d)
    np.testing.assert_allclose(pos[t], d.xpos[1:], atol=1e-10)
    np.testing.assert_allclose(rot[t], d.xmat[1:].reshape(-1, 3, 3), atol=1e-10)
