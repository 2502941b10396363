"""The Ray executor: the same per-clip batch as :mod:`humanoid_retarget.batch`, on a Ray cluster.

The unit of work is one clip, exactly as in the local process pool, so the outputs are the same
bytes: a Ray task calls the same function on the same :class:`~humanoid_retarget.batch.Task`, with
the same one-thread BLAS setting as a local pool worker. Clips are not split into chunks: the
kinematic solver optimises the whole sequence at once (temporal smoothing and rate limits couple
all frames), so a chunk boundary would change the result, and a clip (~0.1-10 s of work) is already
far above Ray's per-task cost (~2-8 ms, see docs/scaling.md). Instead the largest inputs are sent
first (the longest clips never start last), and ``clips_per_task`` groups short clips into one task
when a big cluster would otherwise drown the driver in tiny tasks.

What the executor guarantees:

* Nothing lost: a worker process that dies (crash, OOM kill, lost node) is retried by Ray
  (``max_retries``); a clip whose retries run out is listed as failed with its reason.
* Nothing twice, nothing partial: every output is written by the task itself, atomically (temporary
  file in the output folder, then ``os.replace``), to shared storage on a cluster; a rerun skips the
  outputs that exist. Temporary files left by a worker killed mid-write are removed at the end.
* One progress bar for the whole cluster: the driver keeps a bounded window of tasks in flight
  and advances the bar as ``ray.wait`` returns finished ones.

Ray is an optional extra (``pip install 'humanoid-retarget[ray]'``): it is imported only when this
executor runs, never by the core package.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from humanoid_retarget.batch import BatchResult, Task, _call, _init_worker, one_line_error
from humanoid_retarget.errors import RetargetError

RAY_MISSING = "the Ray executor needs Ray, an optional extra: pip install 'humanoid-retarget[ray]'"
DEFAULT_MAX_RETRIES = 3

# Temporary files of humanoid_retarget.io.motion.atomic_write_bytes: tempfile.mkstemp(prefix=".",
# suffix=".tmp") -> "." + 8 random characters + ".tmp".
_TMP_NAME = re.compile(r"^\.[A-Za-z0-9_]{8}\.tmp$")
_worker_ready = False
_END = object()


def import_ray():
  """``import ray``, or a one-line error saying how to install it."""
  try:
    import ray
  except ImportError:
    raise RetargetError(RAY_MISSING) from None
  return ray


def _prepare_worker() -> None:
  """Once per Ray worker process: one BLAS thread per task, as in a local pool worker."""
  global _worker_ready
  if not _worker_ready:
    _init_worker(1)
    _worker_ready = True


def _ray_apply(fn: Callable[[Any], Any], item: Any) -> tuple[Any, str | None]:
  """Run ``fn(item)`` in a worker; exceptions come back as a one-line reason, never raised."""
  _prepare_worker()
  try:
    return fn(item), None
  except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the batch
    if os.environ.get("HUMANOID_RETARGET_DEBUG"):
      import traceback

      traceback.print_exc()
    return None, one_line_error(e, str(item))


def _connect(ray, address: str | None) -> bool:
  """Join the cluster at ``address``, or start/join a local instance; True if this call started Ray."""
  if ray.is_initialized():
    return False
  ray.init(address=address or None, include_dashboard=False, ignore_reinit_error=True,
           logging_level="warning", configure_logging=True)
  return True


def _death_reason(ray, e: BaseException, path: str, max_retries: int) -> str:
  died = tuple(getattr(ray.exceptions, n) for n in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError",
                                                      "ActorDiedError") if hasattr(ray.exceptions, n))
  if isinstance(e, died):
    msg = f"worker died on each of {max_retries + 1} attempts ({type(e).__name__})"
    return f"{path}: {msg}" if path else msg
  return one_line_error(e, path)


def ray_map(fn: Callable[[Any], Any], items: Iterable[Any], address: str | None = None, progress: bool = True,
            num_workers: int | None = None, max_retries: int = DEFAULT_MAX_RETRIES, desc: str = "clips",
            label: Callable[[Any], str] = str, weight: Callable[[Any], int] | None = None
            ) -> Iterator[tuple[Any, Any, str | None]]:
  """Apply ``fn`` to every item on a Ray cluster, yielding ``(item, result, error)`` as tasks finish.

  ``fn`` must be picklable (module-level function or ``functools.partial`` of one). ``error`` is a
  one-line reason (``None`` on success). At most ``num_workers`` tasks run at a time (default: twice
  the cluster's CPUs are kept queued, so every core stays busy). A task whose worker process dies is
  retried ``max_retries`` times. Starts (and at the end stops) a local Ray instance unless Ray is
  already initialised in this process or ``address`` names a cluster to join. ``weight(item)`` is
  how many clips an item advances the progress bar by (default 1).
  """
  ray = import_ray()
  from tqdm import tqdm

  items = list(items)
  started = _connect(ray, address)
  remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(_ray_apply)
  wt = weight or (lambda _: 1)
  bar = tqdm(total=sum(wt(i) for i in items), desc=desc, unit="clip", disable=not progress, dynamic_ncols=True)
  pending: dict[Any, Any] = {}
  try:
    if num_workers:
      window = max(1, int(num_workers))
    else:
      window = max(1, int(ray.cluster_resources().get("CPU", 1))) * 2
    fn_ref = ray.put(fn)  # shipped once, not once per task
    todo = iter(items)
    n_failed = 0
    while True:
      while len(pending) < window:
        item = next(todo, _END)
        if item is _END:
          break
        pending[remote.remote(fn_ref, item)] = item
      if not pending:
        break
      # Block until one task is done, then collect every other finished one without waiting: one
      # pair of calls per batch of completions, so the driver keeps up with thousands of workers.
      refs = list(pending)
      ready, rest = ray.wait(refs, num_returns=1)
      if rest:
        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
        ready += more
      for ref in ready:
        item = pending.pop(ref)
        try:
          result, err = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - worker died too often, task cancelled, ...
          result, err = None, _death_reason(ray, e, label(item), max_retries)
        if err is not None:
          n_failed += 1
          bar.set_postfix(failed=n_failed, refresh=False)
        bar.update(wt(item))
        yield item, result, err
  finally:
    for ref in pending:  # interrupted: do not leave work running on the cluster
      try:
        ray.cancel(ref, force=True)
      except Exception:  # noqa: BLE001
        pass
    bar.close()
    if started:
      ray.shutdown()



def remove_orphan_temps(dirs: Iterable[str]) -> list[str]:
  """Delete the temporary files of atomic writes whose writer died (``.XXXXXXXX.tmp``) in ``dirs``.

  Call only once every task writing to these folders has finished (an output folder belongs to
  one batch at a time, as the skip-existing rule already assumes).
  """
  removed = []
  for d in sorted(set(dirs)):
    try:
      names = os.listdir(d)
    except OSError:
      continue
    for name in names:
      if _TMP_NAME.match(name):
        p = os.path.join(d, name)
        try:
          os.unlink(p)
          removed.append(p)
        except OSError:
          pass
  return removed


def _call_group(fn: Callable[[Task], int], tasks: list[Task]) -> list[tuple[str, int, str | None]]:
  """Several clips in one Ray task: each is still a whole clip, solved and written on its own."""
  return [_call(fn, t) for t in tasks]


def _existing_outputs(tasks: list[Task]) -> set[str]:
  """The task outputs that exist, from one listing per output folder (not one stat per clip: on
  shared storage with a million clips that is the difference between seconds and many minutes)."""
  by_dir: dict[str, list[str]] = {}
  for t in tasks:
    if t.output:
      by_dir.setdefault(os.path.dirname(t.output) or ".", []).append(t.output)
  present = set()
  for d, outs in by_dir.items():
    try:
      with os.scandir(d) as it:
        names = {e.name for e in it if not e.is_dir()}
    except OSError:
      continue
    present.update(o for o in outs if os.path.basename(o) in names)
  return present


def _size(t: Task) -> int:
  try:
    return os.path.getsize(t.input)
  except OSError:
    return 0


def run_batch_ray(fn: Callable[[Task], int], tasks: list[Task], address: str | None = None,
                  skip_existing: bool = True, progress: bool = True, num_workers: int | None = None,
                  max_retries: int = DEFAULT_MAX_RETRIES, desc: str = "clips", clips_per_task: int = 1,
                  longest_first: bool = True) -> BatchResult:
  """:func:`humanoid_retarget.batch.run_batch` on a Ray cluster: one task per clip.

  ``fn(task)`` returns the frame count and writes ``task.output`` atomically (it must be picklable).
  ``address``: the cluster to join (``host:port`` or ``ray://host:port``); ``None`` starts or joins a
  local instance (``RAY_ADDRESS`` is honoured). On a cluster, inputs and outputs must be on storage
  every node sees under the same path; paths are made absolute before they are sent.
  ``num_workers`` caps the tasks running at once (default: all the cluster's CPUs).
  ``clips_per_task`` > 1 sends that many clips per Ray task (each still processed whole, so the
  bytes do not change) to cut scheduling work when clips are short and the cluster is large.
  ``longest_first`` submits the largest input files first, so the longest clips do not start last
  and leave the cluster idle but for them at the end (the order of the outputs does not matter).
  Outputs that exist are skipped when ``skip_existing``; failures are listed with a one-line reason.
  """
  res = BatchResult()
  todo: list[Task] = []
  present = _existing_outputs(tasks) if skip_existing else set()
  for t in tasks:
    if t.output and t.output in present:
      res.skipped.append(t.input)
    else:
      todo.append(t)
  if not todo:
    return res
  import_ray()  # a clear error before anything else happens
  # Absolute paths: a worker's working directory is not the driver's. Reports use the caller's paths.
  sent = [Task(os.path.abspath(t.input), os.path.abspath(t.output) if t.output else t.output) for t in todo]
  orig = {s.input: t.input for s, t in zip(sent, todo)}
  if longest_first and len(sent) > 1:
    # One stat per input; threads, because on shared storage each is a network round trip.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=32) as ex:
      sizes = dict(zip((t.input for t in sent), ex.map(_size, sent)))
    sent.sort(key=lambda t: sizes[t.input], reverse=True)
  k = max(1, int(clips_per_task))
  groups = [tuple(sent[i:i + k]) for i in range(0, len(sent), k)]
  try:
    # _call turns exceptions into a one-line reason in the worker, exactly as the local pool does.
    for group, out, err in ray_map(partial(_call_group, fn), groups, address=address, progress=progress,
                                   num_workers=num_workers, max_retries=max_retries, desc=desc,
                                   label=lambda g: "", weight=len):
      if err is not None:  # the task itself failed: its worker died on every attempt
        out = [(t.input, 0, f"{t.input}: {err}") for t in group]
      for inp_abs, n, e in out:
        inp = orig[inp_abs]
        if e is None:
          res.done.append(inp)
          res.frames += n
        else:
          res.failed.append((inp, e.replace(inp_abs, inp)))
  finally:
    removed = remove_orphan_temps(os.path.dirname(t.output) for t in sent if t.output)
    if removed:
      print(f"removed {len(removed)} partial temporary file(s) left by workers that died mid-write",
            file=sys.stderr)
  return res


def map_files_ray(fn: Callable[[str], Any], paths: list[str], address: str | None = None, progress: bool = True,
                  num_workers: int | None = None, max_retries: int = DEFAULT_MAX_RETRIES, desc: str = "clips"
                  ) -> list[tuple[str, Any, str | None]]:
  """``fn(path)`` for every file on a Ray cluster; ``(path, result, error)`` in the order of ``paths``.

  For per-file work that returns a value instead of writing a file (``eval``, ``track-eval``).
  Paths are sent absolute (a worker's working directory is not the driver's); results and one-line
  errors name the caller's paths, exactly as a local loop calling ``fn`` would.
  """
  sent = {os.path.abspath(p): p for p in paths}
  got = {}
  for ap, out, err in ray_map(fn, list(sent), address=address, progress=progress, num_workers=num_workers,
                              max_retries=max_retries, desc=desc):
    got[sent[ap]] = (out, err.replace(ap, sent[ap]) if err else None)
  return [(p, *got[p]) for p in paths]
