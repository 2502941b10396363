"""Offscreen videos of robot motions with MuJoCo: one or two robots, the source human, a following camera.

The scene is one MuJoCo model: the first motion's robot MJCF plus a checker floor, a sky and lights,
with every further motion's robot attached under a name prefix. Robots are posed kinematically from
the motion files (no simulation); the human skeleton is drawn as capsules appended to the
``MjvScene`` after ``update_scene``. Headless machines need an OpenGL back end without a display:
``MUJOCO_GL=osmesa`` (Debian: libosmesa6) or ``egl``; :func:`ensure_gl_backend` picks one.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from humanoid_retarget.errors import RetargetError
from humanoid_retarget.io.motion import RobotMotion
from humanoid_retarget.viz.common import (
  BONES, HUMAN_COLOR, ROBOT_COLORS, PlacedHuman, frame_index, heading, human_size_ratio, place_human,
)

VIDEO_EXTENSIONS = (".mp4", ".gif", ".png")


class RenderError(RetargetError):
  """Rendering failed (no OpenGL back end, bad output name, ...)."""


def ensure_gl_backend() -> str:
  """Choose MuJoCo's OpenGL back end for headless rendering; returns it.

  ``MUJOCO_GL`` wins when set. Without it and without a display, OSMesa is used when its library is
  found, else EGL. MuJoCo reads ``MUJOCO_GL`` when it is imported; if it was imported before this
  call, its offscreen context class is switched to the chosen back end (this works as long as
  PyOpenGL has not been initialised for another platform in this process).
  """
  gl = os.environ.get("MUJOCO_GL", "").lower().strip()
  if not gl:
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
      return "glfw"
    import ctypes.util

    gl = "osmesa" if ctypes.util.find_library("OSMesa") else "egl"
    os.environ["MUJOCO_GL"] = gl
  if gl in ("osmesa", "egl"):
    os.environ.setdefault("PYOPENGL_PLATFORM", gl)
    if "mujoco" in sys.modules:
      for name in ("mujoco.rendering.classic.gl_context", "mujoco.gl_context"):
        mod = sys.modules.get(name)
        if mod is None:
          continue
        try:
          ctx = importlib.import_module(f"mujoco.{gl}").GLContext
        except Exception as e:  # noqa: BLE001 - missing system library
          raise RenderError(f"MuJoCo cannot use MUJOCO_GL={gl} ({type(e).__name__}: {e}); "
                            "install libosmesa6 (osmesa) or an EGL driver") from None
        if getattr(mod, "GLContext", None) is not ctx:
          mod.GLContext = ctx
  return gl


@dataclass
class RenderOptions:
  """How a clip is filmed.

  Attributes:
    width, height: image size in pixels (even numbers for mp4).
    fps: output frame rate (0 = the first motion's rate).
    start: first second of the clip to film.
    duration: seconds to film (0 = to the end of the longest motion).
    layout: 'side' (robots and human side by side) or 'overlay' (on top of each other, robots see-through).
    spacing: distance between side-by-side figures (m).
    human_scale: scale of the human skeleton (0 = true size side by side, robot size when overlaid).
    azimuth: camera azimuth in degrees (None = a three-quarter front view of the robot's first heading).
    elevation: camera elevation in degrees (negative looks down).
    distance: camera distance (0 = fit the figures).
    labels: draw a legend and the time into the frames.
    shadows: cast shadows on the floor (about half the speed with software OpenGL, and speckled there).
  """

  width: int = 640
  height: int = 480
  fps: float = 0.0
  start: float = 0.0
  duration: float = 0.0
  layout: str = "side"
  spacing: float = 1.1
  human_scale: float = 0.0
  azimuth: float | None = None
  elevation: float = -15.0
  distance: float = 0.0
  labels: bool = True
  shadows: bool = False


@dataclass
class _Figure:
  kind: str  # 'robot' or 'human'
  label: str
  color: tuple[float, float, float]
  offset: np.ndarray = field(default_factory=lambda: np.zeros(3))


def _add_environment(spec, width: int, height: int, shadows: bool = False) -> None:
  import mujoco

  spec.visual.global_.offwidth = max(int(width), 64)
  spec.visual.global_.offheight = max(int(height), 64)
  spec.visual.headlight.ambient = [0.3, 0.3, 0.3]
  spec.visual.headlight.diffuse = [0.25, 0.25, 0.25]
  spec.visual.headlight.specular = [0.1, 0.1, 0.1]
  spec.visual.quality.shadowsize = 2048
  spec.add_texture(
    name="viz_sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
    rgb1=[0.55, 0.7, 0.88], rgb2=[0.95, 0.96, 0.98], width=256, height=256)
  spec.add_texture(
    name="viz_checker", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
    rgb1=[0.32, 0.36, 0.42], rgb2=[0.52, 0.56, 0.62], width=512, height=512,
    mark=mujoco.mjtMark.mjMARK_EDGE, markrgb=[0.75, 0.78, 0.82])
  mat = spec.add_material(name="viz_floor", texrepeat=[1.0, 1.0], texuniform=True, reflectance=0.0)
  mat.textures[int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = "viz_checker"
  spec.worldbody.add_geom(
    name="viz_floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0.0, 0.0, 0.05], material="viz_floor",
    contype=0, conaffinity=0)
  spec.worldbody.add_light(
    name="viz_sun", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, pos=[0, 0, 6], dir=[0.25, 0.35, -1.0],
    diffuse=[0.75, 0.75, 0.75], specular=[0.2, 0.2, 0.2], castshadow=shadows)


def build_scene_model(mjcf_paths: list[str], colors: list[tuple[float, float, float]], width: int, height: int,
                      alpha: float = 1.0, shadows: bool = False):
  """A MuJoCo model with one robot per MJCF (the first unprefixed, then ``r1_``, ``r2_``, ...)."""
  import mujoco

  def load(path: str, color):
    try:
      s = mujoco.MjSpec.from_file(path)
    except Exception as e:  # mujoco raises ValueError with a multi-line message
      raise RenderError(f"cannot load MJCF ({str(e).strip().splitlines()[0]})", path) from None
    for m in s.materials:
      shade = float(np.mean(m.rgba[:3]))  # keep dark trim dark, tint the rest
      m.rgba = [c * min(1.0, 0.35 + shade) for c in color] + [alpha]
    return s

  root = load(mjcf_paths[0], colors[0])
  _add_environment(root, width, height, shadows)
  for i, path in enumerate(mjcf_paths[1:], start=1):
    child = load(path, colors[i])
    body = child.worldbody.first_body()
    if body is None:
      raise RenderError("MJCF has no body", path)
    root.worldbody.add_frame().attach_body(body, f"r{i}_", "")
  try:
    return root.compile()
  except Exception as e:
    raise RenderError(f"cannot build the render scene ({str(e).strip().splitlines()[0]})", mjcf_paths[0]) from None


def _qpos_map(model, motion: RobotMotion, prefix: str) -> tuple[int, np.ndarray]:
  """qpos address of the robot's free joint (on its root body) and of each motion joint (by name)."""
  import mujoco

  root = prefix + motion.body_names[0]
  b = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, root)
  j = int(model.body_jntadr[b]) if b >= 0 else -1
  if j < 0 or model.jnt_type[j] != mujoco.mjtJoint.mjJNT_FREE:
    raise RenderError(f"root body '{motion.body_names[0]}' of the motion has no free joint in the robot model",
                      motion.source)
  adr = []
  for n in motion.joint_names:
    k = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, prefix + n)
    if k < 0:
      raise RenderError(f"joint '{n}' of the motion is not in the robot model '{motion.robot}'", motion.source)
    adr.append(model.jnt_qposadr[k])
  return int(model.jnt_qposadr[j]), np.array(adr, dtype=np.int64)


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
  """Centred moving average along axis 0 (edges padded), window ``n`` frames."""
  if n <= 1 or len(x) < 2:
    return x
  pad = n // 2
  xp = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], pad, 0)])
  k = np.ones(n) / n
  return np.stack([np.convolve(xp[:, d], k, mode="valid")[: len(x)] for d in range(x.shape[1])], axis=1)


class MotionRenderer:
  """Films robot motions (and optionally the source human) frame by frame.

  Args:
    motions: one or more robot motions; all are shown together, the first sets the default frame rate.
    robots_mjcf: the MJCF of each motion's robot.
    human: the source human of the first motion (or None).
    labels: legend text of each motion.
    opts: image size, camera and layout.
    robot_root_height: the first robot's standing root height (scales an overlaid human).
  """

  def __init__(self, motions: list[RobotMotion], robots_mjcf: list[str], human=None, labels: list[str] | None = None,
               opts: RenderOptions = RenderOptions(), robot_root_height: float = 0.79):
    if opts.layout not in ("side", "overlay"):
      raise RenderError(f"unknown layout '{opts.layout}' (side or overlay)")
    if opts.width < 16 or opts.height < 16:
      raise RenderError(f"image size {opts.width}x{opts.height} is too small")
    ensure_gl_backend()
    import mujoco

    self.mujoco = mujoco
    self.opts = opts
    self.motions = motions
    n = len(motions)
    labels = labels or [m.method for m in motions]
    self.figures = [_Figure("robot", labels[i], ROBOT_COLORS[i % len(ROBOT_COLORS)]) for i in range(n)]
    self.human: PlacedHuman | None = None
    if human is not None:
      scale = opts.human_scale or (human_size_ratio(human, robot_root_height) if opts.layout == "overlay" else 1.0)
      self.human = place_human(human, motions[0], scale)
      self.figures.append(_Figure("human", "human" + (f" x{scale:.2f}" if abs(scale - 1) > 1e-3 else ""), HUMAN_COLOR))
    alpha = 0.55 if opts.layout == "overlay" and len(self.figures) > 1 else 1.0
    self.model = build_scene_model(robots_mjcf, [f.color for f in self.figures[:n]], opts.width, opts.height, alpha,
                                   opts.shadows)
    self.data = mujoco.MjData(self.model)
    self._sun = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_LIGHT, "viz_sun")
    self.qmap = [_qpos_map(self.model, m, "" if i == 0 else f"r{i}_") for i, m in enumerate(motions)]
    self.fps = opts.fps or motions[0].fps
    length = max(m.num_frames / m.fps for m in motions)
    t0 = max(0.0, opts.start)
    t1 = length if opts.duration <= 0 else min(length, t0 + opts.duration)
    if t0 >= length:
      raise RenderError(f"start {t0:.2f} s is past the end of the clip ({length:.2f} s)")
    self.times = t0 + np.arange(max(1, int(np.floor((t1 - t0) * self.fps + 1e-6)))) / self.fps
    self._setup_camera()
    self.renderer = mujoco.Renderer(self.model, opts.height, opts.width, max_geom=self.model.ngeom + 400)

  # --- camera and layout -------------------------------------------------------------------------

  def _setup_camera(self) -> None:
    o = self.opts
    m0 = self.motions[0]
    az = o.azimuth if o.azimuth is not None else np.degrees(heading(m0.root_quat[0])) + 180.0 - 35.0
    self.azimuth = float(az)
    a = np.radians(az)
    right = np.array([np.sin(a), -np.cos(a), 0.0])  # camera right for a camera looking along (cos a, sin a)
    k = len(self.figures)
    if o.layout == "side":
      for i, f in enumerate(self.figures):
        f.offset = (i - (k - 1) / 2.0) * o.spacing * right
    # Camera target: the figures' mean root position, smoothed over half a second.
    T = len(self.times)
    centre = np.zeros((T, 3))
    for i, m in enumerate(self.motions):
      centre += m.root_pos[frame_index(m.num_frames, m.fps, self.times)] + self.figures[i].offset
    if self.human is not None:
      from humanoid_retarget.human.motion import J

      hp = self.human.positions[frame_index(len(self.human.positions), m0.fps, self.times), J("pelvis")]
      centre += hp + self.figures[-1].offset
    centre /= k
    centre[:, 2] = 0.7
    self.lookat = _smooth(centre, max(1, int(round(0.5 * self.fps))))
    width = (k - 1) * o.spacing if o.layout == "side" else 0.0
    self.distance = o.distance or (3.0 + 0.9 * width)

  def camera(self, i: int):
    cam = self.mujoco.MjvCamera()
    cam.type = self.mujoco.mjtCamera.mjCAMERA_FREE
    cam.lookat[:] = self.lookat[i]
    cam.distance = self.distance
    cam.azimuth = self.azimuth
    cam.elevation = self.opts.elevation
    return cam

  # --- frames ------------------------------------------------------------------------------------

  def __len__(self) -> int:
    return len(self.times)

  def _pose(self, i: int) -> None:
    t = self.times[i]
    qpos = self.data.qpos
    for (free, adr), m, f in zip(self.qmap, self.motions, self.figures):
      k = int(frame_index(m.num_frames, m.fps, t))
      qpos[free : free + 3] = m.root_pos[k] + f.offset
      qpos[free + 3 : free + 7] = m.root_quat[k]
      qpos[adr] = m.dof_pos[k]
    mj = self.mujoco
    # The sun follows the camera target, so shadows stay inside its shadow map.
    self.model.light_pos[self._sun] = self.lookat[i] - 6.0 * self.model.light_dir[self._sun]
    mj.mj_kinematics(self.model, self.data)
    mj.mj_comPos(self.model, self.data)  # subtree centres of mass, for lights that track them
    mj.mj_camlight(self.model, self.data)  # light positions and directions

  def _draw_human(self, i: int) -> None:
    if self.human is None:
      return
    mj = self.mujoco
    scn = self.renderer.scene
    m0 = self.motions[0]
    k = int(frame_index(len(self.human.positions), m0.fps, self.times[i]))
    p = self.human.positions[k] + self.figures[-1].offset
    rgba = np.array([*HUMAN_COLOR, 1.0], dtype=np.float32)
    r = 0.022 * max(self.human.scale, 0.5)
    eye = np.eye(3).flatten()
    for a, b in BONES:
      if scn.ngeom >= scn.maxgeom:
        return
      g = scn.geoms[scn.ngeom]
      mj.mjv_initGeom(g, mj.mjtGeom.mjGEOM_CAPSULE, np.zeros(3), np.zeros(3), eye, rgba)
      mj.mjv_connector(g, mj.mjtGeom.mjGEOM_CAPSULE, r, p[b], p[a])
      scn.ngeom += 1
    joint_rgba = np.array([0.25, 0.2, 0.15, 1.0], dtype=np.float32)
    for j in range(len(p)):
      if scn.ngeom >= scn.maxgeom:
        return
      g = scn.geoms[scn.ngeom]
      mj.mjv_initGeom(g, mj.mjtGeom.mjGEOM_SPHERE, np.array([1.4 * r, 0, 0]), p[j], eye, joint_rgba)
      scn.ngeom += 1

  def frame(self, i: int) -> np.ndarray:
    """Image ``i`` of the film: (H, W, 3) uint8."""
    self._pose(i)
    self.renderer.update_scene(self.data, camera=self.camera(i))
    self._draw_human(i)
    img = self.renderer.render().copy()
    if self.opts.labels:
      img = self._annotate(img, i)
    return img

  def _annotate(self, img: np.ndarray, i: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    d = ImageDraw.Draw(im, "RGBA")
    x, y = 8, 6
    w = max(d.textlength(f.label) for f in self.figures) + 24
    d.rectangle([x - 4, y - 2, x + w, y + 16 * len(self.figures)], fill=(255, 255, 255, 170))
    H = img.shape[0]
    d.rectangle([4, H - 20, 86, H - 4], fill=(255, 255, 255, 170))
    for f in self.figures:
      c = tuple(int(255 * v) for v in f.color)
      d.rectangle([x, y + 2, x + 10, y + 12], fill=c, outline=(30, 30, 30))
      d.text((x + 15, y), f.label, fill=(20, 20, 20))
      y += 16
    t = self.times[i]
    d.text((8, H - 18), f"t = {t:6.2f} s", fill=(20, 20, 20))
    return np.asarray(im)

  def close(self) -> None:
    if getattr(self, "renderer", None) is not None:
      self.renderer.close()
      self.renderer = None

  def __enter__(self) -> "MotionRenderer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def write_frames(path: str, frames, fps: float, count: int | None = None) -> int:
  """Write frames (an iterable of (H, W, 3) uint8) to .mp4 (H.264), .gif (looping) or .png (the first).

  The file appears atomically (written to a temporary name beside it first). Returns frames written.
  """
  ext = os.path.splitext(path)[1].lower()
  if ext not in VIDEO_EXTENSIONS:
    raise RenderError(f"unknown output type '{ext}' (use {', '.join(VIDEO_EXTENSIONS)})", path)
  from humanoid_retarget.io.motion import atomic_path

  n = 0
  with atomic_path(path, suffix=ext) as tmp:
    if ext == ".png":
      from PIL import Image

      first = next(iter(frames))
      Image.fromarray(first).save(tmp, optimize=True)
      n = 1
    elif ext == ".gif":
      from PIL import Image

      ims = [Image.fromarray(f).quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
             for f in frames]
      if not ims:
        raise RenderError("no frames to write", path)
      ims[0].save(tmp, save_all=True, append_images=ims[1:], duration=int(round(1000.0 / fps)), loop=0,
                  optimize=False, disposal=1)
      n = len(ims)
    else:
      try:
        import imageio.v2 as imageio
      except ImportError:
        raise RenderError("mp4 output needs imageio[ffmpeg] (pip install 'humanoid-retarget[viz]')", path) from None
      w = imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=7, pixelformat="yuv420p",
                             macro_block_size=2, ffmpeg_log_level="error")
      try:
        for f in frames:
          w.append_data(f)
          n += 1
      finally:
        w.close()
  return n


def render_to_file(path: str, motions: list[RobotMotion], robots_mjcf: list[str], human=None,
                   labels: list[str] | None = None, opts: RenderOptions = RenderOptions(),
                   robot_root_height: float = 0.79, progress: bool = False) -> int:
  """Film motions into ``path`` (.mp4, .gif or .png); returns the number of frames written."""
  ext = os.path.splitext(path)[1].lower()
  if ext == ".mp4" and (opts.width % 2 or opts.height % 2):
    raise RenderError(f"mp4 needs even image sizes, got {opts.width}x{opts.height}", path)
  with MotionRenderer(motions, robots_mjcf, human, labels, opts, robot_root_height) as r:
    idx = range(1 if ext == ".png" else len(r))
    if progress:
      from tqdm import tqdm

      idx = tqdm(idx, desc="render", unit="frame")
    return write_frames(path, (r.frame(i) for i in idx), r.fps)
