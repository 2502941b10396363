"""Human and robot feature vectors for the neural retargeter, over whole clips (numpy).

Everything is expressed in the *human heading frame*: a yaw-only frame at the human root (the
midpoint of the hips, the same point the kinematic retargeter's root link follows) whose x axis is
the facing direction (perpendicular to the hip line, on the floor). Human quantities are divided
by the human leg length (hip -> knee -> ankle), so skeletons of different sizes and proportions
look alike; robot quantities stay in metres and radians (there is one robot).

Human features, (T, HUMAN_DIM) per clip, in this order:
  root planar velocity (2, leg lengths/s), heading rate (1, rad/s), root height above the clip's
  floor (1, leg lengths), root orientation 6D (6, pelvis frame in the heading frame),
  joint positions relative to the root (22 x 3), joint velocities (22 x 3, leg lengths/s).
Robot features, (T, robot_dim(robot)):
  root height (1, m), root xy offset from the scaled human root (2, m, heading frame),
  root velocity (3, m/s, heading frame), root orientation 6D (6, heading frame),
  body positions relative to the root (B x 3), body velocities (B x 3), joint angles (J).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from humanoid_retarget.human.motion import NUM_JOINTS, J, frame_from_lateral

HEADING_SIGMA_FRAMES = 1.0  # low-pass of the (unwrapped) heading angle, in frames at 30 fps
HUMAN_DIM = 2 + 1 + 1 + 6 + NUM_JOINTS * 3 * 2


def _rotz(yaw: np.ndarray) -> np.ndarray:
  """Yaw angles (T,) -> rotations about Z (T, 3, 3)."""
  c, s = np.cos(yaw), np.sin(yaw)
  R = np.zeros(yaw.shape + (3, 3))
  R[..., 0, 0], R[..., 0, 1] = c, -s
  R[..., 1, 0], R[..., 1, 1] = s, c
  R[..., 2, 2] = 1.0
  return R


def mat_to_6d(R: np.ndarray) -> np.ndarray:
  """Rotation matrices (..., 3, 3) -> first two columns (..., 6)."""
  return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


def sixd_to_mat(x: np.ndarray) -> np.ndarray:
  """(..., 6) -> rotation matrices (..., 3, 3) by Gram-Schmidt."""
  a, b = x[..., :3], x[..., 3:6]
  c0 = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-9)
  b = b - np.sum(b * c0, axis=-1, keepdims=True) * c0
  c1 = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-9)
  c2 = np.cross(c0, c1)
  return np.stack([c0, c1, c2], axis=-1)


def human_root(positions: np.ndarray) -> np.ndarray:
  """Root point: midpoint of the hips. (T, 22, 3) -> (T, 3)."""
  return 0.5 * (positions[:, J("left_hip")] + positions[:, J("right_hip")])


def human_leg_length(positions: np.ndarray) -> float:
  """Median hip -> knee -> ankle length, mean of both sides (m)."""
  out = 0.0
  for side in ("left", "right"):
    a, b, c = positions[:, J(f"{side}_hip")], positions[:, J(f"{side}_knee")], positions[:, J(f"{side}_ankle")]
    out += float(np.median(np.linalg.norm(b - a, axis=-1)) + np.median(np.linalg.norm(c - b, axis=-1)))
  return max(out / 2.0, 1e-3)


def hampel(x: np.ndarray, threshold: float, size: int = 5) -> np.ndarray:
  """Replace isolated outliers of a track (T,) or (T, D) by the running median of ``size`` frames.

  A frame is an outlier when it lies further than ``threshold`` (Euclidean over D) from the
  per-axis median of its window. Smooth tracks are left exactly as they are (on a monotone stretch
  the median is the centre sample), so clean motion is not altered; one-frame spikes are removed.
  """
  from scipy.ndimage import median_filter

  if x.shape[0] < size:
    return x
  x2 = x.reshape(x.shape[0], -1)
  med = median_filter(x2, size=(size, 1), mode="nearest")
  bad = np.linalg.norm(x2 - med, axis=1) > threshold
  out = x2.copy()
  out[bad] = med[bad]
  return out.reshape(x.shape)


def human_heading(positions: np.ndarray, fps: float) -> np.ndarray:
  """Facing yaw (T,) rad, unwrapped, de-spiked and lightly low-passed: x axis perpendicular to the hips."""
  lat = positions[:, J("left_hip")] - positions[:, J("right_hip")]
  # forward = lateral x up
  yaw = np.unwrap(np.arctan2(-lat[:, 0], lat[:, 1]))
  if yaw.shape[0] > 3:
    yaw = hampel(yaw, 0.15)
    yaw = gaussian_filter1d(yaw, HEADING_SIGMA_FRAMES * fps / 30.0, mode="nearest")
  return yaw


def _floor(positions: np.ndarray) -> float:
  """The clip's floor height as seen by the ankles (5th percentile of the lower ankle)."""
  z = np.minimum(positions[:, J("left_ankle"), 2], positions[:, J("right_ankle"), 2])
  return float(np.percentile(z, 5))


def _vel(x: np.ndarray, fps: float) -> np.ndarray:
  return np.gradient(x, axis=0) * fps if x.shape[0] > 1 else np.zeros_like(x)


@dataclass
class HumanFrame:
  """What decoding needs from the human side: the heading frame and the scaled root track.

  Attributes: yaw (T,), root (T, 3) human root (m), leg (human leg length, m).
  """

  yaw: np.ndarray
  root: np.ndarray
  leg: float


def human_features(positions: np.ndarray, fps: float) -> tuple[np.ndarray, HumanFrame]:
  """Human features (T, HUMAN_DIM) float32 of a clip and its heading frame.

  Args: positions: (T, 22, 3) canonical joint positions (m, Z up); fps: frame rate.
  """
  P = np.asarray(positions, dtype=np.float64)
  T = P.shape[0]
  leg = human_leg_length(P)
  yaw = human_heading(P, fps)
  Rh = _rotz(yaw)  # heading -> world
  RhT = np.swapaxes(Rh, -1, -2)
  root = hampel(human_root(P), 0.05 * leg)  # spikes on a hip must not move the whole body
  v_root = np.einsum("tij,tj->ti", RhT, _vel(root, fps))[:, :2] / leg
  dyaw = _vel(yaw, fps)[:, None]
  height = ((root[:, 2] - _floor(P)) / leg)[:, None]
  lat = P[:, J("left_hip")] - P[:, J("right_hip")]
  up = 0.5 * (P[:, J("spine1")] + P[:, J("spine3")]) - root
  R_pelvis = frame_from_lateral(lat, up)
  ori = mat_to_6d(RhT @ R_pelvis)
  rel = np.einsum("tij,tkj->tki", RhT, P - root[:, None]) / leg
  vel = np.einsum("tij,tkj->tki", RhT, _vel(P, fps)) / leg
  out = np.concatenate([v_root, dyaw, height, ori, rel.reshape(T, -1), vel.reshape(T, -1)], axis=1)
  return out.astype(np.float32), HumanFrame(yaw=yaw, root=root, leg=leg)


# ---------------------------------------------------------------- robot side


def robot_leg_length(robot) -> float:
  """The robot's leg length for root scaling, as the kinematic retargeter measures it.

  Its reach from the hip to the ankle link point (``Robot.chain_reach``), averaged over both sides,
  so that the robot root = scaled human root + a small, local offset (no drift along a walk).
  Falls back to the rest-pose hip -> knee -> ankle length for robots without ``chain_reach``.
  """
  links = robot.config.links
  by_human = {lk.human[0]: k for k, lk in enumerate(links) if len(lk.human) == 1}
  if hasattr(robot, "chain_reach"):
    reach = [robot.chain_reach(by_human[f"{s}_hip"], by_human[f"{s}_ankle"]) for s in ("left", "right")
             if f"{s}_hip" in by_human and f"{s}_ankle" in by_human]
    if reach:
      return float(np.mean(reach))
  index = {lk.name: k for k, lk in enumerate(links)}
  order = ("left_hip", "left_knee", "left_ankle")
  leg = sorted([lk for lk in links if lk.human[0] in order], key=lambda lk: order.index(lk.human[0]))
  pts = [robot.rest_point(index[lk.name]) for lk in leg]
  return float(sum(np.linalg.norm(b - a) for a, b in zip(pts[:-1], pts[1:])))


@dataclass(frozen=True)
class RobotLayout:
  """Column ranges of the robot feature vector."""

  num_bodies: int
  num_joints: int

  @property
  def dim(self) -> int:
    return 12 + 6 * self.num_bodies + self.num_joints

  def slices(self) -> dict[str, slice]:
    B, Jn = self.num_bodies, self.num_joints
    s = {"height": slice(0, 1), "offset": slice(1, 3), "root_vel": slice(3, 6), "root_6d": slice(6, 12)}
    s["body_pos"] = slice(12, 12 + 3 * B)
    s["body_vel"] = slice(12 + 3 * B, 12 + 6 * B)
    s["joints"] = slice(12 + 6 * B, 12 + 6 * B + Jn)
    return s


def robot_layout(robot) -> RobotLayout:
  return RobotLayout(robot.model.num_bodies, robot.model.num_joints)


def robot_features(robot, motion, frame: HumanFrame) -> np.ndarray:
  """Robot features (T, layout.dim) float32 of a robot motion paired with a human clip.

  Args: robot: the Robot; motion: RobotMotion (T frames, same fps as the human);
    frame: the human's heading frame from :func:`human_features`.
  """
  from scipy.spatial.transform import Rotation

  fps = motion.fps
  T = motion.num_frames
  Rh = _rotz(frame.yaw)
  RhT = np.swapaxes(Rh, -1, -2)
  root = np.asarray(motion.root_pos, dtype=np.float64)
  scale = robot_leg_length(robot) / frame.leg
  off = np.einsum("tij,tj->ti", RhT, root - frame.root * scale)[:, :2]
  v_root = np.einsum("tij,tj->ti", RhT, _vel(root, fps))
  R_root = Rotation.from_quat(motion.root_quat, scalar_first=True).as_matrix()
  ori = mat_to_6d(RhT @ R_root)
  bp = np.asarray(motion.body_pos_w, dtype=np.float64)
  rel = np.einsum("tij,tkj->tki", RhT, bp - root[:, None])
  vel = np.einsum("tij,tkj->tki", RhT, _vel(bp, fps))
  out = np.concatenate([root[:, 2:3], off, v_root, ori, rel.reshape(T, -1), vel.reshape(T, -1),
                        np.asarray(motion.dof_pos)], axis=1)
  return out.astype(np.float32)


def root_drift(robot, root: np.ndarray, frame: HumanFrame, sigma_frames: float) -> np.ndarray:
  """The slow horizontal drift (T, 2) m of a robot root from the scaled human root path.

  A Gaussian low-pass (``sigma_frames``; the ends padded by point reflection, so a steady drift stays
  a straight line up to the last frame) of ``root - scaled human root`` in x, y: what a
  simulated robot loses or gains along a walk (metres over a clip), while the faster sway stays in the
  difference. Subtracting it from the root (and every body) puts a physics motion back on the human's
  path, as the kinematic retargeter and ``decode_robot`` place the root; then the ``offset`` feature
  stays local (a few cm) instead of growing with the clip.

  Args: root (T, 3) m; frame: the human's heading frame; sigma_frames > 0.
  """
  scale = robot_leg_length(robot) / frame.leg
  d = np.asarray(root, dtype=np.float64)[:, :2] - frame.root[:, :2] * scale
  n = int(np.ceil(4 * sigma_frames))
  padded = np.pad(d, ((n, n), (0, 0)), mode="reflect", reflect_type="odd")
  return gaussian_filter1d(padded, sigma_frames, axis=0, mode="nearest")[n:n + len(d)]


def decode_robot(robot, feats: np.ndarray, frame: HumanFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Robot features (T, D) -> root position (T, 3), root rotation (T, 3, 3), joint angles (T, J).

  The root is placed drift-free: the scaled human root plus the predicted offset (heading frame).
  """
  sl = robot_layout(robot).slices()
  Rh = _rotz(frame.yaw)
  scale = robot_leg_length(robot) / frame.leg
  off = np.zeros((feats.shape[0], 3))
  off[:, :2] = feats[:, sl["offset"]]
  root = frame.root * scale + np.einsum("tij,tj->ti", Rh, off)
  root[:, 2] = feats[:, 0]
  R = Rh @ sixd_to_mat(feats[:, sl["root_6d"]].astype(np.float64))
  q = feats[:, sl["joints"]].astype(np.float64)
  return root, R, q


# ---------------------------------------------------------------- input corruption (NMR Fig. 6)


def corrupt_positions(positions: np.ndarray, rng: np.random.Generator, jitter_m: float = 0.01,
                      spike_prob: float = 0.01, spike_m: float = 0.15) -> np.ndarray:
  """Noisy copy of joint positions (T, 22, 3): Gaussian jitter on every coordinate plus spikes.

  A spike displaces one joint on one frame by a random direction of length ``spike_m`` (m); each
  (frame, joint) spikes with probability ``spike_prob``.
  """
  P = np.array(positions, dtype=np.float64, copy=True)
  if jitter_m > 0:
    P += rng.normal(0.0, jitter_m, size=P.shape)
  if spike_prob > 0 and spike_m > 0:
    mask = rng.random(P.shape[:2]) < spike_prob
    n = int(mask.sum())
    if n:
      d = rng.normal(size=(n, 3))
      d /= np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
      P[mask] += d * spike_m * rng.uniform(0.5, 1.0, size=(n, 1))
  return P


# Bone groups for proportion augmentation: joint index -> group (the bone from its parent to it).
_BONE_GROUP = {1: "hip", 2: "hip", 4: "thigh", 5: "thigh", 7: "shin", 8: "shin", 10: "foot", 11: "foot",
               3: "spine", 6: "spine", 9: "spine", 12: "neck", 15: "head", 13: "collar", 14: "collar",
               16: "shoulder", 17: "shoulder", 18: "upper_arm", 19: "upper_arm", 20: "forearm", 21: "forearm"}


def random_bone_scales(rng: np.random.Generator, sigma: float = 0.1) -> dict[str, float]:
  """Per bone group length factors, log-normal (left and right alike), clipped to [0.75, 1.3]."""
  groups = sorted(set(_BONE_GROUP.values()))
  return {g: float(np.clip(np.exp(rng.normal(0.0, sigma)), 0.75, 1.3)) for g in groups}


def scale_bones(positions: np.ndarray, scales: dict[str, float]) -> np.ndarray:
  """Same motion with other body proportions: every bone keeps its direction, its length is scaled.

  The root trajectory is scaled by the change of leg length (a longer-legged body covers more
  ground with the same gait) and the body is set on the same floor, so the kinematic retargeter,
  which follows bone directions and scales the root by leg length, gives the same robot motion.
  Args: positions (T, 22, 3); scales: group -> factor (see ``random_bone_scales``). Returns (T, 22, 3).
  """
  from humanoid_retarget.human.motion import CANONICAL_PARENTS

  P = np.asarray(positions, dtype=np.float64)
  out = np.empty_like(P)
  out[:, 0] = P[:, 0]
  for j in range(1, P.shape[1]):
    p = CANONICAL_PARENTS[j]
    out[:, j] = out[:, p] + scales.get(_BONE_GROUP[j], 1.0) * (P[:, j] - P[:, p])
  k = human_leg_length(out) / human_leg_length(P)
  floor = _floor(P)
  r0 = human_root(P)
  target = r0 * k
  target[:, 2] = floor + (r0[:, 2] - floor) * k
  out += (target - human_root(out))[:, None]
  out[..., 2] += floor - _floor(out)
  return out
