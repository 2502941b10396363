"""The command line: single clip, folder batch with failures and resume, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from humanoid_retarget.cli.main import main
from humanoid_retarget.human.sample import sample_walk_bvh
from humanoid_retarget.io.motion import load_motion


def test_retarget_eval_export_single(tmp_path, sample_bvh, capsys):
  out = tmp_path / "walk.npz"
  assert main(["retarget", str(sample_bvh), "-o", str(out), "--quiet"]) == 0
  m = load_motion(out)
  assert m.method == "kinematic" and m.source == "walk.bvh" and m.num_frames == 120
  js = tmp_path / "e.json"
  assert main(["eval", str(out), "--human", str(sample_bvh), "--json", str(js)]) == 0
  doc = json.loads(js.read_text())
  assert doc["aggregate"]["joint_jump_pct"] == 0.0 and doc["clips"][0]["keypoint_error_cm"] < 5.0
  for fmt, name in (("csv", "w.csv"), ("mjlab", "w.npz"), ("gmr", "w.pkl"), ("beyondmimic", "wb.npz")):
    assert main(["export", str(out), "--format", fmt, "-o", str(tmp_path / name)]) == 0
    assert (tmp_path / name).stat().st_size > 1000


def test_batch_failures_listed_and_resume(tmp_path, capsys):
  src = tmp_path / "in"
  (src / "sub").mkdir(parents=True)
  good = sample_walk_bvh(seconds=1.5)
  (src / "a.bvh").write_text(good)
  (src / "sub" / "b.bvh").write_text(good)
  (src / "trunc.bvh").write_text(good[: len(good) // 2])
  (src / "nan.bvh").write_text(good.replace("0.00000", "nan", 1) if "0.00000" in good else good.replace(" 0.", " nan", 1))
  (src / "empty.bvh").write_text("")
  (src / "notbvh.bvh").write_text("this is not motion capture\n")
  (src / "zero.bvh").write_text(good.split("MOTION")[0] + "MOTION\nFrames: 0\nFrame Time: 0.0333333\n")
  out = tmp_path / "out"
  rc = main(["retarget", str(src), "-o", str(out), "--workers", "2", "--quiet"])
  err = capsys.readouterr().err
  assert rc == 1
  assert (out / "a.npz").exists() and (out / "sub" / "b.npz").exists()
  for name, words in (("trunc.bvh", "truncated"), ("nan.bvh", "nan"), ("empty.bvh", "empty file"),
                      ("notbvh.bvh", "not a bvh or amass"), ("zero.bvh", "zero frames")):
    lines = [ln for ln in err.splitlines() if name in ln]
    assert len(lines) == 1 and words in lines[0].lower(), (name, err)
  assert "Traceback" not in err
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
  # A rerun skips the finished clips.
  mtime = (out / "a.npz").stat().st_mtime_ns
  main(["retarget", str(src), "-o", str(out), "--quiet"])
  assert "2 skipped" in capsys.readouterr().err
  assert (out / "a.npz").stat().st_mtime_ns == mtime


def test_unmappable_and_bad_robot_one_line(tmp_path, capsys):
  p = tmp_path / "odd.bvh"
  p.write_text("HIERARCHY\nROOT a\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n"
               " JOINT b\n {\n  OFFSET 0 1 0\n  CHANNELS 1 Xrotation\n  End Site\n  {\n   OFFSET 0 1 0\n  }\n }\n}\n"
               "MOTION\nFrames: 2\nFrame Time: 0.1\n0 0 0 0\n0 0 0 1\n")
  assert main(["retarget", str(p), "-o", str(tmp_path / "o.npz"), "--quiet"]) == 1
  err = capsys.readouterr().err
  assert "odd.bvh: unmappable skeleton" in err and "Traceback" not in err
  assert main(["retarget", str(p), "-o", str(tmp_path / "o.npz"), "--robot", "nosuchrobot"]) == 2
  assert "no such robot config" in capsys.readouterr().err
  assert main(["eval", str(tmp_path / "missing.npz")]) == 1


def test_console_script_runs(tmp_path, sample_bvh):
  exe = shutil.which("humanoid-retarget") or os.path.join(os.path.dirname(sys.executable), "humanoid-retarget")
  r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
  assert r.returncode == 0 and "retarget" in r.stdout
  r = subprocess.run([exe, "retarget", str(tmp_path / "nothere.bvh"), "-o", str(tmp_path / "x.npz")],
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "no such file" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1


def test_resampled_input(tmp_path, sample_bvh):
  out = tmp_path / "w60.npz"
  assert main(["retarget", str(sample_bvh), "-o", str(out), "--fps", "60", "--quiet"]) == 0
  m = load_motion(out)
  assert m.fps == 60.0 and m.num_frames == 239
  assert np.all(np.isfinite(m.dof_pos))


def test_other_robot_motion_evaluates_without_robot_flag(tmp_path, shared_robots, capsys):
  from humanoid_retarget.human.sample import sample_walk_bvh

  src = tmp_path / "w.bvh"
  src.write_text(sample_walk_bvh(seconds=1.5))
  h1 = shared_robots / "unitree_h1" / "h1.xml"
  out = tmp_path / "w_h1.npz"
  assert main(["retarget", str(src), "-o", str(out), "--robot", str(h1), "--quiet"]) == 0
  m = load_motion(out)
  assert m.dof_pos.shape[1] == 19 and str(m.extras["robot_spec"]) == str(h1)
  # eval, export find the robot from the file; the G1-only CSV refuses it in one line.
  assert main(["eval", str(out), "--human", str(src)]) == 0
  assert main(["export", str(out), "--format", "mjlab", "-o", str(tmp_path / "h1_mjlab.npz")]) == 0
  capsys.readouterr()
  assert main(["export", str(out), "--format", "csv", "-o", str(tmp_path / "h1.csv")]) == 2
  assert "G1 29-DoF only" in capsys.readouterr().err
