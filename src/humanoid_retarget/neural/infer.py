"""Neural retargeting at inference: human motion(s) -> robot motion(s), batched across clips.

The network runs at 30 fps: the human is resampled to 30 fps, cut into windows of the training
length with overlap (linear cross-fade where windows overlap, so any length works), all windows
of all clips go through the network in a few batched calls, and the output is resampled back to
the source frame rate. The output is lightly low-passed (Gaussian, 1 frame; NMR low-passes at 5 Hz).
Decoding places the root drift-free (scaled human root + predicted offset in
the heading frame). The light post-process (on by default) clamps joints inside their limits by the
robot config's margin, pushes feet and arms out of self-collision, bounds joint speed (robot velocity limits, 0.45 rad per 1/30 s; a no-op on
clips that stay below), keeps feet in contact from sliding (root moved horizontally, poses kept)
and applies the kinematic path's floor correction; contacts come from the human, as in the
kinematic path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation, Slerp

from humanoid_retarget.human.contacts import detect_contacts
from humanoid_retarget.human.motion import HumanMotion
from humanoid_retarget.io.motion import RobotMotion
from humanoid_retarget.neural.features import HumanFrame, decode_robot, human_features
from humanoid_retarget.retarget.kinematic import floor_correction, hold_stance_feet, joint_limits, make_motion, rate_limit

FPS = 30.0
MAX_STEP_RAD = 0.45  # per 1/30 s, below the 0.5 rad joint-jump bound (as the kinematic solver)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "models" / "g1_neural.pt"


@dataclass
class NeuralConfig:
  """Inference options.

  Attributes:
    overlap: frames shared by consecutive windows (cross-faded).
    batch: windows per network call.
    clamp: clamp joints inside limits minus the robot config's margin.
    floor: floor correction of the root height (stance feet on the floor, none below it).
    rate_limit: bound joint speed by the robot's velocity limits and 0.45 rad per 1/30 s.
    pin_feet: move the root horizontally so that feet in contact do not slide.
    hold_feet: then hold each stance foot at its phase-mean pose by small leg and root moves
      (``kinematic.hold_stance_feet``); removes the skate the root shift alone leaves.
    collisions: push legs and arms out of self-collision (feet, arms against the torso).
    smooth_sigma: Gaussian low-pass of the network output over time (frames at 30 fps; 0 = off).
    threads: torch threads (0 = leave torch's setting).
    dtype: network weights at inference: bfloat16 (fast on AVX-512 CPUs) or float32.
  """

  overlap: int = 32
  batch: int = 64
  clamp: bool = True
  floor: bool = True
  rate_limit: bool = True
  pin_feet: bool = True
  hold_feet: bool = True
  collisions: bool = True
  smooth_sigma: float = 1.0
  threads: int = 2
  dtype: str = "bfloat16"


@lru_cache(maxsize=8)
def _load(path: str, dtype: str):
  import torch

  from humanoid_retarget.neural.train import load_model

  model, ck = load_model(path)
  if dtype != "float32":
    model.to_inference_dtype(getattr(torch, dtype))
  return model, ck


def load_checkpoint(checkpoint: str | None = None, dtype: str = "bfloat16"):
  """(model, checkpoint dict) for a path, or the shipped model; cached per path and dtype."""
  path = os.path.abspath(os.fspath(checkpoint or DEFAULT_CHECKPOINT))
  if not os.path.exists(path):
    from humanoid_retarget.errors import RetargetError

    raise RetargetError("neural checkpoint not found (train one with 'humanoid-retarget train')", path)
  return _load(path, dtype)


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


def pin_feet(robot, root: np.ndarray, R: np.ndarray, q: np.ndarray, contacts: np.ndarray, fps: float) -> np.ndarray:
  """Root positions (T, 3) moved horizontally so that feet in contact stay put (no skate).

  For each contact phase of a foot the correction is its phase-mean position minus where it is;
  where both feet are down the two are averaged, between phases it is interpolated, and it is lightly
  low-passed. Joint angles are untouched, so poses (and root-relative key points) do not change.
  """
  from scipy.ndimage import gaussian_filter1d

  from humanoid_retarget.human.contacts import contact_phases

  T = q.shape[0]
  if T < 3 or not contacts.any():
    return root
  pos, _ = robot.model.fk(root, R, q)
  corr = np.zeros((T, 2))
  count = np.zeros(T)
  for s, side in enumerate(("left", "right")):
    f = pos[:, robot.foot_bodies[side], :2]
    for a, b in contact_phases(contacts[:, s]):
      corr[a:b] += f[a:b].mean(axis=0) - f[a:b]
      count[a:b] += 1
  have = count > 0
  corr[have] /= count[have, None]
  t = np.arange(T)
  corr = np.stack([np.interp(t, t[have], corr[have, d]) for d in range(2)], axis=1)
  corr = gaussian_filter1d(corr, max(0.05 * fps, 0.5), axis=0, mode="nearest")
  out = root.copy()
  out[:, :2] += corr
  return out


_REPAIR_BODIES = re.compile(r"ankle|knee|hip_yaw|torso|pelvis|shoulder_yaw|elbow")


_PAIRS: dict[int, tuple[object, np.ndarray]] = {}


def _repair_pairs(robot) -> np.ndarray:
  """Capsule pairs the repair checks: the solver's pairs between legs, torso and arms (those the
  network's small pose errors bring into contact: foot against foot, upper arm or elbow against torso)."""
  from humanoid_retarget.retarget.kinematic import collision_pairs

  hit = _PAIRS.get(id(robot))
  if hit is not None and hit[0] is robot:
    return hit[1]
  cp = collision_pairs(robot)
  names = robot.model.body_names
  keep = [k for k, (i, j) in enumerate(cp.pairs)
          if _REPAIR_BODIES.search(names[cp.cap_body[i]]) and _REPAIR_BODIES.search(names[cp.cap_body[j]])]
  _PAIRS[id(robot)] = (robot, cp.pairs[keep])
  return cp.pairs[keep]


def _pair_distances(cp, pairs: np.ndarray, pos: np.ndarray, rot: np.ndarray, clearance: float):
  """Violations among ``pairs`` (P, 2): frame and pair indices, signed distances and closest points.

  Bounding spheres screen the (frame, pair) grid first; exact capsule distances only where they touch.
  """
  from humanoid_retarget.robot.collision import capsule_distance

  caps = np.unique(pairs)
  body = cp.cap_body[caps]
  R = rot[:, body]
  a = pos[:, body] + np.einsum("tcij,cj->tci", R, cp.cap_a[caps])
  b = pos[:, body] + np.einsum("tcij,cj->tci", R, cp.cap_b[caps])
  rad = 0.5 * np.linalg.norm(cp.cap_a[caps] - cp.cap_b[caps], axis=-1) + cp.cap_r[caps]
  k = np.searchsorted(caps, pairs)  # (P, 2) rows into caps
  c = 0.5 * (a + b)
  near = np.linalg.norm(c[:, k[:, 0]] - c[:, k[:, 1]], axis=-1) - rad[k[:, 0]] - rad[k[:, 1]] < clearance
  tt, pp = np.nonzero(near)
  i, j = k[pp, 0], k[pp, 1]
  d, c1, c2 = capsule_distance(a[tt, i], b[tt, i], cp.cap_r[caps[i]], a[tt, j], b[tt, j], cp.cap_r[caps[j]])
  v = d < clearance
  return tt[v], pp[v], d[v], c1[v], c2[v]


def repair_collisions(robot, root: np.ndarray, R: np.ndarray, q: np.ndarray, clearance: float = 0.02,
                      iterations: int = 8) -> np.ndarray:
  """Joint angles (T, J) pushed out of self-collision: minimum-norm joint steps along the gradient of
  each violated capsule distance, on the frames that need it only. Root pose untouched.
  """
  from humanoid_retarget.retarget.kinematic import collision_pairs

  m = robot.model
  cp = collision_pairs(robot)
  pairs = _repair_pairs(robot)
  if not len(pairs):
    return q
  lo, hi = joint_limits(robot)
  frames = np.arange(q.shape[0])
  q = q.copy()
  for it in range(iterations):
    pos, rot = m.fk(root[frames], R[frames], q[frames])
    tt, pp, d, c1, c2 = _pair_distances(cp, pairs, pos, rot, clearance)
    if not len(tt):
      break
    anchors, axes = m.joint_world(pos[tt], rot[tt])  # (N, J, 3)
    n = c1 - c2
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
    ba, bb = cp.cap_body[pairs[pp, 0]], cp.cap_body[pairs[pp, 1]]
    ca = np.cross(axes, c1[:, None] - anchors) * m.ancestor_joint_mask[ba][:, :, None]
    cb = np.cross(axes, c2[:, None] - anchors) * m.ancestor_joint_mask[bb][:, :, None]
    g = np.einsum("na,nja->nj", n, ca - cb)  # d(distance) / dq
    step = (clearance - d) / np.maximum(np.sum(g * g, axis=1), 1e-6)
    bad, inv = np.unique(tt, return_inverse=True)
    dq = np.zeros((len(bad), q.shape[1]))
    np.add.at(dq, inv, np.clip(step[:, None] * g, -0.1, 0.1))
    q[frames[bad]] = np.clip(q[frames[bad]] + dq, lo, hi)
    frames = frames[bad]
  return q


def decode_clip(robot, y: np.ndarray, frame: HumanFrame, human: HumanMotion, cfg: NeuralConfig) -> RobotMotion:
  """Network output of one clip (30 fps) -> RobotMotion at the human's source frame rate."""
  root, R, q, contacts = decode_tracks(robot, y, frame, human, cfg)
  return make_motion(robot, root, R, q, contacts, human.fps, "neural", human.source)


def decode_tracks(robot, y: np.ndarray, frame: HumanFrame, human: HumanMotion, cfg: NeuralConfig):
  """Network output (30 fps) -> root position (T, 3), root rotation (T, 3, 3), joints (T, J) and
  contacts (T, 2) at the human's source rate, post-processed as ``cfg`` says."""
  if cfg.smooth_sigma > 0 and y.shape[0] > 3:
    y = gaussian_filter1d(y, cfg.smooth_sigma, axis=0, mode="nearest")
  root, R, q = decode_robot(robot, y, frame)
  if abs(human.fps - FPS) > 1e-3:
    root, R, q = _resample_back(root, R, q, human.num_frames, human.fps)
  if cfg.clamp:
    q = np.clip(q, *joint_limits(robot))
  contacts = detect_contacts(human)
  # Feet first (root shift, then small leg moves), then collisions (which may move the legs a little),
  # then joint speed: each step sees the pose the one before it left.
  if cfg.pin_feet:
    root = pin_feet(robot, root, R, q, contacts, human.fps)
  if cfg.hold_feet:
    root, R, q = hold_stance_feet(robot, root, R, q, contacts, human.fps)
  if cfg.collisions:
    q = repair_collisions(robot, root, R, q)
  if cfg.rate_limit and q.shape[0] > 1:
    q = rate_limit(q, np.minimum(robot.velocity_limits / human.fps, MAX_STEP_RAD * 30.0 / human.fps))
  if cfg.floor:
    root = floor_correction(robot, root, R, q, contacts, human.fps)
  return root, R, q, contacts


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
  model, ck = load_checkpoint(checkpoint, cfg.dtype)
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

  from humanoid_retarget.batch import BatchResult, one_line_error, pending_tasks
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.io.motion import save_motion
  from humanoid_retarget.pipeline import cached_robot

  res = BatchResult()
  robot = cached_robot(opts.robot)
  todo = pending_tasks(tasks, skip_existing, res)
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

