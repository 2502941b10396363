"""Canonical human import: presets, units, up axis, interpolation, resampling, contacts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from humanoid_retarget.errors import SkeletonError
from humanoid_retarget.human.bvh_import import load_bvh
from humanoid_retarget.human.contacts import detect_contacts, hysteresis
from humanoid_retarget.human.motion import J, frames_from_positions, trunk_frames
from humanoid_retarget.human.sample import sample_walk_bvh
from humanoid_retarget.human.skeleton import auto_mapping, detect_preset


def test_sample_import_units_up_floor(sample_bvh):
  hm = load_bvh(sample_bvh)
  assert hm.meta["preset"] == "lafan1"
  assert hm.meta["units"] == "cm"
  np.testing.assert_allclose(hm.meta["up_axis"], [0, 1, 0])
  assert hm.num_frames == 120 and abs(hm.fps - 30) < 1e-3
  # Z up: head above pelvis above ankles; the floor is at the feet.
  P = hm.positions
  assert np.all(P[:, J("head"), 2] > P[:, J("pelvis"), 2])
  assert np.all(P[:, J("pelvis"), 2] > P[:, J("left_ankle"), 2])
  assert abs(np.percentile(np.minimum(P[:, J("left_foot"), 2], P[:, J("right_foot"), 2]), 2)) < 0.05
  # Hip-knee bone of the sample is 42 cm.
  np.testing.assert_allclose(np.linalg.norm(P[:, J("left_knee")] - P[:, J("left_hip")], axis=-1), 0.42, atol=1e-6)
  # The sample walks forward along the BVH's +Z, which becomes -Y in Z-up (x, -z, y).
  assert P[-1, 0, 1] < P[0, 0, 1] - 2.0


def test_units_in_metres_and_z_up_file(tmp_path):
  text = sample_walk_bvh(seconds=1.0)
  # Rewrite as metres, Z up: (x, y, z) -> (x, -z, y) on offsets and root positions.
  lines = []
  in_motion = False
  for ln in text.splitlines():
    s = ln.split()
    if s and s[0] == "OFFSET":
      x, y, z = (float(v) / 100 for v in s[1:4])
      ln = ln[: ln.index("OFFSET")] + f"OFFSET {x} {-z} {y}"
    elif s and s[0] == "MOTION":
      in_motion = True
    elif in_motion and s and not s[0].startswith(("Frames", "Frame")):
      v = [float(a) for a in s]
      x, y, z = v[0] / 100, v[1] / 100, v[2] / 100
      v[0], v[1], v[2] = x, -z, y
      v[3:] = [0.0] * (len(v) - 3)  # rest pose: rotations would need a change of axes too
      ln = " ".join(f"{a:.6f}" for a in v)
    lines.append(ln)
  p = tmp_path / "m.bvh"
  p.write_text("\n".join(lines) + "\n")
  hm = load_bvh(p)
  assert hm.meta["units"] == "m"
  np.testing.assert_allclose(hm.meta["up_axis"], [0, 0, 1])
  np.testing.assert_allclose(np.linalg.norm(hm.positions[:, J("left_knee")] - hm.positions[:, J("left_hip")], axis=-1), 0.42, atol=1e-6)


def test_presets_and_auto_detection():
  bandai = ["joint_Root", "Hips", "Spine", "Chest", "Neck", "Head", "Shoulder_L", "UpperArm_L", "LowerArm_L",
            "Hand_L", "Shoulder_R", "UpperArm_R", "LowerArm_R", "Hand_R", "UpperLeg_L", "LowerLeg_L", "Foot_L",
            "Toes_L", "UpperLeg_R", "LowerLeg_R", "Foot_R", "Toes_R"]
  parents = [-1] + [0] * (len(bandai) - 1)
  name, m = detect_preset(bandai, parents)
  assert name == "bandai" and m["left_knee"] == "LowerLeg_L" and "spine2" not in m
  # Unknown naming scheme: keyword mapping.
  names = ["pelvis", "l_thigh", "l_calf", "l_foot", "r_thigh", "r_calf", "r_foot", "spine_01", "spine_02",
           "neck_01", "head", "clavicle_l", "upperarm_l", "lowerarm_l", "hand_l", "clavicle_r", "upperarm_r",
           "lowerarm_r", "hand_r"]
  parents = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 13, 8, 15, 16, 17]
  name, m = detect_preset(names, parents)
  assert name == "auto"
  assert (m["left_hip"], m["left_knee"], m["left_ankle"]) == ("l_thigh", "l_calf", "l_foot")
  assert (m["right_shoulder"], m["right_elbow"], m["right_wrist"]) == ("upperarm_r", "lowerarm_r", "hand_r")
  assert m["neck"] == "neck_01"


def test_unmappable_skeleton_error():
  with pytest.raises(SkeletonError, match="unmappable skeleton: no joint found for .*left_hip"):
    detect_preset(["root", "a", "b"], [-1, 0, 1], path="x.bvh")


def test_auto_mapping_lafan_names_without_preset():
  names = ["Hips", "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToe", "RightUpLeg", "RightLeg", "RightFoot", "RightToe",
           "Spine", "Spine1", "Spine2", "Neck", "Head", "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand",
           "RightShoulder", "RightArm", "RightForeArm", "RightHand"]
  parents = [-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 12, 11, 14, 15, 16, 11, 18, 19, 20]
  m = auto_mapping(names, parents)
  assert m["left_foot"] == "LeftToe" and m["left_collar"] == "LeftShoulder" and m["left_shoulder"] == "LeftArm"
  assert (m["spine1"], m["spine2"], m["spine3"]) == ("Spine", "Spine1", "Spine2")


def test_resample_keeps_positions(sample_bvh):
  hm = load_bvh(sample_bvh)
  up = hm.resample(120.0)
  assert up.num_frames == (hm.num_frames - 1) * 4 + 1
  np.testing.assert_allclose(up.positions[::4], hm.positions, atol=1e-9)
  down = up.resample(30.0)
  np.testing.assert_allclose(down.positions, hm.positions, atol=1e-9)


def test_frames_identity_in_tpose():
  # A T-pose facing +X, Z up: every canonical frame is the identity.
  P = np.zeros((1, 22, 3))
  def put(n, xyz):
    P[0, J(n)] = xyz
  put("pelvis", (0, 0, 1.0)); put("left_hip", (0, 0.1, 0.95)); put("right_hip", (0, -0.1, 0.95))
  put("spine1", (0, 0, 1.1)); put("spine2", (0, 0, 1.2)); put("spine3", (0, 0, 1.3)); put("neck", (0, 0, 1.5))
  put("head", (0, 0, 1.6)); put("left_knee", (0, 0.1, 0.5)); put("right_knee", (0, -0.1, 0.5))
  a = np.array([1.0, 0, -0.3]) / np.linalg.norm([1.0, 0, -0.3]) * 0.1
  put("left_ankle", (0, 0.1, 0.1)); put("right_ankle", (0, -0.1, 0.1))
  put("left_foot", np.array([0, 0.1, 0.1]) + a); put("right_foot", np.array([0, -0.1, 0.1]) + a)
  put("left_collar", (0, 0.05, 1.45)); put("right_collar", (0, -0.05, 1.45))
  put("left_shoulder", (0, 0.2, 1.45)); put("right_shoulder", (0, -0.2, 1.45))
  put("left_elbow", (0, 0.45, 1.45)); put("right_elbow", (0, -0.45, 1.45))
  put("left_wrist", (0, 0.7, 1.45)); put("right_wrist", (0, -0.7, 1.45))
  R = frames_from_positions(P)
  np.testing.assert_allclose(R[0], np.broadcast_to(np.eye(3), (22, 3, 3)), atol=1e-9)


def test_contacts_on_sample(sample_bvh):
  hm = load_bvh(sample_bvh)
  c = detect_contacts(hm)
  assert c.shape == (hm.num_frames, 2)
  # A walk: each foot is in contact part of the time, and at least one foot most of the time.
  assert 0.2 < c[:, 0].mean() < 0.9 and 0.2 < c[:, 1].mean() < 0.9
  assert c.any(axis=1).mean() > 0.7


def test_shared_bandai_import(shared_data):
  hm = load_bvh(shared_data / "bandai1" / "dataset-1_walk_normal_001.bvh")
  assert hm.meta["preset"] == "bandai" and hm.meta["units"] == "cm"
  assert "spine2" in hm.meta["interpolated"]
  height = np.median(hm.positions[:, J("head"), 2])
  assert 1.3 < height < 1.8


def test_hysteresis_matches_frame_loop():
  rng = np.random.default_rng(0)
  for k in range(300):
    T = int(rng.integers(0, 30))
    stay = rng.random((T, 2)) < rng.random()
    enter = stay & (rng.random((T, 2)) < rng.random()) if k % 2 else rng.random((T, 2)) < 0.5
    want = np.zeros((T, 2), dtype=bool)
    state = np.zeros(2, dtype=bool)
    for t in range(T):
      state = np.where(state, stay[t], enter[t])
      want[t] = state
    np.testing.assert_array_equal(hysteresis(enter, stay), want)


def test_trunk_frames_zero_length_spine_bones(sample_bvh):
  # Spine2 on spine1 and the neck on spine3: those bones take their parent's z-axis.
  P = load_bvh(sample_bvh).positions.copy()
  P[:, J("spine2")] = P[:, J("spine1")]
  P[:, J("neck")] = P[:, J("spine3")]
  R = trunk_frames(P)
  y = R[:, J("spine1"), :, 1]
  z = R[:, J("pelvis"), :, 2] - np.sum(R[:, J("pelvis"), :, 2] * y, axis=-1, keepdims=True) * y
  np.testing.assert_allclose(R[:, J("spine1"), :, 2], z / np.linalg.norm(z, axis=-1, keepdims=True), atol=1e-12)
  np.testing.assert_allclose(R[:, J("spine3"), :, 2], R[:, J("spine2"), :, 2], atol=1e-12)
  np.testing.assert_allclose(R[:, J("head")], R[:, J("neck")])


def test_planted_foot_stays_in_contact_when_heel_and_toe_tie(sample_bvh):
  # A planted flat foot whose ankle and toe points trade the "lowest" place every frame: each point is
  # still, so the foot is still (no speed spike from switching between the two points).
  hm = load_bvh(sample_bvh)
  P = hm.positions.copy()
  wobble = np.where(np.arange(P.shape[0]) % 2 == 0, 0.001, -0.001)
  for j, sign in ((J("left_ankle"), 1.0), (J("left_foot"), -1.0)):
    P[:, j] = P[0, j]
    P[:, j, 2] += sign * wobble
  c = detect_contacts(dataclasses.replace(hm, positions=P))
  assert c[:, 0].all()


def test_walks_have_no_flight(shared_data):
  """Walking has no flight phase: the detector gives at least one foot in contact in every frame."""
  for name in ("dataset-2_walk_normal_001", "dataset-2_walk_elderly_001", "dataset-2_walk-turn-left_active_002"):
    c = detect_contacts(load_bvh(shared_data / "bandai2" / f"{name}.bvh"))
    assert c.any(axis=1).all(), name
