"""Issue 9: a robot config generated from the MJCF alone (G1 equivalence, H1 tree, H1 quality bars)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from humanoid_retarget.errors import RobotConfigError
from humanoid_retarget.robot.autoconfig import generate_config, generate_config_file
from humanoid_retarget.robot.config import ASSETS, load_robot, parse_robot_config

if sys.version_info >= (3, 11):
  import tomllib
else:  # pragma: no cover
  import tomli as tomllib

G1_XML = ASSETS / "unitree_g1" / "g1.xml"
G1_TOML = ASSETS / "unitree_g1" / "robot.toml"


def _by_human(cfg) -> dict[tuple[str, ...], str]:
  return {tuple(lk.human): lk.body for lk in cfg.links}


def _write(tmp_path: Path, name: str, text: str) -> Path:
  p = tmp_path / name
  p.write_text(text)
  return p


@pytest.fixture(scope="module")
def h1_xml(shared_robots) -> Path:
  p = shared_robots / "unitree_h1" / "h1.xml"
  if not p.exists():
    pytest.fail(f"{p} missing from the shared robots folder")
  return p


@pytest.fixture(scope="module")
def h1(h1_xml, tmp_path_factory):
  out = tmp_path_factory.mktemp("h1") / "h1.toml"
  generate_config_file(h1_xml, str(out))
  return load_robot(str(out))


# --- the G1: same bodies as the hand-written config ---------------------------------------------------


def test_g1_generated_maps_the_same_bodies_as_the_shipped_config(tmp_path):
  out = tmp_path / "g1.toml"
  text, decisions = generate_config(G1_XML, str(out))
  out.write_text(text)
  gen, ref = parse_robot_config(out), parse_robot_config(G1_TOML)
  g, r = _by_human(gen), _by_human(ref)
  assert set(g) == set(r)  # every human joint the G1 config tracks, and no other
  for human, body in r.items():
    assert g[human] == body, f"{human}: generated {g[human]}, shipped {body}"
  for key in ("root_body", "left_foot", "right_foot", "left_hand", "right_hand"):
    assert getattr(gen, key) == getattr(ref, key), key
  # Points, modes, frames and orientations as the shipped config.
  gl = {lk.name: lk for lk in gen.links}
  for lk in ref.links:
    o = gl[lk.name]
    assert (o.mode, o.parent, o.frame, o.orientation) == (lk.mode, lk.parent, lk.frame, lk.orientation), lk.name
    assert o.point_between == lk.point_between, lk.name
    if lk.point is not None:
      np.testing.assert_allclose(o.point, lk.point, atol=1e-9)
  assert gen.min_foot_separation == pytest.approx(0.17)  # 7 cm wide feet + 10 cm, the hand-tuned G1 value
  assert gen.joint_limit_margin == pytest.approx(0.06)
  assert any("wrist" in n for n in gen.posture_weights) and all("wrist" in n for n in gen.posture_weights)
  # Relative MJCF path beside an output in the same folder tree; absolute elsewhere.
  assert Path(gen.mjcf).resolve() == G1_XML.resolve()
  assert any(d.startswith("frame:") and "+x is forward" in d for d in decisions)
  robot = load_robot(str(out))
  assert robot.model.num_joints == 29


# --- the H1: checked against its tree ----------------------------------------------------------------

# Read from h1.xml: legs hip_yaw > hip_roll > hip_pitch (thigh starts here, 0.4 m to the knee) > knee >
# ankle (1 DoF, three foot capsules); torso_link (1 DoF) carries the arms and the head geoms; arms
# shoulder_pitch > shoulder_roll > shoulder_yaw > elbow_link, no wrist: the forearm capsule ends at
# (0.28, 0, -0.015) on the elbow link, where a sphere stands for the hand.
H1_EXPECTED = {
  ("left_hip", "right_hip"): "pelvis",
  ("left_hip",): "left_hip_pitch_link",
  ("right_hip",): "right_hip_pitch_link",
  ("left_knee",): "left_knee_link",
  ("right_knee",): "right_knee_link",
  ("left_ankle",): "left_ankle_link",
  ("right_ankle",): "right_ankle_link",
  ("spine1",): "torso_link",
  ("left_shoulder", "right_shoulder"): "torso_link",
  ("head",): "torso_link",
  ("left_shoulder",): "left_shoulder_roll_link",
  ("right_shoulder",): "right_shoulder_roll_link",
  ("left_elbow",): "left_elbow_link",
  ("right_elbow",): "right_elbow_link",
  ("left_wrist",): "left_elbow_link",
  ("right_wrist",): "right_elbow_link",
}


def test_h1_config_matches_its_tree(h1, h1_xml):
  cfg = h1.config
  assert _by_human(cfg) == H1_EXPECTED
  assert (cfg.root_body, cfg.left_foot, cfg.right_foot) == ("pelvis", "left_ankle_link", "right_ankle_link")
  assert (cfg.left_hand, cfg.right_hand) == ("", "")  # no hand body
  links = {lk.name: lk for lk in cfg.links}
  np.testing.assert_allclose(links["left_wrist"].point, [0.28, 0.0, -0.015], atol=1e-9)
  np.testing.assert_allclose(links["right_wrist"].point, [0.28, 0.0, -0.015], atol=1e-9)
  np.testing.assert_allclose(links["head"].point, [0.05, 0.0, 0.64], atol=1e-9)  # the geom named "head"
  assert links["pelvis"].point_between == ["left_hip_pitch_link", "right_hip_pitch_link"]
  assert links["chest"].point_between == ["left_shoulder_roll_link", "right_shoulder_roll_link"]
  assert {frozenset(p) for p in cfg.collision_ignore} == {
    frozenset(("torso_link", "left_shoulder_roll_link")), frozenset(("torso_link", "right_shoulder_roll_link"))}
  # Feet: 0.088 m wide (capsule at y = +-0.03, radius 0.014) + 0.10 m; sole 0.056 + 0.014 below the ankle.
  assert cfg.min_foot_separation == pytest.approx(0.19)
  for side in ("left", "right"):
    assert h1.foot_points[side][:, 2].min() == pytest.approx(-0.07)
  assert np.all(np.isfinite(h1.velocity_limits)) and h1.model.num_joints == 19
  assert Path(cfg.mjcf).resolve() == h1_xml.resolve()


def test_h1_decisions_explain_the_ambiguous_choices(h1_xml):
  text, decisions = generate_config(h1_xml)
  joined = "\n".join(decisions)
  assert "left_hip_yaw_link" in joined and "Override" in joined  # the hip group is ambiguous: said so
  assert "no wrist body" in joined
  assert "torque motor" in text  # velocity limits say where they come from
  raw = tomllib.loads(text)
  assert raw["name"] == "h1" and len(raw["links"]) == 16


def test_h1_from_the_xml_uses_a_content_keyed_cache(h1_xml, tmp_path, monkeypatch):
  monkeypatch.setenv("HUMANOID_RETARGET_CACHE", str(tmp_path))
  p1 = generate_config_file(h1_xml)
  assert Path(p1).parent.parent == tmp_path and Path(p1).exists()
  mtime = Path(p1).stat().st_mtime_ns
  robot = load_robot(str(h1_xml))
  assert robot.config.path == p1 and Path(p1).stat().st_mtime_ns == mtime  # reused, not rewritten
  # A changed MJCF gets its own file.
  other = tmp_path / "h1_copy.xml"
  other.write_text(Path(h1_xml).read_text().replace('range="-0.43 0.43"', 'range="-0.4 0.4"'))
  assert generate_config_file(other) != p1


def test_robot_init_cli(h1_xml, tmp_path, capsys):
  from humanoid_retarget.cli.main import main

  out = tmp_path / "robots" / "h1.toml"
  out.parent.mkdir()
  assert main(["robot", "init", str(h1_xml), "-o", str(out)]) == 0
  err = capsys.readouterr().err
  assert "left_hip_pitch_link" in err and f"wrote {out}" in err
  assert load_robot(str(out)).config.name == "h1"
  assert main(["robot", "init", str(h1_xml), "-o", str(out)]) == 2  # exists: refused without --overwrite
  assert "--overwrite" in capsys.readouterr().err


# --- the H1: retargeting quality ----------------------------------------------------------------------

H1_CLIPS = [
  "dataset-2_walk_normal_001.bvh",
  "dataset-2_run_normal_001.bvh",
  "dataset-2_wave-both-hands_normal_001.bvh",
  "dataset-2_wave-both-hands_masculine_002.bvh",  # toes out all along: the H1's hip-yaw housings meet
]


@pytest.mark.parametrize("clip", H1_CLIPS)
def test_h1_retargeting_meets_the_quality_bars(h1, shared_data, clip):
  from humanoid_retarget.eval.metrics import evaluate_motion
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.retarget.kinematic import retarget_kinematic

  path = shared_data / "bandai2" / clip
  if not path.exists():
    pytest.fail(f"{path} missing from the shared data")
  human = load_human(str(path))
  motion = retarget_kinematic(human, h1)
  assert motion.dof_pos.shape == (human.num_frames, 19)
  assert motion.joint_names == h1.model.joint_names and motion.body_names == h1.model.body_names
  m = evaluate_motion(h1, motion, human, clip=clip)
  assert m.joint_jump_pct == 0.0
  assert m.penetration_pct <= 1.0
  assert m.self_collision_pct <= 2.0
  assert m.keypoint_error_cm is not None and m.keypoint_error_cm < 10.0


def test_h1_motion_refuses_the_g1_csv(h1, shared_data):
  from humanoid_retarget.errors import RetargetError
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.io.export import csv_rows
  from humanoid_retarget.retarget.kinematic import retarget_kinematic

  human = load_human(str(shared_data / "bandai2" / "dataset-2_walk_normal_001.bvh"))
  motion = retarget_kinematic(human.slice(0, 30), h1)
  with pytest.raises(RetargetError, match="G1"):
    csv_rows(motion)


# --- synthetic models: rules, not names -----------------------------------------------------------------


def _tiny(legs: bool = True, arms: bool = True, forearm: bool = True, foot: str = "box") -> str:
  """A small humanoid with meaningless body names: base, chest, limbs a/b/c and p/q."""
  parts = []
  if legs:
    for s, y in (("l", 0.1), ("r", -0.1)):
      if foot == "box":
        fg = '<geom type="box" size="0.08 0.03 0.01" pos="0.04 0 -0.04"/>'
      elif foot == "visual":
        fg = '<geom type="box" size="0.08 0.03 0.015" pos="0.04 0 -0.05" contype="0" conaffinity="0"/>'
      else:
        fg = ""
      parts.append(f"""
      <body name="{s}a" pos="0 {y} -0.05"><joint name="{s}j1" axis="0 1 0" range="-1.5 1.5"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.35" size="0.03"/>
        <body name="{s}b" pos="0 0 -0.4"><joint name="{s}j2" axis="0 1 0" range="0 2"/>
          <geom type="capsule" fromto="0 0 -0.05 0 0 -0.35" size="0.03"/>
          <body name="{s}c" pos="0 0 -0.4"><joint name="{s}j3" axis="0 1 0" range="-0.5 0.5"/>{fg}</body>
        </body>
      </body>""")
  arm_parts = []
  if arms:
    for s, y in (("l", 0.18), ("r", -0.18)):
      fa = ('<geom type="capsule" fromto="0 0 0 0.22 0 0" size="0.02"/>' if forearm
            else '<inertial pos="0.1 0 0" mass="0.5" diaginertia="0.001 0.001 0.001"/>')
      arm_parts.append(f"""
        <body name="{s}p" pos="0 {y} 0.2"><joint name="{s}k1" axis="0 1 0" range="-2 2"/>
          <geom type="capsule" fromto="0 0 -0.03 0 0 -0.22" size="0.03"/>
          <body name="{s}q" pos="0 0 -0.25"><joint name="{s}k2" axis="0 1 0" range="-2 2"/>{fa}</body>
        </body>""")
  return f"""<mujoco model="tiny">
  <worldbody>
    <body name="base" pos="0 0 0.95">
      <freejoint/>
      <geom type="sphere" size="0.06"/>
      {''.join(parts)}
      <body name="chest" pos="0 0 0.1"><joint name="spine" axis="0 0 1" range="-1 1"/>
        <geom type="box" size="0.06 0.1 0.15" pos="0 0 0.12"/>
        {''.join(arm_parts)}
      </body>
    </body>
  </worldbody>
</mujoco>
"""


def test_tiny_robot_is_mapped_by_geometry_not_names(tmp_path):
  xml = _write(tmp_path, "tiny.xml", _tiny())
  out = tmp_path / "tiny.toml"
  generate_config_file(xml, str(out))
  robot = load_robot(str(out))
  got = _by_human(robot.config)
  assert got[("left_hip",)] == "la" and got[("right_hip",)] == "ra"
  assert got[("left_knee",)] == "lb" and got[("left_ankle",)] == "lc"
  assert got[("left_shoulder",)] == "lp" and got[("left_elbow",)] == "lq" and got[("left_wrist",)] == "lq"
  assert got[("right_elbow",)] == "rq" and got[("spine1",)] == "chest" and got[("left_hip", "right_hip")] == "base"
  links = {lk.name: lk for lk in robot.config.links}
  np.testing.assert_allclose(links["left_wrist"].point, [0.22, 0.0, 0.0])
  # Head: no head body or geom above the shoulders' reach -> a point above the shoulders on the chest.
  assert links["head"].body == "chest" and links["head"].point[2] > 0.2
  # Collision box foot: its corners are the sole (not the capsule the solver approximates it with).
  assert robot.foot_points["left"][:, 2].min() == pytest.approx(-0.05)
  assert robot.config.min_foot_separation == pytest.approx(0.16)  # 6 cm wide + 10 cm


def test_no_wrist_and_no_forearm_geometry_drops_the_hand_target(tmp_path, sample_bvh):
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.retarget.kinematic import retarget_kinematic

  xml = _write(tmp_path, "tiny.xml", _tiny(forearm=False))
  text, decisions = generate_config(xml)
  raw = tomllib.loads(text)
  names = [lk["name"] for lk in raw["links"]]
  assert "left_wrist" not in names and "right_wrist" not in names and "left_elbow" in names
  assert any("hand target is dropped, not faked" in d for d in decisions)
  assert "Not tracked: left_wrist, right_wrist" in text
  # The retargeter runs without the wrist links.
  out = tmp_path / "tiny.toml"
  out.write_text(text)
  robot = load_robot(str(out))
  motion = retarget_kinematic(load_human(str(sample_bvh)).slice(0, 30), robot)
  assert motion.dof_pos.shape == (30, robot.model.num_joints) and np.all(np.isfinite(motion.dof_pos))


def test_visual_only_feet_give_sole_points(tmp_path):
  xml = _write(tmp_path, "tiny.xml", _tiny(foot="visual"))
  out = tmp_path / "tiny.toml"
  generate_config_file(xml, str(out))
  robot = load_robot(str(out))
  pts = robot.foot_points["left"]
  assert pts[:, 2].min() == pytest.approx(-0.065) and len(pts) >= 4
  assert pts[:, 0].max() == pytest.approx(0.12) and pts[:, 0].min() == pytest.approx(-0.04)


@pytest.mark.parametrize("kw,missing", [
  ({"legs": False}, "no recognisable legs"),
  ({"arms": False}, "no recognisable arms"),
  ({"legs": False, "arms": False}, "no recognisable legs"),
])
def test_missing_limbs_give_a_one_line_error(tmp_path, kw, missing):
  xml = _write(tmp_path, "bad.xml", _tiny(**kw))
  with pytest.raises(RobotConfigError) as ei:
    generate_config(xml)
  msg = str(ei.value)
  assert missing in msg and "\n" not in msg and str(xml) in msg


def test_missing_limbs_error_through_load_robot_and_cli(tmp_path, capsys, monkeypatch):
  from humanoid_retarget.cli.main import main

  monkeypatch.setenv("HUMANOID_RETARGET_CACHE", str(tmp_path / "cache"))
  xml = _write(tmp_path, "armless.xml", _tiny(arms=False))
  with pytest.raises(RobotConfigError, match="no recognisable arms"):
    load_robot(str(xml))
  assert main(["robot", "init", str(xml), "-o", str(tmp_path / "x.toml")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and "no recognisable arms" in err and len(err.splitlines()) == 1
