"""BVH reader for any hierarchy.

Handles any rotation channel order, position channels on any joint (they replace the joint's
OFFSET, as in standard BVH semantics), End Sites, and whole-clip forward kinematics in numpy.
Units and up axis are left as in the file; :mod:`humanoid_retarget.human.bvh_import` converts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

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


# Byte classes of :func:`parse_numbers`: digits map to their value, then these codes.
_DOT, _EXP, _PLUS, _MINUS, _SPACE, _OTHER = 10, 11, 12, 13, 14, 255
_CLASS = np.full(256, _OTHER, dtype=np.uint8)
_CLASS[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_CLASS[np.frombuffer(b".eE+-", np.uint8)] = [_DOT, _EXP, _EXP, _PLUS, _MINUS]
_CLASS[np.frombuffer(b" \t\n\r\x0b\x0c", np.uint8)] = _SPACE  # what str.split splits ASCII text on
# _KEEP[k]: clears the first k bytes of a little-endian 64-bit word.
_KEEP = np.array([(2**64 - 1) << (8 * k) & (2**64 - 1) for k in range(9)], dtype=np.uint64)
_F10 = 10.0 ** np.arange(23)  # exact doubles


def _digit_rows(V: np.ndarray) -> np.ndarray:
  """(n, W) uint8 digit values (0-9), W = 8 or 16 -> (n,) int64, each row read as one decimal number.

  Eight digits at a time as little-endian 64-bit words: neighbouring bytes, then 16-bit and then 32-bit
  lanes combine in three multiply-add-mask steps.
  """
  x = V.view("<u8")
  x = (x * np.uint64(10) + (x >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
  x = (x * np.uint64(100) + (x >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
  x = ((x * np.uint64(10000) + (x >> np.uint64(32))) & np.uint64(0xFFFFFFFF)).astype(np.int64)
  return x[:, 0] if x.shape[1] == 1 else x[:, 0] * 10**8 + x[:, 1]


def parse_numbers(text: str) -> np.ndarray:
  """The whitespace-separated numbers of ``text``, (n,) float64: ``np.array(text.split(), dtype=float)``
  bit for bit, including its ValueError on a token that is not a number.

  Hand-written because it is about 3x faster: the cost of ``np.array(text.split())`` (and of
  ``np.loadtxt`` and ``np.fromstring``, no faster) is one string-to-double conversion per value. Here
  all tokens are read at once: each is right-aligned in a row of 8 or 16 bytes, its digits combined by
  :func:`_digit_rows`, and the value made as mantissa * 10^e or mantissa / 10^-e, which is correctly
  rounded (as ``float()``) while the digits fit in 53 bits and \\|e\\| <= 22. Tokens outside that (long,
  odd, inf, nan, not numbers) go through ``float()``; text with characters other than digits, ``.eE+-``
  and ASCII whitespace through ``np.array(text.split())``.
  """
  if not text.isascii():
    return np.array(text.split(), dtype=np.float64)
  cls = np.take(_CLASS, np.frombuffer(text.encode("ascii"), dtype=np.uint8))
  if (cls == _OTHER).any():
    return np.array(text.split(), dtype=np.float64)
  word = np.zeros(cls.size + 2, dtype=bool)
  np.not_equal(cls, _SPACE, out=word[1:-1])
  edges = np.flatnonzero(word[1:] != word[:-1])
  starts, ends = edges[0::2], edges[1::2]
  n = starts.size
  if n == 0:
    return np.zeros(0)
  lens = ends - starts
  W = 8 if lens.max() <= 8 else 16
  # Row i: token i right-aligned in W columns, from column lead[i]; the bytes before it cleared.
  lead = W - np.minimum(lens, W)
  V = np.lib.stride_tricks.sliding_window_view(np.concatenate([np.zeros(W, np.uint8), cls]), W)[ends]
  clear = lead if W == 8 else np.stack([np.minimum(lead, 8), np.maximum(lead - 8, 0)], axis=1)
  V.view("<u8")[...] &= np.take(_KEEP, clear).reshape(n, W // 8)
  # The non-digits, cleared: a sign first, at most one dot, an exponent mark and a sign right after it.
  flat = np.flatnonzero(V >= 10)
  code = np.take(V, flat)
  np.put(V, flat, 0)
  row, col = flat // W, flat % W
  ecol = np.full(n, W)  # W: no exponent
  ecol[row[code == _EXP]] = col[code == _EXP]
  dotcol = np.full(n, -1)  # -1: no dot
  dotcol[row[code == _DOT]] = col[code == _DOT]
  lead_code = np.take(cls, starts)
  exp_sign_code = np.take(cls, ends - W + np.minimum(ecol + 1, W - 1))
  has_dot, has_exp = dotcol >= 0, ecol < W
  lsign = ((lead_code == _PLUS) | (lead_code == _MINUS)).astype(np.int64)
  esign = (has_exp & (ecol < W - 1) & ((exp_sign_code == _PLUS) | (exp_sign_code == _MINUS))).astype(np.int64)
  n_odd = lsign + has_dot + has_exp + esign
  ok = ((lens <= W) & (np.bincount(row, minlength=n) == n_odd) & (dotcol < ecol)
        & (ecol - lead - lsign - has_dot >= 1)  # a mantissa digit
        & ~(has_exp & (W - 1 - ecol - esign < 1)))  # an exponent digit after a mark
  # All in doubles, exact while the row's number A < 2^53: A = (mantissa with the dot as a 0 digit) *
  # 10^q + exponent digits, q = W - ecol; the dot then drops out of the mantissa's r fraction digits.
  A = _digit_rows(V)
  ok &= A < 2**53
  Af = A.astype(np.float64)
  q = W - ecol
  man = np.floor(Af / _F10[q])  # exact: the remainder is under a tenth of the divisor
  expo = Af - man * _F10[q]
  r = np.where(has_dot, np.clip(ecol - 1 - dotcol, 0, W - 1), 0)
  man = np.where(has_dot, man - 9.0 * np.floor(man / _F10[r + 1]) * _F10[r], man)
  e10 = np.where((esign == 1) & (exp_sign_code == _MINUS), -expo, expo) - r
  ok &= np.abs(e10) <= 22
  k = np.minimum(np.abs(e10), 22).astype(np.int64)
  vals = np.where(e10 >= 0, man * _F10[k], man / _F10[k])
  np.negative(vals, out=vals, where=lead_code == _MINUS)
  slow = np.flatnonzero(~ok)
  if slow.size:
    vals[slow] = [float(text[i:j]) for i, j in zip(starts[slow].tolist(), ends[slow].tolist())]
  return vals


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
  if text.lstrip()[:9].upper() != "HIERARCHY":
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
    values = parse_numbers(data_text)
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


def euler_matrices(angles: np.ndarray, axes: np.ndarray) -> np.ndarray:
  """Rotation matrices of intrinsic Euler angles (BVH and scipy's upper-case order: the first channel's
  rotation is outermost).

  Built from per-axis cos/sin and two batched 3x3 products rather than ``Rotation.from_euler``, which
  is about 10x slower on a clip's worth of joints (it goes through quaternions, one call per channel
  order).

  Args:
    angles: (..., K, n) radians, n elementary rotations for each of K joints.
    axes: (K, n) the axis of each rotation, 0/1/2 for X/Y/Z.
  Returns:
    (..., K, 3, 3).
  """
  c, s = np.cos(angles), np.sin(angles)
  a = np.broadcast_to(axes, angles.shape[-2:])
  b, e = (a + 1) % 3, (a + 2) % 3
  k, i = np.indices(a.shape)
  E = np.zeros(angles.shape + (3, 3))
  E[..., k, i, a, a] = 1.0
  E[..., k, i, b, b] = c
  E[..., k, i, e, e] = c
  E[..., k, i, b, e] = -s
  E[..., k, i, e, b] = s
  R = E[..., 0, :, :]
  for m in range(1, angles.shape[-1]):
    R = R @ E[..., m, :, :]
  return R


def forward_kinematics(bvh: BvhData, joints: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Global joint positions and rotation matrices for every frame, in file units and axes.

  Only ``joints`` (default: all, End Sites included) and their ancestors are computed; the tree is walked
  one depth level at a time, all joints of a level in one batched product.

  Returns:
    positions: (T, K, 3); rotations: (T, K, 3, 3), K = len(joints).
  """
  bj = bvh.joints
  want = list(range(len(bj))) if joints is None else [int(j) for j in joints]
  need: set[int] = set()
  for j in want:
    while j >= 0 and j not in need:
      need.add(j)
      j = bj[j].parent
  order = sorted(need)  # BVH lists parents before their children
  local = {j: i for i, j in enumerate(order)}
  K = len(order)
  motion = bvh.motion
  T = motion.shape[0]
  # Local translations: the OFFSET, replaced by position channels where the joint has them.
  trans = np.empty((T, K, 3))
  trans[:] = np.array([bj[j].offset for j in order], dtype=np.float64).reshape(K, 3)
  # Local rotations: every joint padded to the same number of rotation channels (zero-angle padding).
  n_rot = max([1] + [sum(ch[1:].lower() == "rotation" for ch in bj[j].channels) for j in order])
  rot_cols = np.full((K, n_rot), motion.shape[1], dtype=np.int64)  # the padding column is all zeros
  rot_axes = np.zeros((K, n_rot), dtype=np.int64)
  for i, j in enumerate(order):
    r = 0
    for k, ch in enumerate(bj[j].channels):
      col, ax = bj[j].channel_start + k, _AXES[ch[0].upper()]
      if ch[1:].lower() == "position":
        trans[:, i, ax] = motion[:, col]
      else:
        rot_cols[i, r], rot_axes[i, r] = col, ax
        r += 1
  padded = np.concatenate([motion, np.zeros((T, 1))], axis=1)
  local_rot = euler_matrices(np.radians(padded[:, rot_cols]), rot_axes)  # (T, K, 3, 3)
  parents = np.array([local.get(bj[j].parent, -1) for j in order], dtype=np.int64)
  depth = np.zeros(K, dtype=np.int64)
  for i in range(K):
    depth[i] = 0 if parents[i] < 0 else depth[parents[i]] + 1
  pos = np.empty((T, K, 3))
  rot = np.empty((T, K, 3, 3))
  roots = depth == 0
  pos[:, roots] = trans[:, roots]
  rot[:, roots] = local_rot[:, roots]
  for d in range(1, int(depth.max()) + 1):
    idx = np.flatnonzero(depth == d)
    par = parents[idx]
    rp = rot[:, par]
    pos[:, idx] = pos[:, par] + (rp @ trans[:, idx, :, None])[..., 0]
    rot[:, idx] = rp @ local_rot[:, idx]
  out = [local[j] for j in want]
  return pos[:, out], rot[:, out]
