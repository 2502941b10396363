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


def robot_spec_for_file(spec: str) -> str:
  """The spec to record in a motion file: an absolute path for config/MJCF files, else the name."""
  return os.path.abspath(spec) if os.path.exists(spec) else spec


def robot_for_motion(motion: RobotMotion, override: str = "") -> Robot:
  """The robot a motion file was made for: ``override`` if given, else the builtin robot of that name,
  else the config or MJCF recorded in the file (``extra_robot_spec``)."""
  if override:
    return cached_robot(override)
  from humanoid_retarget.robot.config import BUILTIN

  if motion.robot in BUILTIN:
    return cached_robot(motion.robot)
  spec = str(motion.extras.get("robot_spec", "")) if motion.extras else ""
  if spec and os.path.exists(spec):
    return cached_robot(spec)
  return cached_robot(motion.robot)  # raises a clear "no such robot config" error


def retarget_file(path: str, opts: RetargetOptions) -> RobotMotion:
  human = load_human(path, opts.load)
  robot = cached_robot(opts.robot)
  if opts.method == "kinematic":
    motion = retarget_kinematic(human, robot, opts.kinematic)
  elif opts.method == "neural":
    from humanoid_retarget.neural.infer import retarget_neural

    motion = retarget_neural(human, robot, opts.model or None)
  else:
    raise ValueError(f"unknown method '{opts.method}' (kinematic or neural)")
  from humanoid_retarget.robot.config import BUILTIN

  if opts.robot not in BUILTIN:
    motion.extras["robot_spec"] = robot_spec_for_file(opts.robot)
  return motion


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
