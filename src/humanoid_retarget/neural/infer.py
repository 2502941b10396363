"""Neural retargeting at inference: human motion(s) -> robot motion(s), batched across clips.

The network runs at 30 fps: the human is resampled to 30 fps, cut into windows of the training
length with overlap (linear cross-fade where windows overlap, so any length works), all windows
of all clips go through the network in a few batched calls, and the output is resampled back to
the source frame rate. Decoding places the root drift-free (scaled human root + predicted offset in
the heading frame). The light post-process (on by default) clamps joints inside their limits by the
robot config's margin and applies the kinematic path's floor correction; contacts come from the
human, as in the kinematic path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from humanoid_retarget.human.contacts import detect_contacts
from humanoid_retarget.human.motion import HumanMotion
from humanoid_retarget.io.motion import RobotMotion
from humanoid_retarget.neural.features import HumanFrame, decode_robot, human_features
from humanoid_retarget.retarget.kinematic import floor_correction, make_motion

FPS = 30.0
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "models" / "g1_neural.pt"


@dataclass
class NeuralConfig:
  """Inference options.

  Attributes:
    overlap: frames shared by consecutive windows (cross-faded).
    batch: windows per network call.
    clamp: clamp joints inside limits minus the robot config's margin.
    floor: floor correction of the root height (stance feet on the floor, none below it).
    threads: torch threads (0 = leave torch's setting).
  """

  overlap: int = 32
  batch: int = 64
  clamp: bool = True
  floor: bool = True
  threads: int = 2


@lru_cache(maxsize=4)
def _load(path: str):
  from humanoid_retarget.neural.train import load_model

  return load_model(path)


def load_checkpoint(checkpoint: str | None = None):
  """(model, checkpoint dict) for a path, or the shipped model; cached per path."""
  path = os.path.abspath(os.fspath(checkpoint or DEFAULT_CHECKPOINT))
  if not os.path.exists(path):
    from humanoid_retarget.errors import RetargetError

    raise RetargetError("neural checkpoint not found (train one with 'humanoid-retarget train')", path)
  return _load(path)


def _windows(T: int, W: int, overlap: int) -> list[int]:
  """Window starts covering T frames with windows of W frames."""
  if T <= W:
    return [0]
  hop = max(W - overlap, 1)
  s = list(range(0, T - W + 1, hop))
  if s[-1] != T - W:
    s.append(T - W)
  return s


def run_network(model, feats: list[np.ndarray], cfg: NeuralConfig = NeuralConfig()) -> list[np.ndarray]:
  """Raw human features of several clips [(T_i, Dh)] -> raw robot features [(T_i, Dr)]."""
  import torch

  if cfg.threads:
    torch.set_num_threads(cfg.threads)
  W = model.cfg.window
  chunks, where = [], []
  for c, f in enumerate(feats):
    T = f.shape[0]
    for s in _windows(T, W, cfg.overlap):
      x = f[s:s + W]
      if x.shape[0] < W:
        x = np.concatenate([x, np.repeat(x[-1:], W - x.shape[0], 0)])
      chunks.append(x)
      where.append((c, s))
  X = torch.from_numpy(np.ascontiguousarray(np.stack(chunks), dtype=np.float32))
  outs = []
  with torch.inference_mode():
    for i in range(0, X.shape[0], cfg.batch):
      outs.append(model.predict(X[i:i + cfg.batch]))
  Y = torch.cat(outs).numpy()
  D = Y.shape[-1]
  acc = [np.zeros((f.shape[0], D), np.float32) for f in feats]
  wsum = [np.zeros((f.shape[0], 1), np.float32) for f in feats]
  ramp = np.ones(W, np.float32)
  ov = min(cfg.overlap, W // 2)
  if ov > 0:
    r = (np.arange(ov, dtype=np.float32) + 1) / (ov + 1)
    ramp[:ov] = r
    ramp[-ov:] = r[::-1]
  for (c, s), y in zip(where, Y):
    T = feats[c].shape[0]
    n = min(W, T - s)
    w = ramp[:n].copy()
    if s == 0:
      w[:ov] = 1.0  # clip start: nothing to blend with
    if s + W >= T:
      w[max(n - ov, 0):] = np.maximum(w[max(n - ov, 0):], 1.0)
    acc[c][s:s + n] += y[:n] * w[:, None]
    wsum[c][s:s + n] += w[:, None]
  return [a / np.maximum(ws, 1e-6) for a, ws in zip(acc, wsum)]


def _resample_back(root: np.ndarray, R: np.ndarray, q: np.ndarray, n_out: int, fps_out: float):
  """30 fps decoded tracks -> n_out frames at fps_out (linear / slerp, clamped at the ends)."""
  T = q.shape[0]
  t_src = np.arange(T) / FPS
  t_new = np.minimum(np.arange(n_out) / fps_out, t_src[-1])
  if T < 2:
    return (np.repeat(root[:1], n_out, 0), np.repeat(R[:1], n_out, 0), np.repeat(q[:1], n_out, 0))
  root2 = np.stack([np.interp(t_new, t_src, root[:, d]) for d in range(3)], axis=1)
  q2 = np.stack([np.interp(t_new, t_src, q[:, j]) for j in range(q.shape[1])], axis=1)
  R2 = Slerp(t_src, Rotation.from_matrix(R))(t_new).as_matrix()
  return root2, R2, q2


def decode_clip(robot, y: np.ndarray, frame: HumanFrame, human: HumanMotion, cfg: NeuralConfig) -> RobotMotion:
  """Network output of one clip (30 fps) -> RobotMotion at the human's source frame rate."""
  root, R, q = decode_robot(robot, y, frame)
  if abs(human.fps - FPS) > 1e-3:
    root, R, q = _resample_back(root, R, q, human.num_frames, human.fps)
  if cfg.clamp:
    rng = robot.model.joint_range
    m = robot.config.joint_limit_margin
    lo, hi = rng[:, 0] + m, rng[:, 1] - m
    mid = 0.5 * (rng[:, 0] + rng[:, 1])
    q = np.clip(q, np.where(lo > hi, mid, lo), np.where(lo > hi, mid, hi))
  contacts = detect_contacts(human)
  if cfg.floor:
    root = floor_correction(robot, root, R, q, contacts, human.fps)
  return make_motion(robot, root, R, q, contacts, human.fps, "neural", human.source)


def check_robot(ck: dict, robot) -> None:
  names = ck.get("joint_names")
  if names and list(names) != list(robot.joint_names):
    raise ValueError(f"checkpoint was trained for robot '{ck.get('robot')}' with other joints than '{robot.name}'")
  nb = (ck["model_config"]["robot_dim"] - 12 - robot.model.num_joints) // 6
  if nb != robot.model.num_bodies:
    raise ValueError(f"checkpoint expects {nb} bodies, robot '{robot.name}' has {robot.model.num_bodies}")


def retarget_neural_many(humans: list[HumanMotion], robot, checkpoint: str | None = None,
                         cfg: NeuralConfig = NeuralConfig()) -> list[RobotMotion]:
  """Several human clips -> robot motions, all windows batched through the network together."""
  model, ck = load_checkpoint(checkpoint)
  check_robot(ck, robot)
  feats, frames, h30s = [], [], []
  for h in humans:
    if h.num_frames < 2:
      raise ValueError(f"{h.source}: a motion needs at least 2 frames")
    h30 = h.resample(FPS) if abs(h.fps - FPS) > 1e-3 else h
    f, fr = human_features(h30.positions, FPS)
    feats.append(f)
    frames.append(fr)
    h30s.append(h30)
  ys = run_network(model, feats, cfg)
  return [decode_clip(robot, y, fr, h, cfg) for y, fr, h in zip(ys, frames, humans)]


def retarget_neural(human: HumanMotion, robot, checkpoint: str | None = None,
                    cfg: NeuralConfig = NeuralConfig()) -> RobotMotion:
  """Human motion -> robot motion (format 1, method 'neural') at the human's frame rate."""
  return retarget_neural_many([human], robot, checkpoint, cfg)[0]


def retarget_neural_batch(tasks, opts, skip_existing: bool = True, progress: bool = True,
                          group_frames: int = 60000):
  """Retarget many files with the network, batched across clips; per-clip failures are collected.

  Args: tasks: list of batch.Task; opts: pipeline.RetargetOptions (load options, robot, model);
    group_frames: clips are read and run together until about this many frames.
  Returns: batch.BatchResult.
  """
  from tqdm import tqdm

  from humanoid_retarget.batch import BatchResult, one_line_error
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.io.motion import save_motion
  from humanoid_retarget.pipeline import cached_robot

  res = BatchResult()
  robot = cached_robot(opts.robot)
  todo = []
  for t in tasks:
    if skip_existing and t.output and os.path.exists(t.output):
      res.skipped.append(t.input)
    else:
      todo.append(t)
  bar = tqdm(total=len(todo), desc="clips", unit="clip", disable=not progress, dynamic_ncols=True)

  def flush(group):
    if not group:
      return
    try:
      motions = retarget_neural_many([h for _, h in group], robot, opts.model or None)
    except Exception:
      motions = None
    for i, (t, h) in enumerate(group):
      try:
        m = motions[i] if motions is not None else retarget_neural(h, robot, opts.model or None)
        save_motion(t.output, m)
        res.done.append(t.input)
        res.frames += m.num_frames
      except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the batch
        res.failed.append((t.input, one_line_error(e, t.input)))
      bar.update(1)

  group, n = [], 0
  for t in todo:
    try:
      h = load_human(t.input, opts.load)
    except Exception as e:  # noqa: BLE001
      res.failed.append((t.input, one_line_error(e, t.input)))
      bar.update(1)
      continue
    group.append((t, h))
    n += h.num_frames
    if n >= group_frames:
      flush(group)
      group, n = [], 0
  flush(group)
  bar.close()
  return res

