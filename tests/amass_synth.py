"""Synthetic SMPL / SMPL-H / SMPL-X body model files and AMASS clips for the AMASS tests.

The model files carry every array the smplx package reads (v_template, shapedirs, posedirs,
J_regressor, weights, kintree_table, f; hand PCA for SMPL-H / SMPL-X; landmarks for SMPL-X) with two
vertices per joint, written under the file names and folders real installs use. Their 22 body
joints form an SMPL-like adult (about 1.7 m tall) in SMPL's model frame: x = left, y = up,
z = forward, T-pose. ``hand_fk`` is an independent forward kinematics to check the importer with.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import scipy.sparse
from scipy.spatial.transform import Rotation

SMPL_PARENTS_22 = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
# Rest joints (metres) of the left side and the centre line; the right side mirrors x.
_REST_22 = np.array([
  [0.0, -0.22, 0.02],      # pelvis
  [0.07, -0.31, 0.02],     # left_hip
  [-0.07, -0.31, 0.02],    # right_hip
  [0.0, -0.11, 0.02],      # spine1 (straight above the pelvis)
  [0.10, -0.69, 0.015],    # left_knee
  [-0.10, -0.69, 0.015],   # right_knee
  [0.0, 0.025, 0.03],      # spine2
  [0.09, -1.10, -0.025],   # left_ankle
  [-0.09, -1.10, -0.025],  # right_ankle
  [0.0, 0.08, 0.03],       # spine3
  [0.12, -1.16, 0.095],    # left_foot
  [-0.12, -1.16, 0.095],   # right_foot
  [0.0, 0.29, -0.01],      # neck
  [0.075, 0.205, 0.005],   # left_collar
  [-0.075, 0.205, 0.005],  # right_collar
  [0.0, 0.36, 0.04],       # head
  [0.18, 0.23, -0.015],    # left_shoulder
  [-0.18, 0.23, -0.015],   # right_shoulder
  [0.435, 0.22, -0.04],    # left_elbow
  [-0.435, 0.22, -0.04],   # right_elbow
  [0.69, 0.228, -0.045],   # left_wrist
  [-0.69, 0.228, -0.045],  # right_wrist
])
NUM_JOINTS = {"smpl": 24, "smplh": 52, "smplx": 55}
SHAPE_COLUMNS = {"smpl": 10, "smplh": 16, "smplx": 400}  # SMPL v1.1, AMASS SMPL+H, SMPL-X v1.1
GENDER_SCALE = {"neutral": 1.0, "male": 1.05, "female": 0.93}
GENDER_SEED = {"neutral": 1, "male": 2, "female": 3}
TYPE_SEED = {"smpl": 10, "smplh": 20, "smplx": 30}

# Axes of SMPL's body (forward, left, up) as columns: the turn from SMPL's rest to facing +X, Z up.
SMPL_TO_CANONICAL = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
# Root orientation that makes SMPL's rest pose face +X in AMASS's Z-up world.
FACE_X_ROOT = Rotation.from_matrix(SMPL_TO_CANONICAL.T).as_rotvec()


def _hand_joints(wrist: np.ndarray, side: float) -> list[np.ndarray]:
  """15 finger joints (5 fingers x 3) beyond a wrist, along +x (left) or -x (right)."""
  out = []
  for f in range(5):
    for k in range(3):
      out.append(wrist + np.array([side * (0.08 + 0.03 * k), 0.0, 0.03 - 0.015 * f]))
  return out


def rest_joints_and_parents(model_type: str) -> tuple[np.ndarray, list[int]]:
  """All rest joints (N, 3) and parents of a model type (SMPL's trees)."""
  J = [p for p in _REST_22]
  parents = list(SMPL_PARENTS_22)
  lw, rw = _REST_22[20], _REST_22[21]
  if model_type == "smpl":
    J += [lw + np.array([0.08, -0.01, -0.007]), rw + np.array([-0.08, -0.01, -0.007])]
    parents += [20, 21]
  else:
    if model_type == "smplx":
      head = _REST_22[15]
      J += [head + np.array([0.0, -0.02, 0.03]), head + np.array([0.03, 0.05, 0.08]),
            head + np.array([-0.03, 0.05, 0.08])]
      parents += [15, 15, 15]
    for wrist_idx, side in ((20, 1.0), (21, -1.0)):
      first = len(J)
      J += _hand_joints(_REST_22[wrist_idx], side)
      for f in range(5):
        base = first + 3 * f
        parents += [wrist_idx, base, base + 1]
  return np.array(J), parents


def build_model(model_type: str, gender: str) -> dict[str, np.ndarray]:
  """Arrays of a synthetic body model (numpy, SMPL's array names and shapes)."""
  rng = np.random.default_rng(TYPE_SEED[model_type] + GENDER_SEED[gender])
  J, parents = rest_joints_and_parents(model_type)
  J = J * GENDER_SCALE[gender]
  N = len(J)
  V = 2 * N
  d = rng.normal(size=(N, 3)) * 0.02
  v = np.empty((V, 3))
  v[0::2] = J + d
  v[1::2] = J - d
  jreg = np.zeros((N, V))
  jreg[np.arange(N), 2 * np.arange(N)] = 0.5
  jreg[np.arange(N), 2 * np.arange(N) + 1] = 0.5
  weights = np.zeros((V, N))
  weights[np.arange(V), np.arange(V) // 2] = 1.0
  kin = np.array([[4294967295] + parents[1:], list(range(N))], dtype=np.int64)
  faces = np.array([[i, i + 1, i + 2] for i in range(0, V - 2, 2)], dtype=np.uint32)
  m = {
    "v_template": v,
    "shapedirs": rng.normal(size=(V, 3, SHAPE_COLUMNS[model_type])) * 0.01,
    "posedirs": rng.normal(size=(V, 3, 9 * (N - 1))) * 1e-3,
    "J_regressor": jreg,
    "weights": weights,
    "kintree_table": kin,
    "f": faces,
  }
  if model_type in ("smplh", "smplx"):
    for s in ("l", "r"):
      m[f"hands_components{s}"] = np.linalg.qr(rng.normal(size=(45, 45)))[0]
      m[f"hands_mean{s}"] = rng.normal(size=45) * 0.1
  if model_type == "smplx":
    m["lmk_faces_idx"] = np.arange(5, dtype=np.int64)
    m["lmk_bary_coords"] = np.full((5, 3), 1.0 / 3.0)
  return m


def write_model(path: str, m: dict[str, np.ndarray], sparse_regressor: bool = False) -> str:
  """Write model arrays as .npz or as a latin-1-loadable pickle (.pkl), SMPL's two formats."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if path.endswith(".npz"):
    np.savez(path, **m)
  else:
    m = dict(m)
    if sparse_regressor:  # SMPL's .pkl files hold the regressor as a scipy sparse matrix
      m["J_regressor"] = scipy.sparse.csc_matrix(m["J_regressor"])
    with open(path, "wb") as f:
      pickle.dump(m, f, protocol=2)
  return path


def shape_part(model_type: str, shapedirs: np.ndarray) -> np.ndarray:
  """The body-shape columns of a model's shapedirs (SMPL-X: the first 300 of 400; others: all)."""
  if model_type == "smplx":
    return shapedirs[..., :300] if shapedirs.shape[-1] >= 400 else shapedirs[..., :10]
  return shapedirs


def hand_fk(m: dict[str, np.ndarray], model_type: str, pose: np.ndarray, betas: np.ndarray,
            trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Reference forward kinematics of the 22 body joints.

  Args: m: model arrays; pose (T, 22, 3) axis-angle; betas (B,); trans (T, 3).
  Returns: positions (T, 22, 3) and global rotations (T, 22, 3, 3), SMPL model axes to world.
  """
  sd = shape_part(model_type, np.asarray(m["shapedirs"]))
  n = min(len(betas), sd.shape[-1])
  v = m["v_template"] + sd[..., :n] @ betas[:n]
  rest = np.asarray(m["J_regressor"])[:22] @ v
  T = pose.shape[0]
  pos = np.zeros((T, 22, 3))
  G = np.zeros((T, 22, 3, 3))
  for t in range(T):
    for j in range(22):
      R = Rotation.from_rotvec(pose[t, j]).as_matrix()
      p = SMPL_PARENTS_22[j]
      if p < 0:
        G[t, j] = R
        pos[t, j] = rest[j]
      else:
        G[t, j] = G[t, p] @ R
        pos[t, j] = pos[t, p] + G[t, p] @ (rest[j] - rest[p])
  return pos + trans[:, None], G


def install_models(root: str) -> dict[tuple[str, str], dict[str, np.ndarray]]:
  """A body model folder with every layout the importer searches; returns the models by (type, gender).

  smplx/SMPLX_NEUTRAL.npz, SMPLX_MALE.npz (flat), smplh/SMPLH_MALE.pkl (smplx layout, with hand PCA),
  smplh/female/model.npz (AMASS layout, no hand PCA, 16 betas), smpl/SMPL_NEUTRAL.pkl (sparse
  regressor), smpl/basicmodel_f_lbs_10_207_0_v1.1.0.pkl (SMPL's download name).
  """
  models = {}
  spec = [
    ("smplx", "neutral", "smplx/SMPLX_NEUTRAL.npz", False),
    ("smplx", "male", "SMPLX_MALE.npz", False),
    ("smplh", "male", "smplh/SMPLH_MALE.pkl", False),
    ("smplh", "female", "smplh/female/model.npz", False),
    ("smpl", "neutral", "smpl/SMPL_NEUTRAL.pkl", True),
    ("smpl", "female", "smpl/basicmodel_f_lbs_10_207_0_v1.1.0.pkl", True),
  ]
  for t, g, rel, sparse in spec:
    m = build_model(t, g)
    if rel.endswith("model.npz"):
      m = {k: a for k, a in m.items() if not k.startswith("hands_")}
    write_model(os.path.join(root, rel), m, sparse_regressor=sparse)
    models[(t, g)] = m
  return models


def walk_pose(T: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
  """A steady walk along +X: local axis-angle pose (T, 22, 3) and trans (T, 3), AMASS world."""
  t = np.arange(T) / fps
  ph = 2 * np.pi * 0.9 * t
  s = np.sin(ph)
  pose = np.zeros((T, 22, 3))
  pose[:, 0] = FACE_X_ROOT
  pose[:, 1, 0] = -0.4 * s  # hip flexion: negative about SMPL's x (left) axis swings the leg forward
  pose[:, 2, 0] = 0.4 * s
  pose[:, 4, 0] = 0.1 + 0.6 * np.clip(np.sin(ph + 1.2), 0, None)
  pose[:, 5, 0] = 0.1 + 0.6 * np.clip(np.sin(ph + np.pi + 1.2), 0, None)
  pose[:, 16, 2] = -1.2  # arms down from the T-pose
  pose[:, 17, 2] = 1.2
  pose[:, 16, 0] = 0.25 * s
  pose[:, 17, 0] = -0.25 * s
  pose[:, 18, 1] = 0.3
  pose[:, 19, 1] = -0.3
  trans = np.stack([0.9 * t, np.zeros(T), 1.2 + 0.015 * np.cos(2 * ph)], axis=-1)
  return pose, trans


def random_pose(rng: np.random.Generator, T: int) -> tuple[np.ndarray, np.ndarray]:
  pose = rng.normal(size=(T, 22, 3)) * 0.4
  pose[:, 0] = FACE_X_ROOT + rng.normal(size=(T, 3)) * 0.2
  trans = rng.normal(size=(T, 3)) * 0.3 + np.array([0.0, 0.0, 1.2])
  return pose, trans


def write_smplh_clip(path: str, pose: np.ndarray, trans: np.ndarray, betas: np.ndarray, gender: str,
                     fps: float, gender_bytes: bool = False, seed: int = 0) -> str:
  """AMASS SMPL-H layout: poses (T, 156) with random hands, dmpls, mocap_framerate."""
  rng = np.random.default_rng(seed)
  T = pose.shape[0]
  poses = np.concatenate([pose.reshape(T, 66), rng.normal(size=(T, 90)) * 0.3], axis=1)
  g = np.array(gender.encode()) if gender_bytes else np.array(gender)
  np.savez(path, poses=poses, trans=trans, betas=betas, gender=g, mocap_framerate=np.array(fps),
           dmpls=rng.normal(size=(T, 8)))
  return path


def write_smplx_clip(path: str, pose: np.ndarray, trans: np.ndarray, betas: np.ndarray, gender: str,
                     fps: float, seed: int = 0) -> str:
  """AMASS SMPL-X stage-II layout (MoSh++ output keys)."""
  rng = np.random.default_rng(seed)
  T = pose.shape[0]
  flat = pose.reshape(T, 66)
  hand = rng.normal(size=(T, 90)) * 0.3
  jaw = rng.normal(size=(T, 3)) * 0.2
  eye = rng.normal(size=(T, 6)) * 0.2
  poses = np.concatenate([flat, jaw, eye, hand], axis=1)
  np.savez(path, gender=np.array(gender), surface_model_type=np.array("smplx"),
           mocap_frame_rate=np.array(fps), mocap_time_length=np.array(T / fps), trans=trans, poses=poses,
           betas=betas, num_betas=np.array(len(betas)), root_orient=flat[:, :3], pose_body=flat[:, 3:],
           pose_hand=hand, pose_jaw=jaw, pose_eye=eye,
           markers_latent_vids=np.array({"C7": 3832, "LFHD": 707}, dtype=object))  # pickled, as MoSh++ writes
  return path


def write_smpl_clip(path: str, pose: np.ndarray, trans: np.ndarray, betas: np.ndarray, gender: str,
                    fps: float, seed: int = 0) -> str:
  """Plain SMPL: poses (T, 72) including the two hand joints."""
  rng = np.random.default_rng(seed)
  T = pose.shape[0]
  poses = np.concatenate([pose.reshape(T, 66), rng.normal(size=(T, 6)) * 0.3], axis=1)
  np.savez(path, poses=poses, trans=trans, betas=betas, gender=np.array(gender), mocap_framerate=np.array(fps))
  return path
