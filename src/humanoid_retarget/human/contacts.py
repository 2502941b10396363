"""Foot contact detection from a human motion: foot height and speed with hysteresis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humanoid_retarget.human.motion import HumanMotion, J


@dataclass
class ContactConfig:
  """Thresholds (metres, m/s). A foot enters contact when low and slow, leaves when high or fast.

  Heights are measured above the foot's own standing height in the clip (low percentile), so the
  marker or joint placement of the source skeleton does not matter.
  """

  height_enter: float = 0.045
  height_exit: float = 0.07
  speed_enter: float = 0.45
  speed_exit: float = 0.75
  min_phase_s: float = 0.1
  max_gap_s: float = 0.1


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
  """Start/stop (exclusive) of True runs in a 1-D bool array."""
  d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
  starts = np.flatnonzero(d == 1)
  stops = np.flatnonzero(d == -1)
  return list(zip(starts.tolist(), stops.tolist()))


def contact_phases(mask: np.ndarray) -> list[tuple[int, int]]:
  return _runs(mask)


def contact_step(state: bool, height: float, speed: float, cfg: ContactConfig) -> bool:
  """One hysteresis step: the contact state after a frame with this foot height and speed."""
  if state:
    return bool(height < cfg.height_exit and speed < cfg.speed_exit)
  return bool(height < cfg.height_enter and speed < cfg.speed_enter)


def detect_contacts(human: HumanMotion, cfg: ContactConfig = ContactConfig()) -> np.ndarray:
  """Contacts of the left and right foot, (T, 2) bool."""
  T = human.num_frames
  out = np.zeros((T, 2), dtype=bool)
  dt = 1.0 / human.fps
  for s, side in enumerate(("left", "right")):
    ank = human.positions[:, J(f"{side}_ankle")]
    toe = human.positions[:, J(f"{side}_foot")]
    h_ank = ank[:, 2] - np.percentile(ank[:, 2], 5)
    h_toe = toe[:, 2] - np.percentile(toe[:, 2], 5)
    h = np.minimum(h_ank, h_toe)
    # Speed of the lower of the two points.
    low = np.where((h_ank <= h_toe)[:, None], ank, toe)
    v = np.zeros(T)
    if T > 1:
      vel = np.gradient(low[:, :2], dt, axis=0)
      v = np.linalg.norm(vel, axis=-1)
    state = False
    for t in range(T):
      state = contact_step(state, h[t], v[t], cfg)
      out[t, s] = state
    # Fill short gaps, drop short phases.
    gap = int(round(cfg.max_gap_s * human.fps))
    m = out[:, s]
    for a, b in _runs(~m):
      if a > 0 and b < T and (b - a) <= gap:
        m[a:b] = True
    short = int(round(cfg.min_phase_s * human.fps))
    for a, b in _runs(m):
      if (b - a) < short:
        m[a:b] = False
    out[:, s] = m
  return out
