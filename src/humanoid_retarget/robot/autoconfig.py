"""A robot config from an MJCF alone: which robot body follows which human joint, decided from the
kinematic tree and the rest pose (q = 0), never from body names.

How each choice is made (the same rules for every robot; the generated file says why for each entry):

- Frame: the root frame at q = 0 must face +x with z up (the MuJoCo convention the retargeter assumes);
  forward is checked from the foot geometry (toes point forward), up from the legs (they go down).
- Legs: the lowest chain end on each side (left = +y). Pelvis = the body where the two legs branch.
  Hip = the last leg body before the thigh's long drop (where the thigh starts), knee = the bending
  joint that splits hip -> foot most evenly, foot/ankle = the last leg body.
- Arms: the chain ends that reach out sideways above the legs (fingers are merged into their hand).
  Torso/chest = the body the two arms branch from. Shoulder = the last arm body before the upper arm's
  long drop (the body whose joint completes the shoulder ball joint), elbow = the bending joint that
  splits shoulder -> wrist most evenly, wrist/hand = the end of the arm. With no wrist body, the human
  wrist follows the far end of the forearm's geometry; with no geometry either it is dropped (not faked).
- Head: a head body if there is one, else a head geom on the torso, else a point above the shoulders.
- Everything else (modes, frames, weights) follows the hand-written G1 config, which is the reference.

``generate_config`` returns the TOML text and the list of decisions; ``generate_config_file`` writes it
(to a cache keyed by the MJCF's content when no output path is given), which ``load_robot`` uses for a
``.xml`` robot spec.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from humanoid_retarget.errors import RobotConfigError
from humanoid_retarget.robot.model import RobotModel, load_robot_model

GENERATOR_VERSION = 1
DEFAULT_VELOCITY_LIMIT = 20.0  # rad/s, when the MJCF has no speed information
JOINT_LIMIT_MARGIN = 0.06  # rad; the eval counts frames within 0.05 rad of a bound
FOOT_CLEARANCE = 0.10  # m added to the foot width for the minimum ankle separation (G1: 7 cm + 10 = 0.17)
TOP_FRACTION = 0.25  # hip/shoulder: bodies within this fraction of the limb's first segment from its top
BEND_COS = 0.7  # a joint bends a limb when |cos(axis, segment)| is below this (else it twists it)
POSTURE_LEVER = 0.05  # m: joints that move no tracked point by more than this lever are weakly observed
SIDES = ("left", "right")


@dataclass
class _Link:
  name: str
  body: int
  human: list[str]
  parent: str = ""
  mode: str = "bone"
  frame: str = ""
  orientation: str = "none"
  position_weight: float = 1.0
  orientation_weight: float = 0.0
  point: np.ndarray | None = None
  point_between: list[int] | None = None
  why: str = ""


@dataclass
class _Plan:
  """Everything decided about one robot."""

  name: str
  root: int
  pelvis: int
  torso: int
  feet: dict[str, int]
  hands: dict[str, int | None]
  links: list[_Link] = field(default_factory=list)
  velocity: list[tuple[str, float, str]] = field(default_factory=list)  # joint, limit, source
  posture: list[tuple[str, float, str]] = field(default_factory=list)
  collision_ignore: list[tuple[str, str]] = field(default_factory=list)
  min_foot_separation: float = 0.0
  foot_separation_why: str = ""
  standing: str = ""
  collision_summary: list[str] = field(default_factory=list)
  decisions: list[str] = field(default_factory=list)


# --- geometry ----------------------------------------------------------------------------------------


def geom_points(m: mujoco.MjModel, g: int, with_radius: bool) -> np.ndarray:
  """Points of geom ``g`` in its body frame: segment ends / centres (``with_radius``: surface extremes)."""
  t = int(m.geom_type[g])
  c = m.geom_pos[g].copy()
  R = Rotation.from_quat(m.geom_quat[g], scalar_first=True).as_matrix()
  s = m.geom_size[g]
  G = mujoco.mjtGeom
  if t == int(G.mjGEOM_SPHERE):
    ends = [c]
    r = float(s[0])
  elif t in (int(G.mjGEOM_CAPSULE), int(G.mjGEOM_CYLINDER)):
    ends = [c - R[:, 2] * s[1], c + R[:, 2] * s[1]]
    r = float(s[0])
  elif t == int(G.mjGEOM_BOX):
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=float)
    return c + (signs * s[:3]) @ R.T
  elif t == int(G.mjGEOM_ELLIPSOID):
    return np.array([c + sg * s[i] * R[:, i] for i in range(3) for sg in (-1, 1)])
  elif t == int(G.mjGEOM_MESH) and m.geom_dataid[g] >= 0:
    mid = int(m.geom_dataid[g])
    a, n = int(m.mesh_vertadr[mid]), int(m.mesh_vertnum[mid])
    return c + m.mesh_vert[a : a + n].astype(float) @ R.T
  else:  # planes, height fields, SDFs: no extent
    return np.zeros((0, 3))
  ends = np.array(ends)
  if not with_radius:
    return ends
  offs = np.concatenate([np.eye(3), -np.eye(3)]) * r
  return (ends[:, None, :] + offs[None]).reshape(-1, 3)


def _is_collision(m: mujoco.MjModel, g: int) -> bool:
  return bool(m.geom_contype[g] or m.geom_conaffinity[g])


def bodygeom_points(model: RobotModel, body: int, with_radius: bool = True,
                     collision_only: bool = False) -> tuple[np.ndarray, str]:
  """Points of a body's geoms in its frame: collision geoms if any, else visual ones ('' if none)."""
  m = model.mj_model
  gs = [g for g in range(m.ngeom) if m.geom_bodyid[g] == body + 1]
  col = [g for g in gs if _is_collision(m, g)]
  for kind, sel in (("collision", col), ("visual", [g for g in gs if g not in col])):
    if collision_only and kind == "visual":
      break
    pts = [geom_points(m, g, with_radius) for g in sel]
    pts = [p for p in pts if len(p)]
    if pts:
      return np.concatenate(pts), kind
  return np.zeros((0, 3)), ""


# --- tree helpers ------------------------------------------------------------------------------------


class _Tree:
  def __init__(self, model: RobotModel):
    self.m = model
    B = model.num_bodies
    pos, rot = model.fk(np.zeros((1, 3)), np.eye(3)[None], np.zeros((1, model.num_joints)))
    self.P, self.R = pos[0], rot[0]
    self.children: list[list[int]] = [[] for _ in range(B)]
    for b in range(1, B):
      self.children[int(model.body_parent[b])].append(b)
    mm = model.mj_model
    self.has_geom = np.zeros(B, dtype=bool)
    for g in range(mm.ngeom):
      if mm.geom_bodyid[g] > 0:
        self.has_geom[mm.geom_bodyid[g] - 1] = True
    self.has_joint = np.array([len(j) > 0 for j in model.body_joints])

  def name(self, b: int) -> str:
    return self.m.body_names[b]

  def path(self, b: int) -> list[int]:
    """Bodies from the root to ``b`` inclusive."""
    out = []
    while b >= 0:
      out.append(b)
      b = int(self.m.body_parent[b])
    return out[::-1]

  def lca(self, bodies: list[int]) -> int:
    paths = [self.path(b) for b in bodies]
    k = 0
    while all(len(p) > k for p in paths) and len({p[k] for p in paths}) == 1:
      k += 1
    return paths[0][k - 1]

  def chain(self, top: int, end: int) -> list[int]:
    """Bodies after ``top`` down to ``end`` inclusive."""
    p = self.path(end)
    return p[p.index(top) + 1 :]

  def ends(self) -> list[int]:
    """Chain ends: leaves, with trailing bodies that have neither joint nor geometry stripped."""
    out = set()
    for b in range(self.m.num_bodies):
      if self.children[b]:
        continue
      while b > 0 and not self.has_joint[b] and not self.has_geom[b] and len(self.children[int(self.m.body_parent[b])]) == 1:
        b = int(self.m.body_parent[b])
      out.add(b)
    return sorted(out)

  def subtree(self, b: int) -> set[int]:
    out, stack = set(), [b]
    while stack:
      k = stack.pop()
      out.add(k)
      stack.extend(self.children[k])
    return out

  def world_points(self, b: int, pts: np.ndarray) -> np.ndarray:
    return self.P[b] + pts @ self.R[b].T

  def joint_axes(self, b: int) -> list[np.ndarray]:
    return [self.R[b] @ self.m.joint_axis[j] for j in self.m.body_joints[b]]


def _fmt(v) -> str:
  return "[" + ", ".join(f"{x:.4g}" if abs(x) > 1e-9 else "0.0" for x in v) + "]"


# --- the analysis ------------------------------------------------------------------------------------


def _top_body(tr: _Tree, chain: list[int], stop: int, what: str, decisions: list[str]) -> int:
  """Hip/shoulder: the last chain body before ``stop`` still at the top of the segment that ends there."""
  pre = chain[: chain.index(stop)]
  if not pre:
    return stop
  top = tr.P[pre[0]]
  seg = tr.P[stop] - top
  L = float(np.linalg.norm(seg))
  u = seg / max(L, 1e-9)
  near = [b for b in pre if float((tr.P[b] - top) @ u) <= TOP_FRACTION * L]
  pick = near[-1]
  others = [tr.name(b) for b in near if b != pick]
  return pick if not others else _note(pick, others, what, decisions, tr)


def _note(pick: int, others: list[str], what: str, decisions: list[str], tr: _Tree) -> int:
  decisions.append(
    f"{what}: '{tr.name(pick)}', the last body before the limb's long segment; {', '.join(others)} also sit at this "
    f"joint (its other axes) and would do too. Override: set `body` of the link '{what}'.")
  return pick


def _bends(tr: _Tree, b: int, toward: np.ndarray) -> bool:
  d = toward - tr.P[b]
  n = float(np.linalg.norm(d))
  if n < 1e-6:
    return True
  return any(abs(float(a @ d)) / n < BEND_COS for a in tr.joint_axes(b))


def _mid_bend(tr: _Tree, chain: list[int], top: int, end_pt: np.ndarray, cands: list[int]) -> tuple[int | None, float]:
  """The bending body in ``cands`` that splits top -> end_pt most evenly: (body, score)."""
  best, score = None, -1.0
  for k, b in enumerate(cands):
    i = chain.index(b)
    nxt = tr.P[chain[i + 1]] if i + 1 < len(chain) else end_pt
    if not tr.has_joint[b] or not _bends(tr, b, nxt):
      continue
    s = min(float(np.linalg.norm(tr.P[b] - tr.P[top])), float(np.linalg.norm(end_pt - tr.P[b])))
    if s > score + 1e-9:
      best, score = b, s
  return best, score


def _side_of(tr: _Tree, end: int, exclude: set[int]) -> float:
  """Signed lateral offset (y) of the most lateral body on the path to ``end`` (outside ``exclude``)."""
  ys = [tr.P[b, 1] for b in tr.path(end) if b not in exclude]
  return float(max(ys, key=abs)) if ys else 0.0


def analyse(model: RobotModel) -> _Plan:
  tr = _Tree(model)
  dec: list[str] = []
  path = model.mjcf_path
  all_pts = []
  for b in range(model.num_bodies):
    p, _ = bodygeom_points(model, b)
    all_pts.append(tr.world_points(b, p) if len(p) else tr.P[b][None])
  all_pts = np.concatenate(all_pts)
  top_z, bot_z = float(all_pts[:, 2].max()), float(all_pts[:, 2].min())
  H = max(top_z - bot_z, 1e-6)
  ends = tr.ends()

  # Legs: the lowest chain end on each side, well below the branch body.
  feet: dict[str, int] = {}
  for side, sg in zip(SIDES, (1.0, -1.0)):
    cands = [e for e in ends if e != 0 and sg * tr.P[e, 1] > 1e-3]
    if cands:
      feet[side] = min(cands, key=lambda e: tr.P[e, 2])
  if len(feet) < 2:
    miss = [s for s in SIDES if s not in feet]
    raise RobotConfigError(
      f"no recognisable legs: no chain goes down on the {' and '.join(miss)} side (+y is left at q = 0)", path)
  pelvis = tr.lca([feet["left"], feet["right"]])
  drop = min(tr.P[pelvis, 2] - tr.P[feet[s], 2] for s in SIDES)
  if drop < 0.25 * H or pelvis in feet.values():
    raise RobotConfigError(
      "no recognisable legs: no two chains reach down from the root to the floor on opposite sides "
      f"(lowest ends: {tr.name(feet['left'])}, {tr.name(feet['right'])}; drop {drop:.2f} m of {H:.2f} m)", path)
  leg_chain = {s: tr.chain(pelvis, feet[s]) for s in SIDES}
  high = [s for s in SIDES if tr.P[leg_chain[s][0], 2] > tr.P[0, 2] + 0.05 * H]
  if high:
    raise RobotConfigError(
      "no recognisable legs: the lowest chains start above the root body (arms hanging down?), "
      f"at '{tr.name(leg_chain[high[0]][0])}'", path)
  leg_bodies = set().union(*(tr.subtree(leg_chain[s][0]) for s in SIDES))
  # Toes: a last body set forward of its parent rather than below it follows no human joint.
  for s in SIDES:
    f = feet[s]
    par = int(model.body_parent[f])
    d = tr.P[f] - tr.P[par]
    if len(leg_chain[s]) > 3 and d[0] > 0 and abs(d[2]) < 0.5 * abs(d[0]):
      dec.append(f"{s} foot: '{tr.name(f)}' sits forward of '{tr.name(par)}' (a toe): the foot is '{tr.name(par)}'.")
      feet[s] = par
      leg_chain[s] = leg_chain[s][:-1]

  # Forward axis from the foot geometry (toes point forward).
  fwd = []
  for s in SIDES:
    p, _ = bodygeom_points(model, feet[s])
    if len(p):
      w = tr.world_points(feet[s], p) - tr.P[feet[s]]
      fwd.append(0.5 * (w.max(axis=0) + w.min(axis=0))[:2])
  if fwd:
    cx, cy = np.mean(fwd, axis=0)
    if abs(cy) > abs(cx) and abs(cy) > 0.01:
      raise RobotConfigError(
        f"the robot faces {'+' if cy > 0 else '-'}y at q = 0 (its feet point that way); the retargeter expects the "
        "root frame to face +x with z up (the MuJoCo convention): rotate the model", path)
    if cx < -0.01:
      raise RobotConfigError(
        "the robot faces -x at q = 0 (its feet point backwards); the retargeter expects the root frame to face +x "
        "with z up (the MuJoCo convention): rotate the model", path)
    dec.append(f"frame: the feet extend {cx * 100:.1f} cm forward of the ankles along +x, so +x is forward, +y left, z up.")
  else:
    dec.append("frame: the feet have no geometry, so +x forward / +y left is assumed (the MuJoCo convention); "
               "if the robot faces elsewhere at q = 0, rotate the model.")

  # Arms: chain ends off the legs that reach out sideways; fingers merge into their hand.
  lat = 0.03 * H
  arm_ends: dict[str, list[int]] = {"left": [], "right": []}
  for e in ends:
    if e in leg_bodies or e == 0:
      continue
    y = _side_of(tr, e, leg_bodies)
    if abs(y) > lat:
      arm_ends["left" if y > 0 else "right"].append(e)
  miss = [s for s in SIDES if not arm_ends[s]]
  if miss:
    raise RobotConfigError(
      f"no recognisable arms: no chain reaches out sideways from the upper body on the {' and '.join(miss)} side", path)
  hands_end = {s: tr.lca(arm_ends[s]) if len(arm_ends[s]) > 1 else arm_ends[s][0] for s in SIDES}
  torso = tr.lca([hands_end["left"], hands_end["right"]])
  arm_chain = {s: tr.chain(torso, hands_end[s]) for s in SIDES}
  for s in SIDES:
    if not any(tr.has_joint[b] for b in arm_chain[s]) or torso in leg_bodies:
      raise RobotConfigError(f"no recognisable arms: the {s} arm chain has no joint", path)
  for s in SIDES:
    if len(arm_ends[s]) > 1:
      dec.append(f"{s} hand: {len(arm_ends[s])} chain ends (fingers) meet at '{tr.name(hands_end[s])}', the hand.")

  plan = _Plan(name="", root=0, pelvis=pelvis, torso=torso, feet=dict(feet), hands={})
  links: list[_Link] = []
  hip_pts = {}
  # Pelvis and legs.
  hips, knees = {}, {}
  for s in SIDES:
    ch = leg_chain[s]
    foot = feet[s]
    cands = ch[:-1]
    top = ch[0]
    knee, sc = _mid_bend(tr, ch, top, tr.P[foot], [b for b in cands if b != top])
    if knee is None:
      knee, sc = _mid_bend(tr, ch, top, tr.P[foot], cands)
    if knee is None:
      raise RobotConfigError(f"no recognisable legs: the {s} leg has no joint between hip and foot", path)
    hips[s] = _top_body(tr, ch, knee, f"{s}_hip", dec)
    knee2, _ = _mid_bend(tr, ch, hips[s], tr.P[foot], ch[ch.index(hips[s]) + 1 : -1])
    knees[s] = knee2 if knee2 is not None else knee
    hip_pts[s] = tr.P[hips[s]]
  links.append(_Link(
    "pelvis", pelvis, ["left_hip", "right_hip"], mode="root", orientation="pelvis", position_weight=2.0,
    orientation_weight=1.0, point_between=[hips["left"], hips["right"]],
    why=f"the two legs branch at '{tr.name(pelvis)}'; its tracked point is midway between the hips"))
  for s in SIDES:
    links.append(_Link(f"{s}_hip", hips[s], [f"{s}_hip"], parent="pelvis", mode="rigid", position_weight=0.5,
                       why="the thigh starts at this body's origin (last leg body before the long drop to the knee)"))
    thigh = np.linalg.norm(tr.P[knees[s]] - tr.P[hips[s]])
    shin = np.linalg.norm(tr.P[feet[s]] - tr.P[knees[s]])
    links.append(_Link(f"{s}_knee", knees[s], [f"{s}_knee"], parent=f"{s}_hip",
                       why=f"its joint bends the leg mid-chain: thigh {thigh:.3f} m, shin {shin:.3f} m"))
    links.append(_Link(f"{s}_ankle", feet[s], [f"{s}_ankle"], parent=f"{s}_knee", orientation=f"{s}_foot",
                       position_weight=3.0, orientation_weight=1.0,
                       why="the last leg body: the foot (its orientation follows the human foot)"))
  for s in SIDES:
    dec.append(f"{s} leg: hip '{tr.name(hips[s])}', knee '{tr.name(knees[s])}', foot '{tr.name(feet[s])}' "
               f"(chain {' > '.join(tr.name(b) for b in leg_chain[s])}).")

  # Arms: shoulders, elbows, wrists.
  shoulders, elbows, wrists = {}, {}, {}
  for s in SIDES:
    ch = arm_chain[s]
    last = ch[-1]
    top = ch[0]
    end_pt = tr.P[last]
    elbow, sc = _mid_bend(tr, ch, top, end_pt, ch[1:-1] if len(ch) > 2 else [])
    wrist: tuple[int, np.ndarray | None] | None = (last, None)
    span = float(np.linalg.norm(end_pt - tr.P[top]))
    if elbow is None or sc < 0.25 * span:
      # The chain ends at (or just after) the elbow: find the forearm's far end from the geometry.
      p, kind = bodygeom_points(model, last, with_radius=False)
      far = None
      if len(p):
        anchor = tr.P[last]
        w = tr.world_points(last, p)
        i = int(np.argmax(np.linalg.norm(w - anchor, axis=1)))
        if np.linalg.norm(w[i] - anchor) > 0.05:
          far = (p[i], w[i], kind)
      if far is not None:
        elbow, sc = _mid_bend(tr, ch, top, far[1], ch[1:])
        if elbow == last:
          wrist = (last, far[0])
          dec.append(f"{s} wrist: no wrist body; the human wrist follows the far end of the forearm, point "
                     f"{_fmt(far[0])} on '{tr.name(last)}' (farthest {far[2]} geometry from the elbow).")
      else:
        elbow = max((b for b in ch[1:] if tr.has_joint[b]), key=lambda b: ch.index(b), default=last)
        if elbow == last:
          wrist = None
          dec.append(f"{s} wrist: no wrist: the arm ends at '{tr.name(last)}' with no geometry beyond the elbow, "
                     "so the hand target is dropped, not faked.")
    if elbow is None:
      raise RobotConfigError(f"no recognisable arms: the {s} arm has no elbow (no bending joint below the shoulder)", path)
    shoulders[s] = _top_body(tr, ch, elbow, f"{s}_shoulder", dec)
    elbows[s] = elbow
    wrists[s] = wrist
    plan.hands[s] = last if wrist is not None and wrist[1] is None and last != elbow else None
    dec.append(f"{s} arm: shoulder '{tr.name(shoulders[s])}', elbow '{tr.name(elbow)}', wrist "
               + (f"'{tr.name(wrist[0])}'" + (" (point)" if wrist[1] is not None else "") if wrist else "dropped")
               + f" (chain {' > '.join(tr.name(b) for b in ch)}).")

  # Torso: waist (its origin), chest (between the shoulders), head.
  links.append(_Link("waist", torso, ["spine1"], parent="pelvis", mode="rigid", position_weight=0.0,
                     point=np.zeros(3), why=f"the arms branch from '{tr.name(torso)}': the torso; parent of the chest"))
  links.append(_Link("chest", torso, ["left_shoulder", "right_shoulder"], parent="waist", mode="rigid", frame="chest",
                     orientation="chest", position_weight=0.5, orientation_weight=1.0,
                     point_between=[shoulders["left"], shoulders["right"]],
                     why="midway between the shoulders; its orientation follows the human chest"))
  head_b, head_pt, head_why = _head(tr, torso, leg_bodies, set().union(*(set(arm_chain[s]) for s in SIDES)),
                                    shoulders, dec)
  links.append(_Link("head", head_b, ["head"], parent="chest", mode="rigid", frame="chest", position_weight=0.2,
                     point=head_pt, why=head_why))
  dec.append(f"torso: '{tr.name(torso)}' (the arms branch there; {len(tr.path(torso)) - len(tr.path(pelvis))} body/bodies "
             f"above the pelvis '{tr.name(pelvis)}'); head: {head_why}.")
  for s in SIDES:
    links.append(_Link(f"{s}_shoulder", shoulders[s], [f"{s}_shoulder"], parent="chest", mode="rigid", frame="chest",
                       position_weight=0.5, why="the upper arm starts at this body's origin (top of the arm chain)"))
    up = np.linalg.norm(tr.P[elbows[s]] - tr.P[shoulders[s]])
    links.append(_Link(f"{s}_elbow", elbows[s], [f"{s}_elbow"], parent=f"{s}_shoulder",
                       why=f"its joint bends the arm mid-chain (upper arm {up:.3f} m)"))
    if wrists[s] is not None:
      b, pt = wrists[s]
      links.append(_Link(f"{s}_wrist", b, [f"{s}_wrist"], parent=f"{s}_elbow", point=pt,
                         why="the end of the arm chain" if pt is None else
                         "no wrist body: the far end of the forearm geometry stands in for the wrist"))
  plan.links = links
  plan.decisions = dec
  plan.standing = (f"{H:.3f} m tall at q = 0 (soles to top of the geometry); root origin {tr.P[0, 2] - bot_z:.3f} m "
                   f"above the soles")
  return plan


def _head(tr: _Tree, torso: int, legs: set[int], arms: set[int], shoulders: dict[str, int],
          dec: list[str]) -> tuple[int, np.ndarray | None, str]:
  m = tr.m
  sh_mid = 0.5 * (tr.P[shoulders["left"]] + tr.P[shoulders["right"]])
  sh_w = float(np.linalg.norm(tr.P[shoulders["left"]] - tr.P[shoulders["right"]]))
  cands = [e for e in tr.ends() if e not in legs and e not in arms and e in tr.subtree(torso) and e != torso
           and tr.P[e, 2] > sh_mid[2] - 0.05 and abs(tr.P[e, 1]) < 0.25 * sh_w]
  if cands:
    b = max(cands, key=lambda e: tr.P[e, 2])
    p, kind = bodygeom_points(m, b)
    pt = 0.5 * (p.max(axis=0) + p.min(axis=0)) if len(p) else None
    return b, pt, f"head body '{tr.name(b)}'" + (f", centre of its {kind} geometry" if pt is not None else "")
  mm = m.mj_model
  gs = [g for g in range(mm.ngeom) if mm.geom_bodyid[g] == torso + 1 and len(geom_points(mm, g, True))]
  named = [g for g in gs if re.search(r"head|helmet|skull", mujoco.mj_id2name(mm, mujoco.mjtObj.mjOBJ_GEOM, g) or "", re.I)]
  def top(g):
    return float(tr.world_points(torso, geom_points(mm, g, True))[:, 2].max())
  pool = [g for g in named if _is_collision(mm, g)] or named
  if not pool:
    pool = [g for g in gs if _is_collision(mm, g) and tr.world_points(torso, mm.geom_pos[g][None])[0, 2] > sh_mid[2] + 0.05]
  if pool:
    # A geom named 'head' beats 'helmet'; then the highest.
    g = max(pool, key=lambda g: (bool(re.search(r"head", mujoco.mj_id2name(mm, mujoco.mjtObj.mjOBJ_GEOM, g) or "", re.I)), top(g)))
    gname = mujoco.mj_id2name(mm, mujoco.mjtObj.mjOBJ_GEOM, g) or f"geom {g}"
    if len(pool) > 1:
      dec.append(f"head: several head geoms on '{tr.name(torso)}'; '{gname}' chosen. Override: `point` of link 'head'.")
    return torso, mm.geom_pos[g].copy(), f"no head body: centre of geom '{gname}' on '{tr.name(torso)}'"
  wp = sh_mid + np.array([0.0, 0.0, 0.5 * sh_w])
  pt = tr.R[torso].T @ (wp - tr.P[torso])
  return torso, pt, ("no head body or head geom: a point half a shoulder width above the shoulders "
                     "(weight 0.2, so it matters little)")


def _velocity_limits(model: RobotModel) -> list[tuple[str, float, str]]:
  """Per joint: a velocity actuator's ctrlrange is a speed limit; other actuators give no speed."""
  m = model.mj_model
  out = []
  by_joint: dict[int, list[int]] = {}
  for a in range(m.nu):
    if int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT):
      by_joint.setdefault(int(m.actuator_trnid[a, 0]), []).append(a)
  for j, name in enumerate(model.joint_names):
    jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
    lim, src = DEFAULT_VELOCITY_LIMIT, "default: the MJCF has no actuator for this joint"
    acts = by_joint.get(jid, [])
    for a in acts:
      g, bias = m.actuator_gainprm[a], m.actuator_biasprm[a]
      is_vel = (int(m.actuator_biastype[a]) == int(mujoco.mjtBias.mjBIAS_AFFINE) and g[0] > 0
                and abs(bias[1]) < 1e-12 and abs(bias[2] + g[0]) < 1e-9 * max(1.0, g[0]))
      if is_vel and m.actuator_ctrllimited[a]:
        lim = float(np.max(np.abs(m.actuator_ctrlrange[a])))
        src = "velocity actuator ctrlrange"
        break
    else:
      if acts:
        a = acts[0]
        kind = "position servo" if int(m.actuator_biastype[a]) == int(mujoco.mjtBias.mjBIAS_AFFINE) else "torque motor"
        rng = m.actuator_ctrlrange[a] if m.actuator_ctrllimited[a] else m.actuator_forcerange[a]
        src = f"default: {kind} (range {rng[0]:g}..{rng[1]:g}) gives no speed"
    out.append((name, lim, src))
  return out


def _posture(model: RobotModel, plan: _Plan, tr: _Tree) -> list[tuple[str, float, str]]:
  """Joints that barely move any tracked point get a stronger posture prior (the G1's wrists)."""
  pts = []
  for lk in plan.links:
    if lk.position_weight <= 0:
      continue
    if lk.point is not None:
      p = tr.world_points(lk.body, lk.point[None])[0]
    elif lk.point_between:
      p = np.mean([tr.P[b] for b in lk.point_between], axis=0)
    else:
      p = tr.P[lk.body]
    pts.append((lk.body, p))
  oriented = [lk.body for lk in plan.links if lk.orientation_weight > 0 and lk.orientation != "none"]
  out = []
  for j, name in enumerate(model.joint_names):
    b = int(model.joint_body[j])
    anchor = tr.world_points(b, model.joint_anchor[j][None])[0]
    axis = tr.R[b] @ model.joint_axis[j]
    if any(tr.m.is_ancestor[b, ob] for ob in oriented):
      continue  # an orientation target observes it
    levers = [np.linalg.norm(np.cross(axis, p - anchor)) for lb, p in pts if tr.m.is_ancestor[b, lb]]
    lever = max(levers, default=0.0)
    if lever < POSTURE_LEVER:
      why = ("moves no tracked point" if not levers else
             f"moves the tracked points by a lever of only {lever * 100:.1f} cm")
      out.append((name, 4.0, why))
  return out


def _collisions(model: RobotModel, tr: _Tree) -> tuple[list[tuple[str, str]], list[str]]:
  m = model.mj_model
  ignore = []
  for k in range(m.nexclude):
    sig = int(m.exclude_signature[k])
    b1, b2 = (sig >> 16) - 1, (sig & 0xFFFF) - 1
    if b1 >= 0 and b2 >= 0:
      ignore.append((tr.name(b1), tr.name(b2)))
  per_body: dict[int, int] = {}
  for c in model.capsules:
    per_body[c.body] = per_body.get(c.body, 0) + 1
  skipped = sum(1 for g in range(m.ngeom) if _is_collision(m, g) and m.geom_bodyid[g] > 0
                and int(m.geom_type[g]) not in (int(mujoco.mjtGeom.mjGEOM_SPHERE), int(mujoco.mjtGeom.mjGEOM_CAPSULE),
                                                 int(mujoco.mjtGeom.mjGEOM_CYLINDER), int(mujoco.mjtGeom.mjGEOM_BOX)))
  summary = [f"{len(model.capsules)} collision primitives on {len(per_body)} bodies are checked by the solver "
             "(spheres, capsules, cylinders; boxes as capsules)"]
  if skipped:
    summary.append(f"{skipped} collision geoms (meshes etc.) are not used by the solver; eval checks all of them")
  if not model.capsules:
    summary.append("WARNING: no collision primitives: the solver cannot keep limbs apart")
  return ignore, summary


def _foot_separation(model: RobotModel, tr: _Tree, feet: dict[str, int]) -> tuple[float, str]:
  widths = []
  for s in SIDES:
    p, _ = bodygeom_points(model, feet[s])
    if len(p):
      w = tr.world_points(feet[s], p)
      widths.append(float(w[:, 1].max() - w[:, 1].min()))
  rest = float(abs(tr.P[feet["left"], 1] - tr.P[feet["right"], 1]))
  if not widths:
    v = round(min(0.17, rest), 2)
    return v, f"no foot geometry: the G1's 0.17 m, capped at the rest ankle separation {rest:.3f} m"
  w = max(widths)
  v = round(min(w + FOOT_CLEARANCE, rest), 2)
  return v, (f"feet are {w * 100:.0f} cm wide: width + {FOOT_CLEARANCE * 100:.0f} cm clearance"
             + (f", capped at the rest ankle separation {rest:.3f} m" if w + FOOT_CLEARANCE > rest else ""))


def _model_name(model: RobotModel) -> str:
  raw = bytes(model.mj_model.names)
  n = raw[: raw.index(b"\0")].decode() if b"\0" in raw else ""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", n or Path(model.mjcf_path).stem)


# --- TOML --------------------------------------------------------------------------------------------


def _q(s: str) -> str:
  return json.dumps(s)


def _render(model: RobotModel, plan: _Plan, tr: _Tree, mjcf_ref: str) -> str:
  nm = tr.name
  L = []
  add = L.append
  add(f"# {plan.name}: robot config generated from its MJCF by `humanoid-retarget robot init` (generator v{GENERATOR_VERSION}).")
  add("# Every choice below was made from the kinematic tree and the rest pose (q = 0), not from names; the")
  add("# comment above each entry says why. Edit freely: this file is the robot's whole description.")
  add("# Human joints are the 22 canonical SMPL body joints (see README, \"Canonical human\").")
  add("# mode: root  = the root point follows the scaled human position")
  add("#       rigid = the robot's own rest offset from the parent point, turned by the orientation of `frame`")
  add("#       bone  = the human bone direction with the robot's bone length (scale from measured segments)")
  add(f"# Standing: {plan.standing}.")
  add("")
  add(f"name = {_q(plan.name)}")
  add(f"mjcf = {_q(mjcf_ref)}")
  add(f"root_body = {_q(nm(plan.root))}  # the free-floating body")
  add(f"left_foot = {_q(nm(plan.feet['left']))}  # last body of the left leg (sole points come from its geometry)")
  add(f"right_foot = {_q(nm(plan.feet['right']))}")
  for s in SIDES:
    h = plan.hands.get(s)
    if h is not None:
      add(f"{s}_hand = {_q(nm(h))}  # end of the {s} arm (eval ignores hand/wrist self-contacts)")
    else:
      add(f"# {s}_hand: none (the arm ends at the elbow body, which stays in the self-collision check)")
  add(f"joint_limit_margin = {JOINT_LIMIT_MARGIN}  # rad kept clear of every joint bound (eval flags < 0.05 rad)")
  add(f"min_foot_separation = {plan.min_foot_separation}  # m between ankle centres, lateral; {plan.foot_separation_why}")
  add("")
  add("# Collision: " + "; ".join(plan.collision_summary) + ".")
  add("# Pairs that touch at q = 0, parent/child pairs and the pairs below are not checked.")
  if plan.collision_ignore:
    add("# collision_ignore: the MJCF's <contact><exclude> pairs (MuJoCo ignores them too).")
    add("collision_ignore = [" + ", ".join(f"[{_q(a)}, {_q(b)}]" for a, b in plan.collision_ignore) + "]")
  else:
    add("collision_ignore = []  # body-name pairs the solver should not keep apart")
  add("")
  add("# Joint velocity limits (rad/s): regex on joint names -> limit. Replace defaults with the vendor's data.")
  add("[joint_velocity_limits]")
  for name, v, src in plan.velocity:
    add(f"{_q('^' + re.escape(name) + '$')} = {v:g}  # {src}")
  add("")
  add("# Posture prior weights (relative, default 1; joints the human data barely observes get more).")
  add("[posture_weights]")
  for name, v, why in plan.posture:
    add(f"{_q('^' + re.escape(name) + '$')} = {v:g}  # {why}")
  if not plan.posture:
    add("# (none: every joint moves a tracked point or is observed by an orientation target)")
  for lk in plan.links:
    add("")
    add(f"# {lk.why}")
    add("[[links]]")
    add(f"name = {_q(lk.name)}")
    add(f"body = {_q(nm(lk.body))}")
    add(f"human = {_q(lk.human[0])}" if len(lk.human) == 1 else f"human = [{', '.join(_q(h) for h in lk.human)}]")
    if lk.point is not None:
      add(f"point = {_fmt(lk.point)}")
    if lk.point_between:
      add(f"point_between = [{', '.join(_q(nm(b)) for b in lk.point_between)}]")
    if lk.parent:
      add(f"parent = {_q(lk.parent)}")
    if lk.mode != "bone":
      add(f"mode = {_q(lk.mode)}")
    if lk.frame:
      add(f"frame = {_q(lk.frame)}")
    if lk.orientation != "none":
      add(f"orientation = {_q(lk.orientation)}")
    add(f"position_weight = {lk.position_weight}")
    if lk.orientation_weight:
      add(f"orientation_weight = {lk.orientation_weight}")
  dropped = [f"{s}_wrist" for s in SIDES if not any(lk.name == f"{s}_wrist" for lk in plan.links)]
  if dropped:
    add("")
    add(f"# Not tracked: {', '.join(dropped)} (no wrist body and no forearm geometry: the hand target is dropped).")
  return "\n".join(L) + "\n"


def _plan(mjcf_path: str) -> tuple[RobotModel, _Plan, _Tree]:
  model = load_robot_model(mjcf_path)
  if model.num_joints == 0:
    raise RobotConfigError("no recognisable legs or arms: the model has no hinge joints", mjcf_path)
  plan = analyse(model)
  tr = _Tree(model)
  plan.name = _model_name(model)
  plan.velocity = _velocity_limits(model)
  plan.posture = _posture(model, plan, tr)
  plan.collision_ignore, plan.collision_summary = _collisions(model, tr)
  plan.min_foot_separation, plan.foot_separation_why = _foot_separation(model, tr, plan.feet)
  n_def = sum(1 for _, _, s in plan.velocity if s.startswith("default"))
  if n_def:
    plan.decisions.append(
      f"velocity limits: {n_def} of {len(plan.velocity)} joints have no speed in the MJCF (motor/position ctrlrange "
      f"is a torque/position), so {DEFAULT_VELOCITY_LIMIT:g} rad/s is used; put the vendor's limits in "
      "[joint_velocity_limits].")
  if plan.posture:
    plan.decisions.append("posture: weight 4 for weakly observed joints: " + ", ".join(n for n, _, _ in plan.posture) + ".")
  plan.decisions.append(f"min_foot_separation = {plan.min_foot_separation} m ({plan.foot_separation_why}).")
  plan.decisions.append(f"joint_limit_margin = {JOINT_LIMIT_MARGIN} rad (the eval flags frames within 0.05 rad of a bound).")
  plan.decisions.append("collision: " + "; ".join(plan.collision_summary)
                        + (f"; {len(plan.collision_ignore)} MJCF <exclude> pairs ignored" if plan.collision_ignore else "")
                        + ".")
  plan.decisions.append(f"standing: {plan.standing}.")
  return model, plan, tr


def generate_config(mjcf_path: str | os.PathLike, out: str | None = None) -> tuple[str, list[str]]:
  """Robot config TOML for an MJCF, and the decisions made (with reasons).

  ``out`` (the file the text will be written to) only decides how the MJCF path is written: relative
  when the MJCF lies in the output's folder tree, else absolute.
  """
  mjcf_path = str(Path(mjcf_path).resolve())
  if not os.path.exists(mjcf_path):
    raise RobotConfigError("no such MJCF file", mjcf_path)
  model, plan, tr = _plan(mjcf_path)
  ref = mjcf_path
  if out is not None:
    rel = os.path.relpath(mjcf_path, Path(out).resolve().parent)
    if not rel.startswith(".."):
      ref = rel
  return _render(model, plan, tr, ref), list(plan.decisions)


def _cache_dir() -> Path:
  return Path(os.environ.get("HUMANOID_RETARGET_CACHE", Path(tempfile.gettempdir()) / "humanoid_retarget")) / "robots"


def _atomic_write(path: Path, text: str) -> None:
  from humanoid_retarget.io.motion import atomic_write_bytes

  atomic_write_bytes(path, text.encode())


def generate_config_file(mjcf_path: str | os.PathLike, out: str | None = None) -> str:
  """Write the generated config and return its path.

  With ``out`` None the file goes to a cache (``$HUMANOID_RETARGET_CACHE`` or the temp dir) keyed by
  the MJCF's content, path and the generator version; an existing cached file is reused.
  """
  mjcf_path = str(Path(mjcf_path).resolve())
  if out is not None:
    text, _ = generate_config(mjcf_path, out)
    _atomic_write(Path(out), text)
    return str(out)
  try:
    data = Path(mjcf_path).read_bytes()
  except OSError as e:
    raise RobotConfigError(f"cannot read MJCF ({e.strerror})", mjcf_path) from None
  key = hashlib.sha256(data + f"\0{mjcf_path}\0v{GENERATOR_VERSION}".encode()).hexdigest()[:16]
  path = _cache_dir() / f"{Path(mjcf_path).stem}-{key}.toml"
  if not path.exists():
    text, _ = generate_config(mjcf_path)
    _atomic_write(path, text)
    print(f"robot config generated from {mjcf_path}: {path} "
          "(`humanoid-retarget robot init` shows the decisions and writes an editable copy)", file=sys.stderr)
  return str(path)
