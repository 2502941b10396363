"""Neural retargeter: features, models, dataset, training, checkpoints, inference, shipped model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

torch = pytest.importorskip("torch")

from humanoid_retarget.human.load import load_human  # noqa: E402
from humanoid_retarget.human.motion import J  # noqa: E402
from humanoid_retarget.human.sample import sample_walk_bvh  # noqa: E402
from humanoid_retarget.neural import features as F  # noqa: E402
from humanoid_retarget.neural.dataset import BuildConfig, PairSplit, build_dataset, split_of  # noqa: E402
from humanoid_retarget.neural.infer import DEFAULT_CHECKPOINT, retarget_neural  # noqa: E402
from humanoid_retarget.neural.model import ModelConfig, Retargeter  # noqa: E402
from humanoid_retarget.neural.train import TrainConfig, load_model, train  # noqa: E402


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
  p = tmp_path_factory.mktemp("walk") / "walk.bvh"
  p.write_text(sample_walk_bvh())
  return load_human(p)


# ------------------------------------------------------------------ features


def test_features_invariant_to_heading_translation_and_size(walk):
  f0, fr0 = F.human_features(walk.positions, walk.fps)
  assert f0.shape == (walk.num_frames, F.HUMAN_DIM)
  R = Rotation.from_euler("z", 1.1).as_matrix()
  P = (walk.positions @ R.T + np.array([3.0, -2.0, 0.0])) * 1.25  # turn, move, grow by 25%
  f1, fr1 = F.human_features(P, walk.fps)
  np.testing.assert_allclose(f1, f0, atol=1e-4)
  np.testing.assert_allclose(fr1.yaw - fr0.yaw, 1.1, atol=1e-6)
  assert fr1.leg == pytest.approx(1.25 * fr0.leg)


def test_features_by_hand():
  """A rigid body of joints walking along +Y while facing +Y: forward speed in x, nothing sideways."""
  T, fps = 30, 30.0
  base = np.random.default_rng(0).normal(size=(22, 3)) * 0.2
  base[J("left_hip")] = [-0.1, 0.0, 0.9]  # facing +Y: left is -X
  base[J("right_hip")] = [0.1, 0.0, 0.9]
  for side, x in (("left", -0.1), ("right", 0.1)):
    base[J(f"{side}_knee")] = [x, 0.0, 0.5]
    base[J(f"{side}_ankle")] = [x, 0.0, 0.1]
  P = base[None] + np.arange(T)[:, None, None] / fps * np.array([0.0, 0.8, 0.0])
  f, fr = F.human_features(P, fps)
  np.testing.assert_allclose(fr.yaw, np.pi / 2, atol=1e-9)
  assert fr.leg == pytest.approx(0.8)
  np.testing.assert_allclose(f[:, 0], 0.8 / 0.8, atol=1e-5)  # 0.8 m/s forward = 1 leg length/s
  np.testing.assert_allclose(f[:, 1:3], 0.0, atol=1e-5)  # no sideways speed, no turning
  np.testing.assert_allclose(f[:, 3], (0.9 - 0.1) / 0.8, atol=1e-5)  # hips 0.8 m above the ankles


def test_robot_features_decode_round_trip(walk, g1):
  from humanoid_retarget.retarget.kinematic import retarget_kinematic

  m = retarget_kinematic(walk, g1)
  _, fr = F.human_features(walk.positions, walk.fps)
  rf = F.robot_features(g1, m, fr)
  assert rf.shape == (walk.num_frames, F.robot_layout(g1).dim)
  root, R, q = F.decode_robot(g1, rf.astype(np.float64), fr)
  np.testing.assert_allclose(root, m.root_pos, atol=1e-5)
  np.testing.assert_allclose(q, m.dof_pos, atol=1e-5)
  R_ref = Rotation.from_quat(m.root_quat, scalar_first=True).as_matrix()
  np.testing.assert_allclose(R, R_ref, atol=1e-4)


def test_corruption_adds_spikes_and_jitter(walk):
  rng = np.random.default_rng(1)
  P = F.corrupt_positions(walk.positions, rng, jitter_m=0.0, spike_prob=0.02, spike_m=0.2)
  moved = np.linalg.norm(P - walk.positions, axis=-1) > 1e-9
  assert 0.005 < moved.mean() < 0.04
  d = np.linalg.norm(P - walk.positions, axis=-1)[moved]
  assert d.min() >= 0.1 - 1e-9 and d.max() <= 0.2 + 1e-9


# ------------------------------------------------------------------ models


@pytest.mark.parametrize("arch", ["nmr", "ikmr"])
def test_model_shapes_and_losses(arch):
  torch.manual_seed(0)
  cfg = ModelConfig(arch=arch, human_dim=F.HUMAN_DIM, robot_dim=221, d_model=32, n_layers=2, n_heads=2, window=40)
  m = Retargeter(cfg)
  h = torch.randn(3, 40, F.HUMAN_DIM)
  r = torch.randn(3, 40, 221)
  assert m(h).shape == (3, 40, 221)
  assert m.predict(h).shape == (3, 40, 221)
  mask = torch.ones(3, 40, dtype=torch.bool)
  out = m.losses(h, r, mask, torch.ones(221))
  assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
  if arch == "ikmr":
    assert {"rec_human", "rec_robot", "align", "retarget"} <= set(out)
    # Retargeting is the robot decoder after the human encoder.
    m.eval()
    torch.testing.assert_close(m(h), m.decode_robot(m.encode_human(h)))


# ------------------------------------------------------------------ dataset + training


def _names_for_both_splits(pct: float) -> list[str]:
  names, seen = [], set()
  i = 0
  while len(names) < 4 or seen != {"train", "val"}:
    n = f"walk_{i:03d}"
    s = split_of(n, pct)
    if sum(split_of(x, pct) == s for x in names) < 2:
      names.append(n)
      seen.add(s)
    i += 1
  return names


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
  root = tmp_path_factory.mktemp("tiny")
  src = root / "bvh"
  src.mkdir()
  for k, n in enumerate(_names_for_both_splits(50.0)):
    (src / f"{n}.bvh").write_text(sample_walk_bvh(seconds=3.0 + 0.5 * k, fps=30.0 * (1 + k % 2)))
  out = root / "pairs"
  rep = build_dataset(BuildConfig(inputs=[str(src)], out=str(out), val_percent=50.0, noisy_copies=1,
                                  workers=1, progress=False))
  return out, rep


def test_dataset_layout_and_report(tiny_data):
  out, rep = tiny_data
  assert rep["clips_total"] == 4
  assert {c["clip"] for c in rep["clips"]} == {f"walk_{i:03d}" for i in range(100)} & {c["clip"] for c in rep["clips"]}
  saved = json.loads((out / "report.json").read_text())
  assert saved["clips_kept"] + saved["clips_dropped"] == 4
  for c in saved["clips"]:
    assert c["kept"] == (not c["reasons"])
    assert c["split"] == split_of(c["clip"], 50.0)
  tr = PairSplit(str(out / "train"))
  va = PairSplit(str(out / "val"))
  assert not set(tr.names) & set(va.names)  # split by clip
  assert tr.human.shape == (tr.frames, F.HUMAN_DIM)
  assert tr.human_noisy.shape == (1, tr.frames, F.HUMAN_DIM)
  assert isinstance(tr.human, np.memmap)
  np.testing.assert_array_equal(tr.starts, np.concatenate([[0], np.cumsum(tr.lengths)[:-1]]))
  h, r, m = tr.window(0, 0, 200)  # longer than the clip: padded, masked
  assert h.shape == (200, F.HUMAN_DIM) and m.sum() == tr.lengths[0]
  assert not np.allclose(tr.human_noisy[0], tr.human)


def _tiny_cfg(data, out, **kw) -> TrainConfig:
  mc = ModelConfig(d_model=32, n_layers=1, n_heads=2, window=40, dropout=0.0)
  base = dict(data=str(data), out=str(out), model=mc, epochs=5, batch=4, lr=5e-3, warmup_steps=2, stride=8,
              feature_noise=0.0, threads=2, bf16=False, progress=False)
  base.update(kw)
  return TrainConfig(**base)


def test_tiny_training_reduces_loss_and_resumes(tiny_data, tmp_path):
  data, _ = tiny_data
  train(_tiny_cfg(data, tmp_path / "a"))
  ck = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
  hist = ck["history"]
  assert len(hist) == 5
  assert hist[-1]["train_loss"] < 0.85 * hist[0]["train_loss"]
  assert hist[-1]["l1"] < hist[0]["l1"]
  # Interrupted run (time budget hit during epoch 1), then --resume continues from last.pt.
  train(_tiny_cfg(data, tmp_path / "b", max_minutes=1e-9))
  first = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
  assert first["epoch"] == 0 and first["step"] == 1
  train(_tiny_cfg(data, tmp_path / "b", resume=True))
  ck_b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
  assert [h["epoch"] for h in ck_b["history"]] == [1, 2, 3, 4, 5]
  assert ck_b["history"][0]["step"] == 1 and ck_b["step"] > 1
  # Fine-tuning starts from the checkpoint (same normalisation) at its own learning rate.
  train(_tiny_cfg(data, tmp_path / "c", init=str(tmp_path / "a" / "best.pt"), lr=1e-4, epochs=1,
                  export=str(tmp_path / "small.pt")))
  m_a, _ = load_model(str(tmp_path / "a" / "best.pt"))
  m_c, ck_c = load_model(str(tmp_path / "small.pt"))
  torch.testing.assert_close(m_a.norm.r_std, m_c.norm.r_std)
  assert next(iter(ck_c["state_dict"].values())).dtype == torch.float16 or any(
    v.dtype == torch.float16 for v in ck_c["state_dict"].values())


def test_training_mix_joins_windows(tiny_data, tmp_path):
  """``--mix``: the mixed datasets' train windows join the training set (here the same data twice: twice the
  steps per epoch), each part with its own offsets per epoch; validation stays on --data."""
  from humanoid_retarget.neural.train import MixedWindows, WindowSet

  data, _ = tiny_data
  sp = PairSplit(str(data / "train"))
  a, b = WindowSet(sp, 40, 8, 0.5, True, 0), WindowSet(sp, 40, 8, 0.5, True, 1)
  mixed = MixedWindows([a, b])
  assert len(mixed) == 2 * len(a)
  mixed.set_epoch(3)
  assert a.epoch == b.epoch == 3
  torch.testing.assert_close(mixed[len(a)][1], b[0][1])
  train(_tiny_cfg(data, tmp_path / "one", epochs=1))
  train(_tiny_cfg(data, tmp_path / "two", epochs=1, mix=[str(data)]))
  one = torch.load(tmp_path / "one" / "last.pt", weights_only=False)
  two = torch.load(tmp_path / "two" / "last.pt", weights_only=False)
  assert two["step"] == (2 * len(a)) // 4 and one["step"] == len(a) // 4


def test_inference_any_length_and_fps(tiny_data, tmp_path, g1):
  data, _ = tiny_data
  train(_tiny_cfg(data, tmp_path / "r", epochs=1))
  ckpt = str(tmp_path / "r" / "best.pt")
  p = tmp_path / "walk120.bvh"
  p.write_text(sample_walk_bvh(seconds=5.0, fps=120.0))
  h = load_human(p)
  m = retarget_neural(h, g1, ckpt)  # 600 frames at 120 fps: resampled, many windows, back to 120
  assert m.method == "neural" and m.fps == pytest.approx(120.0)
  assert m.num_frames == h.num_frames
  assert np.all(np.isfinite(m.dof_pos)) and np.all(np.isfinite(m.body_pos_w))
  lo, hi = g1.model.joint_range[:, 0], g1.model.joint_range[:, 1]
  assert np.all(m.dof_pos >= lo) and np.all(m.dof_pos <= hi)


# ------------------------------------------------------------------ shipped model


def test_shipped_model_small_and_retargets_sample(g1, walk):
  assert DEFAULT_CHECKPOINT.exists(), "the shipped model is part of the repository"
  assert DEFAULT_CHECKPOINT.stat().st_size < 30e6
  m = retarget_neural(walk, g1, None)
  from humanoid_retarget.eval.metrics import evaluate_motion

  lo = g1.model.joint_range[:, 0] + g1.config.joint_limit_margin - 1e-6
  hi = g1.model.joint_range[:, 1] - g1.config.joint_limit_margin + 1e-6
  assert np.all(m.dof_pos >= lo) and np.all(m.dof_pos <= hi)
  e = evaluate_motion(g1, m, walk)
  assert e.joint_jump_pct == 0.0
  assert e.keypoint_error_cm < 10.0
  # It walks forward like the human (about the sample's 0.9 m/s x robot/human leg ratio).
  dist = np.linalg.norm(m.root_pos[-1, :2] - m.root_pos[0, :2])
  assert dist > 1.0


def test_shipped_model_on_shared_clip(shared_data, g1, tmp_path):
  from humanoid_retarget.cli.main import main
  from humanoid_retarget.eval.metrics import evaluate_motion
  from humanoid_retarget.io.motion import load_motion

  clip = shared_data / "bandai2" / "dataset-2_walk_active_001.bvh"
  out = tmp_path / "walk.npz"
  assert main(["retarget", str(clip), "-o", str(out), "--method", "neural", "--quiet"]) == 0
  m = load_motion(out)
  h = load_human(clip)
  assert m.method == "neural" and m.num_frames == h.num_frames
  e = evaluate_motion(g1, m, h)
  assert e.joint_jump_pct == 0.0
  assert e.joint_limit_pct == 0.0
  assert e.penetration_pct < 5.0
  assert e.keypoint_error_cm < 8.0


def test_neural_folder_batch(tmp_path, g1):
  from humanoid_retarget.cli.main import main
  from humanoid_retarget.io.motion import load_motion

  src = tmp_path / "in"
  src.mkdir()
  (src / "a.bvh").write_text(sample_walk_bvh(seconds=2.0))
  (src / "b.bvh").write_text(sample_walk_bvh(seconds=6.0, fps=60.0))
  (src / "bad.bvh").write_text("HIERARCHY\nnot a skeleton\n")
  rc = main(["retarget", str(src), "-o", str(tmp_path / "out"), "--method", "neural", "--quiet"])
  assert rc == 1  # the broken file fails alone
  a, b = load_motion(tmp_path / "out" / "a.npz"), load_motion(tmp_path / "out" / "b.npz")
  assert a.num_frames == 60 and b.num_frames == 360 and b.fps == pytest.approx(60.0)
  assert not os.path.exists(tmp_path / "out" / "bad.npz")


def test_collision_repair_separates_feet(g1):
  from humanoid_retarget.eval.metrics import self_collision_mask
  from humanoid_retarget.neural.infer import repair_collisions
  from humanoid_retarget.retarget.kinematic import make_motion

  T = 10
  names = g1.joint_names
  q = np.zeros((T, len(names)))
  # Legs swung inwards: the feet cross.
  q[:, names.index("left_hip_roll_joint")] = -0.15
  q[:, names.index("right_hip_roll_joint")] = 0.15
  root = np.tile([0.0, 0.0, 0.8], (T, 1))
  R = np.broadcast_to(np.eye(3), (T, 3, 3)).copy()
  contacts = np.ones((T, 2), bool)
  before = make_motion(g1, root, R, q, contacts, 30.0, "neural", "")
  assert self_collision_mask(g1, before).all()
  q2 = repair_collisions(g1, root, R, q)
  after = make_motion(g1, root, R, q2, contacts, 30.0, "neural", "")
  assert not self_collision_mask(g1, after).any()
  assert np.abs(q2 - q).max() < 0.3  # a small correction, not a new pose


def test_dataset_from_robot_motions(tmp_path, g1):
  """``dataset build --robot-motions``: given motions (50 fps, matched by stem or by recorded source) are the
  robot side, not the retargeter; the split is the human clip's, the filters still apply, clips without a
  motion are left out."""
  from humanoid_retarget.cli.main import main
  from humanoid_retarget.io.export import resample_motion_state
  from humanoid_retarget.io.motion import save_motion
  from humanoid_retarget.retarget.kinematic import make_motion, retarget_kinematic

  names = _names_for_both_splits(50.0)
  tr = next(n for n in names if split_of(n, 50.0) == "train")
  va = next(n for n in names if split_of(n, 50.0) == "val")
  floating, unmatched = [n for n in names if n not in (tr, va)][:2]
  src, mot = tmp_path / "bvh", tmp_path / "motions"
  src.mkdir()
  mot.mkdir()
  elbow = g1.joint_names.index("left_elbow_joint")
  given, kin = {}, {}
  for n in (tr, va, floating, unmatched):
    (src / f"{n}.bvh").write_text(sample_walk_bvh(seconds=2.0))
  for n, stem in ((tr, tr), (va, "physics_run_7"), (floating, floating)):  # va: matched by its source only
    h = load_human(src / f"{n}.bvh")
    m = retarget_kinematic(h, g1)
    q = m.dof_pos.copy()
    q[:, elbow] += 0.1  # not what the retargeter gives
    root = m.root_pos + np.array([0.0, 0.0, 0.3 if n == floating else 0.0])
    if n == tr:  # falls behind as a simulated walk does: 0.4 m/s
      root[:, 0] -= 0.4 * np.arange(len(root)) / h.fps
    R = Rotation.from_quat(m.root_quat, scalar_first=True).as_matrix()
    m30 = make_motion(g1, root, R, q, m.contacts, h.fps, "physics", str(src / f"{n}.bvh"))
    rp, rq, q50 = resample_motion_state(m30, 50.0)
    idx = np.minimum(np.rint(np.arange(len(q50)) * 0.6).astype(int), len(q) - 1)
    m50 = make_motion(g1, rp, Rotation.from_quat(rq, scalar_first=True).as_matrix(), q50, m.contacts[idx], 50.0,
                      "physics", m30.source)
    save_motion(mot / f"{stem}.npz", m50)
    given[n], kin[n] = q, m.dof_pos
  out = tmp_path / "pairs"
  assert main(["dataset", "build", "--inputs", str(src), "--out", str(out), "--val-percent", "50",
               "--noisy-copies", "1", "--workers", "1", "--robot-motions", str(mot), "--quiet"]) == 0
  rep = json.loads((out / "report.json").read_text())
  assert rep["unmatched"] == [unmatched] and rep["clips_total"] == 3
  by = {c["clip"]: c for c in rep["clips"]}
  assert by[va]["robot_motion"].endswith("physics_run_7.npz")
  assert by[tr]["kept"] and by[va]["kept"] and not by[floating]["kept"]
  assert any(r.startswith("mean lowest-foot height") for r in by[floating]["reasons"])
  for n, split in ((tr, "train"), (va, "val")):
    assert by[n]["split"] == split
    ps = PairSplit(str(out / split))
    assert ps.names == [n]
    h = load_human(src / f"{n}.bvh")
    _, frame = F.human_features(h.positions[:ps.frames], 30.0)
    _, _, q = F.decode_robot(g1, np.asarray(ps.robot, np.float64), frame)
    assert abs(ps.frames - h.num_frames) <= 1
    # The given motion, back at 30 fps (30 -> 50 -> 30 fps linear interpolation: small errors on fast joints).
    assert np.abs(q - given[n][:ps.frames]).mean() < 0.01
    assert np.abs(q[:, elbow] - given[n][:ps.frames, elbow]).mean() < 0.02
    assert np.abs(q[:, elbow] - kin[n][:ps.frames, elbow]).mean() > 0.08
    # The drift is gone (default --drift-sigma-s 1): the root offset from the human path stays local.
    assert np.abs(np.asarray(ps.robot)[:, 1:3]).max() < 0.05


def test_root_drift_removes_slow_drift_keeps_sway(g1):
  """A root that falls behind the scaled human root at 0.4 m/s and sways 2 cm at 1.5 Hz: the drift is the
  ramp (to 2 mm; 1 cm at the ends), and root - drift is the human path plus the sway."""
  T, fps = 240, 30.0
  t = np.arange(T) / fps
  human_root = np.stack([1.2 * t, 0.1 * t, np.full(T, 0.9)], axis=1)
  frame = F.HumanFrame(yaw=np.zeros(T), root=human_root, leg=0.9)
  scale = F.robot_leg_length(g1) / 0.9
  sway = np.stack([np.zeros(T), 0.02 * np.sin(2 * np.pi * 1.5 * t)], axis=1)
  ramp = np.stack([-0.4 * t, 0.05 * t], axis=1) + [0.3, -0.2]
  root = human_root * scale
  root[:, :2] += ramp + sway
  d = F.root_drift(g1, root, frame, sigma_frames=30.0)
  assert d.shape == (T, 2)
  mid = slice(60, T - 60)  # 2 sigma from the ends
  assert np.abs(d - ramp)[mid].max() < 2e-3  # the sway leaks < 2 mm
  assert np.abs(d - ramp).max() < 0.01  # the ends: the reflection point carries the sway's last value
  rest = root[:, :2] - d - human_root[:, :2] * scale
  assert np.abs(rest - sway)[mid].max() < 2e-3
  assert np.abs(rest).max() < 0.03  # a local offset, not the 3.2 m the root fell behind
