"""One clip through the whole path: read the human file, retarget, write the motion file.

Module-level functions so a process pool (or a Ray task) can call them by reference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

from humanoid_retarget.batch import Task
from humanoid_retarget.human.load import HumanLoadConfig, list_inputs, load_human
from humanoid_retarget.io.motion import RobotMotion, save_motion
from humanoid_retarget.retarget.kinematic import KinematicConfig, retarget_kinematic
from humanoid_retarget.robot.config import Robot, load_robot


@dataclass
class RetargetOptions:
  method: str = "kinematic"
  robot: str = "unitree_g1_29dof"
  load: HumanLoadConfig = field(default_factory=HumanLoadConfig)
  kinematic: KinematicConfig = field(default_factory=KinematicConfig)
  model: str = ""  # neural checkpoint ('' = the shipped model)


@lru_cache(maxsize=8)
def cached_robot(spec: str) -> Robot:
  return load_robot(spec)


def retarget_file(path: str, opts: RetargetOptions) -> RobotMotion:
  human = load_human(path, opts.load)
  robot = cached_robot(opts.robot)
  if opts.method == "kinematic":
    return retarget_kinematic(human, robot, opts.kinematic)
  if opts.method == "neural":
    from humanoid_retarget.neural.infer import retarget_neural

    return retarget_neural(human, robot, opts.model or None)
  raise ValueError(f"unknown method '{opts.method}' (kinematic or neural)")


def retarget_task(task: Task, opts: RetargetOptions) -> int:
  """Retarget ``task.input`` and write ``task.output`` atomically; returns the frame count."""
  motion = retarget_file(task.input, opts)
  save_motion(task.output, motion)
  return motion.num_frames


def plan_tasks(inp: str, out: str, ext: str = ".npz") -> list[Task]:
  """Input file -> output file, or input folder -> mirrored output folder with one file per clip."""
  if os.path.isfile(inp):
    if out.endswith(ext):
      return [Task(inp, out)]
    stem = os.path.splitext(os.path.basename(inp))[0]
    return [Task(inp, os.path.join(out, stem + ext))]
  files = list_inputs(inp)
  tasks = []
  for f in files:
    rel = os.path.relpath(f, inp)
    tasks.append(Task(f, os.path.join(out, os.path.splitext(rel)[0] + ext)))
  return tasks
