"""``humanoid-retarget retarget``."""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import Annotated, Literal

import tyro

from humanoid_retarget.errors import RetargetError


def report_batch(res, elapsed: float, what: str = "clips") -> int:
  """Print the closing summary of a batch and return the exit status."""
  n_ok = len(res.done)
  rate = res.frames / elapsed if elapsed > 0 else 0.0
  print(f"{n_ok} {what} done, {len(res.skipped)} skipped (output exists), {len(res.failed)} failed; "
        f"{res.frames} frames in {elapsed:.1f} s ({rate:.0f} frames/s)", file=sys.stderr)
  from humanoid_retarget.batch import print_failures

  return print_failures([msg for _, msg in res.failed])


def retarget(
  input: tyro.conf.Positional[str],
  output: Annotated[str, tyro.conf.arg(aliases=("-o",))],
  method: Literal["kinematic", "neural"] = "kinematic",
  robot: str = "unitree_g1_29dof",
  skeleton: str = "auto",
  units: str = "auto",
  up_axis: str = "auto",
  fps: float = 0.0,
  body_model_dir: str = "",
  model: str = "",
  workers: int = 0,
  overwrite: bool = False,
  executor: Literal["local", "ray"] = "local",
  ray_address: str = "",
  quiet: bool = False,
) -> int:
  """Retarget human motion (BVH or AMASS; a file or a folder) to robot motion files (.npz, format 1).

  Args:
    input: a motion file, or a folder searched recursively for .bvh / .npz files.
    output: output .npz for one file, else a folder (one .npz per clip, mirroring the input tree).
    method: kinematic (whole-sequence optimisation) or neural (the shipped network, or --model).
    robot: builtin robot name, a robot config .toml, or an MJCF .xml (config generated on the fly).
    skeleton: BVH name preset: auto, bandai, lafan1, cmu.
    units: BVH units: auto, m, cm, mm, inch, cgspeed.
    up_axis: BVH up axis: auto, x, y, z, -x, -y, -z.
    fps: resample the input to this rate first (0 = keep the source rate).
    body_model_dir: SMPL/SMPL-H/SMPL-X model folder for AMASS input (or $HUMANOID_RETARGET_BODY_MODELS).
    model: neural checkpoint (default: the shipped model).
    workers: parallel worker processes (0 = one per CPU core; with --executor ray, tasks in flight).
    overwrite: redo clips whose output exists (default: skip them).
    executor: local process pool, or a Ray cluster.
    ray_address: Ray cluster address (default: start or join a local instance).
    quiet: no progress bar.
  """
  from humanoid_retarget.batch import run_batch
  from humanoid_retarget.human.bvh_import import BvhImportConfig
  from humanoid_retarget.human.load import HumanLoadConfig
  from humanoid_retarget.pipeline import RetargetOptions, plan_tasks, retarget_task

  opts = RetargetOptions(
    method=method, robot=robot,
    load=HumanLoadConfig(bvh=BvhImportConfig(skeleton=skeleton, units=units, up_axis=up_axis),
                         body_model_dir=body_model_dir, fps=fps),
    model=model,
  )
  tasks = plan_tasks(input, output)
  if not tasks:
    raise RetargetError("no .bvh or .npz motion files found", input)
  # Fail fast on a bad robot spec rather than once per clip.
  from humanoid_retarget.pipeline import cached_robot

  cached_robot(robot)
  t0 = time.perf_counter()
  if executor == "ray":
    from humanoid_retarget.distributed import run_batch_ray

    res = run_batch_ray(partial(retarget_task, opts=opts), tasks, address=ray_address or None,
                        skip_existing=not overwrite, progress=not quiet, num_workers=workers or None)
  elif method == "neural" and len(tasks) > 1:
    from humanoid_retarget.neural.infer import retarget_neural_batch

    res = retarget_neural_batch(tasks, opts, skip_existing=not overwrite, progress=not quiet)
  else:
    res = run_batch(partial(retarget_task, opts=opts), tasks, workers=workers,
                    skip_existing=not overwrite, progress=not quiet and len(tasks) > 1)
  return report_batch(res, time.perf_counter() - t0)
