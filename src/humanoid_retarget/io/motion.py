"""Robot motion files (.npz, format 1) and atomic writes.

Keys (float32 unless noted): format_version (int, 1), robot, method, source (str), fps (float),
joint_names (J,) str, dof_pos (T, J) rad, root_pos (T, 3) m, root_quat (T, 4) wxyz,
body_names (B,) str, body_pos_w (T, B, 3), body_quat_w (T, B, 4) wxyz, contacts (T, 2) bool.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from humanoid_retarget.errors import MotionFileError

FORMAT_VERSION = 1


@dataclass
class RobotMotion:
  """A robot motion (format 1). Shapes: T frames, J joints, B bodies."""

  robot: str
  fps: float
  joint_names: list[str]
  dof_pos: np.ndarray  # (T, J)
  root_pos: np.ndarray  # (T, 3)
  root_quat: np.ndarray  # (T, 4) wxyz
  body_names: list[str]
  body_pos_w: np.ndarray  # (T, B, 3)
  body_quat_w: np.ndarray  # (T, B, 4) wxyz
  contacts: np.ndarray  # (T, 2) bool, left, right
  method: str = "kinematic"
  source: str = ""
  extras: dict = field(default_factory=dict)

  @property
  def num_frames(self) -> int:
    return int(self.dof_pos.shape[0])

  def to_arrays(self) -> dict[str, np.ndarray]:
    out = {
      "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
      "robot": np.array(self.robot),
      "method": np.array(self.method),
      "source": np.array(self.source),
      "fps": np.array(self.fps, dtype=np.float64),
      "joint_names": np.array(self.joint_names),
      "dof_pos": np.asarray(self.dof_pos, dtype=np.float32),
      "root_pos": np.asarray(self.root_pos, dtype=np.float32),
      "root_quat": np.asarray(self.root_quat, dtype=np.float32),
      "body_names": np.array(self.body_names),
      "body_pos_w": np.asarray(self.body_pos_w, dtype=np.float32),
      "body_quat_w": np.asarray(self.body_quat_w, dtype=np.float32),
      "contacts": np.asarray(self.contacts, dtype=bool),
    }
    for k, v in self.extras.items():
      out[f"extra_{k}"] = np.asarray(v)
    return out


@contextlib.contextmanager
def _atomic_tmp(path: str | os.PathLike, suffix: str):
  """(fd, temporary path) beside ``path``; on success the file replaces ``path``, on error it is removed."""
  path = os.fspath(path)
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".", suffix=suffix, dir=d)
  try:
    yield fd, tmp
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except OSError:
      pass
    raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
  """Yield a temporary path beside ``path``; on success it replaces ``path`` (``os.replace``), on any
  error it is removed. Writers that need a file name (video encoders, np.save) write through it."""
  with _atomic_tmp(path, suffix) as (fd, tmp):
    os.close(fd)
    yield tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
  with _atomic_tmp(path, ".tmp") as (fd, tmp):
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())


def save_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  atomic_write_bytes(path, buf.getvalue())


def save_motion(path: str | os.PathLike, motion: RobotMotion) -> None:
  """Write a motion file atomically."""
  save_npz_atomic(path, motion.to_arrays())


_REQUIRED = {
  "format_version": 0, "robot": 0, "method": 0, "source": 0, "fps": 0, "joint_names": 1, "dof_pos": 2,
  "root_pos": 2, "root_quat": 2, "body_names": 1, "body_pos_w": 3, "body_quat_w": 3, "contacts": 2,
}


def list_motion_files(paths: list[str]) -> list[str]:
  """Motion files (.npz) named by ``paths``: files as given, folders searched recursively; sorted.
  A path that does not exist is kept, so the loader reports it with the others."""
  out = []
  for p in paths:
    if os.path.isdir(p):
      for d, _, fs in os.walk(p):
        out += [os.path.join(d, f) for f in fs if f.endswith(".npz") and not f.startswith(".")]
    else:
      out.append(p)
  return sorted(out)


def load_motion(path: str | os.PathLike) -> RobotMotion:
  """Read and validate a motion file; errors name the file and what is wrong."""
  path = os.fspath(path)
  try:
    z = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise MotionFileError("no such file", path) from None
  except Exception as e:
    raise MotionFileError(f"not a readable .npz file ({type(e).__name__})", path) from None
  with z:
    missing = [k for k in _REQUIRED if k not in z.files]
    if missing:
      raise MotionFileError(f"not a motion file (format 1): missing keys {', '.join(missing)}", path)
    a = {k: z[k] for k in z.files}
  for k, nd in _REQUIRED.items():
    if a[k].ndim != nd:
      raise MotionFileError(f"'{k}' must have {nd} dimensions, has shape {a[k].shape}", path)
  if int(a["format_version"]) != FORMAT_VERSION:
    raise MotionFileError(f"unsupported format_version {int(a['format_version'])} (this tool reads 1)", path)
  T, J = a["dof_pos"].shape
  B = len(a["body_names"])
  expect = {
    "joint_names": (J,), "root_pos": (T, 3), "root_quat": (T, 4), "body_pos_w": (T, B, 3),
    "body_quat_w": (T, B, 4), "contacts": (T, 2),
  }
  for k, shp in expect.items():
    if a[k].shape != shp:
      raise MotionFileError(f"'{k}' has shape {a[k].shape}, expected {shp} (T={T}, J={J}, B={B})", path)
  if T == 0:
    raise MotionFileError("zero frames", path)
  for k in ("dof_pos", "root_pos", "root_quat", "body_pos_w", "body_quat_w"):
    if not np.all(np.isfinite(a[k])):
      raise MotionFileError(f"'{k}' holds NaN or infinite values", path)
  fps = float(a["fps"])
  if not fps > 0:
    raise MotionFileError(f"invalid fps {fps}", path)
  extras = {k[6:]: v for k, v in a.items() if k.startswith("extra_")}
  return RobotMotion(
    robot=str(a["robot"]), fps=fps, joint_names=[str(s) for s in a["joint_names"]],
    dof_pos=a["dof_pos"].astype(np.float64), root_pos=a["root_pos"].astype(np.float64),
    root_quat=a["root_quat"].astype(np.float64), body_names=[str(s) for s in a["body_names"]],
    body_pos_w=a["body_pos_w"].astype(np.float64), body_quat_w=a["body_quat_w"].astype(np.float64),
    contacts=a["contacts"].astype(bool), method=str(a["method"]), source=str(a["source"]), extras=extras,
  )
