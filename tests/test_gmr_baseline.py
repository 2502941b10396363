"""The GMR-style benchmark baseline (benchmarks/gmr_baseline.py) on the first frames of the built-in sample.

mink and daqp come with the ``bench`` extra. Locally the test skips without them; under CI (env CI
set) they are installed, so a missing one is a failure, not a skip.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

FRAMES = 20
# Key-point error bound (cm). On these 20 frames the baseline measures 0.41 cm. Each known way to
# break it lands well above the bound: no position offsets (narrow human hips and short trunk kept)
# 1.79 cm, calibration without the pelvis/chest/foot orientations 1.67 cm, a uniform scale 15 % too
# large 1.51 cm. 1.2 cm leaves about 3x margin over the measured value and still catches each of them.
KEYPOINT_BOUND_CM = 1.2


def _require(module: str) -> None:
  if os.environ.get("CI"):
    importlib.import_module(module)  # CI installs the bench extra: an ImportError here fails the test
  else:
    pytest.importorskip(module)


@pytest.fixture(scope="module")
def baseline_run(sample_bvh, g1):
  _require("mink")
  _require("daqp")
  from benchmarks.gmr_baseline import GmrRetargeter

  from humanoid_retarget.human.load import load_human

  human = load_human(sample_bvh).slice(0, FRAMES)
  retargeter = GmrRetargeter(g1)
  return human, retargeter, retargeter.retarget(human)


def test_output_is_finite_motion(baseline_run, g1):
  human, _, motion = baseline_run
  assert motion.num_frames == FRAMES
  assert motion.method == "gmr_baseline"
  assert motion.dof_pos.shape == (FRAMES, g1.model.num_joints)
  assert list(motion.joint_names) == list(g1.model.joint_names)
  for name in ("dof_pos", "root_pos", "root_quat", "body_pos_w", "body_quat_w"):
    assert np.isfinite(getattr(motion, name)).all(), name
  np.testing.assert_allclose(np.linalg.norm(motion.root_quat, axis=-1), 1.0, atol=1e-6)


def test_within_joint_and_velocity_limits(baseline_run, g1):
  _, retargeter, motion = baseline_run
  lo, hi = g1.model.joint_range[:, 0], g1.model.joint_range[:, 1]
  q = motion.dof_pos
  assert (q >= lo - 1e-6).all() and (q <= hi + 1e-6).all()
  # VelocityLimit bounds each IK step by v_max * dt; a frame runs at most two stages of max_iter steps.
  cfg = retargeter.cfg
  per_frame = 2 * cfg.max_iter * cfg.velocity_limit * retargeter.dt
  assert np.abs(np.diff(q, axis=0)).max() <= per_frame + 1e-6


def test_lowest_point_on_floor(baseline_run, g1):
  from humanoid_retarget.eval.metrics import foot_lowest_points

  _, _, motion = baseline_run
  assert abs(float(foot_lowest_points(g1, motion).min())) < 1e-4


def test_keypoint_error_bound(baseline_run, g1):
  from humanoid_retarget.eval.metrics import evaluate_motion

  human, _, motion = baseline_run
  metrics = evaluate_motion(g1, motion, human)
  assert metrics.keypoint_error_cm is not None
  assert metrics.keypoint_error_cm < KEYPOINT_BOUND_CM, metrics
