"""Name presets that map a source skeleton's joints onto the 22 canonical joints.

A preset maps canonical joint -> source joint name. Missing in-between joints (spine2, collars,
neck, toes, ...) are interpolated by :func:`fill_missing`. ``detect_preset`` picks the preset whose
names the skeleton holds, else builds a mapping from name keywords (any skeleton with recognisable
names: "LeftUpLeg", "l_thigh", "UpperLeg_L", "RightForeArm", ...).
"""

from __future__ import annotations

import re

import numpy as np

from humanoid_retarget.errors import SkeletonError
from humanoid_retarget.human.motion import CANONICAL_JOINTS, J

PRESETS: dict[str, dict[str, str]] = {
  "bandai": {
    "pelvis": "Hips", "left_hip": "UpperLeg_L", "right_hip": "UpperLeg_R",
    "left_knee": "LowerLeg_L", "right_knee": "LowerLeg_R", "left_ankle": "Foot_L", "right_ankle": "Foot_R",
    "left_foot": "Toes_L", "right_foot": "Toes_R", "spine1": "Spine", "spine3": "Chest", "neck": "Neck",
    "head": "Head", "left_collar": "Shoulder_L", "right_collar": "Shoulder_R",
    "left_shoulder": "UpperArm_L", "right_shoulder": "UpperArm_R", "left_elbow": "LowerArm_L",
    "right_elbow": "LowerArm_R", "left_wrist": "Hand_L", "right_wrist": "Hand_R",
  },
  "lafan1": {
    "pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg", "left_knee": "LeftLeg",
    "right_knee": "RightLeg", "left_ankle": "LeftFoot", "right_ankle": "RightFoot", "left_foot": "LeftToe",
    "right_foot": "RightToe", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck",
    "head": "Head", "left_collar": "LeftShoulder", "right_collar": "RightShoulder",
    "left_shoulder": "LeftArm", "right_shoulder": "RightArm", "left_elbow": "LeftForeArm",
    "right_elbow": "RightForeArm", "left_wrist": "LeftHand", "right_wrist": "RightHand",
  },
  "cmu": {  # cgspeed's CMU BVH conversion
    "pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg", "left_knee": "LeftLeg",
    "right_knee": "RightLeg", "left_ankle": "LeftFoot", "right_ankle": "RightFoot",
    "left_foot": "LeftToeBase", "right_foot": "RightToeBase", "spine1": "Spine", "spine3": "Spine1",
    "neck": "Neck1", "head": "Head", "left_collar": "LeftShoulder", "right_collar": "RightShoulder",
    "left_shoulder": "LeftArm", "right_shoulder": "RightArm", "left_elbow": "LeftForeArm",
    "right_elbow": "RightForeArm", "left_wrist": "LeftHand", "right_wrist": "RightHand",
  },
}
# Preset detection order: the most specific name sets first.
_PRESET_ORDER = ("bandai", "cmu", "lafan1")

REQUIRED = (
  "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
  "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)

# Keyword rules for automatic mapping: canonical joint -> (regex on the side-stripped lower-case name).
_KEYWORDS: dict[str, list[str]] = {
  "hip": [r"^(up(per)?leg|thigh|hip|femur)$"],
  "knee": [r"^(leg|lowerleg|knee|shin|calf|tibia|lowleg)$"],
  "ankle": [r"^(foot|ankle)$"],
  "foot": [r"^(toe|toes|toebase|ball|foottoe|toe0)$"],
  "collar": [r"^(shoulder|collar|clavicle|clav)$"],
  "shoulder": [r"^(arm|upperarm|uparm|humerus)$"],
  "elbow": [r"^(forearm|lowerarm|elbow|lowarm|radius)$"],
  "wrist": [r"^(hand|wrist)$"],
}
_CENTER: dict[str, list[str]] = {
  "pelvis": [r"^(hips|pelvis|hip|root)$"],
  "neck": [r"^(neck|neck0|neck1)$"],
  "head": [r"^head$"],
}

_SIDE_RE = [
  (re.compile(r"^(left)[_\-\s\.]?(.+)$"), "left"),
  (re.compile(r"^(right)[_\-\s\.]?(.+)$"), "right"),
  (re.compile(r"^(l)[_\-\s\.](.+)$"), "left"),
  (re.compile(r"^(r)[_\-\s\.](.+)$"), "right"),
  (re.compile(r"^(.+?)[_\-\s\.]?(left)$"), "left"),
  (re.compile(r"^(.+?)[_\-\s\.]?(right)$"), "right"),
  (re.compile(r"^(.+?)[_\-\s\.](l)$"), "left"),
  (re.compile(r"^(.+?)[_\-\s\.](r)$"), "right"),
]


def _split_side(name: str) -> tuple[str | None, str]:
  """(side, base) of a joint name: 'LeftUpLeg', 'l_thigh', 'UpperLeg_L', 'LThigh' -> ('left', ...)."""
  raw = re.sub(r"^(mixamorig:|bip0?1[_ ]?|character\d*[_:])", "", name, flags=re.I)
  # CamelCase single-letter prefix: 'LThigh', 'RForeArm'.
  m = re.match(r"^([LR])([A-Z][a-z].*)$", raw)
  if m:
    return ("left" if m.group(1) == "L" else "right"), re.sub(r"[_\-\s\.]", "", m.group(2).lower())
  n = raw.lower()
  for rx, side in _SIDE_RE:
    m = rx.match(n)
    if m:
      groups = m.groups()
      base = groups[1] if groups[0] in ("left", "l", "right", "r") else groups[0]
      return side, re.sub(r"[_\-\s\.]", "", base)
  return None, re.sub(r"[_\-\s\.]", "", n)


def auto_mapping(names: list[str], parents: list[int]) -> dict[str, str]:
  """Build a canonical -> source mapping from name keywords and the tree structure."""
  mapping: dict[str, str] = {}
  info = [_split_side(n) for n in names]
  for canon, pats in _KEYWORDS.items():
    for side in ("left", "right"):
      for i, (s, base) in enumerate(info):
        if s == side and any(re.match(p, base) for p in pats):
          mapping.setdefault(f"{side}_{canon}", names[i])
          break
  for canon, pats in _CENTER.items():
    for i, (s, base) in enumerate(info):
      if s is None and any(re.match(p, base) for p in pats):
        if canon == "pelvis" and base == "root":
          # Prefer a 'hips'/'pelvis' joint when a separate root exists.
          continue
        mapping.setdefault(canon, names[i])
        break
  if "pelvis" not in mapping:
    # The lowest common ancestor of the hips.
    if "left_hip" in mapping and "right_hip" in mapping:
      a = _ancestors(names.index(mapping["left_hip"]), parents)
      b = set(_ancestors(names.index(mapping["right_hip"]), parents))
      common = [x for x in a if x in b]
      if common:
        mapping["pelvis"] = names[common[0]]
  # Spine joints: centre-line joints between pelvis and neck, in chain order.
  if "pelvis" in mapping and ("neck" in mapping or "head" in mapping):
    top = names.index(mapping.get("neck", mapping.get("head")))
    chain = _ancestors(top, parents)  # from top's parent up to root
    pelvis_i = names.index(mapping["pelvis"])
    if pelvis_i in chain:
      between = list(reversed(chain[: chain.index(pelvis_i)]))  # pelvis-side first
      between = [k for k in between if names[k] not in mapping.values()]
      if "neck" not in mapping and between:
        mapping["neck"] = names[between.pop()]
      if len(between) >= 3:
        mapping["spine1"], mapping["spine2"], mapping["spine3"] = (
          names[between[0]], names[between[len(between) // 2]], names[between[-1]])
      elif len(between) == 2:
        mapping["spine1"], mapping["spine3"] = names[between[0]], names[between[1]]
      elif len(between) == 1:
        mapping["spine3"] = names[between[0]]
  return mapping


def _ancestors(i: int, parents: list[int]) -> list[int]:
  out = []
  p = parents[i]
  while p >= 0:
    out.append(p)
    p = parents[p]
  return out


def detect_preset(names: list[str], parents: list[int], preset: str = "auto", path: str = "") -> tuple[str, dict[str, str]]:
  """Return (preset name, canonical -> source mapping) for a skeleton with ``names``."""
  present = set(names)
  if preset != "auto":
    if preset not in PRESETS:
      raise SkeletonError(f"unknown skeleton preset '{preset}' (choose from auto, {', '.join(PRESETS)})", path)
    mapping = {k: v for k, v in PRESETS[preset].items() if v in present}
    missing = [k for k in REQUIRED if k not in mapping]
    if missing:
      raise SkeletonError(f"preset '{preset}' does not fit this skeleton: no joint for {', '.join(missing)}", path)
    return preset, mapping
  for name in _PRESET_ORDER:
    table = PRESETS[name]
    if all(v in present for k, v in table.items() if k in REQUIRED) and sum(v in present for v in table.values()) >= len(table) - 1:
      return name, {k: v for k, v in table.items() if v in present}
  mapping = auto_mapping(names, parents)
  missing = [k for k in REQUIRED if k not in mapping]
  if missing:
    raise SkeletonError(
      "unmappable skeleton: no joint found for " + ", ".join(missing)
      + " (name the joints like LAFAN1/CMU/Bandai, or pass --skeleton with a preset)", path)
  return "auto", mapping


def fill_missing(pos: np.ndarray, have: set[str]) -> tuple[np.ndarray, list[str]]:
  """Interpolate canonical joints that the source lacks. pos: (T, 22, 3), modified in place.

  Returns the array and the list of joints that were interpolated.
  """
  filled = []

  def lerp(a: str, b: str, t: float) -> np.ndarray:
    return pos[:, J(a)] * (1 - t) + pos[:, J(b)] * t

  hips_mid = 0.5 * (pos[:, J("left_hip")] + pos[:, J("right_hip")])
  sh_mid = 0.5 * (pos[:, J("left_shoulder")] + pos[:, J("right_shoulder")])
  if "neck" not in have:
    if "head" in have:
      pos[:, J("neck")] = sh_mid + 0.3 * (pos[:, J("head")] - sh_mid)
    else:
      pos[:, J("neck")] = sh_mid + 0.1 * (sh_mid - hips_mid)
    filled.append("neck")
  if "head" not in have:
    pos[:, J("head")] = pos[:, J("neck")] + 0.35 * (pos[:, J("neck")] - hips_mid) / 1.0 * 0.3
    filled.append("head")
  if "spine3" not in have:
    pos[:, J("spine3")] = lerp("pelvis", "neck", 0.75)
    filled.append("spine3")
  if "spine1" not in have:
    pos[:, J("spine1")] = lerp("pelvis", "spine3", 1 / 3)
    filled.append("spine1")
  if "spine2" not in have:
    pos[:, J("spine2")] = lerp("spine1", "spine3", 0.5)
    filled.append("spine2")
  for side in ("left", "right"):
    if f"{side}_collar" not in have:
      pos[:, J(f"{side}_collar")] = lerp("spine3", f"{side}_shoulder", 0.35) * 0.5 + lerp("neck", f"{side}_shoulder", 0.35) * 0.5
      filled.append(f"{side}_collar")
    if f"{side}_foot" not in have:
      # Toes ahead of the ankle along the pelvis' forward direction, on the floor level of the ankle - 5 cm.
      lat = pos[:, J("left_hip")] - pos[:, J("right_hip")]
      up = np.array([0.0, 0.0, 1.0])
      fwd = np.cross(lat, up)
      fwd /= np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-9)
      ank = pos[:, J(f"{side}_ankle")]
      leg = np.median(np.linalg.norm(pos[:, J(f"{side}_knee")] - ank, axis=-1))
      pos[:, J(f"{side}_foot")] = ank + fwd * 0.35 * leg - up * 0.15 * leg
      filled.append(f"{side}_foot")
  return pos, filled


def canonical_names() -> tuple[str, ...]:
  return CANONICAL_JOINTS
