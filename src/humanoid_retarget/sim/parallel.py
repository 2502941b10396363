"""Many environments stepped in parallel from C with ``mujoco.rollout`` (its own thread pool).

The state of N environments lives in one array (N, nstate) of MuJoCo's full physics state; one call of
:meth:`BatchSim.step` advances all of them by one control step (``decimation`` physics steps with the
given position targets held) without returning to Python between physics steps.
"""

from __future__ import annotations

import mujoco
import numpy as np
from mujoco import rollout

from humanoid_retarget.sim.model import SimModel

STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS


class BatchSim:
  """N copies of one model. Shapes: state (N, nstate), qpos (N, nq), qvel (N, nv), ctrl (N, nu)."""

  def __init__(self, sim: SimModel, num_envs: int, nthread: int = 2):
    self.sim = sim
    self.m = sim.model
    self.n = num_envs
    self.nthread = max(int(nthread), 1)
    self.datas = [mujoco.MjData(self.m) for _ in range(self.nthread)]
    self.nstate = mujoco.mj_stateSize(self.m, STATE_SPEC)
    self.state = np.zeros((num_envs, self.nstate))
    self._roll = rollout.Rollout(nthread=self.nthread) if self.nthread > 1 else None
    self._out = np.zeros((num_envs, sim.config.decimation, self.nstate))
    d = mujoco.MjData(self.m)
    self.set_state_from(d)
    q0 = self.m.nq
    # offsets of qpos / qvel inside the full physics state: [time, qpos, qvel, act, ...]
    self._qpos = slice(1, 1 + q0)
    self._qvel = slice(1 + q0, 1 + q0 + self.m.nv)

  def close(self) -> None:
    if self._roll is not None:
      self._roll.close()
      self._roll = None

  def __del__(self):
    try:
      self.close()
    except Exception:
      pass

  def set_state_from(self, d: mujoco.MjData, envs: np.ndarray | slice = slice(None)) -> None:
    s = np.zeros(self.nstate)
    mujoco.mj_getState(self.m, d, s, STATE_SPEC)
    self.state[envs] = s

  def set_qpos_qvel(self, qpos: np.ndarray, qvel: np.ndarray, envs: np.ndarray | slice = slice(None)) -> None:
    self.state[envs, self._qpos] = qpos
    self.state[envs, self._qvel] = qvel

  @property
  def qpos(self) -> np.ndarray:
    return self.state[:, self._qpos]

  @property
  def qvel(self) -> np.ndarray:
    return self.state[:, self._qvel]

  def step(self, ctrl: np.ndarray) -> np.ndarray:
    """Hold ``ctrl`` (N, nu) for one control step in every environment; returns the new states."""
    dec = self.sim.config.decimation
    c = np.repeat(np.asarray(ctrl, dtype=np.float64)[:, None, :], dec, axis=1)
    if self._roll is not None:
      self._roll.rollout(self.m, self.datas, self.state, c, nstep=dec, state=self._out)
    else:
      rollout.rollout(self.m, self.datas[0], self.state, c, nstep=dec, state=self._out)
    self.state[:] = self._out[:, -1]
    return self.state

  def bodies(self, envs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Body positions (N, B, 3) and quaternions (N, B, 4) of the current states (kinematics in Python)."""
    idx = np.arange(self.n) if envs is None else envs
    d = self.datas[0]
    pos = np.zeros((len(idx), self.m.nbody - 1, 3))
    quat = np.zeros((len(idx), self.m.nbody - 1, 4))
    for k, i in enumerate(idx):
      d.qpos[:] = self.state[i, self._qpos]
      mujoco.mj_kinematics(self.m, d)
      pos[k] = d.xpos[1:]
      quat[k] = d.xquat[1:]
    return pos, quat
