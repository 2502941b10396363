"""Unitree G1 actuator parameters, as mjlab (1.6.0, ``asset_zoo/robots/unitree_g1/g1_constants.py``).

Each joint is driven by a position actuator whose stiffness and damping follow from the reflected
inertia (armature) of its motor: a second-order joint with natural frequency 10 Hz and damping ratio 2,

  kp = armature * (2 pi 10)^2,   kd = 2 * 2 * armature * (2 pi 10).

Reflected inertia of a two-stage planetary gearbox (rotor, planet and ring inertias ``I_i``, stage ratios
``g_i``): ``sum_i I_i * prod(g[i+1:])^2`` (each inertia seen through the gears after it). With Unitree's
rotor inertias this gives the armatures below; :func:`reflected_inertia` recomputes them and the tests
check the match.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

NATURAL_FREQ_HZ = 10.0
DAMPING_RATIO = 2.0


def reflected_inertia(rotor_inertias: tuple[float, ...], gears: tuple[float, ...]) -> float:
  """Inertia seen at the output of a gear chain: sum_i I_i * prod(gears[i+1:])^2 (gears[0] = 1)."""
  total = 0.0
  for i, inertia in enumerate(rotor_inertias):
    ratio = math.prod(gears[i + 1:])
    total += inertia * ratio * ratio
  return total


# Rotor / planet / ring inertias (kg m^2) and stage ratios of Unitree's motors (mjlab actuator constants).
_ROTOR_5020 = (0.139e-4, 0.017e-4, 0.169e-4)
_GEARS_5020 = (1.0, 1.0 + 46.0 / 18.0, 1.0 + 56.0 / 16.0)
_ROTOR_7520_14 = (0.489e-4, 0.098e-4, 0.533e-4)
_GEARS_7520_14 = (1.0, 4.5, 1.0 + 48.0 / 22.0)
_ROTOR_7520_22 = (0.489e-4, 0.109e-4, 0.738e-4)
_GEARS_7520_22 = (1.0, 4.5, 5.0)
_ROTOR_4010 = (0.068e-4, 0.0, 0.0)
_GEARS_4010 = (1.0, 5.0, 5.0)

ARMATURE_5020 = reflected_inertia(_ROTOR_5020, _GEARS_5020)  # ~0.003610
ARMATURE_7520_14 = reflected_inertia(_ROTOR_7520_14, _GEARS_7520_14)  # ~0.010178
ARMATURE_7520_22 = reflected_inertia(_ROTOR_7520_22, _GEARS_7520_22)  # ~0.025102
ARMATURE_4010 = reflected_inertia(_ROTOR_4010, _GEARS_4010)  # 0.00425


@dataclass(frozen=True)
class MotorClass:
  """One motor type: armature (kg m^2), effort limit (N m), and the PD gains it implies."""

  name: str
  armature: float
  effort: float

  @property
  def stiffness(self) -> float:
    w = 2.0 * math.pi * NATURAL_FREQ_HZ
    return self.armature * w * w

  @property
  def damping(self) -> float:
    w = 2.0 * math.pi * NATURAL_FREQ_HZ
    return 2.0 * DAMPING_RATIO * self.armature * w


M5020 = MotorClass("5020", ARMATURE_5020, 25.0)
M7520_14 = MotorClass("7520-14", ARMATURE_7520_14, 88.0)
M7520_22 = MotorClass("7520-22", ARMATURE_7520_22, 139.0)
M4010 = MotorClass("4010", ARMATURE_4010, 5.0)
M2X5020 = MotorClass("2x5020", 2.0 * ARMATURE_5020, 50.0)  # waist roll/pitch and ankles: two 5020s

# Joint-name patterns -> motor (first match wins), mjlab's assignment for the G1 29-DoF.
G1_MOTORS: tuple[tuple[str, MotorClass], ...] = (
  (r"elbow|shoulder_(pitch|roll|yaw)|wrist_roll", M5020),
  (r"hip_pitch|hip_yaw|waist_yaw", M7520_14),
  (r"hip_roll|knee", M7520_22),
  (r"wrist_(pitch|yaw)", M4010),
  (r"waist_(roll|pitch)|ankle", M2X5020),
)


def motor_for_joint(name: str, table: tuple[tuple[str, MotorClass], ...] = G1_MOTORS) -> MotorClass:
  for pat, motor in table:
    if re.search(pat, name):
      return motor
  raise KeyError(f"no motor class matches joint '{name}'")
