"""Shared fixtures. Tests that need ../shared/data skip when it is absent, except under CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HUMANOID_RETARGET_SHARED", REPO.parent / "shared"))


def _need(path: Path, what: str) -> Path:
  if not path.exists():
    msg = f"{what} not found at {path} (the shared data folder beside the project root)"
    if os.environ.get("CI"):
      pytest.fail(msg + "; CI is set, so this is an error")
    pytest.skip(msg)
  return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
  """../shared/data (folders bandai1, bandai2)."""
  return _need(SHARED / "data", "shared motion data")


@pytest.fixture(scope="session")
def shared_robots() -> Path:
  """../shared/robots (the Unitree H1)."""
  return _need(SHARED / "robots", "shared robot models")


@pytest.fixture(scope="session")
def g1():
  from humanoid_retarget.robot.config import load_robot

  return load_robot("unitree_g1_29dof")


@pytest.fixture(scope="session")
def sample_bvh(tmp_path_factory) -> Path:
  from humanoid_retarget.human.sample import sample_walk_bvh

  p = tmp_path_factory.mktemp("sample") / "walk.bvh"
  p.write_text(sample_walk_bvh())
  return p
