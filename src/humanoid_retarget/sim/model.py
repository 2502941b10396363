"""The simulation model: the robot's MJCF plus a floor, position actuators, armature and solver options.

Built with ``mujoco.MjSpec`` from the same MJCF the retargeter reads (no edited copy). Defaults follow
mjlab's G1 setup: 200 Hz physics (timestep 5 ms), 50 Hz control (4 physics steps per control step),
implicitfast integration, Newton solver, pyramidal friction cones; the foot capsules collide with the
floor with friction 0.6 and condim 3 (priority over the floor), other collision geoms with condim 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import mujoco
import numpy as np

from humanoid_retarget.sim.actuators import G1_MOTORS, MotorClass, motor_for_joint


@dataclass
class SimConfig:
  """Physics settings (mjlab tracking defaults)."""

  timestep: float = 0.005
  decimation: int = 4  # physics steps per control step: 50 Hz control
  iterations: int = 10
  ls_iterations: int = 20
  floor_friction: float = 1.0
  foot_friction: float = 0.6
  foot_geom_regex: str = r"^(left|right)_foot\d+_collision$"
  self_collisions: bool = True

  @property
  def control_dt(self) -> float:
    return self.timestep * self.decimation


@dataclass
class SimModel:
  """A compiled simulation model and the per-actuator data the controllers need.

  Shapes: J actuated joints (MJCF order = motion file order), B bodies without the world.
  """

  model: mujoco.MjModel
  config: SimConfig
  joint_names: list[str]
  body_names: list[str]
  motors: list[MotorClass]
  kp: np.ndarray  # (J,) N m / rad
  kd: np.ndarray  # (J,) N m s / rad
  effort: np.ndarray  # (J,) N m
  armature: np.ndarray  # (J,) kg m^2
  qpos_adr: np.ndarray  # (J,) joint qpos addresses
  dof_adr: np.ndarray  # (J,) joint dof addresses
  foot_geoms: dict[str, np.ndarray] = field(default_factory=dict)  # side -> geom ids

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)

  @property
  def control_dt(self) -> float:
    return self.config.control_dt

  def body_index(self, name: str) -> int:
    """Index into ``body_names`` (MuJoCo body id minus one)."""
    return self.body_names.index(name)


def _hinge_joints(spec: mujoco.MjSpec) -> list:
  return [j for j in spec.joints if j.type in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)]


def build_sim_model(mjcf: str, cfg: SimConfig | None = None,
                    motors: tuple[tuple[str, MotorClass], ...] = G1_MOTORS) -> SimModel:
  """Compile ``mjcf`` into a simulation model (floor, actuators, armature, options)."""
  cfg = cfg or SimConfig()
  spec = mujoco.MjSpec.from_file(mjcf)
  spec.option.timestep = cfg.timestep
  spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
  spec.option.cone = mujoco.mjtCone.mjCONE_PYRAMIDAL
  spec.option.solver = mujoco.mjtSolver.mjSOL_NEWTON
  spec.option.iterations = cfg.iterations
  spec.option.ls_iterations = cfg.ls_iterations
  for a in list(spec.actuators):
    spec.delete(a)
  floor = spec.worldbody.add_geom()
  floor.name = "floor"
  floor.type = mujoco.mjtGeom.mjGEOM_PLANE
  floor.size = [0.0, 0.0, 0.05]
  floor.friction = [cfg.floor_friction, 0.005, 0.0001]
  floor.contype = 1
  floor.conaffinity = 1
  floor.condim = 3
  foot_rx = re.compile(cfg.foot_geom_regex)
  for g in spec.geoms:
    if g.name == "floor" or (g.contype == 0 and g.conaffinity == 0):
      continue
    if foot_rx.search(g.name or ""):
      g.condim = 3
      g.priority = 1
      g.friction = [cfg.foot_friction, 0.005, 0.0001]
    else:
      g.condim = 1
      if not cfg.self_collisions:
        g.contype = 0
        g.conaffinity = 1
  used = []
  for j in _hinge_joints(spec):
    motor = motor_for_joint(j.name, motors)
    j.armature = motor.armature
    j.frictionloss = 0.0
    a = spec.add_actuator()
    a.name = j.name.replace("_joint", "")
    a.target = j.name
    a.trntype = mujoco.mjtTrn.mjTRN_JOINT
    a.set_to_position(kp=motor.stiffness, kv=motor.damping)
    a.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
    a.forcerange = [-motor.effort, motor.effort]
    a.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
    used.append(motor)
  model = spec.compile()
  jn = [model.joint(model.actuator_trnid[i, 0]).name for i in range(model.nu)]
  foot = {}
  for side in ("left", "right"):
    foot[side] = np.array([g for g in range(model.ngeom) if foot_rx.search(model.geom(g).name or "")
                           and model.geom(g).name.startswith(side)], dtype=np.int64)
  jid = model.actuator_trnid[:, 0]
  return SimModel(
    model=model, config=cfg, joint_names=jn,
    body_names=[model.body(b).name for b in range(1, model.nbody)], motors=used,
    kp=model.actuator_gainprm[:, 0].copy(), kd=-model.actuator_biasprm[:, 2].copy(),
    effort=model.actuator_forcerange[:, 1].copy(), armature=model.dof_armature[model.jnt_dofadr[jid]].copy(),
    qpos_adr=model.jnt_qposadr[jid].copy(), dof_adr=model.jnt_dofadr[jid].copy(), foot_geoms=foot,
  )


def build_robot_sim(robot_spec: str = "unitree_g1_29dof", cfg: SimConfig | None = None) -> SimModel:
  """Simulation model of a builtin robot name or robot config path (its MJCF)."""
  from humanoid_retarget.robot.config import load_robot

  robot = load_robot(robot_spec)
  return build_sim_model(robot.config.mjcf, cfg)
