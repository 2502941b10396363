"""``humanoid-retarget train``."""

from __future__ import annotations

from typing import Literal


def train(
  data: str = "data/pairs",
  mix: tuple[str, ...] = (),
  out: str = "runs/neural",
  arch: Literal["nmr", "ikmr"] = "nmr",
  d_model: int = 160,
  n_layers: int = 4,
  n_heads: int = 4,
  dropout: float = 0.1,
  window: int = 120,
  epochs: int = 60,
  batch: int = 32,
  lr: float = 1e-3,
  weight_decay: float = 0.01,
  warmup_steps: int = 200,
  stride: int = 60,
  noisy_prob: float = 0.5,
  seed: int = 0,
  init: str = "",
  resume: bool = False,
  threads: int = 2,
  bf16: bool = True,
  max_minutes: float = 0.0,
  export: str = "",
  quiet: bool = False,
) -> int:
  """Train the neural retargeter on a pair dataset (``humanoid-retarget dataset build``).

  Pre-training: ``train --data data/pairs --out runs/pre``. Fine-tuning on another pair set at a
  lower learning rate: ``train --data data/other --out runs/ft --init runs/pre/best.pt --lr 2e-4``
  (the architecture and the normalisation statistics then come from the checkpoint); ``--mix data/pairs``
  keeps the pre-training pairs in the training set. Runs unchanged
  under ``torchrun --nproc-per-node N -m humanoid_retarget.cli.main train ...`` (gloo DDP).

  Args:
    data: dataset folder (train/ and val/ splits).
    mix: more dataset folders whose train windows join the training set (validation stays on --data),
      e.g. the kinematic pairs while fine-tuning on physics pairs, so the network keeps what it learnt.
    out: run folder: last.pt (every epoch, for --resume) and best.pt (lowest validation loss).
    arch: nmr (conv encoder + Transformer + conv decoder) or ikmr (dual autoencoders, shared latent).
    d_model: Transformer width.
    n_layers: Transformer layers.
    n_heads: attention heads.
    dropout: dropout rate.
    window: training window in frames at 30 fps (multiple of 4).
    epochs: passes over the training windows.
    batch: windows per step (per process under DDP).
    lr: peak learning rate (AdamW, warm-up then cosine decay).
    weight_decay: AdamW weight decay on matrices.
    warmup_steps: linear warm-up steps.
    stride: spacing of training windows in a clip (offsets are re-drawn each epoch).
    noisy_prob: probability that a window's human input is a corrupted copy (the target stays clean).
    seed: random seed (weights, window order, offsets).
    init: checkpoint to start from (fine-tuning).
    resume: continue OUT/last.pt (same epochs, schedule and optimiser state).
    threads: torch CPU threads.
    bf16: bfloat16 autocast for the forward pass.
    max_minutes: time budget: the cosine decay runs over it if it ends before the epochs, then training
      stops (0 = no limit).
    export: also write the best model as a small fp16 checkpoint here (e.g. the shipped model path).
    quiet: no progress bar.
  """
  from humanoid_retarget.neural.model import ModelConfig
  from humanoid_retarget.neural.train import TrainConfig
  from humanoid_retarget.neural.train import train as run

  if window % 4:
    raise ValueError("window must be a multiple of 4")
  cfg = TrainConfig(
    data=data, mix=list(mix), out=out, model=ModelConfig(arch=arch, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                                          dropout=dropout, window=window),
    epochs=epochs, batch=batch, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, stride=stride,
    noisy_prob=noisy_prob, seed=seed, init=init, resume=resume, threads=threads, bf16=bf16,
    max_minutes=max_minutes, export=export, progress=not quiet,
  )
  run(cfg)
  return 0
