"""Run one function per clip over many clips: local process pool, progress bar, skip finished,
list failures at the end. The unit of work is a clip; executors only change who calls it.
"""

from __future__ import annotations

import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable

from humanoid_retarget.errors import RetargetError


@dataclass
class Task:
  input: str
  output: str


@dataclass
class BatchResult:
  done: list[str] = field(default_factory=list)
  skipped: list[str] = field(default_factory=list)
  failed: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line reason)
  frames: int = 0


def print_failures(messages: list[str]) -> int:
  """List failed items (one line each) on stderr after a batch; returns the exit status (1 if any)."""
  import sys

  if not messages:
    return 0
  print("failed:", file=sys.stderr)
  for msg in messages:
    print(f"  {msg}", file=sys.stderr)
  return 1


def one_line_error(e: BaseException, path: str = "") -> str:
  """A one-line message for any exception, naming the file."""
  if isinstance(e, RetargetError):
    msg = e.message
    p = e.path or path
  else:
    msg = f"{type(e).__name__}: {e}".strip().splitlines()[0] if str(e) else type(e).__name__
    p = path
  return f"{p}: {msg}" if p else msg


def _call(fn: Callable[[Task], int], task: Task) -> tuple[str, int, str | None]:
  try:
    n = fn(task)
    return task.input, int(n or 0), None
  except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the batch
    if os.environ.get("HUMANOID_RETARGET_DEBUG"):
      traceback.print_exc()
    return task.input, 0, one_line_error(e, task.input)


def _init_worker(threads: int) -> None:
  for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(threads)
  try:
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
  except Exception:
    pass


def pending_tasks(tasks: list[Task], skip_existing: bool, res: BatchResult) -> list[Task]:
  """Tasks still to run; those whose output exists go to ``res.skipped`` when ``skip_existing``."""
  todo = []
  for t in tasks:
    if skip_existing and t.output and os.path.exists(t.output):
      res.skipped.append(t.input)
    else:
      todo.append(t)
  return todo


def run_batch(fn: Callable[[Task], int], tasks: list[Task], workers: int = 0, skip_existing: bool = True,
              progress: bool = True, desc: str = "clips") -> BatchResult:
  """Run ``fn`` on each task (``fn`` must be picklable: a module-level function or a partial).

  ``fn`` returns the number of frames it produced. ``workers`` 0 means one per CPU core; 1 runs in
  this process. Tasks whose output exists are skipped when ``skip_existing``.
  """
  from tqdm import tqdm

  res = BatchResult()
  todo = pending_tasks(tasks, skip_existing, res)
  workers = workers or os.cpu_count() or 1
  workers = max(1, min(workers, len(todo))) if todo else 1
  bar = tqdm(total=len(todo), desc=desc, unit="clip", disable=not progress, dynamic_ncols=True)
  if workers == 1:
    for t in todo:
      inp, n, err = _call(fn, t)
      _record(res, inp, n, err)
      bar.update(1)
  else:
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(1,)) as ex:
      futs = [ex.submit(_call, fn, t) for t in todo]
      for f in as_completed(futs):
        inp, n, err = f.result()
        _record(res, inp, n, err)
        bar.update(1)
  bar.close()
  return res


def _record(res: BatchResult, inp: str, n: int, err: str | None) -> None:
  if err is None:
    res.done.append(inp)
    res.frames += n
  else:
    res.failed.append((inp, err))
