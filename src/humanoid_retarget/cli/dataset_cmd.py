"""``humanoid-retarget dataset build``."""

from __future__ import annotations

import sys
from typing import Literal


def build(
  inputs: tuple[str, ...] = ("../shared/data/bandai1", "../shared/data/bandai2"),
  out: str = "data/pairs",
  robot: str = "unitree_g1_29dof",
  val_percent: float = 10.0,
  noisy_copies: int = 3,
  workers: int = 0,
  executor: Literal["local", "ray"] = "local",
  ray_address: str = "",
  robot_motions: tuple[str, ...] = (),
  drift_sigma_s: float = 1.0,
  quiet: bool = False,
) -> int:
  """Build a (human, robot) pair dataset with the kinematic retargeter, curated and split by clip.

  Writes OUT/{train,val}/{human,human_noisy,robot}.npy (contiguous float32, memory-mappable),
  OUT/{train,val}/index.json (clip offsets) and OUT/report.json (what was dropped and why).

  Args:
    inputs: folders or files of human motion (BVH / AMASS), searched recursively.
    out: output folder (keep it outside git, e.g. data/pairs).
    robot: builtin robot name or robot config .toml.
    val_percent: share of clips in the validation split (chosen by a hash of the clip name).
    noisy_copies: augmented copies of each clip's human features: other body proportions, plus
      jitter and spikes on all copies but the first (robustness and unseen skeletons).
    workers: retargeting processes (0 = one per CPU core).
    executor: retarget the clips in a local process pool, or one Ray task per clip on a Ray cluster.
    ray_address: Ray cluster address (default: start or join a local instance).
    robot_motions: folders or files of robot motions (.npz, e.g. ``track-eval --save-dir`` output) to
      use as the robot side instead of retargeting: matched to the human clips by file stem or by the
      motion's recorded source, resampled to 30 fps; human clips without one are left out.
    drift_sigma_s: with --robot-motions: remove each motion's slow horizontal drift from the human's
      root path (Gaussian low-pass of the difference, sigma in s; 0 = keep it). Simulated walks fall
      metres behind; the network places the root on the human's path, so the drift would only be noise.
    quiet: no progress bar.
  """
  from humanoid_retarget.neural.dataset import BuildConfig, build_dataset

  rep = build_dataset(BuildConfig(inputs=list(inputs), out=out, robot=robot, val_percent=val_percent,
                                  noisy_copies=noisy_copies, workers=workers, executor=executor,
                                  ray_address=ray_address, progress=not quiet,
                                  robot_motions=list(robot_motions),
                                  drift_sigma_s=drift_sigma_s))
  print(f"{rep['clips_kept']} of {rep['clips_total']} clips kept ({rep['clips_dropped']} dropped: "
        f"{rep['drop_counts']}); train {rep['splits']['train']}, val {rep['splits']['val']}; "
        f"retargeter commit {rep['retargeter_commit']}; report {out}/report.json", file=sys.stderr)
  if rep["unmatched"]:
    print(f"{len(rep['unmatched'])} human clips have no robot motion (left out)", file=sys.stderr)
  return 0
