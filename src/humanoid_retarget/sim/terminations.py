"""BeyondMimic's tracking terminations and the bodies they and the metrics use (G1 names).

A rollout fails when, at any control step,
- the anchor (torso) height differs from the reference by more than 0.25 m,
- the anchor's projected gravity z-component differs by more than 0.8 (about 37 degrees of tilt error
  from upright, more when the reference leans),
- an end effector (ankles, wrists) height differs by more than 0.25 m.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANCHOR_BODY = "torso_link"
END_EFFECTORS = ("left_ankle_roll_link", "right_ankle_roll_link", "left_wrist_yaw_link", "right_wrist_yaw_link")
TRACKED_BODIES = (
  "pelvis", "left_hip_roll_link", "left_knee_link", "left_ankle_roll_link", "right_hip_roll_link",
  "right_knee_link", "right_ankle_roll_link", "torso_link", "left_shoulder_roll_link", "left_elbow_link",
  "left_wrist_yaw_link", "right_shoulder_roll_link", "right_elbow_link", "right_wrist_yaw_link",
)


@dataclass
class TerminationConfig:
  anchor_height: float = 0.25
  anchor_gravity_z: float = 0.8
  ee_height: float = 0.25


def gravity_z_in_body(quat: np.ndarray) -> np.ndarray:
  """z-component of world gravity (0, 0, -1) expressed in the body frame; quat (..., 4) wxyz -> (...)."""
  w, x, y, z = np.moveaxis(quat, -1, 0)
  # Third row of R (world z axis in body coordinates) times -1: R[2, 2] = 1 - 2(x^2 + y^2).
  return -(1.0 - 2.0 * (x * x + y * y))


def termination_mask(body_pos: np.ndarray, body_quat: np.ndarray, ref_pos: np.ndarray, ref_quat: np.ndarray,
                     anchor: int, ees: np.ndarray, cfg: TerminationConfig = TerminationConfig()) -> np.ndarray:
  """(...,) bool: which states fail. Shapes (..., B, 3) / (..., B, 4) for simulation and reference."""
  bad = np.abs(body_pos[..., anchor, 2] - ref_pos[..., anchor, 2]) > cfg.anchor_height
  bad |= np.abs(gravity_z_in_body(body_quat[..., anchor, :]) - gravity_z_in_body(ref_quat[..., anchor, :])) \
    > cfg.anchor_gravity_z
  bad |= np.any(np.abs(body_pos[..., ees, 2] - ref_pos[..., ees, 2]) > cfg.ee_height, axis=-1)
  return bad
