"""Motion file round trip and the exporters (CSV, mjlab / BeyondMimic npz, GMR pickle)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanoid_retarget.errors import MotionFileError, RetargetError
from humanoid_retarget.human.bvh_import import load_bvh
from humanoid_retarget.io.export import (angular_velocity, bfs_order, export_motion, load_csv, load_gmr_pickle,
                                         tracking_arrays)
from humanoid_retarget.io.motion import load_motion, save_motion
from humanoid_retarget.retarget.kinematic import retarget_kinematic


@pytest.fixture(scope="module")
def motion(g1, sample_bvh):
  return retarget_kinematic(load_bvh(sample_bvh), g1)


def test_roundtrip_and_validation(tmp_path, motion):
  p = tmp_path / "m.npz"
  save_motion(p, motion)
  m = load_motion(p)
  assert m.robot == "unitree_g1_29dof" and m.method == "kinematic" and m.fps == 30.0
  np.testing.assert_allclose(m.dof_pos, motion.dof_pos, atol=1e-6)
  z = dict(np.load(p))
  assert z["dof_pos"].dtype == np.float32 and z["contacts"].dtype == bool and int(z["format_version"]) == 1
  # Root quaternion is wxyz and consistent with the body array of the root.
  np.testing.assert_allclose(z["root_quat"], z["body_quat_w"][:, 0], atol=1e-6)
  z.pop("root_quat")
  np.savez(tmp_path / "bad.npz", **z)
  with pytest.raises(MotionFileError, match="missing keys root_quat"):
    load_motion(tmp_path / "bad.npz")
  z = dict(np.load(p))
  z["body_pos_w"] = z["body_pos_w"][:, :5]
  np.savez(tmp_path / "bad2.npz", **z)
  with pytest.raises(MotionFileError, match="'body_pos_w' has shape"):
    load_motion(tmp_path / "bad2.npz")
  (tmp_path / "junk.npz").write_text("nope")
  with pytest.raises(MotionFileError, match="not a readable .npz"):
    load_motion(tmp_path / "junk.npz")


def test_csv(tmp_path, motion):
  p = tmp_path / "m.csv"
  export_motion(motion, "csv", p)
  a = np.loadtxt(p, delimiter=",")
  assert a.shape == (motion.num_frames, 36)
  # Quaternion columns are xyzw.
  np.testing.assert_allclose(a[:, 3:7], motion.root_quat[:, [1, 2, 3, 0]], atol=1e-5)
  rp, rq, q = load_csv(p)
  np.testing.assert_allclose(rq, motion.root_quat, atol=1e-5)
  np.testing.assert_allclose(q, motion.dof_pos, atol=1e-5)


def test_csv_refuses_other_robots(tmp_path, motion):
  import copy

  m = copy.copy(motion)
  m.robot = "unitree_h1"
  with pytest.raises(RetargetError, match="G1 29-DoF only"):
    export_motion(m, "csv", tmp_path / "x.csv")


def test_bfs_order():
  #      0
  #    1   2
  #   3     4
  parents = np.array([-1, 0, 0, 1, 2])
  assert bfs_order(parents) == [0, 1, 2, 3, 4]
  parents = np.array([-1, 0, 1, 0, 3])  # depth-first numbering
  assert bfs_order(parents) == [0, 1, 3, 2, 4]


def test_tracking_npz_dialects(tmp_path, motion, g1):
  a = tracking_arrays(motion, g1, 50.0, "mjlab")
  T50 = int(np.floor((motion.num_frames - 1) / 30 * 50 + 1e-9)) + 1
  assert a["joint_pos"].shape == (T50, 29) and a["body_pos_w"].shape == (T50, 30, 3)
  assert list(a["body_names"]) == g1.model.body_names and float(a["fps"][0]) == 50.0
  # Every 5th frame at 50 fps is a 30 fps frame (t = k / 10 s).
  np.testing.assert_allclose(a["joint_pos"][::5], motion.dof_pos[::3][: len(a["joint_pos"][::5])], atol=1e-5)
  b = tracking_arrays(motion, g1, 50.0, "beyondmimic")
  assert list(b["joint_names"][:6]) == ["left_hip_pitch_joint", "right_hip_pitch_joint", "waist_yaw_joint",
                                       "left_hip_roll_joint", "right_hip_roll_joint", "waist_roll_joint"]
  assert list(b["body_names"][:4]) == ["pelvis", "left_hip_pitch_link", "right_hip_pitch_link", "waist_yaw_link"]
  i = list(b["body_names"]).index("left_knee_link")
  j = g1.model.body_names.index("left_knee_link")
  np.testing.assert_allclose(b["body_pos_w"][:, i], a["body_pos_w"][:, j])
  # Linear velocity is the finite difference of positions.
  np.testing.assert_allclose(a["body_lin_vel_w"][1:-1], (a["body_pos_w"][2:] - a["body_pos_w"][:-2]) * 25.0, atol=1e-3)


def test_angular_velocity_constant_spin():
  t = np.arange(20) * 0.02
  q = Rotation.from_rotvec(np.outer(t, [0, 0, 2.0])).as_quat(scalar_first=True)
  w = angular_velocity(q, 0.02)
  np.testing.assert_allclose(w, np.tile([0, 0, 2.0], (20, 1)), atol=1e-9)


def test_gmr_pickle(tmp_path, motion):
  p = tmp_path / "m.pkl"
  export_motion(motion, "gmr", p)
  d = load_gmr_pickle(p)
  assert set(d) >= {"fps", "root_pos", "root_rot", "dof_pos"}
  np.testing.assert_allclose(np.asarray(d["root_rot"]), motion.root_quat[:, [1, 2, 3, 0]], atol=1e-12)
  # NumPy-version neutral: no reference to numpy._core or numpy.core in the pickle stream.
  raw = p.read_bytes()
  assert b"_core" not in raw and b"numpy.core" not in raw
  assert isinstance(pickle.loads(raw)["dof_pos"], np.ndarray)
