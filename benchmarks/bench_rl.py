"""RL benchmark (issue 6, item 8): tracking-env steps/s and the wall time of one RL expert on one clip.

  .venv/bin/python benchmarks/bench_rl.py [--motion CLIP.npz] [--envs 16 32 64] [--seconds 10]
      [--expert-run RUN_DIR | --train-iterations N] [--json out.json]

1. Env steps/s of :class:`TrackingEnv` (BeyondMimic task: 4 physics steps, kinematics, rewards,
   terminations, resets, observations per control step; domain randomisation on), random actions
   (Gaussian, std 0.5), for each env count; and the same with the PPO policy's forward pass
   (rsl-rl MLP 256-128, torch 1 thread) to show the collection rate PPO sees.
2. Expert wall time: read from a finished run (``--expert-run``, its ``expert.json``: iterations, wall
   time, env steps, deterministic evaluation), or train one here (``--train-iterations N``; 0 skips).
Without ``--motion`` the Bandai-2 walk is retargeted (kinematic) into a temporary file (4 s slice).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))

from humanoid_retarget.io.motion import load_motion  # noqa: E402
from humanoid_retarget.sim.model import build_robot_sim  # noqa: E402
from humanoid_retarget.sim.rl.env import TrackingEnv, TrackingEnvConfig  # noqa: E402
from humanoid_retarget.sim.rl.train import slice_motion  # noqa: E402

WALK = os.path.join(REPO, "..", "shared", "data", "bandai2", "dataset-2_walk_normal_001.bvh")


def env_speed(sim, motion, num_envs: int, seconds: float, with_policy: bool) -> float:
  env = TrackingEnv(sim, [motion], TrackingEnvConfig(num_envs=num_envs, seed=0))
  rng = np.random.default_rng(0)
  policy = None
  if with_policy:
    import torch
    from rsl_rl.models import MLPModel
    from tensordict import TensorDict

    torch.set_num_threads(1)
    obs = env.observations()
    td = TensorDict({k: torch.from_numpy(v) for k, v in obs.items()}, batch_size=[num_envs])
    policy = MLPModel(td, {"actor": ["policy"]}, "actor", env.J, hidden_dims=(256, 128), obs_normalization=True,
                      distribution_cfg={"class_name": "GaussianDistribution", "init_std": 0.5})
  try:
    obs = env.observations()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
      if policy is not None:
        import torch

        td = TensorDict({k: torch.from_numpy(v) for k, v in obs.items()}, batch_size=[num_envs])
        with torch.inference_mode():
          a = policy(td, stochastic_output=True).numpy()
      else:
        a = rng.normal(0.0, 0.5, (num_envs, env.J))
      obs = env.step(a).obs
      steps += num_envs
    return steps / (time.perf_counter() - t0)
  finally:
    env.close()


def main() -> int:
  ap = argparse.ArgumentParser()
  ap.add_argument("--motion", default="", help="robot motion .npz (default: retarget the Bandai-2 walk)")
  ap.add_argument("--duration-s", type=float, default=4.0, help="slice of the clip (0: all)")
  ap.add_argument("--envs", type=int, nargs="+", default=[16, 32, 64])
  ap.add_argument("--seconds", type=float, default=10.0)
  ap.add_argument("--expert-run", default="", help="a finished track-train run directory")
  ap.add_argument("--train-iterations", type=int, default=0, help="train an expert here (0: skip)")
  ap.add_argument("--json", default="")
  args = ap.parse_args()
  tmp = tempfile.mkdtemp(prefix="bench_rl_")
  path = args.motion
  if not path:
    path = os.path.join(tmp, "walk.npz")
    subprocess.run([sys.executable, "-m", "humanoid_retarget.cli.main", "retarget", WALK, "-o", path], check=True,
                   stdout=subprocess.DEVNULL)
  motion = slice_motion(load_motion(path), 0.0, args.duration_s)
  sim = build_robot_sim()
  out: dict = {"motion": path, "duration_s": args.duration_s, "env_steps_per_s": {}, "with_policy_steps_per_s": {}}
  for n in args.envs:
    sps = env_speed(sim, motion, n, args.seconds, with_policy=False)
    out["env_steps_per_s"][n] = sps
    print(f"{n:4d} envs: {sps:7.0f} env steps/s ({sps * sim.control_dt:.1f} simulated s per wall s)")
  try:
    import rsl_rl  # noqa: F401

    n = max(args.envs)
    sps = env_speed(sim, motion, n, args.seconds, with_policy=True)
    out["with_policy_steps_per_s"][n] = sps
    print(f"{n:4d} envs + MLP policy: {sps:7.0f} env steps/s")
  except ImportError:
    print("rsl-rl-lib not installed: no policy-in-the-loop figure, no expert")
  run = args.expert_run
  if not run and args.train_iterations > 0:
    from humanoid_retarget.sim.rl.train import TrainConfig, train_expert

    run = os.path.join(tmp, "expert")
    train_expert([path], run, TrainConfig(iterations=args.train_iterations, duration_s=args.duration_s))
  if run:
    meta = json.load(open(os.path.join(run, "expert.json")))
    ev = meta["evaluation"]
    out["expert"] = {"run": run, "iterations": meta["iterations"], "wall_s": meta["wall_s"],
                     "env_steps": meta["env_steps"], "evaluation": ev}
    ok = sum(e["success"] for e in ev)
    print(f"expert: {meta['iterations']} iterations, {meta['env_steps']} env steps, {meta['wall_s'] / 60:.1f} min "
          f"wall; tracks {ok}/{len(ev)} clip(s) to the end; MPJPE "
          + ", ".join(f"{e['mpjpe_cm']:.2f} cm" for e in ev))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
