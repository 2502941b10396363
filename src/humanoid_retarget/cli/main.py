"""``humanoid-retarget``: one entry point, one module per subcommand.

Each subcommand is a typed function parsed by tyro; modules are imported only when their command
runs, so ``--help`` and light commands start fast. Errors caused by input print one line
(``error: FILE: problem``) and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys

# command words -> "module:function". Two-word commands form groups ("robot init").
COMMANDS: dict[str, str] = {
  "retarget": "humanoid_retarget.cli.retarget_cmd:retarget",
  "export": "humanoid_retarget.cli.export_cmd:export",
  "eval": "humanoid_retarget.cli.eval_cmd:evaluate",
  "sample": "humanoid_retarget.cli.sample_cmd:sample",
  "stream": "humanoid_retarget.cli.stream_cmd:stream",
  "dataset build": "humanoid_retarget.cli.dataset_cmd:build",
  "train": "humanoid_retarget.cli.train_cmd:train",
  "robot init": "humanoid_retarget.cli.robot_cmd:init",
  "render": "humanoid_retarget.cli.render_cmd:render",
  "view": "humanoid_retarget.cli.view_cmd:view",
  "report": "humanoid_retarget.cli.report_cmd:report",
  "track-eval": "humanoid_retarget.cli.track_cmd:track_eval",
  "track-train": "humanoid_retarget.cli.track_train_cmd:track_train",
  "cluster": "humanoid_retarget.cli.cluster_cmd:cluster",
}

HELP = {
  "retarget": "human motion (BVH / AMASS; a file or a folder) -> robot motion .npz",
  "export": "motion .npz -> mjlab / beyondmimic tracking npz, G1 CSV, GMR pickle",
  "eval": "quality metrics of robot motions (table and JSON)",
  "sample": "write the built-in sample human motion (BVH) the project generates itself",
  "stream": "live retargeting: BVH frames over TCP (or --replay FILE) in, robot frames as JSON over UDP out",
  "dataset build": "kinematic (human, robot) pairs for the neural retargeter: curated, split by clip",
  "train": "train the neural retargeter (pre-train, or fine-tune with --init CKPT --lr ...)",
  "robot init": "robot config (TOML) from a robot's MJCF: body per human joint, feet, hands, limits",
  "render": "robot motion .npz -> mp4 / GIF / PNG (MuJoCo offscreen), with the human and other methods",
  "view": "interactive 3D viewer in the browser (viser): robot and human, playback, clip list",
  "report": "eval JSON -> self-contained HTML report: metric tables and per-clip plots",
  "track-eval": "simulated G1 tracks motions (MuJoCo, inverse-dynamics tracker): success rate, MPJPE, physics pairs",
  "track-train": "PPO tracking expert (rsl-rl-lib, CPU) on a clip or a cluster's clips: checkpoints, success, MPJPE",
  "cluster": "human motions -> motion-VAE latents -> cosine k-means clusters (JSON; one expert per cluster)",
}


def _usage() -> str:
  lines = ["usage: humanoid-retarget COMMAND [options]   (COMMAND --help for its options)", "", "commands:"]
  for name in COMMANDS:
    lines.append(f"  {name:<14} {HELP.get(name, '')}")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(_usage())
    return 0
  name = argv[0]
  rest = argv[1:]
  if len(argv) > 1 and f"{argv[0]} {argv[1]}" in COMMANDS:
    name = f"{argv[0]} {argv[1]}"
    rest = argv[2:]
  if name not in COMMANDS:
    groups = sorted({k.split()[1] for k in COMMANDS if k.startswith(name + " ")})
    if groups:
      print(f"error: '{name}' needs a subcommand: {', '.join(groups)}", file=sys.stderr)
    else:
      print(f"error: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
    return 2
  mod, fn = COMMANDS[name].split(":")
  func = getattr(importlib.import_module(mod), fn)
  import tyro

  from humanoid_retarget.errors import RetargetError

  try:
    result = tyro.cli(func, args=rest, prog=f"humanoid-retarget {name}", description=func.__doc__)
  except RetargetError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
  return int(result or 0)


if __name__ == "__main__":
  sys.exit(main())
