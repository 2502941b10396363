"""BVH reader: hand-computed forward kinematics, channel orders, position channels, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanoid_retarget.errors import InputFormatError
from humanoid_retarget.io.bvh import euler_matrices, forward_kinematics, parse_bvh, parse_numbers

CHAIN = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Knee
  {
    OFFSET 0 -10 0
    CHANNELS 3 Xrotation Yrotation Zrotation
    End Site
    {
      OFFSET 0 -5 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
1 2 3 0 0 0 90 0 0
0 0 0 90 0 0 0 0 0
"""


def test_fk_hand_computed(tmp_path):
  p = tmp_path / "c.bvh"
  p.write_text(CHAIN)
  b = parse_bvh(p)
  assert b.names == ["Hips", "Knee", "Knee_End"]
  assert b.fps == 2.0 and b.num_frames == 2
  pos, rot = forward_kinematics(b)
  # Frame 0: root at (1,2,3); knee rotated 90 deg about X: the end site (0,-5,0) maps to (0,0,-5).
  np.testing.assert_allclose(pos[0, 0], [1, 2, 3])
  np.testing.assert_allclose(pos[0, 1], [1, -8, 3])
  np.testing.assert_allclose(pos[0, 2], [1, -8, -2], atol=1e-9)
  # Frame 1: root rotated 90 deg about Z: (0,-10,0) -> (10,0,0).
  np.testing.assert_allclose(pos[1, 1], [10, 0, 0], atol=1e-9)
  np.testing.assert_allclose(rot[1, 0], Rotation.from_euler("z", 90, degrees=True).as_matrix(), atol=1e-12)


def test_channel_order_is_intrinsic(tmp_path):
  text = CHAIN.replace("1 2 3 0 0 0 90 0 0", "0 0 0 0 0 0 30 40 50")
  p = tmp_path / "o.bvh"
  p.write_text(text)
  _, rot = forward_kinematics(parse_bvh(p))
  want = Rotation.from_euler("XYZ", [30, 40, 50], degrees=True).as_matrix()  # intrinsic X then Y then Z
  np.testing.assert_allclose(rot[0, 1], want, atol=1e-12)


def test_position_channels_replace_offset(tmp_path):
  text = CHAIN.replace("CHANNELS 3 Xrotation Yrotation Zrotation", "CHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation")
  text = text.replace("1 2 3 0 0 0 90 0 0\n0 0 0 90 0 0 0 0 0", "0 0 0 0 0 0 0 -20 0 0 0 0\n0 0 0 0 0 0 0 -20 0 0 0 0")
  p = tmp_path / "p.bvh"
  p.write_text(text)
  pos, _ = forward_kinematics(parse_bvh(p))
  np.testing.assert_allclose(pos[0, 1], [0, -20, 0])  # not -30: the channel replaces the OFFSET


@pytest.mark.parametrize("mutate, words", [
  (lambda t: t.replace("0 0 0 90 0 0 0 0 0\n", ""), "truncated"),
  (lambda t: t.replace("1 2 3", "1 nan 3"), "NaN"),
  (lambda t: t.replace("Frames: 2", "Frames: 0"), "zero frames"),
  (lambda t: "hello world", "not a BVH"),
  (lambda t: t.replace("MOTION", "MOTIO"), "MOTION"),
  (lambda t: t.replace("Xrotation Yrotation Zrotation", "Xrotation Yrotation Wrotation"), "channel"),
])
def test_bad_input_one_line_error(tmp_path, mutate, words):
  p = tmp_path / "bad.bvh"
  p.write_text(mutate(CHAIN))
  with pytest.raises(InputFormatError) as e:
    parse_bvh(p)
  msg = str(e.value)
  assert str(p) in msg and words.lower() in msg.lower() and "\n" not in msg


def test_fk_of_some_joints_matches_all(tmp_path):
  p = tmp_path / "c.bvh"
  p.write_text(CHAIN)
  b = parse_bvh(p)
  pos, rot = forward_kinematics(b)
  pos2, rot2 = forward_kinematics(b, [2, 0])
  np.testing.assert_array_equal(pos2, pos[:, [2, 0]])
  np.testing.assert_array_equal(rot2, rot[:, [2, 0]])


def test_euler_matrices_match_scipy():
  rng = np.random.default_rng(0)
  for seq in ("ZXY", "XYZ", "YZX", "ZY", "X", "XZX"):
    ang = rng.uniform(-np.pi, np.pi, (5, 4, len(seq)))
    want = Rotation.from_euler(seq, ang.reshape(-1, len(seq))).as_matrix().reshape(5, 4, 3, 3)
    np.testing.assert_allclose(euler_matrices(ang, seq), want, atol=1e-14)


def _split_floats(text: str):
  try:
    return np.array(text.split(), dtype=np.float64)
  except ValueError:
    return "ValueError"


@pytest.mark.parametrize("text", [
  "", "  \n ", "1 2 3", "-0 +0 -0.0 .5 5. -.5 +.5 1e5 1E-05 -2.5e+3 1e-5 -1E5 5e0 5e00 5e-0",
  " \t1\r\n2\x0b3\x0c\n", "123456789012345678 1.2345678901234567 9007199254740993 12345.67890123456",
  "0000000000000000000000000000001.5 " + "1" * 30, "1e22 1e23 1e-22 1e-23 123e20 1.5e-300 1e400 0.0000000000000001",
  "1 nan 3", "inf -inf", "1 2\u00a03", "1\x1c2", "1_0", "- 1", ". 1", "1-2", "1..2", "1e", "e5", "+-1", "--1",
  "1.2.3", "1,2", "1e5.5", "1.e5", ".e5", "1e+-5", "1e-", "1e5-", "-", "+", "a",
])
def test_parse_numbers_is_split_and_float(text):
  want, got = _split_floats(text), None
  try:
    got = parse_numbers(text)
  except ValueError:
    got = "ValueError"
  if isinstance(want, str):
    assert got == want
  else:
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_parse_numbers_random_formats():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(0, 1, 5000) * 10.0 ** rng.integers(-12, 12, 5000), rng.integers(-10**6, 10**6, 500), [0.0, -0.0]])
  for fmt in ("%.5f", "%.6g", "%.17g", "%.10e", "%+.3f", "%.15g", "%.16g", "%.0f", "%.2E"):
    text = "\n".join(" ".join(fmt % v for v in x[i:i + 50]) for i in range(0, x.size, 50))
    np.testing.assert_array_equal(parse_numbers(text), np.array(text.split(), dtype=np.float64), err_msg=fmt)
