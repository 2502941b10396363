"""Interactive browser viewer of robot motions (viser): robot meshes, the human skeleton, playback GUI.

The robot is drawn from its MuJoCo model: each body's visual meshes (``mesh_vert``/``mesh_face``,
placed by ``geom_pos``/``geom_quat``) are merged per body and colour and hung under a scene frame
per body; playing a clip only moves these frames (``body_pos_w``/``body_quat_w`` of the motion file).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from humanoid_retarget.human.motion import NUM_JOINTS, HumanMotion
from humanoid_retarget.io.motion import RobotMotion
from humanoid_retarget.viz.common import BONES, HUMAN_COLOR, heading, human_size_ratio, place_human

HUMAN_COLOR_255 = tuple(int(round(255 * c)) for c in HUMAN_COLOR)


@dataclass
class Clip:
  """One entry of the clip list: a robot motion and, optionally, its source human."""

  name: str
  motion: RobotMotion
  human: HumanMotion | None = None
  human_path: str = ""


@dataclass
class BodyMesh:
  body: str  # MuJoCo body name
  vertices: np.ndarray  # (V, 3) float32, body frame
  faces: np.ndarray  # (F, 3) uint32
  color: tuple[int, int, int]


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
  w, x, y, z = q
  return np.array([
    [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
    [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
    [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ])


def _primitive(gtype: int, size: np.ndarray):
  """Vertices and faces of a non-mesh MuJoCo geom (box, sphere, capsule, cylinder, ellipsoid)."""
  import mujoco
  import trimesh

  T = mujoco.mjtGeom
  if gtype == T.mjGEOM_BOX:
    m = trimesh.creation.box(extents=2 * size[:3])
  elif gtype == T.mjGEOM_SPHERE:
    m = trimesh.creation.icosphere(subdivisions=2, radius=size[0])
  elif gtype == T.mjGEOM_CAPSULE:
    m = trimesh.creation.capsule(height=2 * size[1], radius=size[0], count=[12, 12])
  elif gtype == T.mjGEOM_CYLINDER:
    m = trimesh.creation.cylinder(radius=size[0], height=2 * size[1], sections=16)
  elif gtype == T.mjGEOM_ELLIPSOID:
    m = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    m.apply_scale(size[:3])
  else:
    return None
  return np.asarray(m.vertices), np.asarray(m.faces)


def robot_body_meshes(mj_model, tint: tuple[float, float, float] | None = None) -> list[BodyMesh]:
  """Visual geometry of a MuJoCo model merged per (body, colour), in body frames.

  Visual geoms are those that do not collide (contype = conaffinity = 0); a model without any uses
  all its geoms. Planes, height fields and geoms of the world body are left out. ``tint`` (0..1 RGB)
  recolours the robot, keeping dark parts darker.
  """
  import mujoco

  m = mj_model
  geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] > 0]
  visual = [g for g in geoms if m.geom_contype[g] == 0 and m.geom_conaffinity[g] == 0 and m.geom_rgba[g, 3] > 0]
  use = visual or geoms
  groups: dict[tuple[int, tuple[int, int, int]], tuple[list, list, int]] = {}
  for g in use:
    gtype = int(m.geom_type[g])
    if gtype == mujoco.mjtGeom.mjGEOM_MESH:
      k = int(m.geom_dataid[g])
      v = m.mesh_vert[m.mesh_vertadr[k] : m.mesh_vertadr[k] + m.mesh_vertnum[k]].astype(np.float64)
      f = m.mesh_face[m.mesh_faceadr[k] : m.mesh_faceadr[k] + m.mesh_facenum[k]].astype(np.int64)
    else:
      prim = _primitive(gtype, m.geom_size[g])
      if prim is None:
        continue
      v, f = prim
    rgba = m.mat_rgba[m.geom_matid[g]] if m.geom_matid[g] >= 0 else m.geom_rgba[g]
    rgb = [float(c) for c in rgba[:3]]
    if tint is not None:
      shade = min(1.0, 0.35 + float(np.mean(rgb)))
      rgb = [c * shade for c in tint]
    color = tuple(int(round(255 * c)) for c in rgb)
    v = v @ _quat_to_mat(m.geom_quat[g]).T + m.geom_pos[g]
    b = int(m.geom_bodyid[g])
    vs, fs, n = groups.setdefault((b, color), ([], [], 0))
    fs.append(f + n)
    vs.append(v)
    groups[(b, color)] = (vs, fs, n + len(v))
  out = []
  for (b, color), (vs, fs, _) in groups.items():
    out.append(BodyMesh(mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, b), np.concatenate(vs).astype(np.float32),
                        np.concatenate(fs).astype(np.uint32), color))
  return out


class MotionViewer:
  """A viser server showing clips of robot motions with a playback GUI.

  Args:
    clips: the clips to offer (the first is shown at start).
    host, port: where the server listens.
    robot_loader: motion -> its :class:`humanoid_retarget.robot.config.Robot`
      (default: :func:`humanoid_retarget.pipeline.robot_for_motion`).
    spacing: sideways distance of the human beside the robot (m).
    robot_color: recolour the robot (0..1 RGB; default: the MJCF's colours).
  """

  def __init__(self, clips: list[Clip], host: str = "127.0.0.1", port: int = 8080, robot_loader=None,
               spacing: float = 1.0, robot_color: tuple[float, float, float] | None = None, verbose: bool = False):
    if not clips:
      raise ValueError("no clips to show")
    import viser

    if robot_loader is None:
      from humanoid_retarget.pipeline import robot_for_motion as robot_loader
    self._robot_loader = robot_loader
    self.clips = clips
    self.spacing = spacing
    self.robot_color = robot_color
    self._lock = threading.RLock()
    self._stop = threading.Event()
    self._robot_name = ""
    self._body_frames: dict[str, object] = {}
    self._human_cache: dict[tuple[int, bool], tuple[np.ndarray, float]] = {}
    self.server = viser.ViserServer(host=host, port=port, verbose=verbose)
    self.port = self.server.get_port()
    self.server.scene.set_up_direction("+z")
    self.server.scene.configure_environment_map(hdri=None, environment_intensity=0.0)
    self.server.scene.add_light_hemisphere("/light/sky", sky_color=(255, 255, 255), ground_color=(90, 90, 100),
                                           intensity=1.6)
    self.server.scene.add_light_directional("/light/sun", intensity=1.8, position=(2.0, -3.0, 6.0))
    self.server.scene.add_grid("/floor", width=30.0, height=30.0, cell_size=0.5, section_size=1.0,
                               plane_color=(225, 228, 232), plane_opacity=1.0, shadow_opacity=0.0)
    self._build_gui()
    self._bones = self.server.scene.add_line_segments(
      "/human/bones", points=np.zeros((len(BONES), 2, 3), dtype=np.float32), colors=HUMAN_COLOR_255,
      thickness=0.03)
    self._joints = self.server.scene.add_point_cloud(
      "/human/joints", points=np.zeros((NUM_JOINTS, 3), dtype=np.float32), colors=(60, 45, 30), point_size=0.04,
      point_shape="circle")
    self._select(0)
    self._thread = threading.Thread(target=self._play_loop, name="viewer-playback", daemon=True)
    self._thread.start()

  # --- GUI -----------------------------------------------------------------------------------------

  def _build_gui(self) -> None:
    gui = self.server.gui
    names = [c.name for c in self.clips]
    self.gui_clip = gui.add_dropdown("Clip", names, initial_value=names[0])
    with gui.add_folder("Playback"):
      self.gui_play = gui.add_button("Play")
      self.gui_pause = gui.add_button("Pause")
      self.gui_frame = gui.add_slider("Frame", min=0, max=max(self.clips[0].motion.num_frames - 1, 1), step=1,
                                      initial_value=0)
      self.gui_speed = gui.add_slider("Speed", min=0.1, max=3.0, step=0.05, initial_value=1.0)
      self.gui_loop = gui.add_checkbox("Loop", initial_value=True)
    with gui.add_folder("Show"):
      self.gui_robot = gui.add_checkbox("Robot", initial_value=True)
      self.gui_human = gui.add_checkbox("Human skeleton", initial_value=True)
      self.gui_beside = gui.add_checkbox("Human beside robot", initial_value=True)
      self.gui_follow = gui.add_checkbox("Camera follows", initial_value=True)
    self.gui_info = gui.add_markdown("")
    self.playing = False
    self._t = 0.0

    @self.gui_clip.on_update
    def _(_) -> None:
      self._select(names.index(self.gui_clip.value))

    @self.gui_play.on_click
    def _(_) -> None:
      self.play()

    @self.gui_pause.on_click
    def _(_) -> None:
      self.pause()

    @self.gui_frame.on_update
    def _(_) -> None:
      self.show_frame(int(self.gui_frame.value))

    @self.gui_robot.on_update
    def _(_) -> None:
      for f in self._body_frames.values():
        f.visible = bool(self.gui_robot.value)

    @self.gui_human.on_update
    def _(_) -> None:
      self._bones.visible = self._joints.visible = bool(self.gui_human.value) and self.clip.human is not None

    @self.gui_beside.on_update
    def _(_) -> None:
      self.show_frame(self.frame, force=True)

  def play(self) -> None:
    with self._lock:
      self._t = self.frame / self.clip.motion.fps
      self.playing = True

  def pause(self) -> None:
    self.playing = False

  # --- scene ---------------------------------------------------------------------------------------

  def _ensure_robot(self, motion: RobotMotion) -> None:
    robot = self._robot_loader(motion)
    robot_name = robot.model.mjcf_path
    if robot_name == self._robot_name:
      return
    for f in self._body_frames.values():
      f.remove()
    self._body_frames = {}
    for k, bm in enumerate(robot_body_meshes(robot.model.mj_model, self.robot_color)):
      if bm.body not in self._body_frames:
        self._body_frames[bm.body] = self.server.scene.add_frame(f"/robot/{bm.body}", show_axes=False)
      self.server.scene.add_mesh_simple(f"/robot/{bm.body}/mesh{k}", bm.vertices, bm.faces, color=bm.color,
                                        flat_shading=False, cast_shadow=False, receive_shadow=False)
    self._robot_name = robot_name

  def _select(self, i: int) -> None:
    with self._lock:
      self.clip = self.clips[i]
      m = self.clip.motion
      self._ensure_robot(m)
      self._body_index = [(m.body_names.index(n), f) for n, f in self._body_frames.items() if n in m.body_names]
      self._human_cache = {}
      self.gui_frame.max = max(m.num_frames - 1, 1)
      self.frame = -1
      self._t = 0.0
      has_h = self.clip.human is not None
      self._bones.visible = self._joints.visible = has_h and bool(self.gui_human.value)
      self.gui_human.disabled = self.gui_beside.disabled = not has_h
      self.gui_info.content = (
        f"**{self.clip.name}**  \n{m.method} · {m.robot} · {m.num_frames} frames at {m.fps:g} fps "
        f"({m.num_frames / m.fps:.1f} s)  \nsource: {m.source or '-'}"
        + (f"  \nhuman: {self.clip.human_path}" if has_h else "  \nhuman: none (pass --human)"))
      root0 = m.root_pos[0]
      h = heading(m.root_quat[0])
      fwd = np.array([np.cos(h), np.sin(h), 0.0])
      left = np.array([-np.sin(h), np.cos(h), 0.0])
      self._left = left
      look = np.array([root0[0], root0[1], 0.8]) + (0.5 * self.spacing * left if has_h else 0.0)
      cam = look + 3.2 * fwd - 1.2 * left + np.array([0.0, 0.0, 0.5])
      self.server.initial_camera.position = tuple(cam)
      self.server.initial_camera.look_at = tuple(look)
      for client in self.server.get_clients().values():
        with client.atomic():
          client.camera.position = cam
          client.camera.look_at = look
      self._cam_anchor = np.array([root0[0], root0[1], 0.0])
      if self.gui_frame.value != 0:
        self.gui_frame.value = 0  # triggers show_frame(0)
      else:
        self.show_frame(0, force=True)

  def _human_positions(self, beside: bool) -> np.ndarray | None:
    c = self.clip
    if c.human is None:
      return None
    key = (id(c), beside)
    if key not in self._human_cache:
      robot = self._robot_loader(c.motion)
      scale = 1.0 if beside else human_size_ratio(c.human, robot.model.root_z0)
      p = place_human(c.human, c.motion, scale).positions
      if beside:
        p = p + self.spacing * self._left
      self._human_cache = {key: (p.astype(np.float32), scale)}
    return self._human_cache[key][0]

  def show_frame(self, k: int, force: bool = False) -> None:
    """Pose the robot and the human at frame ``k`` of the current clip."""
    with self._lock:
      m = self.clip.motion
      k = int(np.clip(k, 0, m.num_frames - 1))
      if k == self.frame and not force:
        return
      self.frame = k
      with self.server.atomic():
        for b, f in self._body_index:
          f.position = m.body_pos_w[k, b]
          f.wxyz = m.body_quat_w[k, b]
        hp = self._human_positions(bool(self.gui_beside.value))
        if hp is not None:
          p = hp[k]
          self._bones.points = np.stack([p[[a for a, _ in BONES]], p[[b for _, b in BONES]]], axis=1)
          self._joints.points = p
        if self.gui_follow.value:
          root = np.array([m.root_pos[k, 0], m.root_pos[k, 1], 0.0])
          delta = root - self._cam_anchor
          if np.any(np.abs(delta) > 1e-6):
            self._cam_anchor = root
            for client in self.server.get_clients().values():
              client.camera.position = client.camera.position + delta
              client.camera.look_at = client.camera.look_at + delta

  def _play_loop(self) -> None:
    last = time.perf_counter()
    while not self._stop.wait(1.0 / 40.0):
      now = time.perf_counter()
      dt, last = now - last, now
      if not self.playing:
        continue
      with self._lock:
        m = self.clip.motion
        self._t += dt * float(self.gui_speed.value)
        k = int(self._t * m.fps)
        if k >= m.num_frames:
          if self.gui_loop.value:
            self._t = 0.0
            k = 0
          else:
            k = m.num_frames - 1
            self.playing = False
      try:
        self.gui_frame.value = k  # moves the slider and shows the frame
      except Exception:  # noqa: BLE001 - server shutting down
        if self._stop.is_set():
          return
        raise

  def stop(self) -> None:
    """Stop playback and the server."""
    self._stop.set()
    self._thread.join(timeout=2.0)
    self.server.stop()
