"""The Ray executor on a real local Ray cluster (started here, 127.0.0.1, 2 CPUs), not a mock.

* a batch of shared clips through Ray gives the same bytes as the local process pool, and failures
  are listed with the same one-line reasons; ``eval --executor ray`` gives the same JSON;
* a worker killed mid-write is retried: every output whole, no temporary file left;
* a clip whose worker dies on every attempt is listed as failed with the reason;
* the core package never imports Ray, and the Ray executor without Ray says how to install it.

Ray is an optional extra: these tests skip without it, except under CI (then they fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from humanoid_retarget.batch import Task

N_CLIPS = 4
TMP_SUFFIX = ".tmp"


def _need_ray():
  if os.environ.get("CI"):
    import ray  # CI tests the Ray executor: a missing Ray is an error, not a skip

    return ray
  return pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
  """A local Ray instance bound to the loopback address, 2 CPUs, shut down after the module."""
  saved = {k: os.environ.get(k) for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")}
  # On Linux Ray advertises the host's routable IP even for a local instance; this makes it use
  # 127.0.0.1 for every node and worker address. Ray reads it when imported: set it first.
  os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
  os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
  ray = None
  try:
    ray = _need_ray()
    if ray.is_initialized():
      ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2,
             logging_level="warning", log_to_driver=False)
    # Test-module functions (the fault injectors) are shipped by value: workers cannot import tests/.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    assert [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]] == ["127.0.0.1"]
    yield ray
  finally:
    if ray is not None:
      ray.shutdown()
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory) -> Path:
  """A folder of N_CLIPS shared BVH clips (symlinks) plus one broken file."""
  src = sorted((shared_data / "bandai1").glob("*.bvh"))
  assert len(src) >= N_CLIPS
  d = tmp_path_factory.mktemp("clips")
  # Spread over the folder so clip lengths differ.
  for f in src[:: max(1, len(src) // N_CLIPS)][:N_CLIPS]:
    (d / f.name).symlink_to(f)
  (d / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0\n")
  return d


def _opts():
  from humanoid_retarget.pipeline import RetargetOptions

  return RetargetOptions()


def _tasks(folder: Path, out: Path, broken: bool = False) -> list[Task]:
  from humanoid_retarget.pipeline import plan_tasks

  return [t for t in plan_tasks(str(folder), str(out)) if broken or "broken" not in t.input]


def _files(folder: Path) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def local_out(clips, tmp_path_factory) -> Path:
  """The reference: the local process pool's outputs for the good clips."""
  from humanoid_retarget.batch import run_batch
  from humanoid_retarget.pipeline import retarget_task

  out = tmp_path_factory.mktemp("local")
  res = run_batch(partial(retarget_task, opts=_opts()), _tasks(clips, out), workers=2, progress=False)
  assert not res.failed and len(res.done) == N_CLIPS
  return out


def test_cli_retarget_ray_equals_local(ray_cluster, clips, tmp_path, capsys):
  """``retarget --executor ray`` on a folder: the same bytes and the same failure report as local."""
  from humanoid_retarget.cli.main import main

  out_local, out_ray = tmp_path / "local", tmp_path / "ray"
  assert main(["retarget", str(clips), "-o", str(out_local), "--workers", "2", "--quiet"]) == 1
  err_local = capsys.readouterr().err
  assert main(["retarget", str(clips), "-o", str(out_ray), "--executor", "ray", "--quiet"]) == 1
  err_ray = capsys.readouterr().err

  local, ray_files = _files(out_local), _files(out_ray)
  assert len(local) == N_CLIPS and "broken.npz" not in local
  assert sorted(ray_files) == sorted(local)
  for name, data in local.items():
    assert ray_files[name] == data, f"{name}: Ray output differs from the local output"

  def failures(err: str) -> list[str]:
    return [ln.strip() for ln in err.split("failed:\n", 1)[1].splitlines() if ln.startswith("  ")]

  assert failures(err_ray) == failures(err_local)
  assert len(failures(err_ray)) == 1 and failures(err_ray)[0].startswith(str(clips / "broken.bvh") + ": ")
  assert f"{N_CLIPS} clips done, 0 skipped (output exists), 1 failed" in err_ray


def test_run_batch_ray_same_bytes_and_skips(ray_cluster, clips, local_out, tmp_path):
  from humanoid_retarget.distributed import run_batch_ray
  from humanoid_retarget.pipeline import retarget_task

  fn = partial(retarget_task, opts=_opts())
  tasks = _tasks(clips, tmp_path / "out", broken=True)
  res = run_batch_ray(fn, tasks, progress=False)
  assert sorted(res.done) == sorted(t.input for t in tasks if "broken" not in t.input)
  assert [inp for inp, _ in res.failed] == [str(clips / "broken.bvh")]
  assert res.frames > 0
  assert _files(tmp_path / "out") == _files(local_out)
  # A rerun does nothing twice: finished outputs are skipped, only the failed clip is tried again.
  res2 = run_batch_ray(fn, tasks, progress=False, num_workers=1)
  assert len(res2.skipped) == N_CLIPS and not res2.done and len(res2.failed) == 1


def test_several_clips_per_task_same_bytes(ray_cluster, clips, local_out, tmp_path):
  """Grouping clips into one Ray task (for short clips on big clusters) changes no byte."""
  from humanoid_retarget.distributed import run_batch_ray
  from humanoid_retarget.pipeline import retarget_task

  tasks = _tasks(clips, tmp_path / "out", broken=True)
  res = run_batch_ray(partial(retarget_task, opts=_opts()), tasks, progress=False, clips_per_task=3)
  assert len(res.done) == N_CLIPS and [inp for inp, _ in res.failed] == [str(clips / "broken.bvh")]
  assert res.failed[0][1].startswith(str(clips / "broken.bvh") + ": ")
  assert _files(tmp_path / "out") == _files(local_out)


class _DieMidWrite:
  """A file object whose first ``write`` writes half the bytes, syncs them and kills the process."""

  def __init__(self, f):
    self.f = f

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.f.close()

  def write(self, data):
    self.f.write(data[: len(data) // 2])
    self.f.flush()
    os.fsync(self.f.fileno())
    os._exit(1)


def _retarget_crash_first_attempt(task: Task, marker_dir: str, crash: tuple[str, ...], opts) -> int:
  """retarget_task, except that the first attempt on a clip named in ``crash`` dies mid-write.

  The marker file (created atomically) records the temporary file the dying worker was writing.
  """
  import tempfile

  from humanoid_retarget.pipeline import retarget_task

  stem = Path(task.input).stem
  if stem in crash:
    try:
      mfd = os.open(os.path.join(marker_dir, stem), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      mfd = -1  # a retry: behave normally
    if mfd >= 0:
      real_mkstemp, real_fdopen = tempfile.mkstemp, os.fdopen

      def mkstemp(*a, **k):
        fd, tmp = real_mkstemp(*a, **k)
        os.write(mfd, tmp.encode())
        os.fsync(mfd)
        return fd, tmp

      tempfile.mkstemp = mkstemp
      os.fdopen = lambda fd, *a, **k: _DieMidWrite(real_fdopen(fd, *a, **k))
  return retarget_task(task, opts)


def test_worker_killed_mid_write_is_retried(ray_cluster, clips, local_out, tmp_path, capsys):
  from humanoid_retarget.distributed import run_batch_ray

  markers = tmp_path / "markers"
  markers.mkdir()
  out = tmp_path / "out"
  tasks = _tasks(clips, out)
  crash = tuple(Path(t.input).stem for t in tasks[:2])
  fn = partial(_retarget_crash_first_attempt, marker_dir=str(markers), crash=crash, opts=_opts())
  res = run_batch_ray(fn, tasks, progress=False, max_retries=2)

  assert res.failed == []
  assert sorted(res.done) == sorted(t.input for t in tasks)
  # Each injected crash happened, inside the atomic write, and its half-written file is gone.
  for stem in crash:
    tmp = (markers / stem).read_text()
    assert tmp.endswith(TMP_SUFFIX) and os.path.dirname(tmp) == str(out), tmp
    assert not os.path.exists(tmp)
  assert "removed 2 partial temporary file(s)" in capsys.readouterr().err
  # 0 missing, 0 partial: every output present, byte-identical to the local run, no temp file left.
  assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in local_out.iterdir())
  assert _files(out) == _files(local_out)
  from humanoid_retarget.io.motion import load_motion

  for t in tasks:
    assert load_motion(t.output).num_frames > 0


def _retarget_always_dies(task: Task, doomed: str, opts) -> int:
  from humanoid_retarget.pipeline import retarget_task

  if Path(task.input).stem == doomed:
    os._exit(3)
  return retarget_task(task, opts)


def test_worker_dying_every_attempt_is_reported(ray_cluster, clips, tmp_path):
  from humanoid_retarget.distributed import run_batch_ray

  tasks = _tasks(clips, tmp_path / "out")[:3]
  doomed = Path(tasks[1].input).stem
  fn = partial(_retarget_always_dies, doomed=doomed, opts=_opts())
  res = run_batch_ray(fn, tasks, progress=False, max_retries=1)
  assert res.failed == [(tasks[1].input, f"{tasks[1].input}: worker died on each of 2 attempts "
                                         f"(WorkerCrashedError)")]
  assert sorted(res.done) == sorted([tasks[0].input, tasks[2].input])
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
    os.path.basename(t.output) for t in (tasks[0], tasks[2]))


def test_eval_ray_equals_local(ray_cluster, clips, local_out, tmp_path, capsys):
  from humanoid_retarget.cli.main import main

  bad = tmp_path / "motions"
  bad.mkdir()
  for p in local_out.iterdir():
    (bad / p.name).symlink_to(p)
  (bad / "zz_not_a_motion.npz").write_bytes(b"not a zip")
  j_local, j_ray = tmp_path / "local.json", tmp_path / "ray.json"
  common = [str(bad), "--human", str(clips), "--quiet"]
  assert main(["eval", *common, "--json", str(j_local)]) == 1
  out_local = capsys.readouterr()
  assert main(["eval", *common, "--json", str(j_ray), "--executor", "ray"]) == 1
  out_ray = capsys.readouterr()
  assert j_ray.read_bytes() == j_local.read_bytes()
  doc = json.loads(j_ray.read_text())
  assert len(doc["clips"]) == N_CLIPS and len(doc["failed"]) == 1
  assert doc["failed"][0].startswith(str(bad / "zz_not_a_motion.npz") + ": ")
  assert doc["aggregate"]["keypoint_error_cm"] is not None
  def table(out: str) -> list[str]:  # Ray's own notices (e.g. of workers killed earlier) aside
    return [ln for ln in out.splitlines() if "(raylet)" not in ln]

  assert table(out_ray.out) == table(out_local.out)


def test_core_does_not_import_ray():
  code = ("import sys\n"
          "import humanoid_retarget, humanoid_retarget.batch, humanoid_retarget.pipeline\n"
          "import humanoid_retarget.distributed, humanoid_retarget.cli.main\n"
          "import humanoid_retarget.cli.retarget_cmd, humanoid_retarget.cli.eval_cmd\n"
          "assert 'ray' not in sys.modules, 'ray imported by the core package'\n")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_ray_executor_without_ray_says_how_to_install(sample_bvh, tmp_path):
  """With Ray unimportable, ``--executor ray`` fails with one line naming the extra (exit 2)."""
  code = ("import sys\n"
          "sys.modules['ray'] = None  # as if Ray were not installed\n"
          "from humanoid_retarget.cli.main import main\n"
          f"sys.exit(main(['retarget', {str(sample_bvh)!r}, '-o', {str(tmp_path / 'o')!r}, '--executor', 'ray']))\n")
  p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert p.returncode == 2, p.stderr
  assert "pip install 'humanoid-retarget[ray]'" in p.stderr
  assert "Traceback" not in p.stderr
  assert not (tmp_path / "o").exists()


# --- training across processes: `train` under torchrun (gloo), against one process -----------------

def _free_port() -> int:
  import socket

  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _history(run: Path) -> list[dict]:
  import torch

  return torch.load(run / "last.pt", map_location="cpu", weights_only=False)["history"]


def test_train_under_torchrun_matches_one_process(shared_data, tmp_path):
  """`train` unchanged under `torchrun --nproc_per_node 2` (gloo, 127.0.0.1) with 2 x batch 4 gives the
  loss curve of one process with batch 8 (same global batch, same steps, same schedule)."""
  if os.environ.get("CI"):
    import torch  # noqa: F401 - CI runs the training test: a missing torch is an error
  else:
    pytest.importorskip("torch")
  from humanoid_retarget.cli.main import main

  src = sorted((shared_data / "bandai1").glob("*.bvh"))
  clips_dir = tmp_path / "in"
  clips_dir.mkdir()
  for f in src[::14][:12]:
    (clips_dir / f.name).symlink_to(f)
  ds = tmp_path / "ds"
  assert main(["dataset", "build", "--inputs", str(clips_dir), "--out", str(ds), "--val-percent", "30",
               "--noisy-copies", "1", "--workers", "2", "--quiet"]) == 0
  common = ["train", "--data", str(ds), "--epochs", "5", "--d-model", "32", "--n-layers", "1", "--n-heads", "2",
            "--window", "40", "--stride", "10", "--warmup-steps", "3", "--lr", "3e-3", "--threads", "1",
            "--no-bf16", "--dropout", "0", "--noisy-prob", "0", "--quiet"]
  env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
  env.pop("WORLD_SIZE", None)
  one = subprocess.run([sys.executable, "-m", "humanoid_retarget.cli.main", *common, "--out", str(tmp_path / "one"),
                        "--batch", "8"], env=env, capture_output=True, text=True, timeout=600)
  assert one.returncode == 0, one.stderr[-2000:]
  two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                        "-m", "humanoid_retarget.cli.main", *common, "--out", str(tmp_path / "two"), "--batch", "4"],
                       env=env, capture_output=True, text=True, timeout=600)
  assert two.returncode == 0, two.stderr[-2000:]
  assert "world 2" in two.stderr  # really two processes in one gloo group

  h1, h2 = _history(tmp_path / "one"), _history(tmp_path / "two")
  assert [r["epoch"] for r in h1] == [r["epoch"] for r in h2] == [1, 2, 3, 4, 5]
  assert [r["step"] for r in h1] == [r["step"] for r in h2]  # same number of optimiser steps
  import numpy as np

  for key, tol in (("train_loss", 0.15), ("l1", 0.10)):
    a = np.array([r[key] for r in h1])
    b = np.array([r[key] for r in h2])
    assert a[-1] < a[0] and b[-1] < b[0], (key, a, b)  # both learn
    assert np.max(np.abs(a - b) / a) < tol, (key, a, b)  # close at every epoch
    assert np.corrcoef(a, b)[0, 1] > 0.9, (key, a, b)  # the same shape
