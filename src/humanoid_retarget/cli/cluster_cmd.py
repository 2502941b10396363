"""``humanoid-retarget cluster``: human motions -> motion-VAE latents -> cosine k-means clusters (JSON)."""

from __future__ import annotations

import json
import os
from typing import Annotated

import tyro

from humanoid_retarget.errors import RetargetError


def cluster(
  inputs: tyro.conf.Positional[list[str]],
  k: Annotated[int, tyro.conf.arg(aliases=("-k",))] = 8,
  output: Annotated[str, tyro.conf.arg(aliases=("-o",))] = "clusters.json",
  epochs: int = 60,
  latent_dim: int = 16,
  window: int = 32,
  seed: int = 0,
) -> int:
  """Cluster human motion files (BVH / AMASS files or folders) with a small motion VAE and cosine k-means.

  Writes JSON: ``clips`` (file -> cluster), ``clusters`` (cluster -> ``size``, ``members``), ``k``,
  ``latent_dim``, ``recon_mse``. One expert per cluster: retarget the clips, then
  ``humanoid-retarget track-train ROBOT_MOTION_FOLDER --cluster-json clusters.json --cluster K``.
  """
  from humanoid_retarget.human.load import list_inputs, load_human
  from humanoid_retarget.sim.rl.cluster import ClusterConfig, cluster_motions

  paths: list[str] = []
  for p in inputs:
    paths += list_inputs(p)
  paths = sorted(dict.fromkeys(paths))
  if len(paths) < k:
    raise RetargetError(f"{len(paths)} motion files for {k} clusters: need at least k files")
  motions = []
  for p in paths:
    try:
      motions.append(load_human(p))
    except RetargetError as e:
      raise RetargetError(f"{p}: {e}") from None
  print(f"{len(paths)} clips; training the motion VAE ({epochs} epochs)")
  res = cluster_motions(motions, ClusterConfig(k=k, epochs=epochs, latent_dim=latent_dim, window=window, seed=seed),
                        log=print)
  names = [os.path.relpath(p) for p in paths]
  data = res.as_json(names)
  tmp = output + ".tmp"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=1)
  os.replace(tmp, output)
  for c, info in data["clusters"].items():
    stems = ", ".join(os.path.basename(m) for m in info["members"][:4])
    print(f"cluster {c}: {info['size']} clips ({stems}{', ...' if info['size'] > 4 else ''})")
  print(f"wrote {output}")
  return 0
