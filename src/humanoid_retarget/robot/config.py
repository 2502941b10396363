"""Robot config files (TOML): which robot bodies follow which human joints.

A robot is an MJCF plus one of these files; no code. See ``assets/robots/unitree_g1/robot.toml``
for a commented example and the README ("Robot configs") for every key.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from humanoid_retarget.errors import RobotConfigError
from humanoid_retarget.human.motion import JOINT_INDEX
from humanoid_retarget.robot.model import RobotModel, load_robot_model

if sys.version_info >= (3, 11):
  import tomllib
else:  # pragma: no cover
  import tomli as tomllib

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "robots"
BUILTIN = {"unitree_g1_29dof": ASSETS / "unitree_g1" / "robot.toml", "g1": ASSETS / "unitree_g1" / "robot.toml"}

ORIENTATION_SOURCES = ("pelvis", "chest", "left_foot", "right_foot", "none")


@dataclass
class LinkConfig:
  """One tracked robot point.

  Attributes:
    name: link name (unique in the config).
    body: robot body the point is fixed to.
    human: canonical joint(s) whose position the point follows (two names: their midpoint).
    point: point in the body frame; or ``point_between``: the midpoint of these bodies' origins at q = 0.
    parent: link the target is built from ('' for the root link).
    mode: 'root' (scaled human position), 'rigid' (robot's own offset from the parent, turned by the
      orientation of ``frame``), 'bone' (human bone direction, robot bone length).
    frame: link whose orientation target turns a rigid offset (default: the parent).
    orientation: which human frame the body's orientation follows ('pelvis', 'chest', 'left_foot',
      'right_foot' or 'none').
    position_weight, orientation_weight: least-squares weights.
  """

  name: str
  body: str
  human: list[str]
  point: np.ndarray | None = None
  point_between: list[str] | None = None
  parent: str = ""
  mode: str = "bone"
  frame: str = ""
  orientation: str = "none"
  position_weight: float = 1.0
  orientation_weight: float = 0.0


@dataclass
class RobotConfig:
  name: str
  mjcf: str
  root_body: str
  left_foot: str
  right_foot: str
  left_hand: str = ""
  right_hand: str = ""
  links: list[LinkConfig] = field(default_factory=list)
  joint_velocity_limits: dict[str, float] = field(default_factory=dict)
  joint_limit_margin: float = 0.06
  min_foot_separation: float = 0.0
  posture_weights: dict[str, float] = field(default_factory=dict)
  collision_ignore: list[list[str]] = field(default_factory=list)
  path: str = ""


def _as_list(v) -> list[str]:
  return [v] if isinstance(v, str) else list(v)


def parse_robot_config(path: str | os.PathLike) -> RobotConfig:
  path = str(path)
  try:
    with open(path, "rb") as f:
      raw = tomllib.load(f)
  except OSError as e:
    raise RobotConfigError(f"cannot read robot config ({e.strerror})", path) from None
  except tomllib.TOMLDecodeError as e:
    raise RobotConfigError(f"invalid TOML ({e})", path) from None
  for key in ("name", "mjcf", "root_body", "left_foot", "right_foot", "links"):
    if key not in raw:
      raise RobotConfigError(f"missing key '{key}'", path)
  links = []
  names = set()
  for i, lk in enumerate(raw["links"]):
    for key in ("name", "body", "human"):
      if key not in lk:
        raise RobotConfigError(f"links[{i}] lacks '{key}'", path)
    human = _as_list(lk["human"])
    for h in human:
      if h not in JOINT_INDEX:
        raise RobotConfigError(f"links[{i}] ('{lk['name']}'): unknown human joint '{h}'", path)
    mode = lk.get("mode", "bone" if lk.get("parent") else "root")
    if mode not in ("root", "rigid", "bone"):
      raise RobotConfigError(f"links[{i}] ('{lk['name']}'): mode must be root, rigid or bone", path)
    parent = lk.get("parent", "")
    if mode != "root" and parent not in names:
      raise RobotConfigError(f"links[{i}] ('{lk['name']}'): parent '{parent}' must be a link listed before it", path)
    ori = lk.get("orientation", "none")
    if ori not in ORIENTATION_SOURCES:
      raise RobotConfigError(f"links[{i}] ('{lk['name']}'): orientation must be one of {', '.join(ORIENTATION_SOURCES)}", path)
    links.append(LinkConfig(
      name=lk["name"], body=lk["body"], human=human,
      point=np.array(lk["point"], dtype=float) if "point" in lk else None,
      point_between=_as_list(lk["point_between"]) if "point_between" in lk else None,
      parent=parent, mode=mode, frame=lk.get("frame", parent), orientation=ori,
      position_weight=float(lk.get("position_weight", 1.0)),
      orientation_weight=float(lk.get("orientation_weight", 0.0)),
    ))
    names.add(lk["name"])
  if sum(lk.mode == "root" for lk in links) != 1:
    raise RobotConfigError("exactly one link must have mode 'root'", path)
  mjcf = raw["mjcf"]
  if not os.path.isabs(mjcf):
    mjcf = str(Path(path).resolve().parent / mjcf)
  return RobotConfig(
    name=raw["name"], mjcf=mjcf, root_body=raw["root_body"], left_foot=raw["left_foot"],
    right_foot=raw["right_foot"], left_hand=raw.get("left_hand", ""), right_hand=raw.get("right_hand", ""),
    links=links, joint_velocity_limits={k: float(v) for k, v in raw.get("joint_velocity_limits", {}).items()},
    joint_limit_margin=float(raw.get("joint_limit_margin", 0.06)),
    min_foot_separation=float(raw.get("min_foot_separation", 0.0)),
    posture_weights={k: float(v) for k, v in raw.get("posture_weights", {}).items()},
    collision_ignore=[list(p) for p in raw.get("collision_ignore", [])],
    path=path,
  )


@dataclass
class Robot:
  """A robot ready for retargeting: its model plus resolved config values."""

  config: RobotConfig
  model: RobotModel
  link_body: np.ndarray  # (L,) body index per link
  link_point: np.ndarray  # (L, 3) point in body frame
  velocity_limits: np.ndarray  # (J,) rad/s
  posture_weight: np.ndarray  # (J,)
  rest_body_pos: np.ndarray  # (B, 3) body positions at q = 0, root at origin with identity rotation
  rest_body_rot: np.ndarray  # (B, 3, 3)
  foot_points: dict[str, np.ndarray]  # side -> (P, 3) sole points in the foot body frame
  foot_bodies: dict[str, int]

  @property
  def name(self) -> str:
    return self.config.name

  @property
  def joint_names(self) -> list[str]:
    return self.model.joint_names

  def chain_reach(self, k_from: int, k_to: int, samples: int = 4000, seed: int = 0) -> float:
    """Largest distance between link points ``k_from`` and ``k_to`` over the joints between them
    (within their limits), by random search plus the rest pose. Cached."""
    key = (k_from, k_to)
    cache = self.__dict__.setdefault("_reach_cache", {})
    if key in cache:
      return cache[key]
    m = self.model
    ba, bb = self.link_body[k_from], self.link_body[k_to]
    joints = np.flatnonzero(m.ancestor_joint_mask[bb] & ~m.ancestor_joint_mask[ba])
    rng = np.random.default_rng(seed)
    q = np.zeros((samples + 1, m.num_joints))
    lo, hi = m.joint_range[joints, 0], m.joint_range[joints, 1]
    q[1:, joints] = rng.uniform(lo, hi, size=(samples, len(joints)))
    # Also the corners of single joints (a knee's straightest setting is often a bound).
    pos, rot = m.fk(np.zeros((samples + 1, 3)), np.broadcast_to(np.eye(3), (samples + 1, 3, 3)), q)
    pa = pos[:, ba] + rot[:, ba] @ self.link_point[k_from]
    pb = pos[:, bb] + rot[:, bb] @ self.link_point[k_to]
    best = float(np.linalg.norm(pb - pa, axis=-1).max())
    cache[key] = best
    return best

  def rest_point(self, k: int) -> np.ndarray:
    b = self.link_body[k]
    return self.rest_body_pos[b] + self.rest_body_rot[b] @ self.link_point[k]


def _foot_sole_points(model: RobotModel, body: int) -> np.ndarray:
  """Lowest points of a foot in its body frame.

  Collision spheres/capsules/cylinders: their ends shifted down by the radius; collision boxes: their
  corners. A foot with neither (mesh collision, or visual geoms only) uses the lowest vertices of any of
  its geoms (within 1 cm of the lowest, the extremes in 8 horizontal directions); no geometry: the origin.
  """
  import mujoco

  from humanoid_retarget.robot.autoconfig import geom_points

  m = model.mj_model
  G = mujoco.mjtGeom
  geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] == body + 1]
  pts = []
  for g in geoms:
    if not (m.geom_contype[g] or m.geom_conaffinity[g]):
      continue
    t = int(m.geom_type[g])
    if t in (int(G.mjGEOM_SPHERE), int(G.mjGEOM_CAPSULE), int(G.mjGEOM_CYLINDER)):
      pts += [e - np.array([0.0, 0.0, m.geom_size[g][0]]) for e in geom_points(m, g, with_radius=False)]
    elif t == int(G.mjGEOM_BOX):
      pts += list(geom_points(m, g, with_radius=True))
  if not pts:
    allp = [p for p in (geom_points(m, g, with_radius=True) for g in geoms) if len(p)]
    if allp:
      allp = np.concatenate(allp)
      low = allp[allp[:, 2] < allp[:, 2].min() + 0.01]
      a = np.linspace(0.0, 2 * np.pi, 8, endpoint=False)
      pts = [low[i] for i in sorted({int(np.argmax(low[:, :2] @ d)) for d in np.stack([np.cos(a), np.sin(a)], 1)})]
  if not pts:
    pts = [np.zeros(3)]
  return np.array(pts)


def load_robot(spec: str | os.PathLike = "unitree_g1_29dof") -> Robot:
  """Load a robot from a builtin name or a config path."""
  spec = str(spec)
  path = BUILTIN.get(spec, spec)
  if str(path).endswith(".xml"):
    from humanoid_retarget.robot.autoconfig import generate_config_file  # issue 9 path

    path = generate_config_file(str(path))
  if not os.path.exists(path):
    raise RobotConfigError(f"no such robot config (builtin robots: {', '.join(sorted(BUILTIN))}; any other robot: "
                           "its ROBOT.toml or MODEL.xml)", str(spec))
  cfg = parse_robot_config(path)
  model = load_robot_model(cfg.mjcf)
  L = len(cfg.links)
  T1 = 1
  rest_pos, rest_rot = model.fk(np.zeros((T1, 3)), np.eye(3)[None], np.zeros((T1, model.num_joints)))
  rest_pos, rest_rot = rest_pos[0], rest_rot[0]
  link_body = np.array([model.body_index(lk.body) for lk in cfg.links], dtype=np.int64)
  link_point = np.zeros((L, 3))
  for k, lk in enumerate(cfg.links):
    b = link_body[k]
    if lk.point is not None:
      link_point[k] = lk.point
    elif lk.point_between:
      mids = np.mean([rest_pos[model.body_index(n)] for n in lk.point_between], axis=0)
      link_point[k] = rest_rot[b].T @ (mids - rest_pos[b])
  vel = np.full(model.num_joints, np.inf)
  for pat, v in cfg.joint_velocity_limits.items():
    rx = re.compile(pat)
    for j, n in enumerate(model.joint_names):
      if rx.search(n):
        vel[j] = min(vel[j], v)
  pw = np.ones(model.num_joints)
  for pat, v in cfg.posture_weights.items():
    rx = re.compile(pat)
    for j, n in enumerate(model.joint_names):
      if rx.search(n):
        pw[j] = v
  fb = {"left": model.body_index(cfg.left_foot), "right": model.body_index(cfg.right_foot)}
  model.body_index(cfg.root_body)
  return Robot(
    config=cfg, model=model, link_body=link_body, link_point=link_point, velocity_limits=vel,
    posture_weight=pw, rest_body_pos=rest_pos, rest_body_rot=rest_rot,
    foot_points={s: _foot_sole_points(model, b) for s, b in fb.items()}, foot_bodies=fb,
  )
