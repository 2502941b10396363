"""Live vs offline retargeting on the shared bandai2 walking, running and waving clips.

For each clip: the offline retargeter (whole clip, timed), then ``humanoid-retarget stream --replay`` in a
subprocess at the clip's own rate with a UDP receiver here (latency = input line received -> UDP message
sent, from the server's --stats-json), then the library alone as fast as it goes (throughput), and the
quality metrics (``evaluate_motion``) of the live output beside the offline one. The 120 Hz case replays
the walking clip resampled to 120 fps (channel values interpolated, angles unwrapped).

  .venv/bin/python benchmarks/bench_stream.py [--data ../shared/data] [--json out.json]

Targets (issue 10): latency p99 <= 5 ms at 120 Hz with no look-ahead; live joint-jump frames 0 %,
penetration <= 1 %, self-collision <= 1 %.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

CLIPS = ("dataset-2_walk_normal_001", "dataset-2_run_normal_001", "dataset-2_wave-both-hands_normal_001")


def resample_bvh(src: Path, dst: Path, fps: float) -> None:
  from humanoid_retarget.io.bvh import parse_bvh

  b = parse_bvh(src)
  T = b.num_frames
  t_src = np.arange(T) * b.frame_time
  n = int(np.floor(t_src[-1] * fps + 1e-9)) + 1
  t_new = np.arange(n) / fps
  mot = b.motion.copy()
  rot_cols = [j.channel_start + k for j in b.joints for k, ch in enumerate(j.channels) if ch[1:].lower() == "rotation"]
  mot[:, rot_cols] = np.degrees(np.unwrap(np.radians(mot[:, rot_cols]), axis=0))
  new = np.stack([np.interp(t_new, t_src, mot[:, c]) for c in range(mot.shape[1])], axis=1)
  text = Path(src).read_text()
  head = text[: text.upper().index("MOTION")]
  body = "\n".join(" ".join(f"{v:.5f}" for v in row) for row in new)
  dst.write_text(f"{head}MOTION\nFrames: {n}\nFrame Time: {1.0 / fps:.8f}\n{body}\n")


def _receive(sock: socket.socket, out: list, stop: threading.Event) -> None:
  while not stop.is_set():
    try:
      out.append(json.loads(sock.recv(65536)))
    except socket.timeout:
      continue


def run_stream(clip: Path, lookahead: int = 0) -> tuple[list[dict], dict]:
  rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
  rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
  rx.bind(("127.0.0.1", 0))
  rx.settimeout(0.2)
  msgs: list[dict] = []
  stop = threading.Event()
  th = threading.Thread(target=_receive, args=(rx, msgs, stop), daemon=True)
  th.start()
  with tempfile.TemporaryDirectory() as td:
    stats = Path(td) / "stats.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "humanoid_retarget.cli.main", "stream", "--replay", str(clip),
                    "--udp", f"127.0.0.1:{rx.getsockname()[1]}", "--lookahead", str(lookahead),
                    "--stats-json", str(stats), "--quiet"], check=True, env=env)
    time.sleep(0.3)
    stop.set()
    th.join()
    st = json.loads(stats.read_text())
  rx.close()
  return [m for m in msgs if m["type"] == "frame"], st


def live_motion(robot, frames: list[dict], fps: float, name: str):
  from humanoid_retarget.retarget.kinematic import make_motion

  frames = sorted(frames, key=lambda m: m["frame"])
  q = np.array([m["q"] for m in frames])
  rp = np.array([m["root_pos"] for m in frames])
  R = Rotation.from_quat(np.array([m["root_quat"] for m in frames]), scalar_first=True).as_matrix()
  c = np.array([m["contacts"] for m in frames], dtype=bool)
  return make_motion(robot, rp, R, q, c, fps, "live", name)


def throughput(robot, clip: Path) -> float:
  from humanoid_retarget.io.bvh import parse_bvh
  from humanoid_retarget.retarget.streaming import StreamingRetargeter

  b = parse_bvh(clip)
  s = StreamingRetargeter(robot, b)
  t0 = time.perf_counter()
  for i in range(b.num_frames):
    s.push(b.motion[i])
  return b.num_frames / (time.perf_counter() - t0)


def main() -> int:
  ap = argparse.ArgumentParser()
  ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
  ap.add_argument("--json", default="")
  args = ap.parse_args()
  from humanoid_retarget.eval.metrics import evaluate_motion
  from humanoid_retarget.human.bvh_import import load_bvh
  from humanoid_retarget.retarget.kinematic import retarget_kinematic
  from humanoid_retarget.robot.config import load_robot

  robot = load_robot("unitree_g1_29dof")
  data = Path(args.data) / "bandai2"
  load = os.getloadavg()
  print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
  rows = []
  with tempfile.TemporaryDirectory() as td:
    cases = [(data / f"{c}.bvh", c, 30) for c in CLIPS]
    walk120 = Path(td) / "walk_120fps.bvh"
    resample_bvh(data / f"{CLIPS[0]}.bvh", walk120, 120.0)
    cases.append((walk120, CLIPS[0] + "@120Hz", 120))
    for path, name, hz in cases:
      human = load_bvh(path)
      t0 = time.perf_counter()
      off = retarget_kinematic(human, robot)
      t_off = time.perf_counter() - t0
      frames, st = run_stream(path)
      live = live_motion(robot, frames, human.fps, name)
      ml, mo = evaluate_motion(robot, live, human, name), evaluate_motion(robot, off, human, name)
      d = np.abs(live.dof_pos - off.dof_pos) if live.num_frames == off.num_frames else np.full((1, 1), np.nan)
      row = {
        "clip": name, "input_hz": hz, "frames": human.num_frames, "answered": len(frames),
        "latency_p50_ms": st.get("latency_p50_ms"), "latency_p99_ms": st.get("latency_p99_ms"),
        "latency_max_ms": st.get("latency_max_ms"), "live_fps": throughput(robot, path),
        "offline_fps": human.num_frames / t_off, "dq_mean_rad": float(d.mean()),
        "dq_frame_max_mean_rad": float(d.max(axis=1).mean()), "live": ml.as_dict(), "offline": mo.as_dict(),
        "solver_errors": st.get("solver_errors", 0),
      }
      rows.append(row)
      print(f"{name:44s} {hz:4d} Hz  answered {len(frames)}/{human.num_frames}  latency p50 {row['latency_p50_ms']:.2f} "
            f"p99 {row['latency_p99_ms']:.2f} max {row['latency_max_ms']:.2f} ms  live {row['live_fps']:.0f} fps  "
            f"offline {row['offline_fps']:.0f} fps  |dq| mean {row['dq_mean_rad']:.3f} rad")
      for tag, m in (("live", ml), ("offline", mo)):
        print(f"    {tag:8s} jump {m.joint_jump_pct:.1f}%  penetration {m.penetration_pct:.1f}%  self-collision "
              f"{m.self_collision_pct:.1f}%  limit {m.joint_limit_pct:.1f}%  skate {m.foot_skate_cms:.1f} cm/s  "
              f"key-point {m.keypoint_error_cm:.1f} cm")
  load = os.getloadavg()
  print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
