"""``humanoid-retarget track-train``: PPO tracking expert (rsl-rl-lib, CPU) on one clip or a cluster of clips."""

from __future__ import annotations

import json as _json
import os
from typing import Annotated

import tyro

from humanoid_retarget.errors import RetargetError


def _motion_paths(paths: list[str]) -> list[str]:
  from humanoid_retarget.io.motion import list_motion_files

  out = list_motion_files(paths)
  for p in out:
    if not os.path.isfile(p):
      raise RetargetError(f"{p}: no such file or folder")
  return out


def _cluster_members(path: str, k: int, motion_dir: str) -> list[str]:
  with open(path) as f:
    data = _json.load(f)
  try:
    members = data["clusters"][str(k)]["members"]
  except KeyError:
    raise RetargetError(f"{path}: no cluster {k} (clusters: {', '.join(sorted(data.get('clusters', {})))})") from None
  by_stem = {os.path.splitext(os.path.basename(p))[0]: p for p in _motion_paths([motion_dir])}
  out = []
  for m in members:
    stem = os.path.splitext(os.path.basename(m))[0]
    if stem not in by_stem:
      raise RetargetError(f"{motion_dir}: no robot motion {stem}.npz for cluster member {m} (retarget it first)")
    out.append(by_stem[stem])
  return out


def track_train(
  motions: tyro.conf.Positional[list[str]],
  output: Annotated[str, tyro.conf.arg(aliases=("-o",))] = "runs/track",
  iterations: int = 1000,
  envs: int = 64,
  max_minutes: float = 0.0,
  start_s: float = 0.0,
  duration_s: float = 0.0,
  hidden: tuple[int, ...] = (256, 128),
  init_std: float = 0.25,
  steps_per_env: int = 24,
  sigma_loose: float = 2.0,
  threads: int = 2,
  seed: int = 0,
  cluster_json: str = "",
  cluster: int = -1,
  evaluate_only: bool = False,
  json: str = "",
) -> int:
  """Train a BeyondMimic-style tracking expert with PPO (rsl-rl-lib) on the CPU, then evaluate it.

  MOTIONS: robot motion .npz files or folders; with several clips each episode draws one uniformly (one
  expert per cluster: --cluster-json clusters.json --cluster K takes cluster K's members from the folder
  MOTIONS[0]). --start-s/--duration-s train on a slice of every clip. The tracking kernels' widths start
  at --sigma-loose times BeyondMimic's and shrink linearly to them over 75% of the iterations.
  --max-minutes stops early (checked every 25 iterations). Checkpoints (rsl-rl ``model_*.pt``), TensorBoard
  events and ``expert.json`` go to --output. The evaluation rolls the deterministic policy out from each
  clip's first frame with BeyondMimic's terminations and prints success and MPJPE / W-MPJPE (cm);
  --evaluate-only re-evaluates the run in --output on MOTIONS (or its own clips when MOTIONS is '-').
  """
  try:
    from humanoid_retarget.sim.rl.train import PPOConfig, TrainConfig, evaluate_policy, load_expert, load_motions, \
      train_expert
  except ImportError as e:
    raise RetargetError(f"track-train needs rsl-rl-lib (pip install rsl-rl-lib): {e}") from None
  from humanoid_retarget.sim.model import build_robot_sim

  if evaluate_only:
    policy, cfg, meta = load_expert(output)
    paths = meta["motions"] if motions == ["-"] else _motion_paths(motions)
    ms, names = load_motions(paths, cfg.start_s, cfg.duration_s)
    rows = evaluate_policy(policy, build_robot_sim(cfg.robot), ms, names, cfg.env)
    wall = meta.get("wall_s")
  else:
    paths = _cluster_members(cluster_json, cluster, motions[0]) if cluster_json else _motion_paths(motions)
    if not paths:
      raise RetargetError("no motion files given")
    cfg = TrainConfig(iterations=iterations, num_envs=envs, max_minutes=max_minutes, start_s=start_s,
                      duration_s=duration_s, threads=threads, seed=seed,
                      ppo=PPOConfig(hidden_dims=tuple(hidden), init_std=init_std, steps_per_env=steps_per_env))
    cfg.env.sigma_loose = sigma_loose
    print(f"training on {len(paths)} clip(s), {envs} envs, {iterations} iterations -> {output}")
    res = train_expert(paths, output, cfg)
    rows, wall = res.evaluation, res.wall_s
    print(f"trained {res.iterations} iterations, {res.env_steps} env steps in {res.wall_s:.0f} s "
          f"({res.env_steps / max(res.wall_s, 1e-9):.0f} steps/s); checkpoint {res.checkpoint}")
  for r in rows:
    status = "tracked to the end" if r.success else f"FAILED at {r.failed_at_s:.2f} s"
    print(f"{r.clip}: {status} ({r.frames} frames), MPJPE {r.mpjpe_cm:.2f} cm, W-MPJPE {r.w_mpjpe_cm:.2f} cm")
  n_ok = sum(r.success for r in rows)
  mp = sum(r.mpjpe_cm for r in rows) / max(len(rows), 1)
  print(f"success {n_ok}/{len(rows)}, mean MPJPE {mp:.2f} cm")
  if json:
    with open(json, "w") as f:
      _json.dump({"success_rate": n_ok / max(len(rows), 1), "mpjpe_cm": mp, "wall_s": wall,
                  "rows": [r.as_dict() for r in rows]}, f, indent=1)
  return 0 if n_ok == len(rows) else 1
