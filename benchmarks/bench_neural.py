"""Neural vs kinematic retargeting on validation clips: speed, quality, robustness, unseen skeleton.

One run prints a table and writes JSON (default benchmarks/results/bench_neural.json):
  1. speed: frames/s of the neural path by stage (features, batched network over all validation
     clips at once, decode + post-process, RobotMotion packaging by make_motion; torch 2 threads,
     inference_mode, bf16 weights; file I/O excluded) and of the kinematic retargeter (one process);
  2. quality: eval metrics (``evaluate_motion(robot, motion, human)``) of both, and of the neural
     output without its post-process (low-pass, joint clamp, collision repair, speed bound, foot pinning, floor correction);
  3. robustness (as NMR Fig. 6): spikes and jitter injected into the human joint positions; joint
     jumps and key-point error against the *clean* human, for both methods;
  4. unseen skeleton: the built-in LAFAN-style sample at 120 fps (never in training).

Validation clips are those of the dataset's val split (hash of the clip name, see
``humanoid_retarget.neural.dataset.split_of``), read from DATA/report.json when present.

  python benchmarks/bench_neural.py [--data data/pairs] [--checkpoint PATH] [--max-clips N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def val_clips(data: str, shared: str) -> list[str]:
  from humanoid_retarget.human.load import list_inputs
  from humanoid_retarget.neural.dataset import clip_name, split_of

  rep_path = os.path.join(data, "report.json")
  if os.path.exists(rep_path):
    with open(rep_path) as f:
      rep = json.load(f)
    return [c["input"] for c in rep["clips"] if c.get("split") == "val" and c["kept"]]
  files = []
  for d in ("bandai1", "bandai2"):
    files += list_inputs(os.path.join(shared, d))
  return [f for f in files if split_of(clip_name(f), 10.0) == "val"]


def agg(robot, motions, humans) -> dict:
  from humanoid_retarget.eval.metrics import aggregate, evaluate_motion

  return aggregate([evaluate_motion(robot, m, h) for m, h in zip(motions, humans)])


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--data", default=os.path.join(REPO, "data", "pairs"))
  ap.add_argument("--shared", default=os.path.join(os.path.dirname(REPO), "shared", "data"))
  ap.add_argument("--checkpoint", default="")
  ap.add_argument("--max-clips", type=int, default=0)
  ap.add_argument("--repeats", type=int, default=3, help="timed repeats of the neural path (best kept)")
  ap.add_argument("--jitter-m", type=float, default=0.01)
  ap.add_argument("--spike-prob", type=float, default=0.01)
  ap.add_argument("--spike-m", type=float, default=0.15)
  ap.add_argument("--json", default=os.path.join(HERE, "results", "bench_neural.json"))
  a = ap.parse_args()

  import torch

  torch.set_num_threads(2)
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.human.motion import HumanMotion
  from humanoid_retarget.human.sample import sample_walk_bvh
  from humanoid_retarget.neural.features import corrupt_positions, human_features
  from humanoid_retarget.neural.infer import (NeuralConfig, decode_tracks, load_checkpoint, retarget_neural_many,
                                              run_network)
  from humanoid_retarget.retarget.kinematic import make_motion, retarget_kinematic
  from humanoid_retarget.robot.config import load_robot

  robot = load_robot("unitree_g1_29dof")
  ckpt = a.checkpoint or None
  model, ck = load_checkpoint(ckpt)
  files = val_clips(a.data, a.shared)
  if a.max_clips:
    files = files[: a.max_clips]
  if not files:
    print("no validation clips found", file=sys.stderr)
    return 2
  humans = [load_human(f) for f in files]
  frames = sum(h.num_frames for h in humans)
  print(f"{len(humans)} validation clips, {frames} frames; model {ck['model_config']['arch']} "
        f"d{ck['model_config']['d_model']}x{ck['model_config']['n_layers']} "
        f"(retargeter commit {ck.get('retargeter_commit', '?')})", file=sys.stderr)
  out: dict = {"clips": len(humans), "frames": frames, "checkpoint": str(ckpt or "shipped"),
               "model": ck["model_config"], "retargeter_commit": ck.get("retargeter_commit")}

  # 1. speed, by stage (best of --repeats): features, network, decode (root pose, joint angles,
  # clamp, contacts, floor correction), RobotMotion packaging (make_motion: FK + quaternions).
  retarget_neural_many(humans[:2], robot, ckpt)  # warm-up
  cfg = NeuralConfig()
  stages = {"features": np.inf, "network": np.inf, "decode": np.inf, "make_motion": np.inf, "total": np.inf}
  for _ in range(a.repeats):
    t0 = time.perf_counter()
    fts = [human_features(h.positions, h.fps) for h in humans]  # Bandai is 30 fps: no resampling
    t1 = time.perf_counter()
    ys = run_network(model, [f for f, _ in fts], cfg)
    t2 = time.perf_counter()
    tracks = [decode_tracks(robot, y, fr, h, cfg) for y, (_, fr), h in zip(ys, fts, humans)]
    t3 = time.perf_counter()
    neural = [make_motion(robot, *tr, h.fps, "neural", h.source) for tr, h in zip(tracks, humans)]
    t4 = time.perf_counter()
    for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
      stages[k] = min(stages[k], v)
  t = time.perf_counter()
  kin = [retarget_kinematic(h, robot) for h in humans]
  t_kin = time.perf_counter() - t
  out["stage_seconds"] = stages
  out["speed_fps"] = {
    "neural_network_only": frames / stages["network"],
    "neural_inference": frames / (stages["features"] + stages["network"] + stages["decode"]),
    "neural_end_to_end": frames / stages["total"],
    "kinematic": frames / t_kin,
  }

  # 2. quality
  raw = retarget_neural_many(humans, robot, ckpt,
                             replace(NeuralConfig(), clamp=False, floor=False, rate_limit=False, pin_feet=False, hold_feet=False,
                                     collisions=False, smooth_sigma=0.0))
  out["metrics"] = {"kinematic": agg(robot, kin, humans), "neural": agg(robot, neural, humans),
                    "neural_no_postprocess": agg(robot, raw, humans)}

  # 3. robustness: corrupted input, scored against the clean human
  rng = np.random.default_rng(0)
  noisy = [HumanMotion(h.fps, corrupt_positions(h.positions, rng, a.jitter_m, a.spike_prob, a.spike_m), h.rotations,
                       source=h.source) for h in humans]
  kin_n = [retarget_kinematic(h, robot) for h in noisy]
  neu_n = retarget_neural_many(noisy, robot, ckpt)
  out["noise"] = {"jitter_m": a.jitter_m, "spike_prob": a.spike_prob, "spike_m": a.spike_m,
                  "kinematic": agg(robot, kin_n, humans), "neural": agg(robot, neu_n, humans)}

  # 4. unseen skeleton: LAFAN-style sample at 120 fps
  import tempfile

  with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "sample_walk_120.bvh")
    with open(p, "w") as f:
      f.write(sample_walk_bvh(fps=120.0))
    hs = load_human(p)
  m_n = retarget_neural_many([hs], robot, ckpt)[0]
  m_k = retarget_kinematic(hs, robot)
  out["unseen_skeleton"] = {"frames": hs.num_frames, "fps": hs.fps, "kinematic": agg(robot, [m_k], [hs]),
                            "neural": agg(robot, [m_n], [hs])}

  keys = ["keypoint_error_cm", "joint_jump_pct", "self_collision_pct", "joint_limit_pct", "penetration_pct",
          "lowest_foot_mean_cm", "foot_skate_cms", "velocity_limit_pct", "max_joint_vel"]
  sp = out["speed_fps"]
  print(f"\nspeed (frames/s): neural network only {sp['neural_network_only']:.0f}; neural inference "
        f"(features + network + decode + post-process) {sp['neural_inference']:.0f}; neural end-to-end "
        f"(+ make_motion) {sp['neural_end_to_end']:.0f}; kinematic {sp['kinematic']:.0f}")
  print("stage seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in out["stage_seconds"].items()))
  rows = [("kinematic", out["metrics"]["kinematic"]), ("neural", out["metrics"]["neural"]),
          ("neural (no post)", out["metrics"]["neural_no_postprocess"]),
          ("noisy: kinematic", out["noise"]["kinematic"]), ("noisy: neural", out["noise"]["neural"]),
          ("unseen: kinematic", out["unseen_skeleton"]["kinematic"]),
          ("unseen: neural", out["unseen_skeleton"]["neural"])]
  print(f"\n{'':<18}" + "".join(f"{k[:14]:>15}" for k in keys))
  for name, r in rows:
    print(f"{name:<18}" + "".join(f"{r.get(k, float('nan')):>15.3f}" for k in keys))
  os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
  with open(a.json, "w") as f:
    json.dump(out, f, indent=1)
  print(f"\nwrote {a.json}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
