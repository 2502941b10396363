"""RL tracking task (BeyondMimic), PPO with rsl-rl-lib, motion-VAE clustering (issue 6, items 2, 3, 5)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from humanoid_retarget.sim.model import build_robot_sim
from humanoid_retarget.sim.rl.env import AdaptiveStartSampler, SamplingConfig, TrackingEnv, TrackingEnvConfig


@pytest.fixture(scope="module")
def sim():
  return build_robot_sim()


def _swaying_motion(sim, seconds: float = 1.5, fps: float = 30.0):
  """Knees-bent stance, arms swinging, root drifting forward: every body moves (non-zero velocities)."""
  from humanoid_retarget.io.motion import RobotMotion
  from humanoid_retarget.sim.reference import forward_bodies

  T = int(seconds * fps) + 1
  t = np.arange(T) / fps
  q = np.zeros((T, sim.num_joints))
  for i, n in enumerate(sim.joint_names):
    q[:, i] = {"hip_pitch": -0.3, "knee": 0.6, "ankle_pitch": -0.3, "elbow": 0.6}.get(
      next((k for k in ("hip_pitch", "knee", "ankle_pitch", "elbow") if k in n), ""), 0.0)
    if "shoulder_pitch" in n:
      q[:, i] = 0.4 * np.sin(2 * np.pi * 0.8 * t) * (1 if n.startswith("left") else -1)
  root = np.stack([0.1 * t, np.zeros(T), np.full(T, 0.76)], axis=1)
  quat = np.tile([1.0, 0.0, 0.0, 0.0], (T, 1))
  pos, bq = forward_bodies(sim, np.concatenate([root, quat, q], axis=1))
  return RobotMotion(robot="unitree_g1_29dof", fps=fps, joint_names=list(sim.joint_names), dof_pos=q, root_pos=root,
                     root_quat=quat, body_names=list(sim.body_names), body_pos_w=pos, body_quat_w=bq,
                     contacts=np.ones((T, 2), bool))


def _at_reference(env: TrackingEnv, frame: int) -> None:
  """Put every env exactly on its clip's reference at ``frame``."""
  env.frame[:] = frame
  g = env.ref.start[env.clip] + frame
  env.bsim.set_qpos_qvel(env.ref.qpos[g], env.ref.qvel[g])
  env.last_action[:] = 0.0
  env._update_kinematics(np.arange(env.N))


def test_env_reset_step_shapes_finite(sim):
  env = TrackingEnv(sim, [_swaying_motion(sim)], TrackingEnvConfig(num_envs=4, seed=1))
  try:
    obs = env.reset()
    assert obs["policy"].shape == (4, 5 * 29 + 15) and obs["critic"].shape == (4, 5 * 29 + 15 + 9 * 14)
    rng = np.random.default_rng(0)
    for _ in range(10):
      r = env.step(rng.normal(0.0, 0.5, (4, 29)))
      assert r.reward.shape == (4,) and r.terminated.dtype == bool and r.truncated.shape == (4,)
      assert np.isfinite(r.reward).all()
      assert all(np.isfinite(v).all() for v in r.obs.values())
      assert r.obs["policy"].dtype == np.float32
    assert ((env.frame >= 0) & (env.frame < env.ref.length[env.clip] - 1)).all()
    # domain randomisation: model variants with their own torso mass / foot friction; the base model untouched
    torso = sim.model.body("torso_link").id
    masses = [v.body_mass[torso] for v in env.bsim.variants]
    assert len(env.bsim.variants) == 8 and np.ptp(masses) > 0.1
    assert sim.model.body_mass[torso] == env.m.body_mass[torso] and all(v is not sim.model for v in env.bsim.variants)
    assert np.abs(env.joint_bias).max() <= 0.01 and np.abs(env.joint_bias).max() > 0
  finally:
    env.close()


def test_reward_terms_on_the_reference_are_exact(sim):
  env = TrackingEnv(sim, [_swaying_motion(sim)], TrackingEnvConfig().for_evaluation(3))
  try:
    _at_reference(env, 20)
    terms = env.reward_terms(np.zeros((3, 29)))
    for k in ("anchor_pos", "anchor_ori", "body_pos", "body_ori", "body_lin_vel", "body_ang_vel"):
      np.testing.assert_allclose(terms[k], 1.0, atol=1e-9, err_msg=k)
    np.testing.assert_allclose(terms["action_rate"], 0.0)
    # 1 per kernel term times its weight, times the control period: 5.0 * 0.02 minus the penalties
    pen = -10.0 * terms["joint_limit"] - 0.1 * terms["self_collision"]
    np.testing.assert_allclose(env.weighted_reward(terms), (5.0 + pen) * 0.02, atol=1e-9)
    assert not env.terminated().any()
    # shift the whole robot 0.1 m along x: the anchor term drops to exp(-0.01 / 0.3^2), re-anchored bodies stay 1
    qpos = env.bsim.qpos.copy()
    qpos[:, 0] += 0.1
    env.bsim.set_qpos_qvel(qpos, env.bsim.qvel.copy())
    env._update_kinematics(np.arange(3))
    terms = env.reward_terms()
    np.testing.assert_allclose(terms["anchor_pos"], math.exp(-0.01 / 0.09), rtol=1e-9)
    np.testing.assert_allclose(terms["body_pos"], 1.0, atol=1e-9)
    np.testing.assert_allclose(terms["anchor_ori"], 1.0, atol=1e-9)
    # an action change of 0.5 on two joints: action rate 0.5
    a = np.zeros((3, 29))
    a[:, :2] = 0.5
    np.testing.assert_allclose(env.reward_terms(a)["action_rate"], 0.5)
  finally:
    env.close()


def test_sigma_schedule_decays_linearly(sim):
  cfg = TrackingEnvConfig(num_envs=1, sigma_loose=2.0, sigma_tight=1.0, sigma_decay_steps=100)
  env = TrackingEnv(sim, [_swaying_motion(sim)], cfg)
  try:
    assert env.sigma_scale == pytest.approx(2.0)
    env.common_step_counter = 25
    assert env.sigma_scale == pytest.approx(1.75)
    env.common_step_counter = 1000
    assert env.sigma_scale == pytest.approx(1.0)
  finally:
    env.close()


def test_termination_when_torso_dropped(sim):
  env = TrackingEnv(sim, [_swaying_motion(sim)], TrackingEnvConfig().for_evaluation(2))
  try:
    _at_reference(env, 10)
    assert not env.terminated().any()
    qpos = env.bsim.qpos.copy()
    qpos[1, 2] -= 0.3  # env 1: torso 0.3 m below the reference (> 0.25)
    env.bsim.set_qpos_qvel(qpos, env.bsim.qvel.copy())
    env._update_kinematics(np.arange(2))
    np.testing.assert_array_equal(env.terminated(), [False, True])
    # and in a real step: the dropped env terminates and is reset to frame 0 (evaluation mode)
    r = env.step(np.zeros((2, 29)))
    assert r.terminated[1] and env.frame[1] == 0
  finally:
    env.close()


def test_adaptive_sampling_shifts_to_failing_bins():
  rng = np.random.default_rng(0)
  s = AdaptiveStartSampler(np.array([101]), 10, SamplingConfig(uniform_ratio=0.1, kernel_size=2, decay=1.0), rng)
  np.testing.assert_allclose(s.probabilities(0), 0.1)  # no failures yet: uniform
  clip = np.zeros(50, dtype=np.int64)
  for _ in range(20):
    frame = rng.integers(0, 100, 50)
    failed = (frame >= 60) & (frame < 70) & (rng.random(50) < 0.5)  # only bin 6 fails
    s.update(clip, frame, failed)
  p = s.probabilities(0)
  assert p.sum() == pytest.approx(1.0)
  assert np.argmax(p) == 6
  assert p[5] > 0.1 > p[0]  # the kernel also raises the bin before the failures
  starts = s.sample(np.zeros(2000, dtype=np.int64))
  assert 0.5 < np.mean((starts >= 50) & (starts < 70))
  assert starts.max() <= 99


def _tiny_motion_file(sim, tmp_path) -> str:
  from humanoid_retarget.io.motion import save_motion

  path = str(tmp_path / "sway.npz")
  save_motion(path, _swaying_motion(sim, 1.0))
  return path


def test_tiny_ppo_run_saves_checkpoint(sim, tmp_path):
  if os.environ.get("CI"):
    import rsl_rl  # noqa: F401  (CI must have rsl-rl-lib: fail, don't skip)
  else:
    pytest.importorskip("rsl_rl")
  from humanoid_retarget.sim.rl.train import PPOConfig, TrainConfig, load_expert, train_expert

  path = _tiny_motion_file(sim, tmp_path)
  cfg = TrainConfig(iterations=2, num_envs=4, ppo=PPOConfig(steps_per_env=8, hidden_dims=(32, 32), save_interval=1))
  res = train_expert([path], str(tmp_path / "run"), cfg, log=lambda s: None)
  assert os.path.isfile(res.checkpoint) and res.iterations == 2 and res.env_steps == 2 * 8 * 4
  meta = json.load(open(tmp_path / "run" / "expert.json"))
  assert meta["iterations"] == 2 and len(meta["evaluation"]) == 1
  ev = res.evaluation[0]
  assert ev.frames == 51 and np.isfinite(ev.mpjpe_cm) and ev.mpjpe_cm >= 0
  policy, cfg2, _ = load_expert(str(tmp_path / "run"))
  assert cfg2.ppo.hidden_dims == (32, 32)
  env = TrackingEnv(sim, [_swaying_motion(sim, 1.0)], cfg2.env.for_evaluation(1))
  try:
    assert policy(env.observations()).shape == (1, 29)
  finally:
    env.close()


def _human(family: str, rng: np.random.Generator, T: int = 90, fps: float = 30.0):
  """Synthetic canonical-skeleton clips: 'walk' (travels, legs swing) or 'wave' (stands, right arm waves)."""
  from humanoid_retarget.human.motion import HumanMotion, J

  rest = {
    "pelvis": (0, 0, 0.95), "left_hip": (0, 0.09, 0.9), "right_hip": (0, -0.09, 0.9), "spine1": (0, 0, 1.05),
    "left_knee": (0, 0.09, 0.5), "right_knee": (0, -0.09, 0.5), "spine2": (0, 0, 1.15),
    "left_ankle": (0, 0.09, 0.08), "right_ankle": (0, -0.09, 0.08), "spine3": (0, 0, 1.25),
    "left_foot": (0.12, 0.09, 0.02), "right_foot": (0.12, -0.09, 0.02), "neck": (0, 0, 1.45),
    "left_collar": (0, 0.08, 1.4), "right_collar": (0, -0.08, 1.4), "head": (0, 0, 1.6),
    "left_shoulder": (0, 0.18, 1.4), "right_shoulder": (0, -0.18, 1.4), "left_elbow": (0, 0.2, 1.12),
    "right_elbow": (0, -0.2, 1.12), "left_wrist": (0, 0.2, 0.87), "right_wrist": (0, -0.2, 0.87),
  }
  P = np.zeros((T, 22, 3))
  for n, v in rest.items():
    P[:, J(n)] = v
  t = np.arange(T) / fps
  f, ph, amp = rng.uniform(0.8, 1.2), rng.uniform(0, 2 * np.pi), rng.uniform(0.8, 1.2)
  if family == "walk":
    P[..., 0] += rng.uniform(0.9, 1.4) * t[:, None]
    for side, sgn in (("left", 1.0), ("right", -1.0)):
      s = sgn * 0.25 * amp * np.sin(2 * np.pi * f * t + ph)
      for n, k in (("knee", 0.5), ("ankle", 1.0), ("foot", 1.0)):
        P[:, J(f"{side}_{n}"), 0] += k * s
      P[:, J(f"{side}_ankle"), 2] += 0.05 * np.clip(-sgn * np.cos(2 * np.pi * f * t + ph), 0, None)
  else:
    a = 2.3 + 0.4 * amp * np.sin(2 * np.pi * 1.5 * f * t + ph)  # upper arm raised, swinging sideways
    sh = P[:, J("right_shoulder")]
    P[:, J("right_elbow")] = sh + 0.28 * np.stack([np.zeros(T), -np.sin(a), -np.cos(a)], axis=1)
    b = a + 0.5 * np.sin(2 * np.pi * 1.5 * f * t + ph)
    P[:, J("right_wrist")] = P[:, J("right_elbow")] + 0.25 * np.stack([np.zeros(T), -np.sin(b), -np.cos(b)], axis=1)
  P += rng.normal(0, 0.003, P.shape)
  rot = np.tile([1.0, 0.0, 0.0, 0.0], (T, 22, 1))
  return HumanMotion(fps=fps, positions=P, rotations=rot, source=family)


def test_vae_kmeans_separates_two_motion_families():
  pytest.importorskip("torch")
  from humanoid_retarget.sim.rl.cluster import ClusterConfig, cluster_motions

  rng = np.random.default_rng(3)
  fams = ["walk", "wave"] * 5
  motions = [_human(f, rng) for f in fams]
  res = cluster_motions(motions, ClusterConfig(k=2, epochs=40, window=16, seed=0))
  labels = res.labels
  truth = np.array([f == "walk" for f in fams])
  assert len(set(labels[truth])) == 1 and len(set(labels[~truth])) == 1 and labels[truth][0] != labels[~truth][0]
  data = res.as_json([f"{f}{i}" for i, f in enumerate(fams)])
  assert sorted(c["size"] for c in data["clusters"].values()) == [5, 5]
  assert data["clips"]["walk0"] == data["clips"]["walk2"] != data["clips"]["wave1"]
