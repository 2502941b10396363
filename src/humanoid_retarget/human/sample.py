"""A built-in sample: a procedural walking clip written as a LAFAN1-style BVH (cm, Y up, ZXY Euler).

It needs no data files, so a fresh install can run the whole path on it.
"""

from __future__ import annotations

import io

import numpy as np

# (name, parent, offset cm) in a Y-up frame, facing +Z, left = +X. Arms hang at rest.
_SKELETON = [
  ("Hips", None, (0, 0, 0)),
  ("LeftUpLeg", "Hips", (9, -5, 0)), ("LeftLeg", "LeftUpLeg", (0, -42, 0)),
  ("LeftFoot", "LeftLeg", (0, -41, 0)), ("LeftToe", "LeftFoot", (0, -6, 13)),
  ("RightUpLeg", "Hips", (-9, -5, 0)), ("RightLeg", "RightUpLeg", (0, -42, 0)),
  ("RightFoot", "RightLeg", (0, -41, 0)), ("RightToe", "RightFoot", (0, -6, 13)),
  ("Spine", "Hips", (0, 10, 0)), ("Spine1", "Spine", (0, 12, 0)), ("Spine2", "Spine1", (0, 12, 0)),
  ("Neck", "Spine2", (0, 14, 0)), ("Head", "Neck", (0, 10, 0)),
  ("LeftShoulder", "Spine2", (4, 11, 0)), ("LeftArm", "LeftShoulder", (13, 0, 0)),
  ("LeftForeArm", "LeftArm", (0, -27, 0)), ("LeftHand", "LeftForeArm", (0, -25, 0)),
  ("RightShoulder", "Spine2", (-4, 11, 0)), ("RightArm", "RightShoulder", (-13, 0, 0)),
  ("RightForeArm", "RightArm", (0, -27, 0)), ("RightHand", "RightForeArm", (0, -25, 0)),
]
_END = {"LeftToe": (0, 0, 4), "RightToe": (0, 0, 4), "Head": (0, 12, 0), "LeftHand": (0, -8, 0),
        "RightHand": (0, -8, 0)}


def sample_walk_bvh(seconds: float = 4.0, fps: float = 30.0) -> str:
  """Text of a BVH file with a steady walk (stride frequency 0.9 Hz, planted feet)."""
  T = int(round(seconds * fps))
  t = np.arange(T) / fps
  ph = 2 * np.pi * 0.9 * t
  s = np.sin(ph)
  names = [n for n, _, _ in _SKELETON]
  rot = {n: np.zeros((T, 3)) for n in names}  # (Z, X, Y) degrees
  # Legs: flexion about X (negative = forward), knee bends in swing.
  rot["LeftUpLeg"][:, 1] = -22 * s
  rot["RightUpLeg"][:, 1] = 22 * s
  rot["LeftLeg"][:, 1] = 8 + 30 * np.clip(np.sin(ph + 1.2), 0, None)
  rot["RightLeg"][:, 1] = 8 + 30 * np.clip(np.sin(ph + np.pi + 1.2), 0, None)
  rot["LeftFoot"][:, 1] = -5 * s
  rot["RightFoot"][:, 1] = 5 * s
  # Arms swing against the legs; elbows slightly bent; arms a little away from the body.
  rot["LeftArm"][:, 1] = 15 * s
  rot["RightArm"][:, 1] = -15 * s
  rot["LeftArm"][:, 0] = 8
  rot["RightArm"][:, 0] = -8
  rot["LeftForeArm"][:, 1] = -20
  rot["RightForeArm"][:, 1] = -20
  rot["Spine1"][:, 2] = 4 * s
  root = np.zeros((T, 3))
  text = _write(rot, root, names, fps)
  # Plant the feet: move the root so the lower foot stays still and touches the floor (y = 0).
  from humanoid_retarget.io.bvh import forward_kinematics, parse_bvh

  b = parse_bvh("sample.bvh", text)
  pos, _ = forward_kinematics(b)
  idx = {n: i for i, n in enumerate(b.names)}
  low = np.stack([np.minimum(pos[:, idx[f"{s}Toe_End"], 1], pos[:, idx[f"{s}Foot"], 1] - 6.0) for s in ("Left", "Right")], 1)
  stance = np.argmin(low, axis=1)
  fz = np.stack([pos[:, idx["LeftFoot"], 2], pos[:, idx["RightFoot"], 2]], 1)
  for k in range(1, T):
    s_ = stance[k]
    root[k, 2] = root[k - 1, 2] - (fz[k, s_] - fz[k - 1, s_])
  root[:, 1] = -low.min(axis=1)
  return _write(rot, root, names, fps)


def _write(rot: dict, root: np.ndarray, names: list[str], fps: float) -> str:
  T = root.shape[0]
  out = io.StringIO()
  out.write("HIERARCHY\n")
  children: dict[str, list[str]] = {}
  for n, p, _ in _SKELETON:
    children.setdefault(p, []).append(n)
  offsets = {n: o for n, _, o in _SKELETON}

  def write(n: str, depth: int) -> None:
    ind = "  " * depth
    kw = "ROOT" if depth == 0 else "JOINT"
    out.write(f"{ind}{kw} {n}\n{ind}{{\n")
    out.write(f"{ind}  OFFSET {offsets[n][0]:.4f} {offsets[n][1]:.4f} {offsets[n][2]:.4f}\n")
    if depth == 0:
      out.write(f"{ind}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation\n")
    else:
      out.write(f"{ind}  CHANNELS 3 Zrotation Xrotation Yrotation\n")
    for c in children.get(n, []):
      write(c, depth + 1)
    if n in _END:
      e = _END[n]
      out.write(f"{ind}  End Site\n{ind}  {{\n{ind}    OFFSET {e[0]} {e[1]} {e[2]}\n{ind}  }}\n")
    out.write(f"{ind}}}\n")

  write("Hips", 0)
  order: list[str] = []

  def visit(n: str) -> None:
    order.append(n)
    for c in children.get(n, []):
      visit(c)

  visit("Hips")
  cols = [root] + [rot[n] for n in order]
  data = np.concatenate(cols, axis=1)
  out.write(f"MOTION\nFrames: {T}\nFrame Time: {1.0 / fps:.7f}\n")
  np.savetxt(out, data, fmt="%.5f")
  return out.getvalue()
