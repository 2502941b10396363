"""Ray executor benchmark: local Ray with 2 workers vs 1 worker, and Ray's per-task overhead.

One run of this script starts a local Ray instance (127.0.0.1, 2 CPUs) and measures, on the same
clips (default: every BVH of ../shared/data/bandai1):

1. throughput (clips/s, frames/s) of ``run_batch_ray`` with 1 worker and with 2 workers; the ratio
   is the scaling figure (target >= 1.7x on 2 cores). The clips are split into ``--blocks`` blocks,
   each run with 1 and with 2 workers in alternating order, so a change in background load on a
   shared machine hits both alike. Workers are started and warmed up first, so worker start-up
   (imports, robot load) is reported separately, not mixed into throughput;
2. Ray's per-task overhead at the default chunk size (one clip per task): the round trip of a no-op
   task through the same executor (``ray_map``, one in flight, so nothing hides it), and for the
   real tasks, driver wall time minus the time spent inside the tasks; both as a % of the mean
   task time (target < 5%);
3. that the 1-worker and 2-worker Ray outputs and the local process pool's outputs are the same bytes
   (``--no-check-local`` skips the local run).

Inside each task the wall and CPU time are logged, so CPU contention from other processes on a
shared machine shows up (``cpu/wall`` below 1 means a worker did not get a whole core), and so does
the executor's own share: ``slot use`` is the time workers spent inside tasks over workers x wall
time (1.0 = the scheduler never left a worker idle).

  python benchmarks/bench_ray.py [--data ../shared/data/bandai1] [--limit N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed_retarget(task, log: str, opts) -> int:
  """retarget_task, appending 'wall cpu frames' of this call to ``log`` (one short O_APPEND write)."""
  from humanoid_retarget.pipeline import retarget_task

  t0, c0 = time.perf_counter(), time.process_time()
  n = retarget_task(task, opts)
  line = f"{time.perf_counter() - t0:.6f} {time.process_time() - c0:.6f} {n}\n".encode()
  fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    os.write(fd, line)
  finally:
    os.close(fd)
  return n


def noop(x):
  return x


def _read_log(log: str) -> tuple[list[float], list[float]]:
  wall, cpu = [], []
  with open(log) as f:
    for ln in f:
      w, c, _ = ln.split()
      wall.append(float(w))
      cpu.append(float(c))
  return wall, cpu


def _tree_bytes(d: Path) -> dict[str, bytes]:
  return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*.npz"))}


def run_ray(tasks, workers: int, log: str, acc: dict) -> None:
  """One block through ``run_batch_ray`` with ``workers`` workers; totals accumulate in ``acc``."""
  from humanoid_retarget.distributed import run_batch_ray

  acc.setdefault("loadavg_1min", []).append(os.getloadavg()[0])
  t0 = time.perf_counter()
  # 2 workers = the whole 2-CPU cluster: the default (num_workers=None) keeps 2 tasks queued per CPU,
  # so a worker never waits for the driver. 1 worker = one task in flight: the driver round trip
  # between tasks is fully exposed (and counted in the overhead below).
  res = run_batch_ray(partial(timed_retarget, log=log, opts=acc["opts"]), tasks,
                      num_workers=None if workers == 2 else workers, progress=False, skip_existing=False)
  acc["wall_s"] = acc.get("wall_s", 0.0) + time.perf_counter() - t0
  acc["clips"] = acc.get("clips", 0) + len(res.done)
  acc["frames"] = acc.get("frames", 0) + res.frames
  acc.setdefault("failures", []).extend(m for _, m in res.failed)


def summarize(acc: dict, workers: int, log: str) -> dict:
  tw, tc = _read_log(log)
  wall = acc["wall_s"]
  return {
    "workers": workers, "clips": acc["clips"], "failed": len(acc["failures"]), "failures": acc["failures"][:5],
    "frames": acc["frames"], "wall_s": wall, "clips_per_s": acc["clips"] / wall,
    "frames_per_s": acc["frames"] / wall, "task_wall_sum_s": sum(tw), "task_cpu_sum_s": sum(tc),
    "task_mean_s": statistics.mean(tw), "task_median_s": statistics.median(tw),
    "cpu_per_wall": sum(tc) / sum(tw), "slot_use": sum(tw) / (workers * wall),
    "frames_per_cpu_s": acc["frames"] / sum(tc),
    "loadavg_1min_mean": statistics.mean(acc["loadavg_1min"]),
  }


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "bandai1"))
  ap.add_argument("--limit", type=int, default=0, help="use the first N clips (0 = all)")
  ap.add_argument("--blocks", type=int, default=4, help="interleaved blocks of clips (1- and 2-worker runs)")
  ap.add_argument("--noop-tasks", type=int, default=200)
  ap.add_argument("--no-check-local", action="store_true", help="skip the local-pool run and byte check")
  ap.add_argument("--json", default="", help="also write the results here")
  ap.add_argument("--keep", action="store_true", help="keep the output folders")
  a = ap.parse_args()

  # Loopback only, no usage stats; Ray reads these when imported.
  os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
  os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
  import ray

  from humanoid_retarget.batch import run_batch
  from humanoid_retarget.distributed import ray_map
  from humanoid_retarget.human.load import list_inputs
  from humanoid_retarget.pipeline import RetargetOptions, plan_tasks, retarget_task

  files = list_inputs(a.data)
  if a.limit:
    files = files[: a.limit]
  if not files:
    print(f"no clips under {a.data}", file=sys.stderr)
    return 2
  opts = RetargetOptions()
  work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
  in_dir = work / "in"
  in_dir.mkdir()
  for f in files:
    (in_dir / os.path.basename(f)).symlink_to(os.path.abspath(f))

  def tasks_for(out: Path):
    return plan_tasks(str(in_dir), str(out))

  results: dict = {"data": a.data, "clips": len(files), "cpu_count": os.cpu_count(), "ray": ray.__version__}
  t0 = time.perf_counter()
  ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False,
           object_store_memory=100 * 1024**2)
  results["ray_init_s"] = time.perf_counter() - t0
  try:
    # Start and warm both workers (imports, robot model load): 2 clips each, not timed as throughput.
    t0 = time.perf_counter()
    warm = plan_tasks(str(in_dir), str(work / "warm"))[:4]
    from humanoid_retarget.distributed import run_batch_ray

    run_batch_ray(partial(retarget_task, opts=opts), warm, num_workers=2, progress=False)
    results["worker_start_and_warmup_s"] = time.perf_counter() - t0

    # Per-task overhead: no-op tasks, one in flight (full round trip exposed), then pipelined.
    n = a.noop_tasks
    t0 = time.perf_counter()
    for _ in ray_map(noop, range(n), progress=False, num_workers=1):
      pass
    noop_serial = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in ray_map(noop, range(n), progress=False):
      pass
    noop_pipelined = (time.perf_counter() - t0) / n
    results["noop_round_trip_ms"] = noop_serial * 1e3
    results["noop_pipelined_ms_per_task"] = noop_pipelined * 1e3

    accs = {1: {"opts": opts}, 2: {"opts": opts}}
    nb = max(1, min(a.blocks, len(files)))
    for b in range(nb):
      for w in ((1, 2) if b % 2 == 0 else (2, 1)):
        block = tasks_for(work / f"ray{w}")[b::nb]
        run_ray(block, w, str(work / f"ray{w}.log"), accs[w])
    r1 = summarize(accs[1], 1, str(work / "ray1.log"))
    r2 = summarize(accs[2], 2, str(work / "ray2.log"))
    results["ray_1_worker"], results["ray_2_workers"] = r1, r2
    results["throughput_ratio_2_vs_1"] = r2["frames_per_s"] / r1["frames_per_s"]
    # Driver-side overhead per task with 1 worker: everything that is not time inside the task.
    results["real_task_overhead_ms"] = (r1["wall_s"] - r1["task_wall_sum_s"]) / r1["clips"] * 1e3
    results["noop_overhead_pct_of_task"] = 100 * noop_serial / r1["task_mean_s"]
    results["real_overhead_pct_of_task"] = 100 * (r1["wall_s"] - r1["task_wall_sum_s"]) / r1["task_wall_sum_s"]
  finally:
    ray.shutdown()

  same_ray = _tree_bytes(work / "ray1") == _tree_bytes(work / "ray2")
  results["bytes_equal_ray1_ray2"] = same_ray
  if not a.no_check_local:
    t0 = time.perf_counter()
    res = run_batch(partial(retarget_task, opts=opts), tasks_for(work / "local"), workers=2, progress=False,
                    skip_existing=False)
    wall = time.perf_counter() - t0
    results["local_pool_2_workers"] = {"clips": len(res.done), "frames": res.frames, "wall_s": wall,
                                       "frames_per_s": res.frames / wall}
    results["bytes_equal_ray_local"] = _tree_bytes(work / "ray2") == _tree_bytes(work / "local")

  r1, r2 = results["ray_1_worker"], results["ray_2_workers"]
  print(f"clips: {len(files)} from {a.data}; {r1['frames']} frames; Ray {ray.__version__}, "
        f"{os.cpu_count()} CPUs")
  print(f"ray init {results['ray_init_s']:.1f} s; worker start + warm-up {results['worker_start_and_warmup_s']:.1f} s")
  for r in (r1, r2):
    print(f"ray {r['workers']} worker(s): {r['wall_s']:.1f} s, {r['clips_per_s']:.2f} clips/s, "
          f"{r['frames_per_s']:.0f} frames/s; task mean {r['task_mean_s'] * 1e3:.0f} ms "
          f"(median {r['task_median_s'] * 1e3:.0f}); cpu/wall {r['cpu_per_wall']:.2f}; "
          f"slot use {r['slot_use']:.3f}; {r['frames_per_cpu_s']:.0f} frames per CPU-second; "
          f"load avg {r['loadavg_1min_mean']:.1f}"
          + (f"; FAILED {r['failed']}" if r["failed"] else ""))
  ok_ratio = results["throughput_ratio_2_vs_1"] >= 1.7
  print(f"throughput 2 vs 1 worker: {results['throughput_ratio_2_vs_1']:.2f}x (target >= 1.7x: "
        f"{'met' if ok_ratio else 'MISSED'}); executor-side scaling (slot use 2 / slot use 1 x 2): "
        f"{2 * r2['slot_use'] / r1['slot_use']:.2f}x")
  ok_ovh = max(results["noop_overhead_pct_of_task"], results["real_overhead_pct_of_task"]) < 5
  print(f"per-task overhead: no-op round trip {results['noop_round_trip_ms']:.2f} ms "
        f"({results['noop_overhead_pct_of_task']:.2f}% of the mean task), pipelined "
        f"{results['noop_pipelined_ms_per_task']:.2f} ms/task; real tasks, 1 worker: "
        f"{results['real_task_overhead_ms']:.2f} ms/task ({results['real_overhead_pct_of_task']:.2f}%) "
        f"(target < 5%: {'met' if ok_ovh else 'MISSED'})")
  if "local_pool_2_workers" in results:
    lp = results["local_pool_2_workers"]
    print(f"local process pool, 2 workers: {lp['wall_s']:.1f} s, {lp['frames_per_s']:.0f} frames/s")
    print(f"bytes equal: ray 1 vs 2 workers {same_ray}; ray vs local {results['bytes_equal_ray_local']}")
  else:
    print(f"bytes equal: ray 1 vs 2 workers {same_ray}")
  if a.json:
    Path(a.json).write_text(json.dumps(results, indent=1))
  if not a.keep:
    shutil.rmtree(work, ignore_errors=True)
  else:
    print(f"outputs kept in {work}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
