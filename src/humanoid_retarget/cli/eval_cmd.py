"""``humanoid-retarget eval``."""

from __future__ import annotations

import json
import os
from functools import partial
from typing import Annotated, Literal

import tyro

from humanoid_retarget.errors import RetargetError

COLUMNS = [
  ("joint_jump_pct", "jump%"), ("self_collision_pct", "coll%"), ("joint_limit_pct", "limit%"),
  ("penetration_pct", "pen%"), ("lowest_foot_mean_cm", "low_cm"), ("foot_skate_cms", "skate_cm/s"),
  ("keypoint_error_cm", "kp_cm"),
]


def _match_human(motion_path: str, source: str, humans: list[str]) -> str | None:
  """The human file for a motion: same stem as the motion file or as its recorded source."""
  from humanoid_retarget.human.load import list_inputs

  files = []
  for h in humans:
    files += list_inputs(h)
  stems = {os.path.splitext(os.path.basename(f))[0]: f for f in files}
  for key in (os.path.splitext(os.path.basename(motion_path))[0], os.path.splitext(source)[0]):
    if key in stems:
      return stems[key]
  return None


def evaluate_file(path: str, human: list[str], robot: str = "", body_model_dir: str = ""):
  """Metrics of one motion file and its method (module level: a Ray task calls it by reference)."""
  from humanoid_retarget.eval.metrics import evaluate_motion
  from humanoid_retarget.human.load import HumanLoadConfig, load_human
  from humanoid_retarget.io.motion import load_motion
  from humanoid_retarget.pipeline import robot_for_motion

  m = load_motion(path)
  rob = robot_for_motion(m, robot)
  h = None
  if human:
    hp = _match_human(path, m.source, human)
    if hp:
      h = load_human(hp, HumanLoadConfig(body_model_dir=body_model_dir))
  return evaluate_motion(rob, m, h, clip=os.path.basename(path)), m.method


def format_table(rows: list[dict], agg: dict | None) -> str:
  head = f"{'clip':<44}" + "".join(f"{c:>11}" for _, c in COLUMNS)
  lines = [head, "-" * len(head)]
  def fmt(v):
    return f"{v:>11.2f}" if isinstance(v, (int, float)) else f"{'-':>11}"
  for r in rows:
    lines.append(f"{r['clip'][:44]:<44}" + "".join(fmt(r.get(k)) for k, _ in COLUMNS))
  if agg:
    lines.append("-" * len(head))
    lines.append(f"{'ALL (' + str(agg['clips']) + ' clips, ' + str(agg['frames']) + ' frames)':<44}"
                 + "".join(fmt(agg.get(k)) for k, _ in COLUMNS))
  return "\n".join(lines)


def _eval_local(fn, f: str):
  from humanoid_retarget.batch import one_line_error

  try:
    return f, fn(f), None
  except Exception as e:  # noqa: BLE001
    return f, None, one_line_error(e, f)


def evaluate(
  motions: tyro.conf.Positional[list[str]],
  human: list[str] = [],
  json_out: Annotated[str, tyro.conf.arg(name="json")] = "",
  robot: str = "",
  executor: Literal["local", "ray"] = "local",
  ray_address: str = "",
  quiet: bool = False,
  body_model_dir: str = "",
) -> int:
  """Quality metrics of robot motions, per clip and aggregated (frame-weighted), as a table and JSON.

  Args:
    motions: motion files or folders of them.
    human: source human files or folders, for the key-point error (matched by file stem).
    json_out: write the results to this JSON file.
    robot: robot config or name (default: the robot named in each motion file).
    executor: evaluate in this process, or one Ray task per file on a Ray cluster.
    ray_address: Ray cluster address (default: start or join a local instance).
    quiet: print only the aggregate line.
    body_model_dir: SMPL/SMPL-H/SMPL-X model folder for AMASS sources (or $HUMANOID_RETARGET_BODY_MODELS).
  """
  from humanoid_retarget.eval.metrics import aggregate
  from humanoid_retarget.io.motion import atomic_write_bytes, list_motion_files

  files = list_motion_files(motions)
  if not files:
    raise RetargetError("no motion files (.npz) found", " ".join(motions))
  rows, objs, failed = [], [], []
  by_method: dict[str, list] = {}
  # Absolute paths: a Ray worker's working directory is not this one.
  fn = partial(evaluate_file, human=[os.path.abspath(h) for h in human],
               robot=os.path.abspath(robot) if robot and os.path.exists(robot) else robot,
               body_model_dir=os.path.abspath(body_model_dir) if body_model_dir else "")
  if executor == "ray":
    from humanoid_retarget.distributed import map_files_ray

    results = map_files_ray(fn, files, address=ray_address or None, progress=not quiet, desc="eval")
  else:
    results = (_eval_local(fn, f) for f in files)
  for f, out, err in results:
    if err is not None:
      failed.append(err)
      continue
    r, method = out
    objs.append(r)
    rows.append({**r.as_dict(), "motion": os.path.abspath(f)})
    by_method.setdefault(method, []).append(r)
  agg = aggregate(objs)
  per_method = {k: aggregate(v) for k, v in by_method.items()}
  print(format_table([] if quiet else rows, agg))
  if json_out:
    doc = {"clips": rows, "aggregate": agg, "by_method": per_method, "failed": failed}
    atomic_write_bytes(json_out, json.dumps(doc, indent=1, default=float).encode())
  from humanoid_retarget.batch import print_failures

  return print_failures(failed)
