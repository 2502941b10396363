"""Load any supported human motion file into the canonical :class:`HumanMotion`.

Files are recognised by content, not only by extension: BVH text starts with ``HIERARCHY``; AMASS
files are zip archives (.npz) holding ``poses`` or ``pose_body`` arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from humanoid_retarget.errors import InputFormatError
from humanoid_retarget.human.bvh_import import BvhImportConfig, load_bvh
from humanoid_retarget.human.motion import HumanMotion

HUMAN_EXTENSIONS = (".bvh", ".npz")


@dataclass
class HumanLoadConfig:
  """Options for reading human motion files.

  Attributes:
    bvh: BVH options (skeleton preset, units, up axis).
    body_model_dir: folder with SMPL/SMPL-H/SMPL-X model files for AMASS input
      (default: the HUMANOID_RETARGET_BODY_MODELS environment variable).
    fps: resample to this frame rate (0 = keep the source rate).
  """

  bvh: BvhImportConfig = field(default_factory=BvhImportConfig)
  body_model_dir: str = ""
  fps: float = 0.0


def sniff_format(path: str) -> str:
  """'bvh', 'amass' or 'unknown', from the file's first bytes."""
  try:
    with open(path, "rb") as f:
      head = f.read(64)
  except OSError as e:
    raise InputFormatError(f"cannot read file ({e.strerror})", path) from None
  if not head:
    raise InputFormatError("empty file", path)
  if head.lstrip().upper().startswith(b"HIERARCHY"):
    return "bvh"
  if head.startswith(b"PK\x03\x04") or head.startswith(b"\x93NUMPY"):
    return "amass"
  return "unknown"


def load_human(path: str | os.PathLike, cfg: HumanLoadConfig = HumanLoadConfig()) -> HumanMotion:
  path = os.fspath(path)
  kind = sniff_format(path)
  if kind == "bvh":
    hm = load_bvh(path, cfg.bvh)
  elif kind == "amass":
    try:
      from humanoid_retarget.human.amass import load_amass
    except ImportError:  # pragma: no cover - amass module ships with the package
      raise InputFormatError("AMASS support is not installed", path) from None
    hm = load_amass(path, body_model_dir=cfg.body_model_dir or None)
  else:
    raise InputFormatError("not a BVH or AMASS motion file (unrecognised content)", path)
  if cfg.fps and abs(cfg.fps - hm.fps) > 1e-6:
    hm = hm.resample(cfg.fps)
  return hm


def list_inputs(root: str) -> list[str]:
  """Motion files under ``root`` (a file or a folder, searched recursively), sorted."""
  if os.path.isfile(root):
    return [root]
  if not os.path.isdir(root):
    raise InputFormatError("no such file or folder", root)
  out = []
  for d, _, files in os.walk(root):
    for f in files:
      if f.lower().endswith(HUMAN_EXTENSIONS) and not f.startswith("."):
        p = os.path.join(d, f)
        if f.lower().endswith(".npz"):
          from humanoid_retarget.human.amass import is_amass_shape_file

          if is_amass_shape_file(p):  # AMASS shape.npz / MoSh++ *_stagei.npz: body shape, no motion
            continue
        out.append(p)
  return sorted(out)
