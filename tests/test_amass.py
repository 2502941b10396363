"""AMASS input end to end with synthetic body model files (tests/amass_synth.py) and generated clips."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

if os.environ.get("CI"):
  import smplx  # noqa: F401 - under CI the amass extra must be installed: an ImportError fails the run
else:
  pytest.importorskip("smplx")

from amass_synth import (  # noqa: E402
  FACE_X_ROOT,
  SMPL_TO_CANONICAL,
  hand_fk,
  install_models,
  random_pose,
  walk_pose,
  write_smpl_clip,
  write_smplh_clip,
  write_smplx_clip,
)

from humanoid_retarget.errors import InputFormatError  # noqa: E402
from humanoid_retarget.human.amass import ENV_VAR, is_amass_shape_file, load_amass  # noqa: E402
from humanoid_retarget.human.load import HumanLoadConfig, load_human  # noqa: E402
from humanoid_retarget.human.motion import J, frames_from_positions  # noqa: E402

WRITERS = {"smplh": write_smplh_clip, "smplx": write_smplx_clip, "smpl": write_smpl_clip}


@pytest.fixture(scope="module")
def bm(tmp_path_factory):
  """(folder, models by (type, gender)) of a synthetic body model install."""
  root = tmp_path_factory.mktemp("body_models")
  return str(root), install_models(str(root))


def _matrices(q: np.ndarray) -> np.ndarray:
  return Rotation.from_quat(q.reshape(-1, 4), scalar_first=True).as_matrix().reshape(*q.shape[:-1], 3, 3)


def _unfloored(hm) -> np.ndarray:
  p = hm.positions.copy()
  p[..., 2] += hm.meta["floor_offset"]
  return p


@pytest.mark.parametrize("model_type,gender,n_used", [
  ("smplh", "male", 16),     # smplh/SMPLH_MALE.pkl, 16 shape columns
  ("smplh", "female", 16),   # smplh/female/model.npz (AMASS layout, no hand PCA arrays)
  ("smplx", "neutral", 16),  # smplx/SMPLX_NEUTRAL.npz
  ("smplx", "male", 16),     # SMPLX_MALE.npz directly in the folder
  ("smpl", "neutral", 10),   # smpl/SMPL_NEUTRAL.pkl, sparse regressor, 10 shape columns
  ("smpl", "female", 10),    # smpl/basicmodel_f_lbs_10_207_0_v1.1.0.pkl
])
def test_layouts_match_hand_forward_kinematics(bm, tmp_path, model_type, gender, n_used):
  root, models = bm
  rng = np.random.default_rng(7)
  pose, trans = random_pose(rng, 8)
  betas = rng.normal(size=16)
  f = WRITERS[model_type](str(tmp_path / "clip.npz"), pose, trans, betas, gender, 120.0)
  hm = load_amass(f, root)
  ref_pos, ref_R = hand_fk(models[(model_type, gender)], model_type, pose, betas, trans)
  assert hm.fps == 120.0 and hm.num_frames == 8
  np.testing.assert_allclose(_unfloored(hm), ref_pos, atol=2e-6)
  np.testing.assert_allclose(_matrices(hm.rotations), ref_R @ SMPL_TO_CANONICAL, atol=2e-6)
  assert hm.meta["format"] == "amass"
  assert hm.meta["model_type"] == model_type and hm.meta["gender"] == gender
  assert hm.meta["fps"] == 120.0 and hm.meta["num_betas"] == n_used
  # Floor: the feet's low percentile on z = 0 (the BVH importer's rule).
  low = np.minimum(hm.positions[:, [J("left_foot"), J("right_foot")], 2].min(axis=1),
                   hm.positions[:, [J("left_ankle"), J("right_ankle")], 2].min(axis=1) - 0.05)
  assert abs(np.percentile(low, 2.0) - 0.02) < 1e-9  # joints 2 cm above the sole


def test_all_sixteen_smplh_betas_are_used(bm, tmp_path):
  """AMASS SMPL-H has 16 shape components; betas 10..15 move the joints too."""
  root, models = bm
  pose, trans = random_pose(np.random.default_rng(3), 4)
  betas = np.zeros(16)
  betas[10:] = 3.0
  a = load_amass(write_smplh_clip(str(tmp_path / "a.npz"), pose, trans, betas, "female", 60.0), root)
  b = load_amass(write_smplh_clip(str(tmp_path / "b.npz"), pose, trans, np.zeros(16), "female", 60.0), root)
  assert np.abs(_unfloored(a) - _unfloored(b)).max() > 5e-3
  ref, _ = hand_fk(models[("smplh", "female")], "smplh", pose, betas, trans)
  np.testing.assert_allclose(_unfloored(a), ref, atol=2e-6)


@pytest.mark.parametrize("yaw_deg", [0.0, 90.0, -135.0])
def test_t_pose_orientation_convention(bm, tmp_path, yaw_deg):
  """SMPL's T-pose turned to face +X is identity for every joint; a yaw turns all joints with it."""
  root, _ = bm
  T = 3
  yaw = Rotation.from_euler("z", yaw_deg, degrees=True)
  pose = np.zeros((T, 22, 3))
  pose[:, 0] = (yaw * Rotation.from_rotvec(FACE_X_ROOT)).as_rotvec()
  trans = np.zeros((T, 3))
  hm = load_amass(write_smplx_clip(str(tmp_path / "t.npz"), pose, trans, np.zeros(16), "neutral", 30.0), root)
  np.testing.assert_allclose(_matrices(hm.rotations), np.broadcast_to(yaw.as_matrix(), (T, 22, 3, 3)), atol=1e-6)
  # Geometry in the body's own frame (yaw undone): forward +x, left +y, up +z, arms out sideways.
  p = hm.positions[0] @ yaw.as_matrix()
  assert p[J("left_hip"), 1] > p[J("right_hip"), 1] + 0.1
  assert p[J("head"), 2] > p[J("pelvis"), 2] + 0.4 > p[J("left_ankle"), 2] + 1.0
  assert p[J("left_foot"), 0] > p[J("left_ankle"), 0] + 0.05
  assert p[J("left_wrist"), 1] > p[J("left_shoulder"), 1] + 0.4
  assert p[J("right_wrist"), 1] < p[J("right_shoulder"), 1] - 0.4
  # The pelvis frame from the model agrees with the one the position-only readers derive.
  np.testing.assert_allclose(frames_from_positions(hm.positions)[:, J("pelvis")], _matrices(hm.rotations)[:, 0],
                             atol=1e-6)
  # The standing height of the synthetic adult.
  assert 1.5 < p[J("head"), 2] < 1.75


def test_gender_selects_the_model_file(bm, tmp_path):
  root, models = bm
  rng = np.random.default_rng(11)
  pose, trans = random_pose(rng, 5)
  betas = rng.normal(size=16)
  out = {}
  for g in ("neutral", "male"):
    out[g] = load_amass(write_smplx_clip(str(tmp_path / f"{g}.npz"), pose, trans, betas, g, 30.0), root)
    ref, _ = hand_fk(models[("smplx", g)], "smplx", pose, betas, trans)
    np.testing.assert_allclose(_unfloored(out[g]), ref, atol=2e-6)
    assert out[g].meta["gender"] == g
  assert np.abs(_unfloored(out["male"]) - _unfloored(out["neutral"])).max() > 0.02
  # SMPL-H with the gender stored as bytes (older AMASS releases).
  m = load_amass(write_smplh_clip(str(tmp_path / "m.npz"), pose, trans, betas, "male", 30.0, gender_bytes=True), root)
  f = load_amass(write_smplh_clip(str(tmp_path / "f.npz"), pose, trans, betas, "female", 30.0, gender_bytes=True),
                 root)
  assert (m.meta["gender"], f.meta["gender"]) == ("male", "female")
  assert m.meta["model_file"].endswith("SMPLH_MALE.pkl") and f.meta["model_file"].endswith("model.npz")
  assert np.abs(_unfloored(m) - _unfloored(f)).max() > 0.02


def test_detected_by_content_not_name(bm, tmp_path):
  root, models = bm
  rng = np.random.default_rng(5)
  pose, trans = random_pose(rng, 4)
  betas = rng.normal(size=16)
  # An SMPL-X clip holding only 'poses' (165 values) under a misleading name and extension.
  T = pose.shape[0]
  poses = np.concatenate([pose.reshape(T, 66), rng.normal(size=(T, 99))], axis=1)
  src = tmp_path / "smplh_clip_poses.npz"
  np.savez(src, poses=poses, trans=trans, betas=betas, gender=np.array("neutral"), mocap_frame_rate=np.array(50.0))
  dst = tmp_path / "clip.motion"
  os.rename(src, dst)
  hm = load_human(dst, HumanLoadConfig(body_model_dir=root))
  assert hm.meta["model_type"] == "smplx" and hm.fps == 50.0
  ref, _ = hand_fk(models[("smplx", "neutral")], "smplx", pose, betas, trans)
  np.testing.assert_allclose(_unfloored(hm), ref, atol=2e-6)


def test_resample_to_requested_fps(bm, tmp_path):
  root, _ = bm
  pose, trans = walk_pose(121, 120.0)
  f = write_smplh_clip(str(tmp_path / "w.npz"), pose, trans, np.zeros(16), "male", 120.0)
  src = load_human(f, HumanLoadConfig(body_model_dir=root))
  hm = load_human(f, HumanLoadConfig(body_model_dir=root, fps=30.0))
  assert src.fps == 120.0 and src.num_frames == 121
  assert hm.fps == 30.0 and hm.num_frames == 31
  np.testing.assert_allclose(hm.positions, src.positions[::4], atol=1e-9)
  np.testing.assert_allclose(np.abs(np.sum(hm.rotations * src.rotations[::4], axis=-1)), 1.0, atol=1e-9)


@pytest.mark.parametrize("model_type,gender,file,site", [
  ("smplx", "male", "SMPLX_MALE.npz", "smpl-x.is.tue.mpg.de"),
  ("smplh", "female", "SMPLH_FEMALE.npz", "mano.is.tue.mpg.de"),
  ("smpl", "male", "SMPL_MALE.pkl", "smpl.is.tue.mpg.de"),
])
def test_missing_model_says_what_where_and_how(tmp_path, model_type, gender, file, site):
  empty = tmp_path / "models"
  empty.mkdir()
  rng = np.random.default_rng(0)
  pose, trans = random_pose(rng, 3)
  f = WRITERS[model_type](str(tmp_path / "Subject_01_poses.npz"), pose, trans, np.zeros(10), gender, 60.0)
  with pytest.raises(InputFormatError) as ei:
    load_amass(f, str(empty))
  msg = str(ei.value)
  assert "\n" not in msg
  assert msg.startswith(f + ": ")
  for needle in (file, site, str(empty), os.path.join(str(empty), model_type), "--body-model-dir", ENV_VAR,
                 f"gender {gender}", "register"):
    assert needle in msg, needle


def test_gender_is_not_swapped_for_another_model(bm, tmp_path):
  """Only SMPL-X neutral and male exist: a female clip names SMPLX_FEMALE instead of using another."""
  root, _ = bm
  pose, trans = random_pose(np.random.default_rng(1), 3)
  f = write_smplx_clip(str(tmp_path / "f.npz"), pose, trans, np.zeros(16), "female", 60.0)
  with pytest.raises(InputFormatError, match="SMPLX_FEMALE"):
    load_amass(f, root)


def test_model_folder_from_environment(bm, tmp_path, monkeypatch):
  root, _ = bm
  pose, trans = random_pose(np.random.default_rng(2), 3)
  f = write_smpl_clip(str(tmp_path / "s.npz"), pose, trans, np.zeros(10), "neutral", 60.0)
  monkeypatch.delenv(ENV_VAR, raising=False)
  with pytest.raises(InputFormatError, match="no body model folder given"):
    load_amass(f)
  monkeypatch.setenv(ENV_VAR, root)
  assert load_amass(f).meta["model_file"].endswith("SMPL_NEUTRAL.pkl")
  assert load_human(f).meta["model_type"] == "smpl"


def test_files_that_are_not_clips(bm, tmp_path):
  root, _ = bm
  shape = tmp_path / "shape.npz"
  np.savez(shape, betas=np.zeros(16), gender=np.array("male"))
  with pytest.raises(InputFormatError, match="no motion"):
    load_amass(shape, root)
  assert is_amass_shape_file(shape)
  pose, trans = random_pose(np.random.default_rng(0), 2)
  assert not is_amass_shape_file(write_smplx_clip(str(tmp_path / "c.npz"), pose, trans, np.zeros(16), "male", 30.0))
  assert not is_amass_shape_file(write_smplh_clip(str(tmp_path / "h.npz"), pose, trans, np.zeros(16), "male", 30.0))
  other = tmp_path / "other.npz"
  np.savez(other, foo=np.zeros(3))
  with pytest.raises(InputFormatError, match="not an AMASS motion"):
    load_amass(other, root)
  bad = tmp_path / "bad.npz"
  np.savez(bad, poses=np.zeros((4, 100)), trans=np.zeros((4, 3)), mocap_framerate=np.array(30.0))
  with pytest.raises(InputFormatError, match="100 values per frame"):
    load_amass(bad, root)
  norate = tmp_path / "norate.npz"
  np.savez(norate, poses=np.zeros((4, 156)), trans=np.zeros((4, 3)), betas=np.zeros(16))
  with pytest.raises(InputFormatError, match="no frame rate"):
    load_amass(norate, root)
  broken = tmp_path / "broken.npz"
  broken.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
  with pytest.raises(InputFormatError, match="not a readable .npz"):
    load_human(broken, HumanLoadConfig(body_model_dir=root))


def test_cli_retarget_file_with_fps(bm, tmp_path):
  from humanoid_retarget.cli.main import main
  from humanoid_retarget.io.motion import load_motion

  root, _ = bm
  pose, trans = walk_pose(121, 60.0)
  f = write_smplx_clip(str(tmp_path / "walk_stageii.npz"), pose, trans, np.zeros(16), "male", 60.0)
  out = str(tmp_path / "walk_g1.npz")
  assert main(["retarget", f, "-o", out, "--body-model-dir", root, "--fps", "30", "--quiet"]) == 0
  m = load_motion(out)
  assert m.fps == 30.0 and m.num_frames == 61
  assert np.all(np.isfinite(m.dof_pos)) and np.all(np.isfinite(m.root_pos))
  # A walk along +X at 0.9 m/s for 2 s, scaled to the smaller robot: forward progress, upright pelvis.
  dx, dy = m.root_pos[-1, :2] - m.root_pos[0, :2]
  assert 0.8 < dx < 2.2 and abs(dy) < 0.3
  assert 0.5 < np.median(m.root_pos[:, 2]) < 1.1
  assert m.contacts[:, 0].any() and m.contacts[:, 1].any()


def test_cli_retarget_folder_and_missing_model(bm, tmp_path, capsys):
  from humanoid_retarget.cli.main import main
  from humanoid_retarget.io.motion import load_motion

  root, _ = bm
  src = tmp_path / "AMASS"
  (src / "CMU" / "01").mkdir(parents=True)
  (src / "ACCAD" / "Male1").mkdir(parents=True)
  pose, trans = walk_pose(40, 30.0)
  write_smplh_clip(str(src / "CMU" / "01" / "01_01_poses.npz"), pose, trans, np.zeros(16), "male", 30.0)
  write_smplx_clip(str(src / "ACCAD" / "Male1" / "walk_stageii.npz"), pose, trans, np.zeros(16), "neutral", 30.0)
  out = tmp_path / "out"
  rc = main(["retarget", str(src), "-o", str(out), "--body-model-dir", root, "--workers", "1", "--quiet"])
  assert rc == 0
  for rel in ("CMU/01/01_01_poses.npz", "ACCAD/Male1/walk_stageii.npz"):
    assert load_motion(out / rel).num_frames == 40
  capsys.readouterr()
  empty = tmp_path / "no_models"
  empty.mkdir()
  rc = main(["retarget", str(src), "-o", str(tmp_path / "out2"), "--body-model-dir", str(empty), "--workers", "1",
             "--quiet"])
  err = capsys.readouterr().err
  assert rc != 0
  assert "SMPLH_MALE" in err and "SMPLX_NEUTRAL" in err and "mano.is.tue.mpg.de" in err
