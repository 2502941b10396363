"""Motion clusters for one-expert-per-cluster training: a small motion VAE and cosine k-means (NMR's CEPR step).

1. Per clip, per-frame human features at 30 fps: ``neural.features.human_features`` (heading-canonical root
   velocity and heading rate, root height, pelvis orientation, root-relative joint positions and
   velocities, in leg lengths), standardised over the data set.
2. Windows of ``window`` frames (stride ``window // 2``) train a VAE (MLP encoder / decoder over the
   flattened window, Gaussian latent of ``latent_dim``; loss = MSE + ``beta`` KL).
3. A clip's embedding is the mean of its windows' posterior means; the embeddings are centred over the
   data set and L2-normalised, then clustered by spherical (cosine) k-means with k-means++ seeding and
   ``restarts`` restarts (the best total cosine similarity wins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humanoid_retarget.human.motion import HumanMotion


@dataclass
class ClusterConfig:
  k: int = 8
  fps: float = 30.0
  window: int = 32
  latent_dim: int = 16
  hidden: int = 256
  epochs: int = 60
  batch: int = 64
  lr: float = 1e-3
  beta: float = 1e-3  # KL weight
  restarts: int = 10
  seed: int = 0
  threads: int = 1


@dataclass
class ClusterResult:
  labels: np.ndarray  # (C,) cluster of each clip
  embeddings: np.ndarray  # (C, latent_dim) mean posterior means (before centring)
  centroids: np.ndarray  # (k, latent_dim) unit vectors in the centred, normalised space
  recon_loss: float  # final VAE reconstruction MSE (standardised features)

  def as_json(self, names: list[str]) -> dict:
    k = self.centroids.shape[0]
    clusters = {}
    for c in range(k):
      idx = np.flatnonzero(self.labels == c)
      clusters[str(c)] = {"size": int(len(idx)), "members": [names[i] for i in idx]}
    return {"k": int(k), "latent_dim": int(self.embeddings.shape[1]), "recon_mse": self.recon_loss,
            "clips": {n: int(c) for n, c in zip(names, self.labels)}, "clusters": clusters}


def clip_features(motion: HumanMotion, fps: float = 30.0) -> np.ndarray:
  """(T, D) float32 per-frame human features of one clip at ``fps``."""
  from humanoid_retarget.neural.features import human_features

  m = motion.resample(fps) if abs(motion.fps - fps) > 1e-6 else motion
  return human_features(m.positions, m.fps)[0]


def _windows(feats: np.ndarray, window: int) -> np.ndarray:
  """(n, window, D) windows with stride window // 2; clips shorter than a window are edge-padded."""
  T = feats.shape[0]
  if T < window:
    feats = np.concatenate([feats, np.repeat(feats[-1:], window - T, axis=0)])
    T = window
  starts = list(range(0, T - window + 1, max(window // 2, 1)))
  if starts[-1] != T - window:
    starts.append(T - window)
  return np.stack([feats[s:s + window] for s in starts])


def _make_vae(in_dim: int, hidden: int, latent: int):
  import torch
  from torch import nn

  class MotionVAE(nn.Module):
    """MLP VAE over flattened windows: x (B, in_dim) -> mu, logvar (B, latent) -> reconstruction (B, in_dim)."""

    def __init__(self):
      super().__init__()
      self.enc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                               nn.Linear(hidden, 2 * latent))
      self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                               nn.Linear(hidden, in_dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
      mu, logvar = self.enc(x).chunk(2, dim=-1)
      return mu, logvar.clamp(-10.0, 10.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
      mu, logvar = self.encode(x)
      z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
      return self.dec(z), mu, logvar

  return MotionVAE()


def cosine_kmeans(x: np.ndarray, k: int, rng: np.random.Generator, restarts: int = 10, iters: int = 100
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Spherical k-means on the rows of ``x`` (C, d) (normalised here). Returns labels (C,), centroids (k, d)."""
  X = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  C = X.shape[0]
  k = min(k, C)
  best = (-np.inf, None, None)
  for _ in range(max(restarts, 1)):
    cent = [X[rng.integers(C)]]
    for _ in range(1, k):  # k-means++ on cosine distance
      d = np.clip(1.0 - np.max(X @ np.array(cent).T, axis=1), 0.0, None)
      p = d / d.sum() if d.sum() > 0 else np.full(C, 1.0 / C)
      cent.append(X[rng.choice(C, p=p)])
    cent = np.array(cent)
    labels = np.full(C, -1)
    for _ in range(iters):
      new = np.argmax(X @ cent.T, axis=1)
      if np.array_equal(new, labels):
        break
      labels = new
      for j in range(k):
        members = X[labels == j]
        if len(members):
          s = members.sum(0)
          cent[j] = s / max(np.linalg.norm(s), 1e-12)
        else:  # re-seed an empty cluster at the worst-fitting point
          cent[j] = X[np.argmin(np.sum(X * cent[labels], axis=1))]
    score = float(np.sum(X * cent[labels]))
    if score > best[0]:
      best = (score, labels.copy(), cent.copy())
  return best[1], best[2]


def cluster_motions(motions: list[HumanMotion], cfg: ClusterConfig | None = None, log=None) -> ClusterResult:
  """Train the motion VAE on the clips' windows and cluster the clips' mean latents (cosine k-means)."""
  import torch

  cfg = cfg or ClusterConfig()
  if len(motions) < 1:
    raise ValueError("no motions to cluster")
  torch.set_num_threads(max(cfg.threads, 1))
  torch.manual_seed(cfg.seed)
  rng = np.random.default_rng(cfg.seed)
  feats = [clip_features(m, cfg.fps) for m in motions]
  allf = np.concatenate(feats)
  mean, std = allf.mean(0), allf.std(0) + 1e-3
  wins = [_windows((f - mean) / std, cfg.window).reshape(-1, cfg.window * allf.shape[1]) for f in feats]
  owner = np.concatenate([np.full(len(w), i) for i, w in enumerate(wins)])
  X = torch.from_numpy(np.concatenate(wins).astype(np.float32))
  vae = _make_vae(X.shape[1], cfg.hidden, cfg.latent_dim)
  opt = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
  n = X.shape[0]
  recon = float("nan")
  for ep in range(cfg.epochs):
    perm = torch.from_numpy(rng.permutation(n))
    tot = 0.0
    for s in range(0, n, cfg.batch):
      xb = X[perm[s:s + cfg.batch]]
      out, mu, logvar = vae(xb)
      rec = torch.mean((out - xb) ** 2)
      kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu ** 2 - logvar.exp(), dim=-1))
      loss = rec + cfg.beta * kl
      opt.zero_grad()
      loss.backward()
      opt.step()
      tot += float(rec.detach()) * len(xb)
    recon = tot / n
    if log and (ep + 1) % max(cfg.epochs // 5, 1) == 0:
      log(f"epoch {ep + 1}/{cfg.epochs}: reconstruction MSE {recon:.4f}")
  with torch.no_grad():
    mu = vae.encode(X)[0].numpy()
  emb = np.stack([mu[owner == i].mean(0) for i in range(len(motions))])
  labels, cent = cosine_kmeans(emb - emb.mean(0), cfg.k, rng, cfg.restarts)
  return ClusterResult(labels=labels, embeddings=emb, centroids=cent, recon_loss=recon)
