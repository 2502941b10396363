"""Simulation model, tracker and track-eval (issue 6)."""

from __future__ import annotations

import json
import math

import mujoco
import numpy as np
import pytest

from humanoid_retarget.sim import actuators as act
from humanoid_retarget.sim.model import build_robot_sim


@pytest.fixture(scope="module")
def sim():
  return build_robot_sim()


def test_armatures_match_mjlab():
  assert act.ARMATURE_5020 == pytest.approx(0.003610, abs=2e-6)
  assert act.ARMATURE_7520_14 == pytest.approx(0.010178, abs=2e-6)
  assert act.ARMATURE_7520_22 == pytest.approx(0.025102, abs=2e-6)
  assert act.ARMATURE_4010 == pytest.approx(0.00425, abs=1e-8)


def test_sim_model_actuators_gains_timestep(sim):
  m = sim.model
  assert m.nu == 29 and sim.num_joints == 29
  assert m.opt.timestep == pytest.approx(0.005)
  assert sim.config.decimation == 4 and sim.control_dt == pytest.approx(0.02)
  assert m.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
  assert m.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL
  assert m.geom("floor").type == mujoco.mjtGeom.mjGEOM_PLANE
  w = 2 * math.pi * 10.0
  expect = {
    "left_knee_joint": (act.ARMATURE_7520_22, 139.0), "left_hip_pitch_joint": (act.ARMATURE_7520_14, 88.0),
    "waist_yaw_joint": (act.ARMATURE_7520_14, 88.0), "left_hip_roll_joint": (act.ARMATURE_7520_22, 139.0),
    "right_ankle_pitch_joint": (2 * act.ARMATURE_5020, 50.0), "waist_pitch_joint": (2 * act.ARMATURE_5020, 50.0),
    "left_elbow_joint": (act.ARMATURE_5020, 25.0), "right_wrist_roll_joint": (act.ARMATURE_5020, 25.0),
    "left_wrist_yaw_joint": (act.ARMATURE_4010, 5.0),
  }
  for name, (arm, effort) in expect.items():
    i = sim.joint_names.index(name)
    assert sim.kp[i] == pytest.approx(arm * w * w, rel=1e-9), name
    assert sim.kd[i] == pytest.approx(4 * arm * w, rel=1e-9), name
    assert sim.effort[i] == pytest.approx(effort), name
    assert m.dof_armature[sim.dof_adr[i]] == pytest.approx(arm), name
  # actuator order = motion file joint order
  from humanoid_retarget.robot.config import load_robot

  assert sim.joint_names == load_robot("unitree_g1_29dof").joint_names


def test_parallel_rollout_matches_serial(sim):
  from humanoid_retarget.sim.parallel import BatchSim

  m = sim.model
  bs = BatchSim(sim, num_envs=3, nthread=2)
  d = mujoco.MjData(m)
  d.qpos[2] = 0.8
  bs.set_state_from(d)
  ctrl = np.tile(np.linspace(-0.2, 0.2, m.nu), (3, 1)) * np.array([[0.0], [1.0], [0.5]])
  bs.step(ctrl)
  d1 = mujoco.MjData(m)
  d1.qpos[2] = 0.8
  d1.ctrl[:] = ctrl[1]
  for _ in range(sim.config.decimation):
    mujoco.mj_step(m, d1)
  np.testing.assert_allclose(bs.qpos[1], d1.qpos, atol=1e-9)
  assert not np.allclose(bs.qpos[0], bs.qpos[1])


def _standing_motion(sim, seconds: float):
  from humanoid_retarget.io.motion import RobotMotion
  from humanoid_retarget.sim.reference import forward_bodies

  T = int(seconds * 30) + 1
  q = np.zeros(sim.num_joints)
  bend = {"hip_pitch": -0.3, "knee": 0.6, "ankle_pitch": -0.3, "elbow": 0.6}
  for i, n in enumerate(sim.joint_names):
    for k, v in bend.items():
      if k in n:
        q[i] = v
  qpos = np.concatenate([[0.0, 0.0, 0.76, 1.0, 0.0, 0.0, 0.0], q])
  pos, quat = forward_bodies(sim, qpos[None])
  return RobotMotion(
    robot="unitree_g1_29dof", fps=30.0, joint_names=list(sim.joint_names), dof_pos=np.tile(q, (T, 1)),
    root_pos=np.tile(qpos[:3], (T, 1)), root_quat=np.tile(qpos[3:7], (T, 1)), body_names=list(sim.body_names),
    body_pos_w=np.tile(pos, (T, 1, 1)), body_quat_w=np.tile(quat, (T, 1, 1)), contacts=np.ones((T, 2), bool),
  )


def test_tracker_holds_standing_pose(sim):
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import track

  ref = make_reference(_standing_motion(sim, 2.0), sim)
  res = track(sim, ref)
  assert res.success, f"fell at step {res.failed_at}"
  assert res.sim_time == pytest.approx(2.0, abs=0.03)
  assert res.body_pos[-1, sim.body_index("torso_link"), 2] > 0.8


def test_tracker_follows_shared_clip(sim, shared_data, tmp_path):
  from humanoid_retarget.pipeline import RetargetOptions, retarget_file
  from humanoid_retarget.sim.evaluate import evaluate_clip

  bvh = shared_data / "bandai2" / "dataset-2_wave-both-hands_active_001.bvh"
  motion = retarget_file(str(bvh), RetargetOptions())
  row, res, _ = evaluate_clip(sim, motion, bvh.name)
  assert row.success, f"failed at {row.failed_at_s:.2f} s"
  assert row.mpjpe_cm < 5.0
  assert row.complexity == "upper_body"


def test_track_eval_json(sim, tmp_path):
  from humanoid_retarget.cli.main import main
  from humanoid_retarget.io.motion import load_motion, save_motion

  p = tmp_path / "m" / "stand_idle.npz"
  save_motion(p, _standing_motion(sim, 1.0))
  out = tmp_path / "r.json"
  assert main(["track-eval", str(p.parent), "--json", str(out), "--save-dir", str(tmp_path / "phys")]) == 0
  doc = json.loads(out.read_text())
  for k in ("success_rate", "mpjpe_cm", "by_length", "by_complexity", "rows"):
    assert k in doc
  assert doc["success_rate"] == 1.0 and doc["mpjpe_cm"] < 3.0
  assert doc["by_length"]["short"]["clips"] == 1 and "success_rate" in doc["by_length"]["short"]
  assert doc["by_complexity"]["whole_body_primitive"]["clips"] == 1
  phys = load_motion(tmp_path / "phys" / "stand_idle.npz")
  assert phys.method == "physics" and phys.fps == pytest.approx(50.0)


def test_groups():
  from humanoid_retarget.sim.evaluate import complexity_group, length_group

  assert length_group(200, 30.0) == "medium" and length_group(60, 30.0) == "short"
  assert length_group(300, 30.0) == "long"
  assert complexity_group("dataset-2_wave-left-hand_active_001.npz") == "upper_body"
  assert complexity_group("walk-turn-left_01.npz") == "whole_body_primitive"
  assert complexity_group("dance1_subject2.npz") == "whole_body_complex"
