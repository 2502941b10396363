"""PPO (rsl-rl-lib) training of a motion-tracking expert on the CPU, checkpoints and deterministic evaluation.

A run directory holds rsl-rl's checkpoints (``model_<it>.pt``), its TensorBoard events and ``expert.json``
(motions, slice, configurations, wall time, evaluation). The expert is evaluated with deterministic
actions (the Gaussian's mean), no noise, pushes or randomisation, from the clip's first frame, with the
strict BeyondMimic terminations: success = the last frame is reached; MPJPE over the 14 tracked bodies
relative to the pelvis and W-MPJPE in world coordinates (cm), over the simulated frames.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from humanoid_retarget.io.motion import RobotMotion, load_motion
from humanoid_retarget.sim.model import SimModel, build_robot_sim
from humanoid_retarget.sim.rl.env import TrackingEnv, TrackingEnvConfig
from humanoid_retarget.sim.terminations import TRACKED_BODIES


@dataclass
class PPOConfig:
  """rsl-rl PPO settings (BeyondMimic's, with a smaller network for two CPU cores)."""

  steps_per_env: int = 24
  hidden_dims: tuple[int, ...] = (256, 128)
  activation: str = "elu"
  init_std: float = 0.25  # BeyondMimic: 1.0 around its default pose; ours offset the reference (~0.1 rad noise)
  actor_output_gain: float = 0.01  # shrink the actor's last layer at init: the first policy ~ the reference
  learning_rate: float = 5e-4
  # 'fixed': rsl-rl's 'adaptive' schedule (desired KL 0.01) is tuned for std ~1; at std 0.25 the same mean
  # shift costs 16x the KL and the learning rate sat at its 1e-5 floor (measured), so PPO's clip alone here
  schedule: str = "fixed"
  learning_epochs: int = 5
  mini_batches: int = 4
  clip_param: float = 0.2
  gamma: float = 0.99
  lam: float = 0.95
  entropy_coef: float = 0.005
  desired_kl: float = 0.01
  max_grad_norm: float = 1.0
  save_interval: int = 100

  def rsl_rl_dict(self, run_name: str = "") -> dict:
    """The ``train_cfg`` dictionary of rsl-rl-lib 5.x's ``OnPolicyRunner``."""
    mlp = {"class_name": "MLPModel", "hidden_dims": list(self.hidden_dims), "activation": self.activation,
           "obs_normalization": True}
    return {
      "num_steps_per_env": self.steps_per_env,
      "save_interval": self.save_interval,
      "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
      "algorithm": {
        "class_name": "PPO", "num_learning_epochs": self.learning_epochs, "num_mini_batches": self.mini_batches,
        "clip_param": self.clip_param, "gamma": self.gamma, "lam": self.lam, "value_loss_coef": 1.0,
        "entropy_coef": self.entropy_coef, "learning_rate": self.learning_rate, "max_grad_norm": self.max_grad_norm,
        "use_clipped_value_loss": True, "schedule": self.schedule, "desired_kl": self.desired_kl,
      },
      "actor": {**mlp, "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": self.init_std,
                                             "std_type": "scalar"}},
      "critic": dict(mlp),
      "logger": "tensorboard",
      "run_name": run_name,
      "check_for_nan": True,
    }


@dataclass
class TrainConfig:
  """One expert: its motions (a clip, or a cluster's members), how long to train, and the task settings."""

  iterations: int = 1000
  num_envs: int = 64
  max_minutes: float = 0.0  # stop after this much wall time (checked every ``chunk`` iterations); 0: no limit
  chunk: int = 25
  sigma_decay_fraction: float = 0.75  # the kernel widths reach their tight value after this share of iterations
  start_s: float = 0.0  # train on [start_s, start_s + duration_s) of every clip
  duration_s: float = 0.0  # 0: to the end
  threads: int = 2  # MuJoCo rollout threads
  torch_threads: int = 1  # more makes PPO updates ~40x slower on 2 busy cores (OpenMP spinning against rollout threads)
  seed: int = 0
  robot: str = "unitree_g1_29dof"
  ppo: PPOConfig = field(default_factory=PPOConfig)
  env: TrackingEnvConfig = field(default_factory=TrackingEnvConfig)


@dataclass
class PolicyEval:
  """Deterministic rollout of one clip."""

  clip: str
  frames: int  # reference frames at the control rate
  success: bool
  failed_at_s: float  # -1 when it reached the end
  mpjpe_cm: float
  w_mpjpe_cm: float

  def as_dict(self) -> dict:
    return asdict(self)


@dataclass
class TrainResult:
  run_dir: str
  checkpoint: str
  iterations: int
  wall_s: float
  env_steps: int
  evaluation: list[PolicyEval]


def slice_motion(m: RobotMotion, start_s: float = 0.0, duration_s: float = 0.0) -> RobotMotion:
  """Frames of ``m`` in [start_s, start_s + duration_s) (duration 0: to the end)."""
  if start_s <= 0 and duration_s <= 0:
    return m
  a = int(round(max(start_s, 0.0) * m.fps))
  b = m.num_frames if duration_s <= 0 else min(a + int(round(duration_s * m.fps)) + 1, m.num_frames)
  if b - a < 2:
    raise ValueError(f"slice [{start_s}, +{duration_s}] s leaves fewer than 2 frames of a {m.num_frames}-frame clip")
  return dataclasses.replace(
    m, dof_pos=m.dof_pos[a:b], root_pos=m.root_pos[a:b], root_quat=m.root_quat[a:b], body_pos_w=m.body_pos_w[a:b],
    body_quat_w=m.body_quat_w[a:b], contacts=m.contacts[a:b])


def load_motions(paths: list[str], start_s: float = 0.0, duration_s: float = 0.0
                 ) -> tuple[list[RobotMotion], list[str]]:
  return [slice_motion(load_motion(p), start_s, duration_s) for p in paths], [os.path.basename(p) for p in paths]


def _runner(env: TrackingEnv, ppo: PPOConfig, log_dir: str | None):
  from rsl_rl.runners import OnPolicyRunner

  from humanoid_retarget.sim.rl.vecenv import RslRlTrackingEnv

  return OnPolicyRunner(RslRlTrackingEnv(env), ppo.rsl_rl_dict(os.path.basename(log_dir or "")), log_dir=log_dir,
                        device="cpu")


def _tracking_errors(body_pos: np.ndarray, ref_pos: np.ndarray, pelvis: int) -> tuple[float, float]:
  """(MPJPE, W-MPJPE) in cm; arrays (T, K, 3) of the tracked bodies."""
  w = np.linalg.norm(body_pos - ref_pos, axis=-1).mean()
  rel = np.linalg.norm((body_pos - body_pos[:, pelvis:pelvis + 1]) - (ref_pos - ref_pos[:, pelvis:pelvis + 1]),
                       axis=-1).mean()
  return float(rel * 100.0), float(w * 100.0)


def evaluate_policy(policy: Callable[[dict[str, np.ndarray]], np.ndarray], sim: SimModel, motions: list[RobotMotion],
                    names: list[str] | None = None, env_cfg: TrackingEnvConfig | None = None) -> list[PolicyEval]:
  """Roll ``policy`` (observations dict -> actions (N, J)) out once per clip, deterministically, from frame 0.

  One environment per clip, no noise, pushes or randomisation, strict BeyondMimic terminations.
  """
  cfg = (env_cfg or TrackingEnvConfig()).for_evaluation(len(motions))
  env = TrackingEnv(sim, motions, cfg, names)
  try:
    obs = env.observations()
    N = env.N
    pelvis = TRACKED_BODIES.index("pelvis")
    sim_pos = [[env.body_pos[i].copy()] for i in range(N)]
    ref_pos = [[env.ref.body_pos[env.ref.start[i]].copy()] for i in range(N)]
    done = np.zeros(N, dtype=bool)
    failed_at = np.full(N, -1.0)
    for _ in range(int(env.ref.length.max())):
      pre_frame = env.frame.copy()
      r = env.step(policy(obs))
      obs = r.obs
      for i in np.flatnonzero(~done):
        sim_pos[i].append(r.body_pos[i])
        ref_pos[i].append(env.ref.body_pos[env.ref.start[i] + pre_frame[i] + 1])
        if r.terminated[i]:
          failed_at[i] = (pre_frame[i] + 1) * env.dt
      done |= r.terminated | r.truncated
      if done.all():
        break
    out = []
    for i in range(N):
      mp, wmp = _tracking_errors(np.array(sim_pos[i]), np.array(ref_pos[i]), pelvis)
      out.append(PolicyEval(clip=env.ref.names[i], frames=int(env.ref.length[i]), success=bool(failed_at[i] < 0),
                            failed_at_s=float(failed_at[i]), mpjpe_cm=mp, w_mpjpe_cm=wmp))
    return out
  finally:
    env.close()


def _latest_checkpoint(run_dir: str) -> str:
  cks = glob.glob(os.path.join(run_dir, "model_*.pt"))
  if not cks:
    raise FileNotFoundError(f"{run_dir}: no model_*.pt checkpoint")
  return max(cks, key=lambda p: int(re.findall(r"model_(\d+)\.pt$", p)[0]))


def _torch_policy(actor) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
  import torch
  from tensordict import TensorDict

  def act(obs: dict[str, np.ndarray]) -> np.ndarray:
    n = next(iter(obs.values())).shape[0]
    td = TensorDict({k: torch.from_numpy(v) for k, v in obs.items()}, batch_size=[n])
    with torch.inference_mode():
      return actor(td).numpy().astype(np.float64)

  return act


def train_expert(motion_paths: list[str], run_dir: str, cfg: TrainConfig | None = None,
                 log: Callable[[str], None] = print) -> TrainResult:
  """Train one expert on ``motion_paths`` (clips drawn uniformly at every reset), evaluate it, write
  ``run_dir/expert.json``."""
  import torch

  cfg = cfg or TrainConfig()
  torch.set_num_threads(max(cfg.torch_threads, 1))
  torch.manual_seed(cfg.seed)
  os.makedirs(run_dir, exist_ok=True)
  sim = build_robot_sim(cfg.robot)
  motions, names = load_motions(motion_paths, cfg.start_s, cfg.duration_s)
  decay = int(cfg.iterations * cfg.ppo.steps_per_env * cfg.sigma_decay_fraction)
  env_cfg = dataclasses.replace(cfg.env, num_envs=cfg.num_envs, nthread=cfg.threads, seed=cfg.seed,
                                sigma_decay_steps=decay)
  env = TrackingEnv(sim, motions, env_cfg, names)
  runner = _runner(env, cfg.ppo, run_dir)
  with torch.no_grad():
    last = runner.alg.actor.mlp[-1]
    last.weight.mul_(cfg.ppo.actor_output_gain)
    last.bias.zero_()
  t0 = time.perf_counter()
  done_it = 0
  while done_it < cfg.iterations:
    n = min(cfg.chunk, cfg.iterations - done_it) if cfg.max_minutes > 0 else cfg.iterations
    runner.learn(n)
    done_it += n
    # rsl-rl saves a checkpoint at the end of every learn() call: keep only those on the save interval
    for p in glob.glob(os.path.join(run_dir, "model_*.pt")):
      it = int(re.findall(r"model_(\d+)\.pt$", p)[0])
      if it % cfg.ppo.save_interval and it != runner.current_learning_iteration:
        os.remove(p)
    if cfg.max_minutes > 0 and time.perf_counter() - t0 > cfg.max_minutes * 60.0:
      log(f"time budget of {cfg.max_minutes} min reached after {done_it} iterations")
      break
  wall = time.perf_counter() - t0
  steps = int(env.common_step_counter * env.N)
  ckpt = os.path.join(run_dir, "model_final.pt")
  runner.save(ckpt)
  policy = _torch_policy(runner.get_inference_policy())
  env.close()
  ev = evaluate_policy(policy, sim, motions, names, env_cfg)
  meta = {
    "motions": [os.path.abspath(p) for p in motion_paths], "names": names, "checkpoint": os.path.basename(ckpt),
    "iterations": done_it, "wall_s": wall, "env_steps": steps, "train": asdict(cfg),
    "evaluation": [e.as_dict() for e in ev],
  }
  with open(os.path.join(run_dir, "expert.json"), "w") as f:
    json.dump(meta, f, indent=1, default=list)
  return TrainResult(run_dir, ckpt, done_it, wall, steps, ev)


def _config_from_dict(d: dict) -> TrainConfig:
  from humanoid_retarget.sim.rl.env import DomainRandConfig, ObsNoiseConfig, RewardConfig, SamplingConfig
  from humanoid_retarget.sim.terminations import TerminationConfig

  e = dict(d["env"])
  env = TrackingEnvConfig(**{**e, "rewards": RewardConfig(**e["rewards"]),
                             "termination": TerminationConfig(**e["termination"]),
                             "randomization": DomainRandConfig(**e["randomization"]),
                             "noise": ObsNoiseConfig(**e["noise"]), "sampling": SamplingConfig(**e["sampling"])})
  ppo = PPOConfig(**{**d["ppo"], "hidden_dims": tuple(d["ppo"]["hidden_dims"])})
  return TrainConfig(**{**d, "env": env, "ppo": ppo})


def load_expert(run_dir: str, checkpoint: str | None = None
                ) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], TrainConfig, dict]:
  """The deterministic policy of a run directory (its latest or the named checkpoint), its config and meta."""
  with open(os.path.join(run_dir, "expert.json")) as f:
    meta = json.load(f)
  cfg = _config_from_dict(meta["train"])
  sim = build_robot_sim(cfg.robot)
  motions, names = load_motions(meta["motions"], cfg.start_s, cfg.duration_s)
  env = TrackingEnv(sim, motions, cfg.env.for_evaluation(1), names)
  runner = _runner(env, cfg.ppo, None)
  path = checkpoint or os.path.join(run_dir, meta.get("checkpoint") or os.path.basename(_latest_checkpoint(run_dir)))
  runner.load(path, load_cfg={"actor": True, "critic": False, "optimizer": False, "iteration": False})
  env.close()
  return _torch_policy(runner.get_inference_policy()), cfg, meta
