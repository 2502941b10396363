"""Training of the neural retargeter: pre-training on a pair dataset, fine-tuning from a checkpoint.

Windows of ``window`` frames are cut from the memory-mapped splits of
:mod:`humanoid_retarget.neural.dataset` (random offsets each epoch); with probability
``noisy_prob`` the human side is one of the corrupted copies (the target stays clean), which teaches
the network to ignore jitter and spikes. AdamW, linear warm-up then cosine decay (over the epochs, or over ``max_minutes`` when that
comes first, so a time-limited run still anneals), L1 loss on
normalised features (per-group weights), validation metrics per epoch, checkpoints ``last.pt`` and
``best.pt`` in the run folder, ``resume`` from ``last.pt``, fixed seeds. Under ``torchrun`` (WORLD_SIZE
set) it initialises a gloo process group, wraps the model in DistributedDataParallel and shards the
windows with a DistributedSampler; only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from humanoid_retarget.neural.dataset import PairSplit
from humanoid_retarget.neural.features import HUMAN_DIM, RobotLayout
from humanoid_retarget.neural.model import ModelConfig, Retargeter, count_parameters

CHECKPOINT_VERSION = 1
# L1 weight of each robot feature group (per column).
GROUP_WEIGHTS = {"height": 3.0, "offset": 2.0, "root_vel": 0.5, "root_6d": 3.0, "body_pos": 1.0,
                 "body_vel": 0.3, "joints": 3.0}


@dataclass
class TrainConfig:
  """Training options (see ``humanoid-retarget train --help``)."""

  data: str = "data/pairs"
  mix: list[str] = field(default_factory=list)
  out: str = "runs/neural"
  model: ModelConfig = field(default_factory=ModelConfig)
  epochs: int = 60
  batch: int = 32
  lr: float = 1e-3
  weight_decay: float = 0.01
  warmup_steps: int = 200
  min_lr_ratio: float = 0.05
  stride: int = 60
  noisy_prob: float = 0.5
  feature_noise: float = 0.02
  seed: int = 0
  init: str = ""
  resume: bool = False
  threads: int = 2
  bf16: bool = True
  max_minutes: float = 0.0
  export: str = ""
  progress: bool = True


def robot_num_bodies(robot_dim: int, num_joints: int = 29) -> int:
  return (robot_dim - 12 - num_joints) // 6


def feature_weights(robot_dim: int, num_joints: int = 29) -> torch.Tensor:
  lay = RobotLayout(robot_num_bodies(robot_dim, num_joints), num_joints)
  w = torch.ones(robot_dim)
  for k, s in lay.slices().items():
    w[s] = GROUP_WEIGHTS[k]
  return w * robot_dim / w.sum()


def _stats(a: np.ndarray, chunk: int = 65536, floor: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
  """Mean and std per column of a (N, D) memmap, streamed in chunks (float64 sums)."""
  n = a.shape[0]
  s = np.zeros(a.shape[1])
  s2 = np.zeros(a.shape[1])
  for i in range(0, n, chunk):
    x = np.asarray(a[i:i + chunk], dtype=np.float64)
    s += x.sum(0)
    s2 += (x * x).sum(0)
  mean = s / max(n, 1)
  std = np.sqrt(np.maximum(s2 / max(n, 1) - mean**2, 0.0))
  return mean.astype(np.float32), np.maximum(std, floor).astype(np.float32)


class WindowSet(torch.utils.data.Dataset):
  """Training windows of one split: (human, robot, mask, human_clean). Offsets re-drawn per epoch."""

  def __init__(self, split: PairSplit, window: int, stride: int, noisy_prob: float, train: bool, seed: int):
    self.split = split
    self.window = window
    self.stride = stride
    self.noisy_prob = noisy_prob if train else 0.0
    self.train = train
    self.seed = seed
    self.rows = split.window_starts(window, stride)
    self.epoch = 0

  def set_epoch(self, epoch: int) -> None:
    self.epoch = epoch

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, i: int):
    c, s = (int(x) for x in self.rows[i])
    noisy = -1
    if self.train:
      rng = np.random.default_rng((self.seed, self.epoch, i))
      last = max(int(self.split.lengths[c]) - self.window, 0)
      s = min(s + int(rng.integers(0, self.stride)), last)
      K = self.split.human_noisy.shape[0]
      if K and rng.random() < self.noisy_prob:
        noisy = int(rng.integers(0, K))
    h, r, m = self.split.window(c, s, self.window, noisy)
    hc = h if noisy < 0 else self.split.window(c, s, self.window, -1)[0]
    return torch.from_numpy(h.copy()), torch.from_numpy(r.copy()), torch.from_numpy(m), torch.from_numpy(hc.copy())


class MixedWindows(torch.utils.data.ConcatDataset):
  """The training windows of several splits as one set (fine-tuning data plus ``mix`` datasets)."""

  def set_epoch(self, epoch: int) -> None:
    for d in self.datasets:
      d.set_epoch(epoch)


def set_seed(seed: int) -> None:
  random.seed(seed)
  np.random.seed(seed)
  torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float, time_frac: float = 0.0) -> float:
  """Linear warm-up, then cosine decay over the steps left (or over the time budget, if further on)."""
  if step < warmup:
    return (step + 1) / warmup
  p = min(max((step - warmup) / max(total - warmup, 1), time_frac), 1.0)
  return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def save_checkpoint(path: str, model: Retargeter, extra: dict, half: bool = False) -> None:
  """Write a checkpoint atomically. ``half``: float weights as fp16 (normalisation stays fp32)."""
  sd = {}
  for k, v in model.state_dict().items():
    v = v.detach().cpu()
    if half and v.is_floating_point() and not k.startswith("norm."):
      v = v.half()
    sd[k] = v.clone()
  obj = {"version": CHECKPOINT_VERSION, "model_config": model.cfg.as_dict(), "state_dict": sd, **extra}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  torch.save(obj, tmp)
  os.replace(tmp, path)


def load_model(path: str) -> tuple[Retargeter, dict]:
  """A checkpoint -> (model in eval mode, float32; the checkpoint dict)."""
  ck = torch.load(path, map_location="cpu", weights_only=False)
  if ck.get("version") != CHECKPOINT_VERSION:
    raise ValueError(f"{path}: unsupported checkpoint version {ck.get('version')}")
  model = Retargeter(ModelConfig(**ck["model_config"]))
  model.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()})
  model.eval()
  return model, ck


@torch.no_grad()
def evaluate(model: Retargeter, loader, weights: torch.Tensor, lay: RobotLayout) -> dict:
  """Validation: weighted L1 (normalised) and MAEs in physical units, on clean input."""
  model.eval()
  sl = lay.slices()
  tot = {"l1": 0.0, "joint_mae_deg": 0.0, "height_mae_cm": 0.0, "body_pos_mae_cm": 0.0, "offset_mae_cm": 0.0}
  n = 0.0
  for h, r, m, _ in loader:
    hn, rn = model.normalise_human(h), model.normalise_robot(r)
    out = model(hn)
    raw = out * model.norm.r_std + model.norm.r_mean
    mf = m.float()[..., None]
    k = mf.sum().item()
    tot["l1"] += ((out - rn).abs() * weights * mf).sum().item() / r.shape[-1]
    tot["joint_mae_deg"] += (((raw - r)[..., sl["joints"]].abs() * mf).sum().item() / lay.num_joints) * 180 / math.pi
    tot["height_mae_cm"] += ((raw - r)[..., sl["height"]].abs() * mf).sum().item() * 100
    tot["offset_mae_cm"] += ((raw - r)[..., sl["offset"]].abs() * mf).sum().item() * 100 / 2
    e = (raw - r)[..., sl["body_pos"]].reshape(*r.shape[:2], -1, 3).norm(dim=-1).mean(-1, keepdim=True)
    tot["body_pos_mae_cm"] += (e * mf).sum().item() * 100
    n += k
  return {k: v / max(n, 1.0) for k, v in tot.items()}


def train(cfg: TrainConfig) -> dict:
  """Train (or fine-tune with ``init``, or continue with ``resume``); returns the final metrics."""
  import torch.distributed as dist
  from tqdm import tqdm

  torch.set_num_threads(cfg.threads)
  ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
  rank, world = 0, 1
  if ddp:
    if not dist.is_initialized():
      dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
  main = rank == 0
  set_seed(cfg.seed)
  train_split = PairSplit(os.path.join(cfg.data, "train"))
  val_split = PairSplit(os.path.join(cfg.data, "val"))
  robot_dim = int(train_split.robot.shape[1])
  lay = RobotLayout(robot_num_bodies(robot_dim), 29)
  start_epoch, step = 0, 0
  last_path = os.path.join(cfg.out, "last.pt")
  resume_ck = None
  if cfg.resume and os.path.exists(last_path):
    resume_ck = torch.load(last_path, map_location="cpu", weights_only=False)
  if resume_ck is not None:
    model = Retargeter(ModelConfig(**resume_ck["model_config"]))
    model.load_state_dict({k: v.float() for k, v in resume_ck["state_dict"].items()})
  elif cfg.init:
    model, _ = load_model(cfg.init)  # architecture and normalisation come with the checkpoint
  else:
    mc = ModelConfig(**{**asdict(cfg.model), "human_dim": HUMAN_DIM, "robot_dim": robot_dim})
    model = Retargeter(mc)
    hm, hs = _stats(train_split.human)
    rm, rs = _stats(train_split.robot)
    model.norm.h_mean.copy_(torch.from_numpy(hm))
    model.norm.h_std.copy_(torch.from_numpy(hs))
    model.norm.r_mean.copy_(torch.from_numpy(rm))
    model.norm.r_std.copy_(torch.from_numpy(rs))
  mcfg = model.cfg
  if mcfg.robot_dim != robot_dim or mcfg.human_dim != HUMAN_DIM:
    raise ValueError(f"dataset feature sizes ({HUMAN_DIM}, {robot_dim}) differ from the model's "
                     f"({mcfg.human_dim}, {mcfg.robot_dim})")
  weights = feature_weights(robot_dim)
  tset = WindowSet(train_split, mcfg.window, cfg.stride, cfg.noisy_prob, True, cfg.seed)
  mix_splits = [PairSplit(os.path.join(d, "train")) for d in cfg.mix]
  for d, sp in zip(cfg.mix, mix_splits):
    if sp.robot.shape[1] != robot_dim or sp.human.shape[1] != HUMAN_DIM:
      raise ValueError(f"{d}: feature sizes ({sp.human.shape[1]}, {sp.robot.shape[1]}) differ from {cfg.data}'s "
                       f"({HUMAN_DIM}, {robot_dim})")
  if mix_splits:
    tset = MixedWindows([tset] + [WindowSet(sp, mcfg.window, cfg.stride, cfg.noisy_prob, True, cfg.seed + 1 + i)
                                  for i, sp in enumerate(mix_splits)])
  vset = WindowSet(val_split, mcfg.window, mcfg.window, 0.0, False, cfg.seed)
  sampler = torch.utils.data.distributed.DistributedSampler(tset, world, rank, shuffle=True, seed=cfg.seed) if ddp else None
  g = torch.Generator()
  g.manual_seed(cfg.seed)
  tl = torch.utils.data.DataLoader(tset, batch_size=cfg.batch, shuffle=sampler is None, sampler=sampler,
                                   drop_last=True, generator=g, num_workers=0)
  vl = torch.utils.data.DataLoader(vset, batch_size=64, shuffle=False, num_workers=0)
  net: nn.Module = model
  if ddp:
    if mcfg.arch != "nmr":
      raise ValueError("DDP training supports arch 'nmr' (IKMR's extra losses need the bare model)")
    net = nn.parallel.DistributedDataParallel(model)
  decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
  no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
  total = cfg.epochs * len(tl)
  budget = cfg.max_minutes * 60.0
  elapsed_before = 0.0
  best = float("inf")
  history: list[dict] = []
  if resume_ck is not None:
    opt.load_state_dict(resume_ck["optimizer"])
    elapsed_before = float(resume_ck.get("elapsed_s", 0.0))
    start_epoch, step = resume_ck["epoch"] + 1, resume_ck["step"]
    best = resume_ck.get("best", best)
    history = resume_ck.get("history", [])
    torch.set_rng_state(resume_ck["torch_rng"])
  if main:
    print(f"model {mcfg.arch} d{mcfg.d_model}x{mcfg.n_layers}: {count_parameters(model) / 1e6:.2f}M parameters; "
          f"train {train_split.frames} frames ({len(train_split.names)} clips"
          + "".join(f" + {sp.frames} frames ({len(sp.names)} clips) of {d}" for d, sp in zip(cfg.mix, mix_splits))
          + f", {len(tset)} windows), "
          f"val {val_split.frames} frames ({len(val_split.names)} clips); {cfg.epochs} epochs x {len(tl)} steps"
          + (f"; world {world}" if ddp else ""), file=sys.stderr)
  meta = {"dataset": os.path.abspath(cfg.data), "train_config": _jsonable(asdict(cfg))}
  rep_path = os.path.join(cfg.data, "report.json")
  if os.path.exists(rep_path):
    with open(rep_path) as f:
      rep = json.load(f)
    meta["retargeter_commit"] = rep.get("retargeter_commit", "unknown")
    meta["dataset_cache_key"] = rep.get("cache_key", "")
    spec = rep.get("config", {}).get("robot", "")
    if spec:
      from humanoid_retarget.pipeline import cached_robot

      rb = cached_robot(spec)
      meta["robot"] = rb.name
      meta["joint_names"] = list(rb.joint_names)
  t0 = time.perf_counter()
  stopped = False
  for epoch in range(start_epoch, cfg.epochs):
    tset.set_epoch(epoch)
    if sampler is not None:
      sampler.set_epoch(epoch)
    net.train()
    bar = tqdm(tl, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (main and cfg.progress), dynamic_ncols=True,
               leave=False)
    run_loss, nb = 0.0, 0
    for h, r, m, hc in bar:
      hn, rn, hcn = model.normalise_human(h), model.normalise_robot(r), model.normalise_human(hc)
      if cfg.feature_noise > 0:
        hn = hn + cfg.feature_noise * torch.randn_like(hn)
      with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        if ddp:  # through the DDP wrapper so gradients are all-reduced
          out = net(hn)
          mf = m.float()[..., None]
          loss = ((out.float() - rn).abs() * weights * mf).sum() / mf.sum().clamp_min(1) / rn.shape[-1]
        else:
          loss = model.losses(hn, rn, m, weights, hcn)["loss"]
      elapsed = elapsed_before + time.perf_counter() - t0
      if ddp and budget:  # every rank follows rank 0's clock: same learning rate, same stopping step
        clock = torch.tensor([elapsed], dtype=torch.float64)
        dist.broadcast(clock, 0)
        elapsed = float(clock.item())
      lr = cfg.lr * lr_factor(step, total, cfg.warmup_steps, cfg.min_lr_ratio, elapsed / budget if budget else 0.0)
      for grp in opt.param_groups:
        grp["lr"] = lr
      opt.zero_grad(set_to_none=True)
      loss.float().backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      opt.step()
      step += 1
      run_loss += loss.item()
      nb += 1
      if nb % 10 == 0:
        bar.set_postfix(loss=f"{run_loss / nb:.4f}", lr=f"{lr:.2e}")
      if budget and elapsed > budget:
        stopped = True
        break
    if not main:
      if stopped:
        break
      continue
    val = evaluate(model, vl, weights, lay)
    row = {"epoch": epoch + 1, "step": step, "train_loss": run_loss / max(nb, 1), **val,
           "minutes": (elapsed_before + time.perf_counter() - t0) / 60}
    history.append(row)
    print(f"epoch {epoch + 1}: train {row['train_loss']:.4f}  val l1 {val['l1']:.4f}  joints {val['joint_mae_deg']:.2f} deg  "
          f"bodies {val['body_pos_mae_cm']:.2f} cm  height {val['height_mae_cm']:.2f} cm  "
          f"({row['minutes']:.1f} min)", file=sys.stderr)
    extra = {**meta, "epoch": epoch, "step": step, "best": min(best, val["l1"]), "history": history,
             "optimizer": opt.state_dict(), "elapsed_s": elapsed_before + time.perf_counter() - t0,
             "torch_rng": torch.get_rng_state()}
    if val["l1"] < best:
      best = val["l1"]
      save_checkpoint(os.path.join(cfg.out, "best.pt"), model, {**meta, "epoch": epoch, "metrics": val})
    save_checkpoint(last_path, model, extra)
    if stopped:
      print(f"stopped after {cfg.max_minutes} minutes", file=sys.stderr)
      break
  result = history[-1] if history else {}
  if main and cfg.export:
    best_model, ck = load_model(os.path.join(cfg.out, "best.pt"))
    save_checkpoint(cfg.export, best_model, {**meta, "epoch": ck.get("epoch"), "metrics": ck.get("metrics"),
                                             "history": history}, half=True)
    print(f"exported {cfg.export} ({os.path.getsize(cfg.export) / 1e6:.1f} MB, fp16)", file=sys.stderr)
  if ddp:
    dist.barrier()
    dist.destroy_process_group()
  return result


def _jsonable(x):
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (str, int, float, bool)) or x is None:
    return x
  return str(x)
