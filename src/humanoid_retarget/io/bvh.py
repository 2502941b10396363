"""BVH reader for any hierarchy.

Handles any rotation channel order, position channels on any joint (they replace the joint's
OFFSET, as in standard BVH semantics), End Sites, and whole-clip forward kinematics in numpy.
Units and up axis are left as in the file; :mod:`humanoid_retarget.human.bvh_import` converts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from humanoid_retarget.errors import InputFormatError

_AXES = {"X": 0, "Y": 1, "Z": 2}


@dataclass
class BvhJoint:
  name: str
  parent: int  # -1 for the root
  offset: np.ndarray  # (3,)
  channels: list[str] = field(default_factory=list)
  channel_start: int = 0
  is_end_site: bool = False


@dataclass
class BvhData:
  """A parsed BVH file. End Sites are joints named ``<parent>_End`` with no channels."""

  joints: list[BvhJoint]
  frame_time: float
  motion: np.ndarray  # (T, C) float64, raw channel values
  path: str = ""

  @property
  def fps(self) -> float:
    """Frames per second; snapped to an integer when the file's rounded Frame Time (0.0333333) means one."""
    f = 1.0 / self.frame_time
    return float(round(f)) if abs(f - round(f)) < 1e-3 * f else f

  @property
  def names(self) -> list[str]:
    return [j.name for j in self.joints]

  @property
  def parents(self) -> np.ndarray:
    return np.array([j.parent for j in self.joints], dtype=np.int64)

  @property
  def num_frames(self) -> int:
    return int(self.motion.shape[0])


def _tokenize_header(text: str, path: str) -> tuple[list[str], int]:
  idx = text.find("MOTION")
  if idx < 0:
    raise InputFormatError("no MOTION section (not a BVH file, or truncated)", path)
  return text[:idx].split(), idx


def parse_bvh(path: str | os.PathLike, text: str | None = None) -> BvhData:
  """Parse a BVH file (or its ``text``) into a :class:`BvhData`."""
  path = str(path)
  if text is None:
    try:
      with open(path, "rb") as f:
        raw = f.read()
    except OSError as e:
      raise InputFormatError(f"cannot read file ({e.strerror})", path) from None
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError:
      text = raw.decode("latin-1")
  if not text.lstrip().upper().startswith("HIERARCHY"):
    raise InputFormatError("not a BVH file (does not start with HIERARCHY)", path)
  tokens, motion_idx = _tokenize_header(text, path)
  joints: list[BvhJoint] = []
  stack: list[int] = []
  n_channels = 0
  i = 1  # skip HIERARCHY
  pending: BvhJoint | None = None
  try:
    while i < len(tokens):
      tok = tokens[i]
      up = tok.upper()
      if up in ("ROOT", "JOINT"):
        parent = stack[-1] if stack else -1
        if up == "ROOT" and joints:
          raise InputFormatError("more than one ROOT (only one skeleton per file is supported)", path)
        pending = BvhJoint(name=tokens[i + 1], parent=parent, offset=np.zeros(3))
        i += 2
      elif up == "END":  # End Site
        parent = stack[-1]
        pending = BvhJoint(
          name=f"{joints[parent].name}_End", parent=parent, offset=np.zeros(3), is_end_site=True
        )
        i += 2
      elif tok == "{":
        if pending is None:
          raise InputFormatError("unexpected '{' in HIERARCHY", path)
        joints.append(pending)
        stack.append(len(joints) - 1)
        pending = None
        i += 1
      elif tok == "}":
        stack.pop()
        i += 1
      elif up == "OFFSET":
        joints[stack[-1]].offset = np.array([float(t) for t in tokens[i + 1 : i + 4]])
        i += 4
      elif up == "CHANNELS":
        n = int(tokens[i + 1])
        chans = tokens[i + 2 : i + 2 + n]
        for c in chans:
          if len(c) < 9 or c[0].upper() not in _AXES or c[1:].lower() not in ("position", "rotation"):
            raise InputFormatError(f"unknown channel '{c}'", path)
        j = joints[stack[-1]]
        j.channels = chans
        j.channel_start = n_channels
        n_channels += n
        i += 2 + n
      else:
        raise InputFormatError(f"unexpected token '{tok}' in HIERARCHY", path)
  except (IndexError, ValueError) as e:
    if isinstance(e, InputFormatError):
      raise
    raise InputFormatError("malformed HIERARCHY section", path) from None
  if stack:
    raise InputFormatError("unbalanced braces in HIERARCHY", path)
  if not joints:
    raise InputFormatError("no joints in HIERARCHY", path)

  rest = text[motion_idx + len("MOTION") :]
  lines = rest.split("\n", 3)
  head = " ".join(lines[:3]).split()
  try:
    fi = [t.lower() for t in head].index("frames:")
    n_frames = int(head[fi + 1])
    ti = [t.lower() for t in head].index("time:")
    frame_time = float(head[ti + 1])
  except (ValueError, IndexError):
    raise InputFormatError("MOTION section lacks 'Frames:' or 'Frame Time:'", path) from None
  if n_frames <= 0:
    raise InputFormatError("zero frames in MOTION section", path)
  if not np.isfinite(frame_time) or frame_time <= 0:
    raise InputFormatError(f"invalid Frame Time {frame_time}", path)
  # The data starts after the "Frame Time:" line.
  body = rest
  k = body.lower().find("time:")
  body = body[k:].split("\n", 1)
  data_text = body[1] if len(body) > 1 else ""
  try:
    values = np.array(data_text.split(), dtype=np.float64)
  except ValueError:
    raise InputFormatError("non-numeric value in MOTION data", path) from None
  expected = n_frames * n_channels
  if values.size < expected:
    full = values.size // max(n_channels, 1)
    raise InputFormatError(
      f"truncated: header says {n_frames} frames of {n_channels} channels, file holds {full} whole frames",
      path,
    )
  if values.size > expected:
    # Tolerate trailing frames beyond the header count only if they form whole frames.
    values = values[:expected]
  motion = values.reshape(n_frames, n_channels)
  if not np.all(np.isfinite(motion)):
    bad = np.argwhere(~np.isfinite(motion))[0]
    raise InputFormatError(f"NaN or infinite value in frame {bad[0]}, channel {bad[1]}", path)
  return BvhData(joints=joints, frame_time=frame_time, motion=motion, path=path)


def forward_kinematics(bvh: BvhData) -> tuple[np.ndarray, np.ndarray]:
  """Global joint positions and rotation matrices for every frame, in file units and axes.

  Returns:
    positions: (T, N, 3); rotations: (T, N, 3, 3), N joints including End Sites.
  """
  T = bvh.num_frames
  N = len(bvh.joints)
  pos = np.zeros((T, N, 3))
  rot = np.zeros((T, N, 3, 3))
  # Local rotations of all joints sharing a channel order in one call (a big saving on short clips).
  seqs: dict[str, list[tuple[int, list[int]]]] = {}
  for j, joint in enumerate(bvh.joints):
    rot_chans = [(joint.channel_start + k, ch[0].upper()) for k, ch in enumerate(joint.channels)
                 if ch[1:].lower() == "rotation"]
    if rot_chans:
      seqs.setdefault("".join(a for _, a in rot_chans), []).append((j, [c for c, _ in rot_chans]))
  local_rot: dict[int, np.ndarray] = {}
  for rot_seq, items in seqs.items():
    cols = np.array([c for _, c in items])  # (G, n)
    mats = Rotation.from_euler(rot_seq, bvh.motion[:, cols].reshape(-1, len(rot_seq)), degrees=True).as_matrix()
    mats = mats.reshape(T, len(items), 3, 3)
    for g, (j, _) in enumerate(items):
      local_rot[j] = mats[:, g]
  for j, joint in enumerate(bvh.joints):
    trans = np.broadcast_to(joint.offset, (T, 3)).copy()
    for k, ch in enumerate(joint.channels):
      if ch[1:].lower() == "position":
        trans[:, _AXES[ch[0].upper()]] = bvh.motion[:, joint.channel_start + k]
    local = local_rot[j] if j in local_rot else np.broadcast_to(np.eye(3), (T, 3, 3))
    if joint.parent < 0:
      pos[:, j] = trans
      rot[:, j] = local
    else:
      rp = rot[:, joint.parent]
      pos[:, j] = pos[:, joint.parent] + np.einsum("tij,tj->ti", rp, trans)
      rot[:, j] = rp @ local
  return pos, rot
