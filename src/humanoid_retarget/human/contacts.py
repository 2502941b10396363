"""Foot contact detection from a human motion: foot height and speed with hysteresis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humanoid_retarget.human.motion import HumanMotion, J, norm


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


def hysteresis(enter: np.ndarray, stay: np.ndarray) -> np.ndarray:
  """States of switches that turn on where ``enter`` and stay on while ``stay``: state[t] = stay[t] if
  state[t - 1] else enter[t], starting off. enter, stay: (T, ...) bool -> (T, ...) bool.

  Where ``enter`` implies ``stay`` (entry thresholds inside the exit ones), the state is on exactly when
  the last entering frame comes after the last frame that breaks ``stay``: two running maxima instead of
  a frame loop.
  """
  if np.any(enter & ~stay):
    out = np.zeros(enter.shape, dtype=bool)
    state = np.zeros(enter.shape[1:], dtype=bool)
    for t in range(enter.shape[0]):
      state = out[t] = np.where(state, stay[t], enter[t])
    return out
  t = np.arange(enter.shape[0]).reshape((-1,) + (1,) * (enter.ndim - 1))
  last_enter = np.maximum.accumulate(np.where(enter, t, -1), axis=0)
  last_break = np.maximum.accumulate(np.where(stay, -1, t), axis=0)
  return last_enter > last_break


def detect_contacts(human: HumanMotion, cfg: ContactConfig = ContactConfig()) -> np.ndarray:
  """Contacts of the left and right foot, (T, 2) bool: :func:`contact_step` over the clip, then short
  gaps filled and short phases dropped."""
  T = human.num_frames
  P = human.positions
  pts = P[:, [J("left_ankle"), J("right_ankle"), J("left_foot"), J("right_foot")]]  # (T, 4, 3)
  h_all = pts[..., 2] - np.percentile(pts[..., 2], 5, axis=0)  # heights above each point's standing height
  h_ank, h_toe = h_all[:, :2], h_all[:, 2:]
  h = np.minimum(h_ank, h_toe)  # (T, 2)
  # Horizontal speed of the lower of the two points, each point's own speed (differencing a track that
  # switches between ankle and toe would read the foot's length as a 1.4 m/s jump).
  v = np.zeros((T, 2))
  if T > 1:
    v_all = norm(np.gradient(pts[..., :2], 1.0 / human.fps, axis=0))  # (T, 4)
    v = np.where(h_ank <= h_toe, v_all[:, :2], v_all[:, 2:])
  # The hysteresis of contact_step, all frames at once.
  out = hysteresis((h < cfg.height_enter) & (v < cfg.speed_enter), (h < cfg.height_exit) & (v < cfg.speed_exit))
  # Fill short gaps, drop short phases.
  gap = int(round(cfg.max_gap_s * human.fps))
  short = int(round(cfg.min_phase_s * human.fps))
  for m in out.T:  # views: edited in place
    for a, b in _runs(~m):
      if a > 0 and b < T and (b - a) <= gap:
        m[a:b] = True
    for a, b in _runs(m):
      if (b - a) < short:
        m[a:b] = False
  return out

