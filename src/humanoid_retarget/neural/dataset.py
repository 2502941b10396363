"""Pair datasets: (human features, robot features) from the kinematic retargeter, curated and split.

``build_dataset`` runs :func:`humanoid_retarget.retarget.kinematic.retarget_kinematic` over every clip
(``humanoid_retarget.batch.run_batch``, one process per core), measures each result, drops clips by
curation filters (as PHUMA: jerk, centre of mass far outside the support, floating or penetrating
feet) and quality filters (as NMR: joint speed above the robot's limits, self-collision in more than
5% of frames, mean lowest-foot height above 0.10 m), splits the rest into train / val by a hash of
the clip name (never by window) and writes each split as contiguous float32 arrays:

  OUT/train/human.npy        (N, HUMAN_DIM)     clean human features, all clips back to back
  OUT/train/human_noisy.npy  (K, N, HUMAN_DIM)  K augmented copies: other body proportions (bone
                             lengths), and but for the first copy jitter + spikes on the joints
  OUT/train/robot.npy        (N, ROBOT_DIM)     robot features
  OUT/train/index.json       clip names, start offsets, lengths (and the same for val/)
  OUT/report.json            every clip's metrics, what was dropped and why

With ``robot_motions`` (folders or files of format-1 .npz, e.g. the physics motions ``track-eval
--save-dir`` writes), the robot side is taken from those files instead of the retargeter: each is matched
to a human clip by file stem, else by the clip name of its recorded ``source``, resampled to 30 fps
(root lerp/slerp, joints lerp) and re-measured; human clips without a robot motion are left out (listed
in the report as ``unmatched``). Filters, report and split rule are the same.

Training opens the arrays memory-mapped and slices windows by offset, so the dataset can be far
larger than memory (AMASS: ~4M frames at 30 fps, ~2.3 GB of human features per copy). Per-clip
results are cached under OUT/cache/<key>/, where the key hashes the retargeter's source (with robot
motions: the features' source and the motion files' contents), so a rebuild after a retargeter change
redoes the clips and an unchanged one reuses them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import numpy as np

from humanoid_retarget.neural.features import (HUMAN_DIM, corrupt_positions, human_features, random_bone_scales,
                                               robot_features, root_drift, scale_bones)

FPS = 30.0  # the network's frame rate
MAX_LENGTH_MISMATCH = 3  # frames (at FPS) a robot motion may differ from its human clip; both are cut to the shorter


@dataclass
class CurationConfig:
  """Clip filters. A clip is dropped when any test fails; the report lists every reason.

  Attributes:
    jerk_p95_max: 95th percentile over frames of the mean body jerk (m/s^3) (PHUMA: excessive jerk).
    com_outside_m: distance of the centre of mass (floor projection) from the support (segments
      between the sole points of feet within ``contact_height_m`` of the floor) counted as far outside.
    com_outside_frac_max: fraction of supported frames allowed far outside.
    float_max_s: longest time with both feet above ``float_height_m`` (PHUMA: floating feet).
    penetration_pct_max: frames with a foot below -2 cm, percent (PHUMA: penetrating feet).
    velocity_limit_pct_max: frames with a joint above its velocity limit, percent (NMR: 0).
    self_collision_pct_max: NMR: 5% of frames.
    lowest_foot_mean_cm_max: NMR: 10 cm.
  """

  jerk_p95_max: float = 12000.0
  com_outside_m: float = 0.25
  com_outside_frac_max: float = 0.3
  contact_height_m: float = 0.04
  float_height_m: float = 0.05
  float_max_s: float = 1.0
  penetration_pct_max: float = 5.0
  velocity_limit_pct_max: float = 0.0
  self_collision_pct_max: float = 5.0
  lowest_foot_mean_cm_max: float = 10.0


@dataclass
class BuildConfig:
  """Dataset build options.

  Attributes:
    inputs: folders (or files) of human motion.
    out: output folder.
    robot: robot spec.
    val_percent: share of clips (by name hash) in the validation split.
    noisy_copies: augmented copies of the human features per clip (proportions; plus noise after the first).
    workers: retargeting processes (0 = one per core).
    executor: 'local' (process pool) or 'ray' (one Ray task per clip; ``ray_address``: the cluster,
      '' = start or join a local instance).
    robot_motions: folders or files of robot motions (.npz) to pair with the human clips instead of
      retargeting them (empty: the kinematic retargeter).
    drift_sigma_s: robot motions only: their slow horizontal drift from the scaled human root path is
      removed (Gaussian low-pass of the difference, this sigma in s; 0 = keep the motions as they are).
      Simulated walks fall metres behind the human; the network places the root on the human's path
      plus a local offset (std 1.7 cm on the kinematic pairs), and drift would swamp that offset.
  """

  inputs: list[str] = field(default_factory=lambda: ["../shared/data/bandai1", "../shared/data/bandai2"])
  out: str = "data/pairs"
  robot: str = "unitree_g1_29dof"
  val_percent: float = 10.0
  noisy_copies: int = 3
  workers: int = 0
  executor: str = "local"
  ray_address: str = ""
  curation: CurationConfig = field(default_factory=CurationConfig)
  progress: bool = True
  robot_motions: list[str] = field(default_factory=list)
  drift_sigma_s: float = 1.0


def split_of(name: str, val_percent: float) -> str:
  """'train' or 'val' from a stable hash of the clip name (no process-dependent ``hash``)."""
  h = int(hashlib.sha1(os.path.basename(name).encode()).hexdigest()[:8], 16) % 10000
  return "val" if h < val_percent * 100 else "train"


def clip_name(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def retargeter_key() -> str:
  """Hash of the kinematic retargeter's and the features' source: the per-clip cache key."""
  from humanoid_retarget.neural import features
  from humanoid_retarget.retarget import kinematic, targets

  h = hashlib.sha1()
  for mod in (kinematic, targets, features):
    h.update(inspect.getsource(mod).encode())
  h.update(b"v1")
  return h.hexdigest()[:12]


def retargeter_commit() -> str:
  """Last git commit of the code that makes the pairs (the kinematic solver and its targets, the human import
  and contacts, the robot model, the BVH reader), '+dirty' if any of it is edited."""
  here = os.path.dirname(os.path.abspath(__file__))
  pkg = os.path.dirname(here)
  ret = [os.path.join(pkg, "retarget", f) for f in ("kinematic.py", "gn_kernel.py", "targets.py")]
  ret += [os.path.join(pkg, d) for d in ("human", "robot", os.path.join("io", "bvh.py"))]
  try:
    c = subprocess.run(["git", "log", "-1", "--format=%h", "--", *ret], cwd=here, capture_output=True,
                       text=True, timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *ret], cwd=here, capture_output=True,
                           text=True, timeout=10).stdout.strip()
    return c + ("+dirty" if dirty else "") if c else "unknown"
  except Exception:
    return "unknown"


def match_robot_motions(human_files: list[str], robot_motions: list[str]) -> dict[str, str]:
  """Human file -> robot motion file, matched by file stem, else by the clip name of the motion's ``source``."""
  from humanoid_retarget.io.motion import list_motion_files

  by_stem: dict[str, str] = {}
  by_source: dict[str, str] = {}
  for f in list_motion_files(robot_motions):
    stem = clip_name(f)
    if stem in by_stem:
      raise ValueError(f"two robot motions for clip {stem}: {by_stem[stem]}, {f}")
    by_stem[stem] = f
    with np.load(f, allow_pickle=False) as z:
      src = str(z["source"]) if "source" in z.files else ""
    if src:
      by_source.setdefault(clip_name(src), f)
  out = {}
  for h in human_files:
    r = by_stem.get(clip_name(h)) or by_source.get(clip_name(h))
    if r:
      out[h] = r
  return out


def robot_motions_key(pairs: dict[str, str], drift_sigma_s: float = BuildConfig.drift_sigma_s) -> str:
  """Cache key of a build from robot motions: the features' source, the matched files' contents and
  the drift filter."""
  from humanoid_retarget.neural import features

  h = hashlib.sha1(inspect.getsource(features).encode())
  for hf in sorted(pairs):
    with open(pairs[hf], "rb") as f:
      h.update(clip_name(hf).encode() + hashlib.sha1(f.read()).digest())
  h.update(f"motions-v2 drift {drift_sigma_s:g}".encode())
  return "m" + h.hexdigest()[:11]


def load_robot_motion(path: str, robot, fps: float, frames: int):
  """A robot motion file at ``fps`` (resampled), cut to ``frames``, body poses from the robot's FK.

  Raises ValueError when its length at ``fps`` differs from ``frames`` by more than MAX_LENGTH_MISMATCH.
  """
  from scipy.spatial.transform import Rotation

  from humanoid_retarget.io.export import resample_motion_state
  from humanoid_retarget.io.motion import load_motion
  from humanoid_retarget.retarget.kinematic import make_motion

  m = load_motion(path)
  names = list(robot.model.joint_names)
  if sorted(m.joint_names) != sorted(names):
    raise ValueError(f"{path}: joints {m.joint_names[:3]}... are not robot {robot.name}'s")
  rp, rq, q = resample_motion_state(m, fps)
  if abs(len(q) - frames) > MAX_LENGTH_MISMATCH:
    raise ValueError(f"robot motion {path} has {len(q)} frames at {fps:g} fps, its human clip {frames}")
  n = min(len(q), frames)
  q = q[:n, [m.joint_names.index(j) for j in names]]
  src = np.minimum(np.rint(np.arange(n) / fps * m.fps).astype(int), m.num_frames - 1)  # nearest frame
  R = Rotation.from_quat(rq[:n], scalar_first=True).as_matrix()
  return make_motion(robot, rp[:n], R, q, m.contacts[src], fps, m.method, m.source)


# ---------------------------------------------------------------- per-clip measurements


def _support_distance(com_xy: np.ndarray, pts: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Distance (T,) from com_xy (T, 2) to the nearest segment between two support points.

  pts: (T, P, 2) candidate points; mask: (T, P) which are in support. NaN where no support.
  Equals the distance to the support polygon when the CoM is outside it (an overestimate inside).
  """
  T, P, _ = pts.shape
  i, j = np.triu_indices(P)
  a, b = pts[:, i], pts[:, j]  # (T, S, 2)
  ok = mask[:, i] & mask[:, j]
  ab = b - a
  t = np.sum((com_xy[:, None] - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12)
  c = a + np.clip(t, 0, 1)[..., None] * ab
  d = np.linalg.norm(com_xy[:, None] - c, axis=-1)
  d = np.where(ok, d, np.inf).min(axis=1)
  return np.where(np.isfinite(d), d, np.nan)


def curation_metrics(robot, motion, cfg: CurationConfig) -> dict:
  """PHUMA-style physical plausibility numbers of one robot motion."""
  from scipy.spatial.transform import Rotation

  from humanoid_retarget.eval.metrics import foot_lowest_points

  fps = motion.fps
  bp = motion.body_pos_w
  T = bp.shape[0]
  out: dict = {}
  if T > 3:
    jerk = np.diff(bp, n=3, axis=0) * fps**3
    out["jerk_p95"] = float(np.percentile(np.linalg.norm(jerk, axis=-1).mean(axis=1), 95))
  else:
    out["jerk_p95"] = 0.0
  mm = robot.model.mj_model
  mass = np.asarray(mm.body_mass[1:])
  ipos = np.asarray(mm.body_ipos[1:])
  R = Rotation.from_quat(motion.body_quat_w.reshape(-1, 4), scalar_first=True).as_matrix().reshape(T, -1, 3, 3)
  com = np.einsum("b,tbi->ti", mass, bp + np.einsum("tbij,bj->tbi", R, ipos)) / mass.sum()
  pts, masks = [], []
  for side in ("left", "right"):
    b = robot.foot_bodies[side]
    p = bp[:, b, None, :] + np.einsum("tij,pj->tpi", R[:, b], robot.foot_points[side])
    pts.append(p[..., :2])
    masks.append(p[..., 2] < cfg.contact_height_m)
  d = _support_distance(com[:, :2], np.concatenate(pts, 1), np.concatenate(masks, 1))
  sup = np.isfinite(d)
  out["com_outside_frac"] = float(np.mean(d[sup] > cfg.com_outside_m)) if sup.any() else 0.0
  low = foot_lowest_points(robot, motion).min(axis=1)
  flo = low > cfg.float_height_m
  longest = 0
  run = 0
  for f in flo:
    run = run + 1 if f else 0
    longest = max(longest, run)
  out["float_longest_s"] = longest / fps
  return out


def build_clip(task, robot_spec: str, noisy_copies: int, cfg: CurationConfig,
               robot_motions: dict[str, str] | None = None,
               drift_sigma_s: float = BuildConfig.drift_sigma_s) -> int:
  """Retarget one clip (or load its robot motion from ``robot_motions[task.input]``, its slow root
  drift from the human path removed when ``drift_sigma_s`` > 0), measure it, compute its features;
  write ``task.output`` (.npz). Frames."""
  from humanoid_retarget.eval.metrics import evaluate_motion
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.io.motion import save_npz_atomic
  from humanoid_retarget.pipeline import cached_robot
  from humanoid_retarget.retarget.kinematic import retarget_kinematic

  robot = cached_robot(robot_spec)
  human = load_human(task.input)
  if abs(human.fps - FPS) > 1e-3:
    human = human.resample(FPS)
  if robot_motions:
    motion = load_robot_motion(robot_motions[task.input], robot, FPS, human.num_frames)
    human = human.slice(0, motion.num_frames)
  else:
    motion = retarget_kinematic(human, robot)
  hf, frame = human_features(human.positions, FPS)
  if robot_motions and drift_sigma_s > 0:
    shift = np.zeros((motion.num_frames, 3))
    shift[:, :2] = root_drift(robot, motion.root_pos, frame, drift_sigma_s * FPS)
    motion = replace(motion, root_pos=motion.root_pos - shift, body_pos_w=motion.body_pos_w - shift[:, None])
  m = evaluate_motion(robot, motion, human, clip=clip_name(task.input)).as_dict()
  m.update(curation_metrics(robot, motion, cfg))
  rf = robot_features(robot, motion, frame)
  seed = int(hashlib.sha1(clip_name(task.input).encode()).hexdigest()[:8], 16)
  rng = np.random.default_rng(seed)
  noisy = []
  for i in range(noisy_copies):
    # Other body proportions (every copy), plus jitter and spikes (all copies but the first).
    P = scale_bones(human.positions, random_bone_scales(rng))
    if i > 0:
      P = corrupt_positions(P, rng, jitter_m=rng.uniform(0.0, 0.02), spike_prob=rng.uniform(0.0, 0.03),
                            spike_m=rng.uniform(0.05, 0.3))
    noisy.append(human_features(P, FPS)[0])
  noisy_arr = np.stack(noisy) if noisy else np.zeros((0,) + hf.shape, np.float32)
  metrics = {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v) for k, v in m.items()}
  save_npz_atomic(task.output, {"human": hf, "human_noisy": noisy_arr, "robot": rf,
                                "metrics": np.array(json.dumps(metrics))})
  return int(hf.shape[0])


def drop_reasons(m: dict, c: CurationConfig) -> list[str]:
  """Why a clip fails the filters (empty: keep it)."""
  r = []
  if m["jerk_p95"] > c.jerk_p95_max:
    r.append(f"jerk: p95 {m['jerk_p95']:.0f} m/s^3 > {c.jerk_p95_max:g}")
  if m["com_outside_frac"] > c.com_outside_frac_max:
    r.append(f"com outside support: {100 * m['com_outside_frac']:.0f}% of supported frames > {c.com_outside_m} m")
  if m["float_longest_s"] > c.float_max_s:
    r.append(f"floating: both feet above {c.float_height_m} m for {m['float_longest_s']:.2f} s")
  if m["penetration_pct"] > c.penetration_pct_max:
    r.append(f"penetration: {m['penetration_pct']:.1f}% of frames")
  if m["velocity_limit_pct"] > c.velocity_limit_pct_max:
    r.append(f"joint velocity above limits in {m['velocity_limit_pct']:.1f}% of frames (peak {m['max_joint_vel']:.1f} rad/s)")
  if m["self_collision_pct"] > c.self_collision_pct_max:
    r.append(f"self-collision in {m['self_collision_pct']:.1f}% of frames")
  if m["lowest_foot_mean_cm"] > c.lowest_foot_mean_cm_max:
    r.append(f"mean lowest-foot height {m['lowest_foot_mean_cm']:.1f} cm")
  return r


def build_dataset(cfg: BuildConfig) -> dict:
  """Build the pair dataset (see module doc). Returns the report."""
  from humanoid_retarget.batch import Task, run_batch
  from humanoid_retarget.human.load import list_inputs

  files: list[str] = []
  for inp in cfg.inputs:
    files.extend(list_inputs(inp))
  names = [clip_name(f) for f in files]
  if len(set(names)) != len(names):
    dup = sorted({n for n in names if names.count(n) > 1})
    raise ValueError(f"clip names must be unique across inputs (split is by name): {dup[:5]}")
  pairs: dict[str, str] = {}
  unmatched: list[str] = []
  if cfg.robot_motions:
    pairs = match_robot_motions(files, cfg.robot_motions)
    if not pairs:
      raise ValueError(f"no robot motion in {cfg.robot_motions} matches a human clip (by stem or source)")
    unmatched = [clip_name(f) for f in files if f not in pairs]
    files = [f for f in files if f in pairs]
    key, commit = robot_motions_key(pairs, cfg.drift_sigma_s), "robot-motions"
  else:
    key = retargeter_key()
    commit = retargeter_commit()  # before the clips run: the code the workers use
  cache = os.path.join(cfg.out, "cache", key)
  tasks = [Task(f, os.path.join(cache, clip_name(f) + ".npz")) for f in files]
  t0 = time.perf_counter()
  fn = partial(build_clip, robot_spec=cfg.robot, noisy_copies=cfg.noisy_copies, cfg=cfg.curation,
               robot_motions=pairs or None, drift_sigma_s=cfg.drift_sigma_s)
  if cfg.executor == "ray":
    from humanoid_retarget.distributed import run_batch_ray

    res = run_batch_ray(fn, tasks, address=cfg.ray_address or None, skip_existing=True, progress=cfg.progress,
                        desc="pairs")
  else:
    res = run_batch(fn, tasks, workers=cfg.workers, skip_existing=True, progress=cfg.progress, desc="pairs")
  failed = dict(res.failed)
  clips: list[dict] = []
  kept: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}
  for t in tasks:
    name = clip_name(t.input)
    if t.input in failed:
      clips.append({"clip": name, "input": t.input, "kept": False, "reasons": [f"error: {failed[t.input]}"]})
      continue
    with np.load(t.output) as z:
      m = json.loads(str(z["metrics"]))
      nc = z["human_noisy"].shape[0]
    if nc != cfg.noisy_copies:
      raise ValueError(f"cached clip {t.output} has {nc} noisy copies, not {cfg.noisy_copies}: use a new --out")
    reasons = drop_reasons(m, cfg.curation)
    split = split_of(name, cfg.val_percent)
    clips.append({"clip": name, "input": t.input, "split": split, "kept": not reasons, "reasons": reasons,
                  "metrics": m})
    if pairs:
      clips[-1]["robot_motion"] = pairs[t.input]
    if not reasons:
      kept[split].append((name, t.output))
  summary: dict = {}
  for split, items in kept.items():
    summary[split] = _write_split(os.path.join(cfg.out, split), items, cfg.noisy_copies)
  counts: dict[str, int] = {}
  for c in clips:
    for r in c["reasons"]:
      k = r.split(":")[0]
      counts[k] = counts.get(k, 0) + 1
  report = {
    "retargeter_commit": commit, "cache_key": key, "fps": FPS,
    "clips_total": len(tasks), "clips_kept": sum(len(v) for v in kept.values()),
    "clips_dropped": sum(1 for c in clips if not c["kept"]), "drop_counts": counts,
    "splits": summary, "config": asdict(cfg), "seconds": round(time.perf_counter() - t0, 1),
    "unmatched": unmatched, "clips": clips,
  }
  os.makedirs(cfg.out, exist_ok=True)
  with open(os.path.join(cfg.out, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
  return report


def _write_split(folder: str, items: list[tuple[str, str]], noisy_copies: int) -> dict:
  """Concatenate per-clip arrays into memory-mappable .npy files plus index.json."""
  os.makedirs(folder, exist_ok=True)
  lengths = []
  robot_dim = None
  for _, p in items:
    with np.load(p) as z:
      lengths.append(int(z["human"].shape[0]))
      robot_dim = int(z["robot"].shape[1])
  N = int(sum(lengths))
  robot_dim = robot_dim or 0
  from numpy.lib.format import open_memmap

  H = open_memmap(os.path.join(folder, "human.npy.tmp"), mode="w+", dtype=np.float32, shape=(N, HUMAN_DIM))
  HN = open_memmap(os.path.join(folder, "human_noisy.npy.tmp"), mode="w+", dtype=np.float32,
                   shape=(noisy_copies, N, HUMAN_DIM))
  R = open_memmap(os.path.join(folder, "robot.npy.tmp"), mode="w+", dtype=np.float32, shape=(N, robot_dim))
  index = []
  off = 0
  for (name, p), n in zip(items, lengths):
    with np.load(p) as z:
      H[off:off + n] = z["human"]
      HN[:, off:off + n] = z["human_noisy"]
      R[off:off + n] = z["robot"]
    index.append({"clip": name, "start": off, "length": n})
    off += n
  for a in (H, HN, R):
    a.flush()
  del H, HN, R
  for k in ("human", "human_noisy", "robot"):
    os.replace(os.path.join(folder, f"{k}.npy.tmp"), os.path.join(folder, f"{k}.npy"))
  with open(os.path.join(folder, "index.json"), "w") as f:
    json.dump({"fps": FPS, "frames": N, "human_dim": HUMAN_DIM, "robot_dim": robot_dim,
               "noisy_copies": noisy_copies, "clips": index}, f, indent=1)
  return {"clips": len(items), "frames": N}


class PairSplit:
  """One split opened memory-mapped: windows are slices of contiguous arrays.

  Attributes: human (N, Dh), human_noisy (K, N, Dh), robot (N, Dr) memmaps; starts, lengths (C,).
  """

  def __init__(self, folder: str):
    with open(os.path.join(folder, "index.json")) as f:
      self.meta = json.load(f)
    self.human = np.load(os.path.join(folder, "human.npy"), mmap_mode="r")
    self.human_noisy = np.load(os.path.join(folder, "human_noisy.npy"), mmap_mode="r")
    self.robot = np.load(os.path.join(folder, "robot.npy"), mmap_mode="r")
    self.names = [c["clip"] for c in self.meta["clips"]]
    self.starts = np.array([c["start"] for c in self.meta["clips"]], dtype=np.int64)
    self.lengths = np.array([c["length"] for c in self.meta["clips"]], dtype=np.int64)

  @property
  def frames(self) -> int:
    return int(self.lengths.sum())

  def window_starts(self, window: int, stride: int) -> np.ndarray:
    """(W, 2) int64 rows (clip index, first frame) tiling every clip with ``window``-frame windows.

    Clips shorter than the window give one window starting at 0 (padded when read).
    """
    rows = []
    for c, n in enumerate(self.lengths):
      last = max(int(n) - window, 0)
      s = list(range(0, last + 1, stride))
      if s[-1] != last:
        s.append(last)
      rows.extend((c, x) for x in s)
    return np.array(rows, dtype=np.int64).reshape(-1, 2)

  def window(self, clip: int, start: int, window: int, noisy: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Human (window, Dh), robot (window, Dr) and valid mask (window,) of one window.

    ``noisy`` picks a corrupted human copy (-1: clean). Short clips are padded by repeating the
    last frame (mask False there).
    """
    a = int(self.starts[clip]) + start
    n = min(window, int(self.lengths[clip]) - start)
    h = self.human[a:a + n] if noisy < 0 else self.human_noisy[noisy, a:a + n]
    r = self.robot[a:a + n]
    mask = np.ones(window, dtype=bool)
    if n < window:
      pad = window - n
      h = np.concatenate([h, np.repeat(h[-1:], pad, 0)])
      r = np.concatenate([r, np.repeat(r[-1:], pad, 0)])
      mask[n:] = False
    return np.asarray(h, np.float32), np.asarray(r, np.float32), mask
