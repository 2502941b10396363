"""AMASS motion files (.npz) -> canonical :class:`HumanMotion`, through the SMPL family body models.

Layouts (recognised by the arrays a file holds, never by its name):

* SMPL-H, the classic AMASS release: ``poses`` (T, 156) = root, 21 body joints, 2 x 15 hand joints
  (axis-angle), ``trans`` (T, 3), ``betas`` (16,), ``gender``, ``mocap_framerate``.
* SMPL-X "stage II" (AMASS SMPL-X N release, MoSh++): ``root_orient`` (T, 3), ``pose_body`` (T, 63),
  ``pose_hand``, ``pose_jaw``, ``pose_eye``, ``trans``, ``betas``, ``gender``, ``mocap_frame_rate``,
  ``surface_model_type`` (and ``poses`` (T, 165)).
* plain SMPL: ``poses`` (T, 72) = root and 23 joints.

Only the first 22 joints (pelvis to wrists) drive the canonical skeleton; hands, jaw, eyes and DMPL
soft-tissue coefficients do not move them and are ignored.

Body model. The model file matching the clip's type and gender is looked up in the body model folder
(``--body-model-dir``, else ``$HUMANOID_RETARGET_BODY_MODELS``) in the smplx package layout
(``smplx/SMPLX_MALE.npz``, ``smplh/SMPLH_FEMALE.pkl``, ``smpl/SMPL_NEUTRAL.pkl``), flat in the folder
(``SMPLX_MALE.npz``), in the AMASS layout (``smplh/male/model.npz``) or under SMPL's download names
(``basicmodel_m_lbs_10_207_0_v1.1.0.pkl``). It is loaded with the ``smplx`` package's model classes
(``smplx.SMPL`` / ``SMPLH`` / ``SMPLX``, what ``smplx.create`` dispatches to; called directly because
AMASS's ``model.npz`` names do not carry the type ``create`` reads from a file name, and AMASS's
SMPL-H lacks the hand PCA arrays SMPL-H's constructor expects). Nothing is ever downloaded.

Joints. The rest joints are the model's joint regressor applied to the shaped template
(``smplx.lbs.vertices2joints``; by linearity regressed once per model for the template and for each
shape direction, so a clip costs 22 x K multiply-adds, not a mesh). The clip's betas are used up to
the number of shape components the model has (AMASS SMPL-H: 16; smplx itself would keep 10 of them).
The posed joints and the global joint rotations come from ``smplx.lbs.batch_rigid_transform``, the
local axis-angle rotations composed down the SMPL kinematic tree, plus ``trans``. Pose blend shapes
change the mesh, not the joints, so no vertices are skinned.

Frames. AMASS is Z up (the mocap world), in metres, so positions keep their axes; the clip is only
shifted vertically so the feet's low percentile sits on z = 0 (the rule of ``bvh_import``). SMPL's
rest pose is a T-pose with x = the body's left, y = up, z = forward. The canonical orientation of a
joint is identity for a T-pose facing +X with Z up (x forward, y left, z up), so with
``R_world`` the joint's global rotation from the model, ``R_canon = R_world @ SMPL_TO_CANONICAL``,
where ``SMPL_TO_CANONICAL`` has columns (SMPL forward, SMPL left, SMPL up) = (e_z, e_x, e_y). A T-pose
clip whose root orientation turns SMPL's rest to face +X (root rotation = SMPL_TO_CANONICAL^T)
therefore gives identity for every joint.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from humanoid_retarget.errors import InputFormatError
from humanoid_retarget.human.motion import CANONICAL_PARENTS, NUM_JOINTS, HumanMotion, J, matrices_to_wxyz

ENV_VAR = "HUMANOID_RETARGET_BODY_MODELS"

MODEL_TYPES = ("smpl", "smplh", "smplx")
MODEL_NAMES = {"smpl": "SMPL", "smplh": "SMPL-H", "smplx": "SMPL-X"}
# Where each model is obtained (free download after registering and accepting its licence).
MODEL_SITES = {
  "smpl": "https://smpl.is.tue.mpg.de",
  "smplh": "https://mano.is.tue.mpg.de (the 'Extended SMPL+H model' used by AMASS)",
  "smplx": "https://smpl-x.is.tue.mpg.de",
}
GENDERS = ("neutral", "male", "female")

# Columns are SMPL's body axes in SMPL model coordinates: forward (+z), left (+x), up (+y).
SMPL_TO_CANONICAL = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])

# The SMPL kinematic tree restricted to the 22 body joints is the canonical one.
SMPL_PARENTS = CANONICAL_PARENTS

_RATE_KEYS = ("mocap_framerate", "mocap_frame_rate", "frame_rate", "framerate", "fps")
_POSE_WIDTH = {72: "smpl", 156: "smplh", 165: "smplx"}
_USED_KEYS = frozenset({"poses", "root_orient", "pose_body", "trans", "transl", "betas", "gender",
                        "surface_model_type", *_RATE_KEYS})
# Largest number of shape components the smplx package keeps for an SMPL-X model (the rest are expression).
_SMPLX_SHAPE_SPACE = 300
_FK_CHUNK = 8192


@dataclass
class AmassClip:
  """The parameters of one AMASS clip, as read from its file.

  Attributes:
    model_type: body model the clip was fitted with: 'smpl', 'smplh' or 'smplx'.
    layout: which array layout held the pose ('poses' or 'root_orient+pose_body').
    gender: 'neutral', 'male' or 'female'.
    fps: frame rate of the capture.
    pose: (T, 22, 3) axis-angle local rotations of the 22 body joints (root first), SMPL order.
    trans: (T, 3) root translation, metres, AMASS world (Z up).
    betas: (B,) shape coefficients (zeros when the file holds none).
  """

  model_type: str
  layout: str
  gender: str
  fps: float
  pose: np.ndarray
  trans: np.ndarray
  betas: np.ndarray


@dataclass
class BodyJoints:
  """What the joints of a body model depend on: its rest joints as a linear function of betas.

  Attributes:
    model_type: 'smpl', 'smplh' or 'smplx'.
    gender: the model file's gender.
    path: the model file.
    j_template: (22, 3) rest joints of the template (SMPL model frame, Y up, metres).
    j_shapedirs: (K, 22, 3) change of the rest joints per unit of each shape coefficient.
  """

  model_type: str
  gender: str
  path: str
  j_template: np.ndarray
  j_shapedirs: np.ndarray

  @property
  def num_betas(self) -> int:
    return int(self.j_shapedirs.shape[0])

  def rest_joints(self, betas: np.ndarray) -> np.ndarray:
    """(22, 3) rest joints for ``betas`` (B,); components beyond the model's K are ignored."""
    n = min(len(betas), self.num_betas)
    return self.j_template + np.einsum("kjc,k->jc", self.j_shapedirs[:n], np.asarray(betas[:n], dtype=np.float64))


# ---------------------------------------------------------------------------------------------------
# Reading the clip.


def _scalar_text(v: np.ndarray) -> str:
  a = np.asarray(v)
  if a.size != 1:
    raise ValueError(f"expected one value, got shape {a.shape}")
  s = a.reshape(()).item()
  if isinstance(s, bytes):
    s = s.decode("latin-1")
  return str(s).strip()


def _gender(v: np.ndarray | None) -> str:
  if v is None:
    return "neutral"
  s = _scalar_text(v).lower()
  g = {"male": "male", "m": "male", "female": "female", "f": "female", "neutral": "neutral", "n": "neutral",
       "": "neutral"}.get(s)
  if g is None:
    raise ValueError(f"unknown gender '{s}' (male, female or neutral)")
  return g


def _array(data: dict[str, np.ndarray], key: str, path: str) -> np.ndarray:
  a = np.asarray(data[key])
  if a.dtype.kind not in "fiu":
    raise InputFormatError(f"AMASS array '{key}' is not numeric (dtype {a.dtype})", path)
  return a.astype(np.float64)


def _as_frames(a: np.ndarray, key: str, path: str) -> np.ndarray:
  """(T, ...) pose arrays as (T, W): accepts (T, W) and (T, n, 3)."""
  if a.ndim == 3:
    a = a.reshape(a.shape[0], -1)
  if a.ndim != 2:
    raise InputFormatError(f"AMASS array '{key}' must be (frames, values), got shape {a.shape}", path)
  return a


def _model_type_of(data: dict[str, np.ndarray], keys: set[str], path: str) -> str:
  """The body model a clip was fitted with, from its arrays (see the module doc); ``keys``: all names."""
  if "surface_model_type" in data:
    s = _scalar_text(data["surface_model_type"]).lower().replace("-", "").replace("+", "")
    for t in ("smplx", "smplh", "smpl"):  # longest first: 'smplx_locked_head' is SMPL-X
      if s.startswith(t):
        return t
  if "poses" in data:
    w = _as_frames(np.asarray(data["poses"]), "poses", path).shape[1]
    if w in _POSE_WIDTH:
      return _POSE_WIDTH[w]
    if "pose_body" not in data:
      raise InputFormatError(
        f"AMASS 'poses' has {w} values per frame; expected 72 (SMPL), 156 (SMPL-H) or 165 (SMPL-X)", path)
  if keys & {"pose_jaw", "pose_eye", "mocap_frame_rate"}:  # face parts and MoSh++'s spelling: SMPL-X
    return "smplx"
  return "smplh"


def is_amass_shape_file(path: str | os.PathLike) -> bool:
  """True for a readable .npz holding a body shape but no motion (AMASS ``shape.npz``, MoSh++
  ``*_stagei.npz``), which sit beside the clips in AMASS folders. Reads the archive's index only."""
  try:
    with zipfile.ZipFile(path) as z:
      names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
  except (OSError, zipfile.BadZipFile):
    return False
  has_pose = "poses" in names or {"root_orient", "pose_body"} <= names
  return "betas" in names and not has_pose


def read_amass(path: str | os.PathLike) -> AmassClip:
  """Read an AMASS .npz file (any layout of the module doc) without a body model."""
  path = os.fspath(path)
  try:
    npz = np.load(path, allow_pickle=False)
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise InputFormatError(f"not a readable .npz archive ({e})", path) from None
  if not isinstance(npz, np.lib.npyio.NpzFile):
    raise InputFormatError("a single .npy array, not an AMASS .npz archive", path)
  with npz:
    keys = set(npz.files)
    data = {}
    # Only the arrays used are read: stage-II files also hold pickled objects (marker metadata).
    for k in sorted(keys & _USED_KEYS):
      try:
        data[k] = npz[k]
      except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise InputFormatError(f"unreadable array '{k}' in .npz archive ({e})", path) from None
  has_pose = "poses" in data or ("root_orient" in data and "pose_body" in data)
  if not has_pose:
    if "betas" in data:
      raise InputFormatError(
        "AMASS body shape file (betas and gender only, no motion): not a clip", path)
    raise InputFormatError(
      f"not an AMASS motion: no 'poses' or 'root_orient'+'pose_body' arrays (holds {sorted(keys)})", path)
  model_type = _model_type_of(data, keys, path)
  if "root_orient" in data and "pose_body" in data:
    layout = "root_orient+pose_body"
    root = _as_frames(_array(data, "root_orient", path), "root_orient", path)
    body = _as_frames(_array(data, "pose_body", path), "pose_body", path)
    if root.shape[1] != 3 or body.shape[1] < 63 or root.shape[0] != body.shape[0]:
      raise InputFormatError(
        f"AMASS 'root_orient' {root.shape} / 'pose_body' {body.shape}: expected (T, 3) and (T, 63)", path)
    pose = np.concatenate([root, body[:, :63]], axis=1)
  else:
    layout = "poses"
    pose = _as_frames(_array(data, "poses", path), "poses", path)
    if pose.shape[1] < 66:
      raise InputFormatError(f"AMASS 'poses' has {pose.shape[1]} values per frame, fewer than 22 joints", path)
    pose = pose[:, :66]
  T = pose.shape[0]
  if T == 0:
    raise InputFormatError("AMASS clip has no frames", path)
  tkey = "trans" if "trans" in data else "transl" if "transl" in data else None
  if tkey is None:
    raise InputFormatError("AMASS clip has no root translation ('trans')", path)
  trans = _array(data, tkey, path)
  if trans.shape != (T, 3):
    raise InputFormatError(f"AMASS '{tkey}' has shape {trans.shape}, expected ({T}, 3)", path)
  if "betas" in data:
    betas = _array(data, "betas", path)
    betas = betas.mean(axis=0) if betas.ndim == 2 else betas.reshape(-1)  # per-frame copies: one shape
  else:
    betas = np.zeros(0)
  rate_key = next((k for k in _RATE_KEYS if k in data), None)
  if rate_key is None:
    raise InputFormatError(f"AMASS clip has no frame rate (none of {', '.join(_RATE_KEYS)})", path)
  try:
    fps = float(_scalar_text(data[rate_key]))
    gender = _gender(data.get("gender"))
  except ValueError as e:
    raise InputFormatError(f"AMASS clip: {e}", path) from None
  if not np.isfinite(fps) or fps <= 0:
    raise InputFormatError(f"AMASS frame rate '{rate_key}' = {fps} is not positive", path)
  for name, a in (("pose", pose), ("trans", trans), ("betas", betas)):
    if not np.all(np.isfinite(a)):
      raise InputFormatError(f"AMASS clip has non-finite values in its {name}", path)
  return AmassClip(model_type=model_type, layout=layout, gender=gender, fps=fps,
                   pose=pose.reshape(T, NUM_JOINTS, 3), trans=trans, betas=betas)


# ---------------------------------------------------------------------------------------------------
# Finding and loading the body model.


def body_model_dir_from_env(body_model_dir: str | None) -> str | None:
  """The folder to search: the argument, else $HUMANOID_RETARGET_BODY_MODELS, else None."""
  d = body_model_dir or os.environ.get(ENV_VAR, "")
  return os.path.expanduser(d) if d else None


def _listdir_lower(d: str) -> dict[str, str]:
  try:
    return {n.lower(): n for n in os.listdir(d)}
  except OSError:
    return {}


def find_body_model(body_model_dir: str, model_type: str, gender: str) -> str | None:
  """The model file for ``model_type`` and ``gender`` in ``body_model_dir``, or None.

  Searched in order (file names matched case-insensitively, .npz before .pkl):
  ``<dir>/<type>/<TYPE>_<GENDER>.npz|pkl``, ``<dir>/<TYPE>_<GENDER>.npz|pkl``,
  ``<dir>/<type>/<gender>/model.npz|pkl`` (AMASS layout) and, for SMPL, the download names
  ``basicmodel_<m|f|neutral>_lbs_*.pkl`` in ``<dir>/smpl`` or ``<dir>``.
  """
  stem = f"{model_type.upper()}_{gender.upper()}".lower()
  for d in (os.path.join(body_model_dir, model_type), body_model_dir):
    names = _listdir_lower(d)
    for ext in (".npz", ".pkl"):
      if stem + ext in names and os.path.isfile(os.path.join(d, names[stem + ext])):
        return os.path.join(d, names[stem + ext])
  for d in (os.path.join(body_model_dir, model_type, gender), os.path.join(body_model_dir, gender)):
    names = _listdir_lower(d)
    for ext in (".npz", ".pkl"):
      if "model" + ext in names and os.path.isfile(os.path.join(d, names["model" + ext])):
        return os.path.join(d, names["model" + ext])
  if model_type == "smpl":
    g = {"male": "m", "female": "f", "neutral": "neutral"}[gender]
    rx = re.compile(rf"^basicmodel_{g}_lbs_.*\.pkl$")
    for d in (os.path.join(body_model_dir, "smpl"), body_model_dir):
      for low, name in sorted(_listdir_lower(d).items()):
        if rx.match(low):
          return os.path.join(d, name)
  return None


def missing_model_message(model_type: str, gender: str, body_model_dir: str | None) -> str:
  """One line: which file is needed, where to get it, where to put it."""
  stem = f"{model_type.upper()}_{gender.upper()}"
  files = f"{stem}.npz or {stem}.pkl"
  if model_type == "smplh":
    files += f" (or AMASS's smplh/{gender}/model.npz)"
  where = (f"not found in {body_model_dir} (searched {model_type}/, {model_type}/{gender}/ and the folder itself)"
           if body_model_dir else f"no body model folder given (--body-model-dir or ${ENV_VAR})")
  put = body_model_dir or "<models>"
  return (f"this {MODEL_NAMES[model_type]} clip (gender {gender}) needs the {MODEL_NAMES[model_type]} body model "
          f"{files}: {where}; download it from {MODEL_SITES[model_type]} after registering, put it in "
          f"{os.path.join(put, model_type, '')} and pass --body-model-dir {put} or set {ENV_VAR}={put}; "
          "nothing is downloaded automatically")


def _import_smplx(path: str):
  try:
    import smplx
    import smplx.lbs  # noqa: F401
  except ImportError:
    raise InputFormatError(
      "AMASS input needs the 'smplx' package (pip install 'humanoid-retarget[amass]')", path) from None
  return smplx


def _read_model_data(model_path: str, clip_path: str) -> dict:
  """The arrays of a model file (.npz, or a latin-1 pickle as SMPL's .pkl files are)."""
  try:
    if model_path.lower().endswith(".npz"):
      with np.load(model_path, allow_pickle=True) as z:
        return {k: z[k] for k in z.files}
    with open(model_path, "rb") as f:
      return dict(pickle.load(f, encoding="latin1"))
  except ModuleNotFoundError as e:
    if e.name == "chumpy":
      raise InputFormatError(
        f"body model {model_path} holds chumpy objects (an original SMPL .pkl): pip install chumpy, or clean it "
        "with the smplx repository's tools/clean_ch.py", clip_path) from None
    raise InputFormatError(f"cannot read body model {model_path} ({e})", clip_path) from None
  except Exception as e:  # noqa: BLE001 - any unreadable model file is one input error
    raise InputFormatError(f"cannot read body model {model_path} ({type(e).__name__}: {e})", clip_path) from None


def _fill_hand_pca(data: dict) -> dict:
  """AMASS's SMPL-H has no hand PCA arrays; smplx's SMPLH needs them (unused with use_pca=False)."""
  data = dict(data)
  for side in ("l", "r"):
    data.setdefault(f"hands_components{side}", np.eye(45))
    data.setdefault(f"hands_mean{side}", np.zeros(45))
  return data


def _build_body_joints(model_path: str, model_type: str, gender: str, clip_path: str) -> BodyJoints:
  smplx = _import_smplx(clip_path)
  import torch
  from smplx.lbs import vertices2joints
  from smplx.utils import Struct

  ext = "npz" if model_path.lower().endswith(".npz") else "pkl"
  kw = dict(gender=gender, ext=ext, use_pca=False, flat_hand_mean=True, batch_size=1, dtype=torch.float64)
  try:
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints notes on the number of shape components
      if model_type == "smplx":
        model = smplx.SMPLX(model_path, num_betas=_SMPLX_SHAPE_SPACE, **kw)
        shapedirs = model.shapedirs  # (V, 3, K): shape part only, as smplx splits shape and expression
      else:
        data = _read_model_data(model_path, clip_path)
        if model_type == "smplh":
          data = _fill_hand_pca(data)
          model = smplx.SMPLH(model_path, data_struct=Struct(**data), **kw)
        else:
          model = smplx.SMPL(model_path, data_struct=Struct(**data), **kw)
        # Every column of an SMPL / SMPL-H shape space is a body shape direction (smplx keeps at most 10
        # of AMASS SMPL-H's 16), so the model's full space is used.
        sd = data["shapedirs"]
        sd = np.asarray(sd.todense() if hasattr(sd, "todense") else sd, dtype=np.float64)
        shapedirs = torch.as_tensor(sd.reshape(sd.shape[0], 3, -1))
  except InputFormatError:
    raise
  except Exception as e:  # noqa: BLE001 - a malformed model file is one input error
    msg = f"{type(e).__name__}: {e}".splitlines()[0]
    raise InputFormatError(
      f"cannot load {MODEL_NAMES[model_type]} body model {model_path} with smplx ({msg}); is it the model "
      f"from {MODEL_SITES[model_type].split(' ')[0]}?", clip_path) from None
  parents = [int(p) for p in model.parents[:NUM_JOINTS]]
  parents[0] = -1
  if tuple(parents) != tuple(SMPL_PARENTS) or model.J_regressor.shape[0] < NUM_JOINTS:
    raise InputFormatError(f"body model {model_path} does not have SMPL's kinematic tree", clip_path)
  with torch.no_grad():
    jreg = model.J_regressor[:NUM_JOINTS].to(torch.float64)
    v_template = model.v_template.to(torch.float64)
    sd = shapedirs.to(torch.float64)
    j_template = vertices2joints(jreg, v_template[None])[0]
    j_shapedirs = vertices2joints(jreg, sd.permute(2, 0, 1))  # one "mesh" per shape direction
  return BodyJoints(model_type=model_type, gender=gender, path=model_path,
                    j_template=j_template.numpy().copy(), j_shapedirs=j_shapedirs.numpy().copy())


@lru_cache(maxsize=8)
def _cached_body_joints(model_path: str, mtime_ns: int, size: int, model_type: str, gender: str) -> BodyJoints:
  return _build_body_joints(model_path, model_type, gender, "")


def load_body_joints(model_path: str, model_type: str, gender: str, clip_path: str = "") -> BodyJoints:
  """The joint part of a body model file (cached per file while it is unchanged)."""
  st = os.stat(model_path)
  try:
    return _cached_body_joints(model_path, st.st_mtime_ns, st.st_size, model_type, gender)
  except InputFormatError as e:
    raise InputFormatError(e.message, clip_path or e.path) from None


# ---------------------------------------------------------------------------------------------------
# Forward kinematics.


def body_forward_kinematics(bj: BodyJoints, pose: np.ndarray, betas: np.ndarray,
                            trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Posed joints of the 22 body joints with smplx's kinematic chain.

  Args:
    bj: the body model's joints.
    pose: (T, 22, 3) axis-angle local rotations (root first).
    betas: (B,) shape coefficients.
    trans: (T, 3) root translation.
  Returns:
    positions (T, 22, 3) in the clip's world and global rotations (T, 22, 3, 3) mapping SMPL model
    coordinates to the world.
  """
  import torch
  from smplx.lbs import batch_rigid_transform, batch_rodrigues

  T = pose.shape[0]
  rest = torch.as_tensor(bj.rest_joints(betas))
  parents = torch.as_tensor(SMPL_PARENTS, dtype=torch.long)
  pos = np.empty((T, NUM_JOINTS, 3))
  rot = np.empty((T, NUM_JOINTS, 3, 3))
  with torch.no_grad():
    for s in range(0, T, _FK_CHUNK):
      e = min(T, s + _FK_CHUNK)
      n = e - s
      rm = batch_rodrigues(torch.as_tensor(pose[s:e].reshape(-1, 3))).reshape(n, NUM_JOINTS, 3, 3)
      posed, A = batch_rigid_transform(rm, rest.expand(n, -1, -1), parents, dtype=torch.float64)
      pos[s:e] = posed.numpy()
      rot[s:e] = A[..., :3, :3].numpy()
  pos += trans[:, None, :]
  return pos, rot


def _floor_offset(pos: np.ndarray) -> float:
  """Height of the floor under a clip: the feet's low points, as ``bvh_import`` places it."""
  foot_z = np.minimum(pos[:, J("left_foot"), 2], pos[:, J("right_foot"), 2])
  ankle_z = np.minimum(pos[:, J("left_ankle"), 2], pos[:, J("right_ankle"), 2])
  low = np.minimum(foot_z, ankle_z - 0.05)
  return float(np.percentile(low, 2.0)) - 0.02  # toe joints sit ~2 cm above the sole


def load_amass(path: str | os.PathLike, body_model_dir: str | None = None) -> HumanMotion:
  """Read an AMASS clip (SMPL, SMPL-H or SMPL-X layout) into the canonical human motion.

  Args:
    path: the .npz file (recognised by content).
    body_model_dir: folder with the body model files (default: $HUMANOID_RETARGET_BODY_MODELS).
  Returns:
    HumanMotion at the clip's frame rate: positions (T, 22, 3) metres, Z up, floor at z = 0;
    rotations (T, 22, 4) wxyz, identity for a T-pose facing +X.
  Raises:
    InputFormatError: unreadable or non-motion file, missing or unloadable body model, no smplx.
  """
  path = os.fspath(path)
  clip = read_amass(path)
  model_dir = body_model_dir_from_env(body_model_dir)
  model_path = find_body_model(model_dir, clip.model_type, clip.gender) if model_dir else None
  if model_path is None:
    raise InputFormatError(missing_model_message(clip.model_type, clip.gender, model_dir), path)
  bj = load_body_joints(model_path, clip.model_type, clip.gender, path)
  pos, R_world = body_forward_kinematics(bj, clip.pose, clip.betas, clip.trans)
  floor = _floor_offset(pos)
  pos[..., 2] -= floor
  rot = matrices_to_wxyz(R_world @ SMPL_TO_CANONICAL)
  if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(rot))):
    raise InputFormatError("non-finite joint positions after the body model", path)
  meta = {
    "format": "amass",
    "model_type": clip.model_type,
    "layout": clip.layout,
    "gender": clip.gender,
    "fps": clip.fps,
    "model_file": model_path,
    "num_betas": min(len(clip.betas), bj.num_betas),
    "betas_in_file": int(len(clip.betas)),
    "floor_offset": floor,
    "units": "m",
    "up_axis": [0.0, 0.0, 1.0],
  }
  return HumanMotion(fps=clip.fps, positions=pos, rotations=rot, source=os.path.basename(path), meta=meta)
