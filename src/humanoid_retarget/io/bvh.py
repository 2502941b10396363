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


# parse_numbers: the characters of a number, less b"0": '+', '-', '.', 'E', 'e' as uint8.
_PLUS, _MINUS, _DOT, _EXP_UPPER, _EXP_LOWER = (np.uint8((c - 48) % 256) for c in b"+-.Ee")
# _KEEP[k]: keeps all but the first k bytes of a little-endian 64-bit word.
_KEEP = np.array([(2**64 - 1) << (8 * k) & (2**64 - 1) for k in range(9)], dtype=np.uint64)
_ZEROS = np.uint64(0x3030303030303030)  # eight '0' characters
_F10 = 10.0 ** np.arange(23)  # exact doubles


def _digit_rows(V: np.ndarray) -> np.ndarray:
  """(n, W) uint8 digit values (0-9), W = 8 or 16 -> (n,) int64, each row read as one decimal number.
  ``V`` is overwritten.

  Eight digits at a time as little-endian 64-bit words: neighbouring bytes, then 16-bit and then 32-bit
  lanes combine in three multiply-add-mask steps (in place: fresh temporaries of this size cost more
  than the arithmetic).
  """
  x = V.view("<u8")
  t = np.empty_like(x)
  for bits, mask in ((8, 0x00FF00FF00FF00FF), (16, 0x0000FFFF0000FFFF), (32, 0xFFFFFFFF)):
    np.right_shift(x, np.uint64(bits), out=t)
    x *= np.uint64(10 ** (bits // 8))
    x += t
    x &= np.uint64(mask)
  x = x.view(np.int64)
  return x[:, 0] if x.shape[1] == 1 else x[:, 0] * 10**8 + x[:, 1]


def parse_numbers(text: str) -> np.ndarray:
  """The whitespace-separated numbers of ``text``, (n,) float64: ``np.array(text.split(), dtype=float)``
  bit for bit, including its ValueError on a token that is not a number.

  Hand-written because it is over 2x faster on BVH motion data: the cost of ``np.array(text.split())``
  (and of ``np.loadtxt`` and ``np.fromstring``, no faster) is one string-to-double conversion per value.
  Here all tokens are read at once: each is right-aligned in a row of 8 or 16 bytes, its digits combined
  by :func:`_digit_rows`, and the value made as mantissa * 10^e or mantissa / 10^-e, which is correctly
  rounded (as ``float()``) while the digits fit in 53 bits and abs(e) <= 22. Other tokens (long ones,
  inf, nan, not numbers) go through ``float()``; text that is not ASCII or holds control characters
  other than tab, newline, vertical tab, form feed and carriage return through ``np.array(text.split())``.
  """
  if not text.isascii():
    return np.array(text.split(), dtype=np.float64)
  b = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
  word = np.zeros(b.size + 2, dtype=bool)
  np.greater(b, 32, out=word[1:-1])
  if np.count_nonzero(b < 32) != np.count_nonzero((b >= 9) & (b <= 13)):  # str.split splits on \x1c-\x1f
    return np.array(text.split(), dtype=np.float64)
  edges = np.flatnonzero(word[1:] != word[:-1])
  starts, ends = edges[0::2], edges[1::2]
  n = starts.size
  if n == 0:
    return np.zeros(0)
  lens = ends - starts
  W = 8 if lens.max() <= 8 else 16
  # Row i: token i right-aligned in W columns from column lead[i], '0's before it, less b"0".
  lead = W - np.minimum(lens, W)
  padded = np.concatenate([np.zeros(W, np.uint8), b])
  windows = np.ndarray((b.size + 1,), dtype=np.dtype((np.void, W)), buffer=padded, strides=(1,))  # W bytes each
  V = np.take(windows, ends).view(np.uint8).reshape(n, W)  # 4x faster than indexing a sliding_window_view
  clear = np.empty((n, W // 8), dtype=np.int64)  # bytes to set to '0' in each 8-byte word of a row
  np.minimum(lead, 8, out=clear[:, 0])
  if W == 16:
    np.subtract(lead, clear[:, 0], out=clear[:, 1])
  keep = np.take(_KEEP, clear)
  words = V.view("<u8")
  words &= keep
  np.invert(keep, out=keep)
  keep &= _ZEROS
  words |= keep
  V -= np.uint8(48)
  # The non-digits, then zeroed: a sign first, at most one dot, an exponent mark and a sign right after it.
  flat = np.flatnonzero(V >= 10)
  code = np.take(V, flat)
  np.put(V, flat, 0)
  row, col = flat >> (W.bit_length() - 1), flat & (W - 1)  # flat // W, flat % W
  i = np.flatnonzero((code == _EXP_LOWER) | (code == _EXP_UPPER))
  ecol = np.full(n, W)  # W: no exponent
  ecol[np.take(row, i)] = np.take(col, i)
  i = np.flatnonzero(code == _DOT)
  dotcol = np.full(n, -1)  # -1: no dot
  dotcol[np.take(row, i)] = np.take(col, i)
  lead_char = np.take(b, starts)
  exp_sign_char = np.take(b, ends - W + np.minimum(ecol + 1, W - 1))
  has_dot, has_exp = dotcol >= 0, ecol < W
  lsign = (lead_char == ord("-")) | (lead_char == ord("+"))
  esign = has_exp & (ecol < W - 1) & ((exp_sign_char == ord("-")) | (exp_sign_char == ord("+")))
  n_odd = lsign.astype(np.int64) + has_dot + has_exp + esign
  ok = ((lens <= W) & (np.bincount(row, minlength=n) == n_odd)  # no other non-digits (letters, more dots)
        & (dotcol < ecol) & (ecol - lead - lsign - has_dot >= 1)  # a mantissa digit
        & ~(has_exp & (W - 1 - ecol - esign < 1)))  # an exponent digit after a mark
  # All in doubles, exact while the row's number A < 2^53: A = (mantissa with the dot as a 0 digit) *
  # 10^q + exponent digits, q = W - ecol; the dot then drops out of the mantissa's r fraction digits.
  A = _digit_rows(V)
  ok &= A < 2**53
  Af = A.astype(np.float64)
  q = np.take(_F10, W - ecol)
  man = np.floor(Af / q)  # exact: the remainder is under a tenth of the divisor
  expo = Af - man * q
  r = ecol - 1 - dotcol  # digits after the dot; without a dot, more than the mantissa has (a no-op below)
  man -= 9.0 * np.floor(man / np.take(_F10, r + 1, mode="clip")) * np.take(_F10, r, mode="clip")
  e10 = np.where(esign & (exp_sign_char == ord("-")), -expo, expo) - r * has_dot
  ok &= np.abs(e10) <= 22
  scale = np.take(_F10, np.abs(e10).astype(np.int64), mode="clip")
  vals = np.where(e10 >= 0, man * scale, man / scale)
  vals[lead_char == ord("-")] *= -1.0
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

  start = motion_idx + len("MOTION")
  head_end = start  # the end of the three lines after "MOTION"
  for _ in range(3):
    nl = text.find("\n", head_end)
    head_end = len(text) if nl < 0 else nl + 1
  head = text[start:head_end].split()
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
  # The data starts after the "Frame Time:" line (among those three).
  nl = text.find("\n", start + text[start:head_end].lower().find("time:"))
  data_text = text[nl + 1 :] if nl >= 0 else ""
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


def euler_matrices(angles: np.ndarray, seq: str) -> np.ndarray:
  """Rotation matrices of intrinsic Euler angles, as ``Rotation.from_euler(seq, angles).as_matrix()``
  with an upper-case ``seq`` (BVH channel order: the first channel's rotation is outermost).

  Each elementary rotation multiplies in from the right by turning two columns, with numpy cos/sin:
  several times faster than scipy (which goes through quaternions) and than 3x3 matmuls.

  Args:
    angles: (..., n) radians; seq: n letters from "XYZ".
  Returns:
    (..., 3, 3).
  """
  cos, sin = np.cos(angles), np.sin(angles)
  # The columns with their component axis first, (3, ...): products with cos/sin (...) then run over long
  # contiguous rows (broadcasting over a trailing axis of 3 is several times slower).
  cols = list(np.eye(3).reshape((3, 3) + (1,) * (angles.ndim - 1)))
  for m, axis in enumerate(seq):
    c, s = cos[..., m], sin[..., m]
    a = _AXES[axis]
    b, e = (a + 1) % 3, (a + 2) % 3  # R @ R_a(angle): column b -> b c + e s, column e -> e c - b s
    cols[b], cols[e] = cols[b] * c + cols[e] * s, cols[e] * c - cols[b] * s
  cols = np.broadcast_arrays(*cols, np.empty((3,) + angles.shape[:-1]))[:3]
  return np.moveaxis(np.stack(cols, axis=-1), 0, -2)  # (..., 3 rows, 3 columns)


def with_ancestors(bvh: BvhData, joints: Sequence[int]) -> list[int]:
  """The given joints and all their ancestors, parents before children (BVH order)."""
  need: set[int] = set()
  for j in joints:
    while j >= 0 and j not in need:
      need.add(j)
      j = bvh.joints[j].parent
  return sorted(need)  # BVH lists parents before their children


def forward_kinematics(bvh: BvhData, joints: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Global joint positions and rotation matrices for every frame, in file units and axes.

  Only ``joints`` (default: all, End Sites included) and their ancestors are computed; the local
  rotations of all joints with the same channel order come from one :func:`euler_matrices` call, and
  the tree is walked one depth level at a time, all joints of a level in one batched product.

  Returns:
    positions: (T, K, 3); rotations: (T, K, 3, 3), K = len(joints).
  """
  bj = bvh.joints
  want = list(range(len(bj))) if joints is None else [int(j) for j in joints]
  order = with_ancestors(bvh, want)
  local = {j: i for i, j in enumerate(order)}
  K = len(order)
  motion = bvh.motion
  T = motion.shape[0]
  # Channels: position channels replace the OFFSET; rotation channels grouped by their order.
  pos_idx: list[tuple[int, int, int]] = []  # (joint, axis, column)
  groups: dict[str, tuple[list[int], list[list[int]]]] = {}  # channel order -> (joints, their columns)
  for i, j in enumerate(order):
    seq, cols = "", []
    for k, ch in enumerate(bj[j].channels):
      col, ax = bj[j].channel_start + k, ch[0].upper()
      if ch[1] in "pP":  # position
        pos_idx.append((i, _AXES[ax], col))
      else:
        seq, cols = seq + ax, cols + [col]
    if seq:
      groups.setdefault(seq, ([], []))[0].append(i)
      groups[seq][1].append(cols)
  # Joint-major arrays, (K, T, ...): a level's parents are gathered as whole blocks.
  mt = motion.T
  trans = np.empty((K, T, 3))
  trans[:] = np.array([bj[j].offset for j in order], dtype=np.float64).reshape(K, 1, 3)
  if pos_idx:
    ji, ax, col = np.array(pos_idx).T
    trans[ji, :, ax] = mt[col]
  local_rot = np.empty((K, T, 3, 3))
  rotated = {i for ji, _ in groups.values() for i in ji}
  plain = [i for i in range(K) if i not in rotated]  # joints without rotation channels
  if plain:
    local_rot[plain] = np.eye(3)
  for seq, (ji, cols) in groups.items():
    local_rot[ji] = euler_matrices(np.radians(mt[np.array(cols).T].transpose(1, 2, 0)), seq)  # angles (G, T, n)
  parents = np.array([local.get(bj[j].parent, -1) for j in order], dtype=np.int64)
  depth = np.zeros(K, dtype=np.int64)
  for i in range(K):
    depth[i] = 0 if parents[i] < 0 else depth[parents[i]] + 1
  pos = np.empty((K, T, 3))
  rot = np.empty((K, T, 3, 3))
  roots = depth == 0
  pos[roots] = trans[roots]
  rot[roots] = local_rot[roots]
  for d in range(1, int(depth.max()) + 1):
    idx = np.flatnonzero(depth == d)
    par = parents[idx]
    rp = rot[par]
    pos[idx] = pos[par] + np.einsum("ktij,ktj->kti", rp, trans[idx])
    rot[idx] = rp @ local_rot[idx]
  out = [local[j] for j in want]
  return pos[out].swapaxes(0, 1), rot[out].swapaxes(0, 1)
