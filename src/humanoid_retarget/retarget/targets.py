"""From a human motion to per-frame targets for the robot's tracked points.

Scaling comes from segment lengths measured on both skeletons (no scale tables), and rest poses are
aligned by construction: targets are positions along human bone directions and frames built from
joint geometry, so no per-skeleton rotation offsets exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from humanoid_retarget.human.contacts import ContactConfig, contact_phases, detect_contacts
from humanoid_retarget.human.motion import HumanMotion, J, dot, norm, trunk_frames
from humanoid_retarget.io.bvh import euler_matrices
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
  ankle_height: float = 0.0  # the human's standing ankle height the root height is measured from
  foot_pitch: tuple[float, float] = (0.0, 0.0)  # the standing pitch of the human's left and right foot


def _human_point(P: np.ndarray, names: list[str]) -> np.ndarray:
  """The mean position (T, 3) of the named joints of P (T, 22, 3) (a view of P for one joint)."""
  idx = [J(n) for n in names]
  return P[:, idx[0]] if len(idx) == 1 else P[:, idx].mean(axis=1)


def _foot_vectors(P: np.ndarray) -> np.ndarray:
  """Ankle -> toe of the left and right foot, (T, 2, 3), from positions P (T, 22, 3)."""
  return P[:, [J("left_foot"), J("right_foot")]] - P[:, [J("left_ankle"), J("right_ankle")]]


def _foot_pitch(v: np.ndarray) -> np.ndarray:
  """Pitch (toe down positive) of ankle -> toe vectors v (..., 3) -> (...)."""
  return np.arctan2(-v[..., 2], norm(v[..., :2]))


def foot_pitch_ref(pitch: np.ndarray, contacts: np.ndarray) -> float:
  """The standing pitch of a human foot from its pitch (T,) and contacts (T,): median over its contact
  frames."""
  return float(np.median(pitch[contacts]) if contacts.any() else np.percentile(pitch, 20))


def _foot_frames(v: np.ndarray, contacts: np.ndarray, pitch_ref: np.ndarray, pelvis_R: np.ndarray) -> np.ndarray:
  """Human foot frames: yaw and pitch from ankle -> toe, pitch relative to the standing foot.

  The yaw is taken relative to the pelvis heading, wrapped, limited to +-70 degrees (a foot cannot turn
  further), and eased back to the pelvis heading when the foot is near vertical (yaw ill-defined). A foot
  whose toe points behind the pelvis (a running swing with the heel near the buttock, a kick back) is
  pitched past vertical, not turned round: yaw near the heading, pitch beyond 90 degrees. Read as a turned
  foot, its frame would force the shin upright and keep the knee from folding.

  Args: v: (T, 2, 3) ankle -> toe, left and right; contacts: (T, 2); pitch_ref: (2,); pelvis_R: (T, 3, 3).
  Returns: (T, 2, 3, 3).
  """
  h = norm(v[..., :2])
  n = np.maximum(norm(v), 1e-9)
  yaw_p = np.arctan2(pelvis_R[:, 1, 0], pelvis_R[:, 0, 0])[:, None]
  rel = np.angle(np.exp(1j * (np.arctan2(v[..., 1], v[..., 0]) - yaw_p)))
  back = np.cos(rel) < 0.0
  rel = np.where(back, np.angle(np.exp(1j * (rel - np.pi))), rel)
  conf = np.clip((h / n - 0.3) / 0.4, 0.0, 1.0)
  rel = np.clip(rel, -np.radians(70), np.radians(70)) * conf
  yaw = yaw_p + rel
  pitch = np.arctan2(-v[..., 2], np.where(back, -h, h)) - pitch_ref
  pitch = np.where(contacts, 0.0, pitch)
  return euler_matrices(np.stack([yaw, pitch], -1), "ZY")


def build_targets(human: HumanMotion, robot: Robot, cfg: TargetConfig = TargetConfig(),
                  calib: Targets | None = None, contacts: np.ndarray | None = None) -> Targets:
  """Scale the human to the robot and build link targets. See :class:`Targets`.

  Live use (:mod:`humanoid_retarget.retarget.streaming`) passes ``calib``, the targets of the
  calibration frames, whose scales, standing ankle height and foot pitch replace those measured on
  ``human``, and ``contacts`` (T, 2) detected causally instead of over the whole clip.
  """
  links = robot.config.links
  L = len(links)
  P = human.positions.copy()
  T = P.shape[0]
  if cfg.smooth_sigma_s > 0 and T > 3:
    P = gaussian_filter1d(P, cfg.smooth_sigma_s * human.fps, axis=0, mode="nearest")
  Rh = trunk_frames(P)  # only the pelvis and chest frames are used
  if contacts is None:
    contacts = detect_contacts(human, cfg.contact)
  v_feet = _foot_vectors(P)
  pitch = calib.foot_pitch if calib is not None else tuple(
    foot_pitch_ref(p, c) for p, c in zip(_foot_pitch(v_feet).T, contacts.T))
  R_feet = _foot_frames(v_feet, contacts, np.array(pitch), Rh[:, J("pelvis")])
  frames = {
    "pelvis": Rh[:, J("pelvis")],
    "chest": Rh[:, J("spine3")],
    "left_foot": R_feet[:, 0],
    "right_foot": R_feet[:, 1],
  }
  rest_pts = np.array([robot.rest_point(k) for k in range(L)])
  rest_rot = robot.rest_body_rot[robot.link_body]  # (L, 3, 3)
  index = {lk.name: k for k, lk in enumerate(links)}
  # Orientation target of each link body (identity-rest human frame times the body's rest rotation).
  rot = np.broadcast_to(np.eye(3), (T, L, 3, 3)).copy()
  for k, lk in enumerate(links):
    if lk.orientation != "none":
      rot[:, k] = frames[lk.orientation] @ rest_rot[k]
  hps = {}  # human point of each root or bone link and of their parents
  for k, lk in enumerate(links):
    if lk.mode != "rigid":
      for kk in (k, index.get(lk.parent, -1)):
        if kk >= 0 and kk not in hps:
          hps[kk] = _human_point(P, links[kk].human)
  # Human segment lengths, medians over the clip, in one call: each leg's hip-knee and knee-ankle (for the
  # root scale), then the bone of each bone link (for its scale).
  by_human = {lk.human[0]: k for k, lk in enumerate(links) if len(lk.human) == 1}
  legs = [s for s in ("left", "right") if f"{s}_hip" in by_human and f"{s}_ankle" in by_human]
  bones = [k for k, lk in enumerate(links) if lk.mode == "bone"]
  segs = [P[:, J(f"{s}_{b}")] - P[:, J(f"{s}_{a}")] for s in legs for a, b in (("hip", "knee"), ("knee", "ankle"))]
  segs += [hps[k] - hps[index[links[k].parent]] for k in bones]
  seg_len = np.median(norm(np.stack(segs, axis=1)), axis=0) if segs else np.zeros(0)
  bone_len = dict(zip(bones, seg_len[2 * len(legs):].tolist()))
  # Root scale: the robot's leg reach (hip to ankle, straightest) over the human leg length.
  reaches = []
  for i, side in enumerate(legs):
    leg_h = float(seg_len[2 * i] + seg_len[2 * i + 1])
    if leg_h > 0:
      reaches.append(robot.chain_reach(by_human[f"{side}_hip"], by_human[f"{side}_ankle"]) / leg_h)
  root_scale = float(np.mean(reaches)) if reaches else 1.0
  sole = -float(np.min(robot.foot_points["left"][:, 2]))  # ankle origin height above the sole
  ank_h = np.percentile(np.minimum(P[:, J("left_ankle"), 2], P[:, J("right_ankle"), 2]), 5)
  if calib is not None:
    root_scale, ank_h = calib.root_scale, calib.ankle_height
  pos = np.zeros((T, L, 3))
  scale = np.ones(L)
  for k, lk in enumerate(links):
    hp = hps.get(k)
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
      hv = hp - hps[pk]
      lh = bone_len[k]
      lr = float(np.linalg.norm(rest_pts[k] - rest_pts[pk]))
      scale[k] = (lr / lh if lh > 1e-6 else 1.0) if calib is None else calib.scale[k]
      pos[:, k] = pos[:, pk] + hv * scale[k]
      # End of a two-bone chain (ankle, wrist): keep it within the robot's reach from the chain root.
      gk = index.get(links[pk].parent, -1) if links[pk].mode == "bone" else -1
      if gk >= 0:
        reach = 0.995 * robot.chain_reach(gk, k)
        v = pos[:, k] - pos[:, gk]
        n = norm(v, keepdims=True)
        pos[:, k] = pos[:, gk] + v * np.minimum(1.0, reach / np.maximum(n, 1e-9))
  raw = pos.copy()
  # Feet: separation, floor, pinning.
  feet = foot_links(robot)
  if "left" in feet and "right" in feet and robot.config.min_foot_separation > 0:
    y = rot[:, index[links[0].name], :, 1] if links[0].orientation != "none" else frames["pelvis"][:, :, 1]
    y = y.copy()
    y[:, 2] = 0
    y /= np.maximum(norm(y, keepdims=True), 1e-9)
    kl, kr = feet["left"], feet["right"]
    d = dot(pos[:, kl] - pos[:, kr], y)
    push = np.maximum(robot.config.min_foot_separation - d, 0.0)
    pos[:, kl] += 0.5 * push[:, None] * y
    pos[:, kr] -= 0.5 * push[:, None] * y
  for s, side in enumerate(("left", "right")):
    if side not in feet:
      continue
    k = feet[side]
    sole_pts = robot.foot_points[side]  # (P, 3) in foot frame
    # Lowest sole point given the target orientation must stay above the floor.
    low = (rot[:, k, 2] @ sole_pts.T).min(axis=1)  # (T,) the heights of the sole points, lowest
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
  _fit_leg_reach(pos, contacts, robot, human.fps)
  return Targets(pos=pos, rot=rot, raw_pos=raw, contacts=contacts, scale=scale, root_scale=root_scale,
                 sole_height=sole, ankle_height=float(ank_h), foot_pitch=(float(pitch[0]), float(pitch[1])))


def foot_links(robot: Robot) -> dict[str, int]:
  """The link that carries each foot's orientation ("left" / "right" -> link index), where the config has one."""
  links = robot.config.links
  feet = {}
  for side in ("left", "right"):
    ks = [k for k, lk in enumerate(links) if lk.orientation == f"{side}_foot"]
    if ks:
      feet[side] = ks[0]
  return feet


def leg_chains(robot: Robot) -> list[tuple[int, int, int, float]]:
  """Per leg with a foot link: (side 0/1, hip link, ankle link, 0.985 x the leg's reach). The hip is the
  first non-bone link above the ankle's chain."""
  links = robot.config.links
  index = {lk.name: k for k, lk in enumerate(links)}
  legs = []
  for s, side in enumerate(("left", "right")):
    ka = foot_links(robot).get(side)
    if ka is None:
      continue
    k = ka
    while links[k].mode == "bone" and links[k].parent:
      k = index[links[k].parent]
    legs.append((s, k, ka, 0.985 * robot.chain_reach(k, ka)))
  return legs


def _fit_leg_reach(pos: np.ndarray, contacts: np.ndarray, robot: Robot, fps: float) -> None:
  """Make pinned feet reachable: lower the body where a stance foot lies beyond the leg's reach from
  its hip (as a person bends the knees on a wide stance), then pull any still-unreachable foot target
  in towards its hip. ``pos`` (T, L, 3) is modified in place."""
  T = pos.shape[0]
  drop = np.zeros(T)
  legs = leg_chains(robot)
  for s, k, ka, reach in legs:
    v = pos[:, ka] - pos[:, k]
    horiz2 = np.sum(v[:, :2] ** 2, axis=-1)
    vert = -v[:, 2]
    need = vert - np.sqrt(np.maximum(reach**2 - horiz2, 0.0))
    need = np.where(contacts[:, s], np.maximum(need, 0.0), 0.0)
    drop = np.maximum(drop, need)
  if drop.any():
    from scipy.ndimage import gaussian_filter1d, maximum_filter1d

    w = max(int(round(0.1 * fps)), 1)
    drop = gaussian_filter1d(maximum_filter1d(drop, 2 * w + 1, mode="nearest"), w / 2.0, mode="nearest")
    foot_ks = set(foot_links(robot).values())
    for k in range(pos.shape[1]):
      if k not in foot_ks:
        pos[:, k, 2] -= drop
  for s, k, ka, reach in legs:
    v = pos[:, ka] - pos[:, k]
    n = norm(v, keepdims=True)
    pos[:, ka] = pos[:, k] + v * np.minimum(1.0, reach / np.maximum(n, 1e-9))
