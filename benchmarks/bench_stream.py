"""Live vs offline retargeting on the shared bandai2 walking, running and waving clips.

For each clip: the offline retargeter (whole clip, timed), then ``humanoid-retarget stream --replay`` in a
subprocess at the clip's own rate with a UDP receiver here (latency = input line received -> UDP message
sent, from the server's --stats-json; also the server thread's CPU time for the same span, which other
processes on a loaded machine barely affect), then the library alone as fast as it goes (throughput of
the fast path and of the reference path, the offline functions on each frame), and the quality metrics
(``evaluate_motion``) of the live output beside the offline one, plus the foot skate of the live output
with the previous contact handling (``--no-skate-ab`` skips that). Every clip runs at 30 Hz and resampled
to 120 Hz (channel values interpolated, angles unwrapped). The load average is printed before each run.

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


# The live contact handling before the fast path: contact entered on the current frame's speed, the pin eased
# in horizontally at the foot's target, the rate limit applied after the solve.
OLD_CONTACTS = dict(contact_settle_s=0.0, pin_xy_at_contact=False, pin_at_robot_foot=False, rate_in_solve=False)


def library_run(robot, clip: Path, **cfg) -> tuple[float, list]:
  """Frames per second of the library alone (no network) and its output frames."""
  from humanoid_retarget.io.bvh import parse_bvh
  from humanoid_retarget.retarget.streaming import StreamConfig, StreamingRetargeter

  b = parse_bvh(clip)
  s = StreamingRetargeter(robot, b, cfg=StreamConfig(**cfg))
  t0 = time.perf_counter()
  frames = [s.push(b.motion[i]) for i in range(b.num_frames)]
  return b.num_frames / (time.perf_counter() - t0), frames


def frames_motion(robot, frames, fps: float, name: str):
  from humanoid_retarget.retarget.kinematic import make_motion

  R = Rotation.from_quat(np.array([f.root_quat for f in frames]), scalar_first=True).as_matrix()
  return make_motion(robot, np.array([f.root_pos for f in frames]), R, np.array([f.q for f in frames]),
                     np.array([f.contacts for f in frames], dtype=bool), fps, "live", name)


def main() -> int:
  ap = argparse.ArgumentParser()
  ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
  ap.add_argument("--json", default="")
  ap.add_argument("--rates", default="30,120", help="input rates (Hz); the clips are resampled to each")
  ap.add_argument("--no-reference", action="store_true", help="skip the reference path's throughput")
  ap.add_argument("--no-skate-ab", action="store_true", help="skip the previous contact handling's skate")
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
    cases = []
    for hz in (int(r) for r in args.rates.split(",")):
      for c in CLIPS:
        if hz == 30:
          cases.append((data / f"{c}.bvh", c, hz))
        else:
          p = Path(td) / f"{c}_{hz}fps.bvh"
          resample_bvh(data / f"{c}.bvh", p, float(hz))
          cases.append((p, f"{c}@{hz}Hz", hz))
    for path, name, hz in cases:
      human = load_bvh(path)
      t0 = time.perf_counter()
      off = retarget_kinematic(human, robot)
      t_off = time.perf_counter() - t0
      load_run = os.getloadavg()[0]
      frames, st = run_stream(path)
      live = live_motion(robot, frames, human.fps, name)
      ml, mo = evaluate_motion(robot, live, human, name), evaluate_motion(robot, off, human, name)
      d = np.abs(live.dof_pos - off.dof_pos) if live.num_frames == off.num_frames else np.full((1, 1), np.nan)
      fps_fast, _ = library_run(robot, path)
      fps_ref = float("nan") if args.no_reference else library_run(robot, path, fast=False)[0]
      skate_old = float("nan")
      if not args.no_skate_ab:
        _, fr_old = library_run(robot, path, **OLD_CONTACTS)
        skate_old = evaluate_motion(robot, frames_motion(robot, fr_old, human.fps, name)).foot_skate_cms
      row = {
        "clip": name, "input_hz": hz, "frames": human.num_frames, "answered": len(frames), "load_1min": load_run,
        **{k: st.get(k) for k in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms", "cpu_p50_ms", "cpu_p99_ms",
                                  "cpu_max_ms")},
        "live_fps": fps_fast, "reference_fps": fps_ref, "offline_fps": human.num_frames / t_off,
        "dq_mean_rad": float(d.mean()), "dq_frame_max_mean_rad": float(d.max(axis=1).mean()), "live": ml.as_dict(),
        "offline": mo.as_dict(), "skate_old_contacts_cms": skate_old, "solver_errors": st.get("solver_errors", 0),
      }
      rows.append(row)
      print(f"{name:44s} {hz:4d} Hz  load {load_run:.1f}  answered {len(frames)}/{human.num_frames}  latency p50 "
            f"{row['latency_p50_ms']:.2f} p99 {row['latency_p99_ms']:.2f} max {row['latency_max_ms']:.2f} ms  cpu p50 "
            f"{row['cpu_p50_ms']:.2f} p99 {row['cpu_p99_ms']:.2f} max {row['cpu_max_ms']:.2f} ms")
      print(f"    throughput: live {fps_fast:.0f} fps (reference path {fps_ref:.0f} fps), offline {row['offline_fps']:.0f} "
            f"fps; live vs offline |dq| mean {row['dq_mean_rad']:.3f} rad")
      for tag, m in (("live", ml), ("offline", mo)):
        print(f"    {tag:8s} jump {m.joint_jump_pct:.1f}%  penetration {m.penetration_pct:.1f}%  self-collision "
              f"{m.self_collision_pct:.1f}%  limit {m.joint_limit_pct:.1f}%  skate {m.foot_skate_cms:.1f} cm/s  "
              f"key-point {m.keypoint_error_cm:.1f} cm")
      print(f"    live skate with the previous contact handling: {skate_old:.1f} cm/s")
  load = os.getloadavg()
  print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
