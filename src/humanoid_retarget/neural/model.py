"""Sequence-to-sequence retargeting networks (PyTorch), one config switch apart.

- ``arch="nmr"`` (after NMR): a 1D-ResNet encoder that downsamples time by 4, a LLaMA-style
  Transformer (RMSNorm, rotary position embeddings, SwiGLU) with full bidirectional attention over
  the downsampled tokens, and an upsampling 1D-conv decoder with skip connections from the encoder.
  Trained with an L1 loss on normalised robot features.
- ``arch="ikmr"`` (after IKMR): two autoencoders, human and robot, each a conv encoder + Transformer
  into a latent sequence (T/4 tokens) and a Transformer + upsampling conv decoder out of it. Both
  share one latent space, tied by an alignment loss between the human and robot codes of a pair;
  retargeting is the robot decoder applied to the human encoder's code.

Inputs and outputs are *raw* feature vectors; the normalisation statistics are buffers of the
model, so a checkpoint carries them. Shapes: human (B, T, Dh) -> robot (B, T, Dr), T a multiple of 4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
  """Network hyper-parameters.

  Attributes:
    arch: 'nmr' (encoder-Transformer-decoder) or 'ikmr' (dual autoencoders with a shared latent).
    human_dim, robot_dim: feature sizes (set from the dataset).
    d_model: Transformer width (the conv stages run at d_model at T/2 and T/4, d_model / 2 at T).
    n_layers: Transformer layers (for 'ikmr': per encoder and per decoder, halved, at least 1).
    n_heads: attention heads.
    ffn_mult: SwiGLU hidden size as a multiple of d_model.
    dropout: dropout in attention outputs and feed-forward blocks.
    window: training window (frames at 30 fps, a multiple of 4).
  """

  arch: str = "nmr"
  human_dim: int = 142
  robot_dim: int = 221
  d_model: int = 160
  n_layers: int = 4
  n_heads: int = 4
  ffn_mult: float = 2.75
  dropout: float = 0.1
  window: int = 120

  def as_dict(self) -> dict:
    return asdict(self)


class RMSNorm(nn.Module):
  def __init__(self, d: int, eps: float = 1e-6):
    super().__init__()
    self.eps = eps
    self.weight = nn.Parameter(torch.ones(d))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(n: int, head_dim: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
  """cos, sin tables (n, head_dim / 2) for rotary embeddings."""
  inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
  ang = torch.arange(n, device=device, dtype=torch.float32)[:, None] * inv[None]
  return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
  """x: (B, H, N, hd), rotating channel pairs (first half, second half)."""
  h = x.shape[-1] // 2
  x1, x2 = x[..., :h], x[..., h:]
  return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
  def __init__(self, d: int, n_heads: int, dropout: float):
    super().__init__()
    self.h = n_heads
    self.qkv = nn.Linear(d, 3 * d, bias=False)
    self.out = nn.Linear(d, d, bias=False)
    self.drop = nn.Dropout(dropout)

  def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    B, N, D = x.shape
    q, k, v = self.qkv(x).view(B, N, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    y = F.scaled_dot_product_attention(q, k, v)  # full bidirectional: no mask
    return self.drop(self.out(y.transpose(1, 2).reshape(B, N, D)))


class SwiGLU(nn.Module):
  def __init__(self, d: int, mult: float, dropout: float):
    super().__init__()
    hidden = int(round(d * mult / 8)) * 8
    self.w12 = nn.Linear(d, 2 * hidden, bias=False)
    self.w3 = nn.Linear(hidden, d, bias=False)
    self.drop = nn.Dropout(dropout)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    a, b = self.w12(x).chunk(2, dim=-1)
    return self.drop(self.w3(F.silu(a) * b))


class Block(nn.Module):
  def __init__(self, cfg: ModelConfig):
    super().__init__()
    self.n1 = RMSNorm(cfg.d_model)
    self.attn = Attention(cfg.d_model, cfg.n_heads, cfg.dropout)
    self.n2 = RMSNorm(cfg.d_model)
    self.ffn = SwiGLU(cfg.d_model, cfg.ffn_mult, cfg.dropout)

  def forward(self, x, cos, sin):
    x = x + self.attn(self.n1(x), cos, sin)
    return x + self.ffn(self.n2(x))


class Transformer(nn.Module):
  """LLaMA-style pre-norm stack over (B, N, d) tokens."""

  def __init__(self, cfg: ModelConfig, n_layers: int):
    super().__init__()
    self.blocks = nn.ModuleList([Block(cfg) for _ in range(n_layers)])
    self.norm = RMSNorm(cfg.d_model)
    self.head_dim = cfg.d_model // cfg.n_heads

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    cos, sin = rope_tables(x.shape[1], self.head_dim, x.device, x.dtype)
    for b in self.blocks:
      x = b(x, cos, sin)
    return self.norm(x)


class ResBlock1d(nn.Module):
  """x + conv(gelu(conv(gelu(x)))), kernel 3, over (B, C, T)."""

  def __init__(self, c: int):
    super().__init__()
    self.c1 = nn.Conv1d(c, c, 3, padding=1, padding_mode="replicate")
    self.c2 = nn.Conv1d(c, c, 3, padding=1, padding_mode="replicate")

  def forward(self, x):
    return x + self.c2(F.gelu(self.c1(F.gelu(x))))


class ConvEncoder(nn.Module):
  """(B, T, Din) -> tokens (B, T/4, d) and skips [(B, d/2, T), (B, d, T/2)]."""

  def __init__(self, din: int, d: int):
    super().__init__()
    c0 = d // 2
    self.stem = nn.Conv1d(din, c0, 3, padding=1, padding_mode="replicate")
    self.r0 = ResBlock1d(c0)
    self.down1 = nn.Conv1d(c0, d, 4, stride=2, padding=1, padding_mode="replicate")
    self.r1 = ResBlock1d(d)
    self.down2 = nn.Conv1d(d, d, 4, stride=2, padding=1, padding_mode="replicate")
    self.r2 = ResBlock1d(d)

  def forward(self, x):
    x = x.transpose(1, 2)
    s0 = self.r0(self.stem(x))
    s1 = self.r1(self.down1(F.gelu(s0)))
    z = self.r2(self.down2(F.gelu(s1)))
    return z.transpose(1, 2), [s0, s1]


class ConvDecoder(nn.Module):
  """tokens (B, T/4, d) (+ optional encoder skips) -> (B, T, Dout)."""

  def __init__(self, d: int, dout: int, skips: bool):
    super().__init__()
    c0 = d // 2
    self.skips = skips
    self.up1 = nn.ConvTranspose1d(d, d, 4, stride=2, padding=1)
    self.r1 = ResBlock1d(d)
    self.up2 = nn.ConvTranspose1d(d, c0, 4, stride=2, padding=1)
    self.r0 = ResBlock1d(c0)
    self.head = nn.Conv1d(c0, dout, 3, padding=1, padding_mode="replicate")

  def forward(self, z, skips=None):
    x = z.transpose(1, 2)
    x = self.up1(F.gelu(x))
    if self.skips and skips is not None:
      x = x + skips[1]
    x = self.r1(x)
    x = self.up2(F.gelu(x))
    if self.skips and skips is not None:
      x = x + skips[0]
    x = self.r0(x)
    return self.head(F.gelu(x)).transpose(1, 2)


class _Norm(nn.Module):
  """Feature normalisation buffers: mean and std of the human and robot features (train split)."""

  def __init__(self, cfg: ModelConfig):
    super().__init__()
    self.register_buffer("h_mean", torch.zeros(cfg.human_dim))
    self.register_buffer("h_std", torch.ones(cfg.human_dim))
    self.register_buffer("r_mean", torch.zeros(cfg.robot_dim))
    self.register_buffer("r_std", torch.ones(cfg.robot_dim))


class Retargeter(nn.Module):
  """Both architectures behind one interface.

  ``forward(human_norm)`` -> robot_norm (B, T, Dr); ``losses(h, r, mask, weights)`` -> dict of terms
  with 'loss' the total; ``predict(human_raw)`` -> robot_raw. T must be a multiple of 4.
  """

  def __init__(self, cfg: ModelConfig):
    super().__init__()
    if cfg.arch not in ("nmr", "ikmr"):
      raise ValueError(f"unknown arch '{cfg.arch}' (nmr or ikmr)")
    if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
      raise ValueError("d_model / n_heads must be an even integer")
    self.cfg = cfg
    self.norm = _Norm(cfg)
    d = cfg.d_model
    if cfg.arch == "nmr":
      self.enc = ConvEncoder(cfg.human_dim, d)
      self.tf = Transformer(cfg, cfg.n_layers)
      self.dec = ConvDecoder(d, cfg.robot_dim, skips=True)
    else:
      n = max(cfg.n_layers // 2, 1)
      self.h_enc, self.h_tf_enc = ConvEncoder(cfg.human_dim, d), Transformer(cfg, n)
      self.h_tf_dec, self.h_dec = Transformer(cfg, n), ConvDecoder(d, cfg.human_dim, skips=False)
      self.r_enc, self.r_tf_enc = ConvEncoder(cfg.robot_dim, d), Transformer(cfg, n)
      self.r_tf_dec, self.r_dec = Transformer(cfg, n), ConvDecoder(d, cfg.robot_dim, skips=False)

  # -- IKMR pieces
  def encode_human(self, h):
    return self.h_tf_enc(self.h_enc(h)[0])

  def encode_robot(self, r):
    return self.r_tf_enc(self.r_enc(r)[0])

  def decode_human(self, z):
    return self.h_dec(self.h_tf_dec(z))

  def decode_robot(self, z):
    return self.r_dec(self.r_tf_dec(z))

  def forward(self, h: torch.Tensor) -> torch.Tensor:
    """Normalised human features (B, T, Dh) -> normalised robot features (B, T, Dr)."""
    if self.cfg.arch == "nmr":
      z, skips = self.enc(h)
      return self.dec(self.tf(z), skips)
    return self.decode_robot(self.encode_human(h))

  def losses(self, h: torch.Tensor, r: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor,
             h_clean: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Training losses on normalised features.

    h: (B, T, Dh) input (possibly corrupted); r: (B, T, Dr) target; mask: (B, T) valid frames;
    weights: (Dr,) per-feature L1 weights; h_clean: the uncorrupted human (IKMR reconstructs it).
    """
    m = mask.to(h.dtype)[..., None]
    denom = m.sum().clamp_min(1.0)

    def l1(a, b, w=None):
      e = (a - b).abs() * m
      if w is not None:
        e = e * w
      return e.sum() / denom / a.shape[-1]

    if self.cfg.arch == "nmr":
      out = self(h)
      loss = l1(out, r, weights)
      return {"loss": loss, "retarget": loss}
    zh = self.encode_human(h)
    zr = self.encode_robot(r)
    rec_h = l1(self.decode_human(zh), h if h_clean is None else h_clean)
    rec_r = l1(self.decode_robot(zr), r, weights)
    ret = l1(self.decode_robot(zh), r, weights)
    align = F.mse_loss(zh, zr.detach()) + 0.1 * F.mse_loss(zr, zh.detach())
    loss = ret + 0.5 * rec_r + 0.25 * rec_h + align
    return {"loss": loss, "retarget": ret, "rec_robot": rec_r, "rec_human": rec_h, "align": align}

  def normalise_human(self, h_raw: torch.Tensor) -> torch.Tensor:
    return (h_raw - self.norm.h_mean) / self.norm.h_std

  def normalise_robot(self, r_raw: torch.Tensor) -> torch.Tensor:
    return (r_raw - self.norm.r_mean) / self.norm.r_std

  def predict(self, h_raw: torch.Tensor) -> torch.Tensor:
    """Raw human features (B, T, Dh) -> raw robot features (B, T, Dr), float32.

    The network runs in the dtype of its weights (bfloat16 after :meth:`to_inference_dtype`: on
    AVX-512 CPUs many times faster than float32 here); normalisation stays float32.
    """
    dt = self.norm_dtype_weights()
    x = self.normalise_human(h_raw.float()).to(dt)
    return self(x).float() * self.norm.r_std + self.norm.r_mean

  def norm_dtype_weights(self) -> torch.dtype:
    return next(p for n, p in self.named_parameters()).dtype

  def to_inference_dtype(self, dtype: torch.dtype = torch.bfloat16) -> "Retargeter":
    """Cast the weights (not the normalisation statistics) to ``dtype``."""
    self.to(dtype)
    self.norm.float()
    return self


def count_parameters(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())
