"""From a human motion to per-frame targets for the robot's tracked points.

Scaling comes from segment lengths measured on both skeletons (no scale tables), and rest poses are
aligned by construction: targets are positions along human bone directions and frames built from
joint geometry, so no per-skeleton rotation offsets exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from humanoid_retarget.human.contacts import ContactConfig, contact_phases, detect_contacts
from humanoid_retarget.human.motion import HumanMotion, J
from humanoid_retarget.robot.config import Robot


@dataclass
class TargetConfig:
  contact: ContactConfig = field(default_factory=ContactConfig)
  smooth_sigma_s: float = 0.02  # Gaussian low-pass of the human positions (seconds); 0 = off
  pin_feet: bool = True
  blend_s: float = 0.1  # ease pinned-foot corrections in and out over this time


@dataclass
class Targets:
  """Targets for the robot links of a robot config.

  Attributes:
    pos: (T, L, 3) target positions of the link points (world, m).
    rot: (T, L, 3, 3) target orientations of the link bodies (only where the link has an orientation).
    raw_pos: (T, L, 3) scaled human positions before foot pinning and separation (for key-point error).
    contacts: (T, 2) bool, left and right foot contact.
    scale: (L,) scale applied to each link's human segment (1 for rigid links).
    root_scale: scale of the root trajectory (robot leg / human leg).
  """

  pos: np.ndarray
  rot: np.ndarray
  raw_pos: np.ndarray
  contacts: np.ndarray
  scale: np.ndarray
  root_scale: float
  sole_height: float


def _human_point(P: np.ndarray, names: list[str]) -> np.ndarray:
  return np.mean([P[:, J(n)] for n in names], axis=0)


def _foot_frames(P: np.ndarray, side: str, contacts: np.ndarray) -> np.ndarray:
  """Human foot frames: yaw and pitch from ankle -> toe, pitch relative to the standing foot. (T, 3, 3)."""
  v = P[:, J(f"{side}_foot")] - P[:, J(f"{side}_ankle")]
  yaw = np.arctan2(v[:, 1], v[:, 0])
  pitch = np.arctan2(-v[:, 2], np.linalg.norm(v[:, :2], axis=-1))
  ref = np.median(pitch[contacts]) if contacts.any() else np.percentile(pitch, 20)
  pitch = pitch - ref
  pitch = np.where(contacts, 0.0, pitch)
  return Rotation.from_euler("ZY", np.stack([yaw, pitch], -1)).as_matrix()


def build_targets(human: HumanMotion, robot: Robot, cfg: TargetConfig = TargetConfig()) -> Targets:
  """Scale the human to the robot and build link targets. See :class:`Targets`."""
  from humanoid_retarget.human.motion import frames_from_positions

  links = robot.config.links
  L = len(links)
  P = human.positions.copy()
  T = P.shape[0]
  if cfg.smooth_sigma_s > 0 and T > 3:
    P = gaussian_filter1d(P, cfg.smooth_sigma_s * human.fps, axis=0, mode="nearest")
  Rh = frames_from_positions(P)
  contacts = detect_contacts(human, cfg.contact)
  frames = {
    "pelvis": Rh[:, J("pelvis")],
    "chest": Rh[:, J("spine3")],
    "left_foot": _foot_frames(P, "left", contacts[:, 0]),
    "right_foot": _foot_frames(P, "right", contacts[:, 1]),
  }
  rest_pts = np.array([robot.rest_point(k) for k in range(L)])
  rest_rot = robot.rest_body_rot[robot.link_body]  # (L, 3, 3)
  index = {lk.name: k for k, lk in enumerate(links)}
  # Orientation target of each link body (identity-rest human frame times the body's rest rotation).
  rot = np.broadcast_to(np.eye(3), (T, L, 3, 3)).copy()
  for k, lk in enumerate(links):
    if lk.orientation != "none":
      rot[:, k] = frames[lk.orientation] @ rest_rot[k]
  # Root scale: robot leg length over human leg length (hip -> knee -> ankle), per side, averaged.
  def chain_len_robot(names: list[str]) -> float:
    pts = [rest_pts[index[n]] for n in names if n in index]
    return float(sum(np.linalg.norm(b - a) for a, b in zip(pts[:-1], pts[1:])))

  def chain_len_human(names: list[str]) -> float:
    return float(sum(np.median(np.linalg.norm(P[:, J(b)] - P[:, J(a)], axis=-1)) for a, b in zip(names[:-1], names[1:])))

  leg_h = 0.5 * (chain_len_human(["left_hip", "left_knee", "left_ankle"]) + chain_len_human(["right_hip", "right_knee", "right_ankle"]))
  leg_links = [lk for lk in links if lk.human[0] in ("left_hip", "left_knee", "left_ankle")]
  leg_r = chain_len_robot([lk.name for lk in sorted(leg_links, key=lambda lk: ("left_hip", "left_knee", "left_ankle").index(lk.human[0]))])
  root_scale = leg_r / leg_h if leg_h > 0 and leg_r > 0 else 1.0
  sole = -float(np.min(robot.foot_points["left"][:, 2]))  # ankle origin height above the sole
  ank_h = np.percentile(np.minimum(P[:, J("left_ankle"), 2], P[:, J("right_ankle"), 2]), 5)
  pos = np.zeros((T, L, 3))
  scale = np.ones(L)
  for k, lk in enumerate(links):
    hp = _human_point(P, lk.human)
    if lk.mode == "root":
      tgt = hp * root_scale
      tgt[:, 2] = (hp[:, 2] - ank_h) * root_scale + sole
      pos[:, k] = tgt
      scale[k] = root_scale
    elif lk.mode == "rigid":
      pk = index[lk.parent]
      fk = index[lk.frame or lk.parent]
      off_world = rest_pts[k] - rest_pts[pk]
      off_local = rest_rot[fk].T @ off_world
      pos[:, k] = pos[:, pk] + rot[:, fk] @ off_local
    else:  # bone
      pk = index[lk.parent]
      hv = hp - _human_point(P, links[pk].human)
      lh = float(np.median(np.linalg.norm(hv, axis=-1)))
      lr = float(np.linalg.norm(rest_pts[k] - rest_pts[pk]))
      scale[k] = lr / lh if lh > 1e-6 else 1.0
      pos[:, k] = pos[:, pk] + hv * scale[k]
  raw = pos.copy()
  # Feet: separation, floor, pinning.
  feet = {}
  for s, side in enumerate(("left", "right")):
    ks = [k for k, lk in enumerate(links) if lk.orientation == f"{side}_foot"]
    if ks:
      feet[side] = ks[0]
  if "left" in feet and "right" in feet and robot.config.min_foot_separation > 0:
    y = rot[:, index[links[0].name], :, 1] if links[0].orientation != "none" else frames["pelvis"][:, :, 1]
    y = y.copy()
    y[:, 2] = 0
    y /= np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-9)
    kl, kr = feet["left"], feet["right"]
    d = np.sum((pos[:, kl] - pos[:, kr]) * y, axis=-1)
    push = np.maximum(robot.config.min_foot_separation - d, 0.0)
    pos[:, kl] += 0.5 * push[:, None] * y
    pos[:, kr] -= 0.5 * push[:, None] * y
  for s, side in enumerate(("left", "right")):
    if side not in feet:
      continue
    k = feet[side]
    sole_pts = robot.foot_points[side]  # (P, 3) in foot frame
    # Lowest sole point given the target orientation must stay above the floor.
    low = np.einsum("tij,pj->tpi", rot[:, k], sole_pts)[..., 2].min(axis=1)  # (T,)
    min_z = -low
    if cfg.pin_feet:
      delta = np.zeros((T, 3))
      weight = np.zeros(T)
      blend = max(int(round(cfg.blend_s * human.fps)), 1)
      for a, b in contact_phases(contacts[:, s]):
        mean_xy = pos[a:b, k, :2].mean(axis=0)
        d = np.zeros((b - a, 3))
        d[:, :2] = mean_xy - pos[a:b, k, :2]
        d[:, 2] = sole - pos[a:b, k, 2]
        delta[a:b] = d
        weight[a:b] = 1.0
        # Ease out the correction around the phase.
        for i in range(1, blend + 1):
          w = 1.0 - i / (blend + 1)
          if a - i >= 0 and weight[a - i] < w:
            delta[a - i] = d[0] * w
            weight[a - i] = w
          if b - 1 + i < T and weight[b - 1 + i] < w:
            delta[b - 1 + i] = d[-1] * w
            weight[b - 1 + i] = w
      pos[:, k] += delta
    pos[:, k, 2] = np.maximum(pos[:, k, 2], min_z)
  return Targets(pos=pos, rot=rot, raw_pos=raw, contacts=contacts, scale=scale, root_scale=root_scale,
                 sole_height=sole)
