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


def _stepping_motion(sim, seconds: float = 5.0):
  """Standing pose whose contact labels lift the right foot, then the left, 0.4 s each (a step in place)."""
  mo = _standing_motion(sim, seconds)
  t = np.arange(mo.num_frames) / mo.fps
  ph = (t - 1.0) % 1.2
  c = np.ones((mo.num_frames, 2), dtype=bool)
  c[:, 1] &= ~((t >= 1.0) & (ph < 0.4))
  c[:, 0] &= ~((t >= 1.0) & (ph >= 0.6) & (ph < 1.0))
  mo.contacts = c
  return mo


def test_feasible_com_keeps_zmp_on_soles():
  from humanoid_retarget.sim.tracker import FOOT_CORNERS, _clamp_to_support, feasible_com_trajectory

  T, dt = 150, 0.02
  t = np.arange(T) * dt
  com = np.stack([0.02 * np.ones(T), 0.12 * np.sin(2 * np.pi * t), np.full(T, 0.7)], axis=1)  # sways far out
  vel = np.gradient(com, dt, axis=0)
  acc = np.gradient(vel, dt, axis=0)
  feet = np.zeros((T, 2, 3))
  feet[:, 0, 1], feet[:, 1, 1] = 0.1, -0.1
  feet[..., 2] = 0.035
  mats = np.tile(np.eye(3), (T, 2, 1, 1))
  contact = np.ones((T, 2), dtype=bool)
  contact[50:75, 1] = False  # right foot up: the ZMP must be on the left sole
  c, v, a = feasible_com_trajectory(com, vel, acc, feet, mats, contact, dt, margin=0.01)
  zmp = c[:, :2] - a[:, :2] * 0.7 / 9.81
  raw = com[:, :2] - acc[:, :2] * 0.7 / 9.81
  outside = 0
  for k in range(T):
    pts = np.concatenate([(feet[k, f] + FOOT_CORNERS)[:, :2] for f in np.flatnonzero(contact[k])])
    assert np.linalg.norm(_clamp_to_support(zmp[k], pts) - zmp[k]) < 2e-3, k
    outside += np.linalg.norm(_clamp_to_support(raw[k], pts) - raw[k]) > 0.01
  assert outside > 20  # the reference itself was infeasible
  assert np.allclose(c[:, 2], com[:, 2])


def test_swing_lift_profile():
  from humanoid_retarget.sim.tracker import swing_lift

  contact = np.ones((40, 2), dtype=bool)
  contact[10:30, 0] = False
  lift, rate = swing_lift(contact, 0.04, 0.02)
  assert np.all(lift[contact[:, 0], 0] == 0.0) and np.all(lift[:, 1] == 0.0)
  assert lift[19:21, 0].max() == pytest.approx(0.04, abs=1e-3)
  assert rate[12, 0] > 0 > rate[28, 0]


def test_stepping_reference_switches_settings(sim):
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import STEPPING_OVERRIDES, TrackerConfig, WholeBodyQPTracker, stepping_reference

  fps = 50.0
  c = np.ones((250, 2), dtype=bool)
  assert not stepping_reference(c, fps)
  c[100:120, 0] = False  # one 0.4 s shuffle in 5 s: still an upper-body clip
  assert not stepping_reference(c, fps)
  t = np.arange(250) / fps
  walk = np.ones((250, 2), dtype=bool)
  walk[:, 0] = (t % 1.0) < 0.5
  walk[:, 1] = (t % 1.0) >= 0.4  # a step every 0.5 s
  assert stepping_reference(walk, fps)
  tr = WholeBodyQPTracker(sim, TrackerConfig(w_com=12.0))
  tr.set_reference(make_reference(_stepping_motion(sim, 3.0), sim))
  assert tr.stepping and tr.cfg.w_com == STEPPING_OVERRIDES["w_com"] and not tr.cfg.dcm_control
  tr.set_reference(make_reference(_standing_motion(sim, 1.0), sim))
  assert not tr.stepping and tr.cfg.w_com == 12.0 and tr.cfg.dcm_control
  tr = WholeBodyQPTracker(sim, TrackerConfig(stepping=None))
  tr.set_reference(make_reference(_stepping_motion(sim, 3.0), sim))
  assert not tr.stepping and tr.cfg.w_com == TrackerConfig().w_com


def test_qp_tracker_steps_in_place(sim):
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import TrackerConfig, WholeBodyQPTracker, track

  ref = make_reference(_stepping_motion(sim), sim)
  tr = WholeBodyQPTracker(sim, TrackerConfig(w_joint=0.2, w_com=30.0, strict_schedule=True, stepping=None))
  res = track(sim, ref, tracker=tr)
  assert res.success, f"fell at step {res.failed_at}"
  single = res.contacts.sum(axis=1) == 1
  ref_single = ref.contacts.sum(axis=1) == 1
  assert single.mean() > 0.8 * ref_single.mean()  # it really stands on one foot when told to
  feet = [sim.body_index("left_ankle_roll_link"), sim.body_index("right_ankle_roll_link")]
  assert (res.body_pos[:, feet, 2] - res.body_pos[0, feet, 2]).max(axis=0).min() > 0.02  # both feet lifted
  assert np.linalg.norm(res.qpos[-1, :2] - res.qpos[0, :2]) < 0.1
  # the default (locomotion settings for a stepping reference) steps too, but drifts more (little re-anchoring)
  res = track(sim, ref)
  assert res.success, f"fell at step {res.failed_at}"
  assert (res.body_pos[:, feet, 2] - res.body_pos[0, feet, 2]).max(axis=0).min() > 0.02
  assert np.linalg.norm(res.qpos[-1, :2] - res.qpos[0, :2]) < 0.4


def test_qp_tracker_torques_within_limits(sim):
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import TrackerConfig, WholeBodyQPTracker, track

  ref = make_reference(_stepping_motion(sim, 2.0), sim)
  tr = WholeBodyQPTracker(sim, TrackerConfig(w_joint=0.2, w_com=30.0, strict_schedule=True, effort_margin=0.5))
  taus = []
  solve = tr.solve

  def record(d, r, k):
    tau, acc = solve(d, r, k)
    taus.append(tau)
    return tau, acc

  tr.solve = record
  track(sim, ref, tracker=tr)
  taus = np.abs(np.array(taus))
  assert len(taus) > 50
  assert np.all(taus <= 0.5 * sim.effort + 1e-6)


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


def test_sampling_tracker_nominal_and_standing(sim):
  import mujoco as mj

  from humanoid_retarget.sim.mpc import SamplingConfig, SamplingTracker
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import WholeBodyQPTracker, track

  ref = make_reference(_standing_motion(sim, 1.0), sim)
  d = mj.MjData(sim.model)
  d.qpos[:], d.qvel[:] = ref.qpos[0], ref.qvel[0]
  mj.mj_forward(sim.model, d)
  qp = WholeBodyQPTracker(sim)
  qp.set_reference(ref)
  zero = SamplingTracker(sim, SamplingConfig(samples=4, horizon=3, sigma=0.0))
  zero.set_reference(ref)
  np.testing.assert_allclose(zero.control(d, ref, 0), qp.control(d, ref, 0), atol=1e-9)  # no noise: the QP
  zero.close()
  mpc = SamplingTracker(sim, SamplingConfig(samples=8, horizon=5))
  res = track(sim, ref, tracker=mpc)
  mpc.close()
  assert res.success and mpc.replaced > 0  # perturbed plans were chosen, and it still stands


def test_rotation_helpers_match_scipy():
  from scipy.spatial.transform import Rotation

  from humanoid_retarget.sim.tracker import _quat_mat, _rotvec

  rng = np.random.default_rng(3)
  for r in Rotation.random(300, random_state=4):
    R = r.as_matrix()
    assert np.allclose(_rotvec(R), r.as_rotvec(), atol=1e-7)
    assert np.allclose(_quat_mat(r.as_quat(scalar_first=True)), R, atol=1e-12)
  small = Rotation.from_rotvec(1e-8 * rng.normal(size=3))
  assert np.allclose(_rotvec(small.as_matrix()), small.as_rotvec(), atol=1e-12)
  near_pi = Rotation.from_rotvec(3.1 * np.array([0.0, 0.6, 0.8]))
  assert np.allclose(_rotvec(near_pi.as_matrix()), near_pi.as_rotvec(), atol=1e-7)


def test_search_candidates_and_dcm_distance():
  from humanoid_retarget.sim.search import SearchConfig, candidate_offsets, dcm_distance

  main, ext = candidate_offsets(SearchConfig())
  assert len(main) == 6 and all(c[2] == 0.0 and c[3] == 0.0 and c[4] == 0 for c in main)
  offsets, early = ext[:5 * 4 * 5], ext[5 * 4 * 5:]
  assert offsets[0] == (0.0, 0.0, 0.0, 0.0, 0) and all(c[4] == 0 for c in offsets)
  size = [abs(a) + abs(b) + 2 * (abs(c) + abs(d)) for a, b, c, d, _ in offsets]
  assert size == sorted(size)
  # then the early touchdowns: 4 steps early before 8, each from the unchanged foothold outwards
  assert len(early) == 2 * 3 * 4 and [c[4] for c in early] == [4] * 12 + [8] * 12
  assert early[0] == (0.0, 0.0, 0.0, 0.0, 4) and early[12] == (0.0, 0.0, 0.0, 0.0, 8)
  assert candidate_offsets(SearchConfig(extended=False))[1] == []
  feet = np.array([[0.0, 0.1], [0.0, -0.1]])
  assert dcm_distance(np.array([0.05, 0.0]), feet) == pytest.approx(0.05)  # in front of the middle
  assert dcm_distance(np.array([0.0, 0.3]), feet) == pytest.approx(0.2)  # beyond the left foot
  assert dcm_distance(np.array([0.0, -0.05]), feet) == pytest.approx(0.0)  # between the feet


def test_tracker_state_round_trip(sim):
  import mujoco

  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import WholeBodyQPTracker

  ref = make_reference(_stepping_motion(sim, 2.0), sim)
  tr = WholeBodyQPTracker(sim)
  tr.set_reference(ref)
  m = sim.model
  d = mujoco.MjData(m)
  d.qpos[:], d.qvel[:] = ref.qpos[0], ref.qvel[0]
  mujoco.mj_forward(m, d)
  for k in range(60):  # into the first swing
    d.ctrl[:] = tr.control(d, ref, k)
    for _ in range(sim.config.decimation):
      mujoco.mj_step(m, d)
    mujoco.mj_forward(m, d)
  saved, d0 = tr.get_state(), mujoco.MjData(m)
  mujoco.mj_copyData(d0, m, d)
  first = tr.control(d, ref, 60)
  tr.step_bias[:] = 0.3  # a look-ahead rollout changes the controller's memory ...
  for k in range(61, 70):
    tr.control(d, ref, k)
  tr.set_state(saved)  # ... and restoring it gives the same targets again
  assert np.array_equal(tr.control(d0, ref, 60), first)


def test_footstep_search_in_place(sim):
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import TrackerConfig, track

  ref = make_reference(_stepping_motion(sim, 3.0), sim)
  res = track(sim, ref)  # a stepping reference: the search decides each swing's foothold
  assert res.success, f"fell at step {res.failed_at}"
  assert len(res.decisions) >= 3
  for k, foot, off, com, score, survivors, early in res.decisions:
    assert foot in (0, 1) and survivors >= 1 and score > -100.0  # a candidate survived the look-ahead
    assert len(off) == 2 and np.all(np.abs(off) <= 0.2 + 1e-9) and np.all(np.abs(com) <= 0.03 + 1e-9)
    assert early in (0, 4, 8)
  assert track(sim, ref, TrackerConfig(search=None)).decisions == []


def test_footstep_search_completes_shared_walk(sim, shared_data):
  from humanoid_retarget.pipeline import RetargetOptions, retarget_file
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import TrackerConfig, track

  bvh = shared_data / "bandai2" / "dataset-2_walk-turn-right_elderly_001.bvh"
  ref = make_reference(retarget_file(str(bvh), RetargetOptions()), sim)
  plain = track(sim, ref, TrackerConfig(search=None))
  searched = track(sim, ref)
  assert not plain.success  # the QP alone falls within a few steps ...
  assert searched.success, f"fell at {searched.failed_at}"  # ... with the footstep search it walks to the end
  assert len(searched.decisions) > 10


def test_step_control_matches_mj_step(sim):
  """One control step by mj_step2 / mj_step / mj_step1 reaches the same state as decimation x mj_step."""
  from humanoid_retarget.sim.tracker import step_control

  m = sim.model
  a, b = mujoco.MjData(m), mujoco.MjData(m)
  for d in (a, b):
    d.qpos[2] = 0.8  # zero joint angles, dropped from just above the floor: contacts appear on the way
    d.qvel[6:] = 0.3
    mujoco.mj_forward(m, d)
  ctrl = np.full(sim.num_joints, 0.1)
  for _ in range(5):
    step_control(m, a, ctrl, sim.config.decimation)
    b.ctrl[:] = ctrl
    for _ in range(sim.config.decimation):
      mujoco.mj_step(m, b)
    mujoco.mj_forward(m, b)
  assert a.time == pytest.approx(b.time)
  np.testing.assert_allclose(a.qpos, b.qpos, atol=1e-9)
  np.testing.assert_allclose(a.qvel, b.qvel, atol=1e-6)
  np.testing.assert_allclose(a.xpos, b.xpos, atol=1e-9)  # kinematics are current (what the tracker reads)
  np.testing.assert_allclose(a.qfrc_bias, b.qfrc_bias, atol=1e-6)
  assert a.ncon == b.ncon > 0


def test_search_termination_check_matches_terminations(sim):
  """The search's scalar termination test agrees with termination_mask on perturbed states."""
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.search import FootstepSearch
  from humanoid_retarget.sim.terminations import termination_mask
  from humanoid_retarget.sim.tracker import WholeBodyQPTracker

  ref = make_reference(_stepping_motion(sim, 1.0), sim)
  tr = WholeBodyQPTracker(sim)
  tr.set_reference(ref)
  s = FootstepSearch(sim, tr, ref)
  m, d = sim.model, s.d2
  rng = np.random.default_rng(0)
  verdicts = []
  for trial in range(60):
    k = int(rng.integers(ref.num_frames))
    d.qpos[:] = ref.qpos[k]
    d.qpos[2] += rng.uniform(-0.35, 0.35)  # height errors around the 0.25 m threshold
    d.qpos[3:7] = [1.0, *rng.normal(0.0, 0.35, 3)]  # tilts around the 0.8 threshold
    d.qpos[3:7] /= np.linalg.norm(d.qpos[3:7])
    d.qpos[7:] += rng.normal(0.0, 0.3, sim.num_joints)
    mujoco.mj_kinematics(m, d)
    want = bool(termination_mask(d.xpos[1:], d.xquat[1:], ref.body_pos[k], ref.body_quat[k], s.anchor, s.ees))
    assert s._fails(k) == want, trial
    verdicts.append(want)
  assert 10 < sum(verdicts) < 50  # both outcomes were exercised


def test_early_touchdown_time_warp(sim):
  """A swing told to land n steps early runs through the reference's swing faster and then waits."""
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import WholeBodyQPTracker

  ref = make_reference(_stepping_motion(sim, 2.0), sim)
  tr = WholeBodyQPTracker(sim)
  tr.set_reference(ref)
  con = tr.feat.contact[:, 0]
  k0 = int(np.flatnonzero(con[1:] < con[:-1])[0]) + 1  # the left foot's first lift-off
  dur = int(tr.to_touchdown[k0, 0])  # its swing lasts this many control steps in the reference
  assert dur > 8
  assert tr._fk(k0 + 3, 0) == (k0 + 3, 1.0)  # on the reference's timing by default
  tr.lift_k[0], tr.swing_adv[0] = k0, 4
  rate = dur / (dur - 4)
  for j in range(dur + 3):
    kw, r = tr._fk(k0 + j, 0)
    if j < dur:
      assert r == pytest.approx(rate) and kw == min(round(k0 + j * rate), k0 + dur)
    else:
      assert (kw, r) == (k0 + j, 1.0)  # the reference has caught up
  assert tr._fk(k0 + dur - 4, 0)[0] == k0 + dur  # lands (the reference's touchdown frame) 4 steps early
  assert con[tr._fk(k0 + dur - 4, 0)[0]] and not con[tr._fk(k0 + dur - 5, 0)[0]]
  tr.swing_adv[1] = 4  # the other foot's warp does not touch this one
  tr.swing_adv[0] = 0
  assert tr._fk(k0 + 2, 0) == (k0 + 2, 1.0)
  # A swing that the reference never ends (the foot is still up at the last frame) stops on the last frame.
  T = len(con)
  tr.to_touchdown[k0:, 0] = T - np.arange(k0, T)
  tr.lift_k[0], tr.swing_adv[0] = k0, 4
  assert max(tr._fk(k, 0)[0] for k in range(k0, T)) == T - 1


def test_settle_on_floor_puts_the_stance_foot_down(sim):
  from humanoid_retarget.sim.tracker import foot_floor_gap, settle_on_floor

  m = sim.model
  d = mujoco.MjData(m)
  d.qpos[2] = 1.0  # zero joint angles, well above the floor
  mujoco.mj_forward(m, d)
  gap0 = foot_floor_gap(sim, d)
  assert gap0[0] == pytest.approx(gap0[1], abs=1e-6) and 0.15 < gap0[0] < 0.3  # symmetric pose
  d.qpos[2] = 1.0 - gap0[0] + 0.012  # both soles 12 mm above the floor
  mujoco.mj_forward(m, d)
  np.testing.assert_allclose(foot_floor_gap(sim, d), 0.012, atol=1e-6)
  assert settle_on_floor(sim, d, np.array([False, False])) == 0.0  # no stance foot: nothing to do
  shift = settle_on_floor(sim, d, np.array([True, False]))
  assert shift == pytest.approx(-0.0125, abs=1e-6)  # down to 0.5 mm into the floor
  np.testing.assert_allclose(foot_floor_gap(sim, d), -0.0005, atol=1e-6)
  assert d.ncon > 0  # MuJoCo reports the foot contacts
  d.qpos[2] += 0.2  # far too high: the shift is capped
  mujoco.mj_forward(m, d)
  assert settle_on_floor(sim, d, np.array([True, True]), max_shift=0.03) == pytest.approx(-0.03)


def test_search_backtrack_takes_another_candidate(sim):
  """After a failure, the search goes back to its last decision and takes a different surviving candidate."""
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.search import FootstepSearch, SearchConfig
  from humanoid_retarget.sim.tracker import WholeBodyQPTracker, step_control

  ref = make_reference(_stepping_motion(sim, 3.0), sim)
  tr = WholeBodyQPTracker(sim)
  tr.set_reference(ref)
  search = FootstepSearch(sim, tr, ref, SearchConfig(horizon=30, backtrack=2))
  m = sim.model
  d = mujoco.MjData(m)
  d.qpos[:], d.qvel[:] = ref.qpos[0], ref.qvel[0]
  mujoco.mj_forward(m, d)
  k = 0
  while not search.checkpoints:  # walk up to the first swing's decision and a bit beyond
    before = tr.was_stance.copy()
    ctrl = tr.control(d, ref, k)
    search.decide(d, k, ctrl, before)
    step_control(m, d, ctrl, sim.config.decimation)
    k += 1
  c = search.checkpoints[-1]
  first = search.decisions[-1]
  for _ in range(5):
    step_control(m, d, tr.control(d, ref, k), sim.config.decimation)
    k += 1
  back = search.backtrack(d, k)  # as if the robot had fallen at step k
  assert back is not None
  kb, ctrl_b = back
  assert kb == c["k"] and np.array_equal(ctrl_b, c["ctrl"])
  assert d.time == pytest.approx(c["d"].time)  # the simulation is back at the decision
  np.testing.assert_array_equal(d.qpos, c["d"].qpos)
  assert len(search.decisions) == c["n"] + 1 and search.decisions[-1][0] == first[0]
  assert search.decisions[-1][2:4] != first[2:4] or search.decisions[-1][6] != first[6]  # another candidate
  assert search.budget == 1 and search.backtracks == 1
  assert len(c["taken"]) == 2
