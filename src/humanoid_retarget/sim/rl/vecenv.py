"""rsl-rl-lib's ``VecEnv`` interface (5.x: TensorDict observations) over :class:`TrackingEnv`."""

from __future__ import annotations

import numpy as np
import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from humanoid_retarget.sim.rl.env import TrackingEnv


class RslRlTrackingEnv(VecEnv):
  """Torch view of a numpy :class:`TrackingEnv` (CPU). Observation groups ``policy`` and ``critic``.

  ``step`` returns (obs TensorDict (N, ...), rewards (N,), dones (N,) long, extras) with
  ``extras["time_outs"]`` (N,) for truncations at the clip's end and ``extras["log"]`` holding the mean
  reward terms, termination rate and the current sigma factor.
  """

  def __init__(self, env: TrackingEnv, device: str = "cpu"):
    self.env = env
    self.num_envs = env.N
    self.num_actions = env.J
    self.max_episode_length = int(env.ref.length.max())
    self.episode_length_buf = torch.zeros(env.N, dtype=torch.long)
    self.device = device
    self.cfg = {"num_envs": env.N, "clips": env.ref.names, "dt": env.dt}
    self._obs = self._to_td(env.observations())

  def _to_td(self, obs: dict[str, np.ndarray]) -> TensorDict:
    return TensorDict({k: torch.from_numpy(v) for k, v in obs.items()}, batch_size=[self.num_envs],
                      device=self.device)

  def get_observations(self) -> TensorDict:
    return self._obs

  def reset(self) -> TensorDict:
    self._obs = self._to_td(self.env.reset())
    return self._obs

  def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
    r = self.env.step(actions.detach().cpu().numpy())
    self._obs = self._to_td(r.obs)
    self.episode_length_buf = torch.from_numpy(self.env.episode_length.copy())
    log = {f"/reward/{k}": float(v.mean()) for k, v in r.terms.items()}
    log["/termination_rate"] = float(r.terminated.mean())
    log["/sigma_scale"] = float(self.env.sigma_scale)
    extras = {"time_outs": torch.from_numpy(r.truncated.astype(np.float32)), "log": log}
    rew = torch.from_numpy(r.reward.astype(np.float32))
    dones = torch.from_numpy((r.terminated | r.truncated).astype(np.int64))
    return self._obs, rew, dones, extras

  def close(self) -> None:
    self.env.close()
