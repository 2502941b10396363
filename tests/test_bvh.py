"""BVH reader: hand-computed forward kinematics, channel orders, position channels, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanoid_retarget.errors import InputFormatError
from humanoid_retarget.io.bvh import forward_kinematics, parse_bvh

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
