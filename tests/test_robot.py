"""Robot model: FK against MuJoCo, Jacobians against finite differences, collision distances."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanoid_retarget.errors import RobotConfigError
from humanoid_retarget.robot.collision import capsule_distance
from humanoid_retarget.robot.config import load_robot


def test_g1_structure(g1):
  m = g1.model
  assert m.num_joints == 29 and m.num_bodies == 30
  assert m.joint_names[:3] == ["left_hip_pitch_joint", "left_hip_roll_joint", "left_hip_yaw_joint"]
  assert m.joint_names[12:15] == ["waist_yaw_joint", "waist_roll_joint", "waist_pitch_joint"]
  assert len(m.capsules) == 33
  # Sole points sit 3.5 cm below the ankle roll link (capsules at z = -0.025 with radius 0.01).
  np.testing.assert_allclose(g1.foot_points["left"][:, 2], -0.035)


def test_fk_matches_mujoco(g1):
  m = g1.model
  rng = np.random.default_rng(0)
  T = 6
  q = rng.uniform(m.joint_range[:, 0], m.joint_range[:, 1], size=(T, m.num_joints))
  rp = rng.normal(size=(T, 3))
  rr = Rotation.random(T, random_state=1)
  pos, rot = m.fk(rp, rr.as_matrix(), q)
  d = mujoco.MjData(m.mj_model)
  for t in range(T):
    d.qpos[:3], d.qpos[3:7], d.qpos[7:] = rp[t], rr[t].as_quat(scalar_first=True), q[t]
    mujoco.mj_kinematics(m.mj_model, d)
    np.testing.assert_allclose(d.xpos[1:], pos[t], atol=1e-10)
    np.testing.assert_allclose(d.xmat[1:].reshape(-1, 3, 3), rot[t], atol=1e-10)


def test_jacobians_match_finite_differences(g1):
  m = g1.model
  rng = np.random.default_rng(3)
  q = rng.uniform(-0.4, 0.4, (1, m.num_joints))
  rp = np.array([[0.1, -0.2, 0.8]])
  rr = Rotation.random(random_state=5).as_matrix()[None]
  bodies = np.array([m.body_index("left_ankle_roll_link"), m.body_index("right_wrist_yaw_link"), m.body_index("torso_link")])
  off = np.array([0.02, -0.01, 0.03])

  def points(rp, rr, q):
    pos, rot = m.fk(rp, rr, q)
    return pos[:, bodies] + np.einsum("tkij,j->tki", rot[:, bodies], off), rot[:, bodies]

  p0, R0 = points(rp, rr, q)
  pos, rot = m.fk(rp, rr, q)
  an, ax = m.joint_world(pos, rot)
  Jp = m.point_jacobian(bodies, p0, rp, an, ax)[0]
  Jr = m.rotation_jacobian(bodies, ax)[0]
  eps = 1e-6
  for i in range(6 + m.num_joints):
    d = np.zeros(6 + m.num_joints)
    d[i] = eps
    p1, R1 = points(rp + d[:3], Rotation.from_rotvec(d[3:6]).as_matrix()[None] @ rr, q + d[6:])
    np.testing.assert_allclose((p1 - p0)[0] / eps, Jp[:, :, i], atol=1e-5)
    w = Rotation.from_matrix(R1[0] @ np.swapaxes(R0[0], -1, -2)).as_rotvec() / eps
    np.testing.assert_allclose(w, Jr[:, :, i], atol=1e-5)


def test_capsule_distance_hand_computed():
  # Parallel segments 0.5 apart with radii 0.1 and 0.2: surface distance 0.2.
  d, c1, c2 = capsule_distance(np.array([0, 0, 0.0]), np.array([1, 0, 0.0]), 0.1,
                               np.array([0, 0.5, 0.0]), np.array([1, 0.5, 0.0]), 0.2)
  assert abs(d - 0.2) < 1e-12
  # Crossing segments: closest points at the crossing, overlap -0.1 - 0.1.
  d, c1, c2 = capsule_distance(np.array([-1, 0, 0.0]), np.array([1, 0, 0.0]), 0.1,
                               np.array([0, -1, 0.0]), np.array([0, 1, 0.0]), 0.1)
  assert abs(d + 0.2) < 1e-12
  np.testing.assert_allclose(c1, 0, atol=1e-12)
  # Sphere (degenerate segment) beyond the end of a segment.
  d, c1, c2 = capsule_distance(np.array([0, 0, 0.0]), np.array([1, 0, 0.0]), 0.0,
                               np.array([2, 0, 0.0]), np.array([2, 0, 0.0]), 0.5)
  assert abs(d - 0.5) < 1e-12


def test_chain_reach_g1(g1):
  names = [lk.name for lk in g1.config.links]
  hip, ank = names.index("left_hip"), names.index("left_ankle")
  reach = g1.chain_reach(hip, ank)
  # Thigh and shank of the G1 are about 0.31 and 0.32 m long; the straight leg reaches nearly their sum.
  assert 0.60 < reach < 0.64


def test_bad_robot_config(tmp_path):
  p = tmp_path / "r.toml"
  p.write_text('name = "x"\nmjcf = "nothere.xml"\nroot_body = "a"\nleft_foot = "b"\nright_foot = "c"\nlinks = []\n')
  with pytest.raises(RobotConfigError, match="exactly one link must have mode 'root'"):
    load_robot(str(p))
  with pytest.raises(RobotConfigError, match="no such robot config"):
    load_robot(str(tmp_path / "missing.toml"))
