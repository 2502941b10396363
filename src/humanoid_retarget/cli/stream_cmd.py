"""``humanoid-retarget stream``: live retargeting server (BVH text over TCP, or a replayed file, in;
JSON robot frames over UDP out). Message layout: docs/streaming.md."""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from humanoid_retarget.errors import RetargetError
from humanoid_retarget.retarget.streaming import StreamConfig


def _addr(s: str) -> tuple[str, int]:
  host, _, port = s.rpartition(":")
  if not host or not port.isdigit():
    raise RetargetError(f"bad address '{s}' (want HOST:PORT)", s)
  return host, int(port)


@dataclass
class Counters:
  """What the server saw. Reported in 'stats' messages, on stderr and in --stats-json."""

  frames_in: int = 0  # frame lines accepted and retargeted
  frames_out: int = 0  # frame messages sent (live + hold/easing/standing)
  idle_out: int = 0  # of those, sent while the source was stalled
  dropped: int = 0  # frames missing in the source's frame numbering
  gaps: int = 0  # unnumbered sources: arrival gaps over 1.9 frame periods (dropped or late frames)
  duplicated: int = 0  # repeated frame numbers (or identical consecutive lines without numbers), skipped
  late: int = 0  # frames older than one already answered (out of order), skipped
  backlog_skipped: int = 0  # stale frames skipped to catch up (--max-backlog)
  malformed: int = 0  # lines that are neither a header nor a frame of the right channel count
  errors: int = 0  # frames the retargeter rejected (non-finite positions, ...)
  stalls: int = 0  # times the source went silent past the stall timeout
  connections: int = 0  # TCP connections accepted (reconnections = connections - 1)
  disconnects: int = 0
  headers: int = 0  # headers received (a changed skeleton recalibrates)
  latency_ms: list = field(default_factory=list)  # wall time, line received -> message sent
  cpu_ms: list = field(default_factory=list)  # this thread's CPU time for the same span (other processes excluded)

  def summary(self) -> dict:
    out = {k: v for k, v in self.__dict__.items() if k not in ("latency_ms", "cpu_ms")}
    for name, vals in (("latency", self.latency_ms), ("cpu", self.cpu_ms)):
      lat = np.array(vals) if vals else np.zeros(0)
      if lat.size:
        out.update({f"{name}_p50_ms": float(np.percentile(lat, 50)), f"{name}_p99_ms": float(np.percentile(lat, 99)),
                    f"{name}_max_ms": float(lat.max()), f"{name}_mean_ms": float(lat.mean())})
    return out


class StreamServer:
  """The stream loop, usable in-process (tests, benchmarks) or via the CLI."""

  def __init__(self, retargeter_factory, udp: tuple[str, int], stall_ms: float = 0.0, max_backlog: int = 0,
               hello_every_s: float = 2.0, quiet: bool = False):
    self.factory = retargeter_factory
    self.rt = None
    self.udp_addr = udp
    self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    self.stall_ms = stall_ms
    self.stall_s = 1e9  # set from the frame rate once a header arrives
    self.max_backlog = max_backlog
    self.hello_every_s = hello_every_s
    self.quiet = quiet
    self.c = Counters()
    self.seq = 0
    self.header_text: str | None = None
    self._last_hello = -1e9
    self._last_stats = time.perf_counter()
    self._last_frame_t: float | None = None  # perf_counter of the last accepted frame
    self._last_num: int | None = None
    self._last_line: str | None = None
    self._stalled = False
    self._next_idle = 0.0

  # ---- output ----
  def _send(self, msg: dict) -> None:
    try:
      self.out.sendto(json.dumps(msg, separators=(",", ":")).encode(), self.udp_addr)
    except OSError:
      pass  # no receiver (ICMP port unreachable) or a full buffer: UDP is best effort

  def hello(self) -> None:
    rt = self.rt
    self._send({"type": "hello", "robot": rt.robot.name, "joint_names": rt.joint_names, "fps": rt.fps,
                "lookahead_frames": rt.lookahead, "lookahead_ms": 1000.0 * rt.latency_s,
                "root_body": rt.robot.config.root_body})
    self._last_hello = time.perf_counter()

  def stats(self) -> None:
    self._send({"type": "stats", **self.c.summary()})
    self._last_stats = time.perf_counter()

  def _send_frame(self, fr, t_recv: float | None, cpu0: float | None = None) -> None:
    msg = {"type": "frame", "seq": self.seq, "frame": int(fr.frame), "t": round(float(fr.time), 6),
           "t_send": time.time(), "status": fr.status,
           "root_pos": [round(float(x), 6) for x in fr.root_pos],
           "root_quat": [round(float(x), 6) for x in fr.root_quat],
           "q": [round(float(x), 6) for x in fr.q], "contacts": [bool(x) for x in fr.contacts]}
    self._send(msg)
    now = time.perf_counter()
    self.seq += 1
    self.c.frames_out += 1
    if t_recv is not None:
      self.c.latency_ms.append(1000.0 * (now - t_recv))
    if cpu0 is not None:
      self.c.cpu_ms.append(1000.0 * (time.thread_time() - cpu0))
    if now - self._last_hello > self.hello_every_s:
      self.hello()
    if now - self._last_stats > 1.0:
      self.stats()

  # ---- input ----
  def on_header(self, text: str) -> None:
    self.c.headers += 1
    try:
      if self.rt is None:
        self.rt = self.factory(text)
      else:
        self.rt.set_header(text)  # recalibrates the human side; the robot side stays continuous
    except Exception as e:  # a broken header must not stop the server
      self.c.malformed += 1
      if not self.quiet:
        print(f"stream: bad header ({e})", file=sys.stderr)
      return
    self.header_text = text
    self.stall_s = self.stall_ms / 1000.0 if self.stall_ms > 0 else 2.5 / self.rt.fps
    self._last_num = None
    self._last_line = None
    self.hello()

  def on_frame_line(self, line: str, t_recv: float) -> None:
    rt = self.rt
    if rt is None:
      self.c.malformed += 1  # a frame before any header
      return
    cpu0 = time.thread_time()
    toks = line.split()
    C = rt.num_channels
    num = None
    try:
      if len(toks) == C + 1:
        num = int(toks[0])
        vals = np.array(toks[1:], dtype=np.float64)
      elif len(toks) == C:
        vals = np.array(toks, dtype=np.float64)
      else:
        raise ValueError
      if not np.all(np.isfinite(vals)):
        raise ValueError
    except ValueError:
      self.c.malformed += 1
      return
    # Numbering: duplicates, late (out of order) and dropped frames.
    if num is not None:
      if self._last_num is not None:
        if num == self._last_num:
          self.c.duplicated += 1
          return
        if num < self._last_num:
          self.c.late += 1
          return
        if num > self._last_num + 1:
          self.c.dropped += num - self._last_num - 1
    else:
      if line == self._last_line:
        self.c.duplicated += 1
        return
      if self._last_frame_t is not None and not self._stalled:
        if (t_recv - self._last_frame_t) * rt.fps > 1.9:
          self.c.gaps += 1
    self._last_line = line
    self._last_num = num
    self._last_frame_t = t_recv
    self._stalled = False
    try:
      fr = rt.push(vals, frame_number=num)
    except Exception as e:
      self.c.errors += 1
      if not self.quiet:
        print(f"stream: frame rejected ({e})", file=sys.stderr)
      return
    self.c.frames_in += 1
    if fr is not None:
      self._send_frame(fr, t_recv, cpu0)

  def tick(self, now: float) -> float:
    """Idle output while the source is stalled; returns the seconds until the next tick is due."""
    rt = self.rt
    if rt is None or self._last_frame_t is None:
      return 0.1
    silent = now - self._last_frame_t
    if silent < self.stall_s:
      return max(self.stall_s - silent, 0.001)
    if not self._stalled:
      self._stalled = True
      self._next_idle = now
      self.c.stalls += 1
    if now >= self._next_idle:
      fr = rt.idle(silent)
      if fr is not None:
        self._send_frame(fr, None)
        self.c.idle_out += 1
      self._next_idle += 1.0 / rt.fps
      if self._next_idle < now:
        self._next_idle = now + 1.0 / rt.fps
    return max(self._next_idle - now, 0.001)


class _LineSplitter:
  """Bytes -> lines; collects the BVH header (HIERARCHY ... Frame Time:) as one block."""

  def __init__(self):
    self.buf = b""
    self.header: list[str] | None = None

  def feed(self, data: bytes) -> list[tuple[str, str]]:
    """Returns ('header', text) and ('frame', line) items in order."""
    self.buf += data
    *lines, self.buf = self.buf.split(b"\n")
    out = []
    for raw in lines:
      line = raw.decode("utf-8", "replace").strip()
      if not line:
        continue
      if self.header is not None:
        self.header.append(line)
        if line.lower().startswith("frame time"):
          out.append(("header", "\n".join(self.header)))
          self.header = None
        continue
      if line.upper().startswith("HIERARCHY"):
        self.header = [line]
        continue
      out.append(("frame", line))
    if len(self.buf) > 1 << 20:  # a megabyte without a newline: garbage
      self.buf = b""
      out.append(("frame", "<overlong line>"))
    return out


def serve_tcp(server: StreamServer, listen: tuple[str, int], exit_idle_s: float = 0.0, max_frames: int = 0,
              stop=lambda: False, ready=None) -> None:
  """Accept BVH sources on ``listen`` (one at a time; a new connection replaces the current one)."""
  sel = selectors.DefaultSelector()
  lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  lsock.bind(listen)
  lsock.listen(4)
  lsock.setblocking(False)
  sel.register(lsock, selectors.EVENT_READ, "listen")
  if ready is not None:
    ready(lsock.getsockname())
  conn = None
  split = None
  last_activity = time.perf_counter()
  had_data = False
  try:
    while not stop():
      now = time.perf_counter()
      timeout = min(server.tick(now), 0.1)
      for key, _ in sel.select(timeout):
        if key.data == "listen":
          c, _ = lsock.accept()
          c.setblocking(False)
          c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
          if conn is not None:
            sel.unregister(conn)
            conn.close()
            server.c.disconnects += 1
          conn, split = c, _LineSplitter()
          sel.register(conn, selectors.EVENT_READ, "conn")
          server.c.connections += 1
          last_activity = time.perf_counter()
          continue
        try:
          data = conn.recv(65536)
        except (ConnectionResetError, BlockingIOError, OSError):
          data = b""
        t_recv = time.perf_counter()
        last_activity = t_recv
        if not data:
          sel.unregister(conn)
          conn.close()
          conn = None
          server.c.disconnects += 1
          continue
        items = split.feed(data)
        frames = [i for i, (k, _) in enumerate(items) if k == "frame"]
        skip = set(frames[: -server.max_backlog]) if server.max_backlog and len(frames) > server.max_backlog else set()
        for i, (kind, text) in enumerate(items):
          if kind == "header":
            server.on_header(text)
          elif i in skip:
            server.c.backlog_skipped += 1
          else:
            server.on_frame_line(text, t_recv)
            had_data = True
        if max_frames and server.c.frames_in >= max_frames:
          return
      if exit_idle_s and had_data and conn is None and time.perf_counter() - last_activity > exit_idle_s:
        return
  finally:
    if conn is not None:
      conn.close()
    lsock.close()
    sel.close()


def serve_replay(server: StreamServer, path: str, rate: float, max_frames: int = 0, stop=lambda: False) -> None:
  """Replay a BVH file at its own frame rate times ``rate``, as if it arrived over the network."""
  with open(path, "rb") as f:
    text = f.read().decode("utf-8", "replace")
  split = _LineSplitter()
  items = split.feed(text.encode() + b"\n")
  period = None
  t0 = time.perf_counter()
  k = 0
  for kind, line in items:
    if stop():
      break
    if kind == "header":
      server.on_header(line)
      period = 1.0 / (server.rt.fps * rate) if server.rt is not None and rate > 0 else 0.0
      t0 = time.perf_counter()
      k = 0
      continue
    if line.lower().startswith("frames:"):
      continue
    due = t0 + k * (period or 0.0)
    while True:
      now = time.perf_counter()
      if now >= due:
        break
      time.sleep(min(due - now, 0.002))
    server.on_frame_line(line, time.perf_counter())
    k += 1
    if max_frames and server.c.frames_in >= max_frames:
      break
  if server.rt is not None:
    for fr in server.rt.flush():
      server._send_frame(fr, None)


def stream(
  listen: str = "127.0.0.1:7001",
  replay: str = "",
  rate: float = 1.0,
  udp: str = "127.0.0.1:7002",
  robot: str = "unitree_g1_29dof",
  fps: float = 0.0,
  lookahead: int = 0,
  iterations: int = StreamConfig.iterations,
  skeleton: str = "auto",
  units: str = "auto",
  up_axis: str = "auto",
  stall_ms: float = 0.0,
  hold_s: float = 0.5,
  ease_speed: float = 0.8,
  max_backlog: int = 0,
  exit_idle_s: float = 0.0,
  max_frames: int = 0,
  stats_json: str = "",
  quiet: bool = False,
) -> int:
  """Live retargeting: BVH frames in (TCP, or --replay a file), robot frames out as JSON over UDP.

  Args:
    listen: TCP HOST:PORT where a motion-capture source connects and sends the BVH header once, then one
      line of channel values per frame (optionally prefixed by an integer frame number).
    replay: instead of listening, replay this BVH file at its own frame rate.
    rate: replay speed factor.
    udp: where the JSON messages go (docs/streaming.md).
    robot: builtin robot name or robot config .toml.
    fps: the source's frame rate (default: the header's Frame Time).
    lookahead: frames of look-ahead (smoother, adds lookahead/fps of latency).
    iterations: solver iterations per frame.
    skeleton: BVH name preset: auto, bandai, lafan1, cmu.
    units: BVH units: auto, m, cm, mm, inch, cgspeed.
    up_axis: BVH up axis: auto, x, y, z, -x, -y, -z.
    stall_ms: the source counts as stalled after this silence (default: 2.5 frame periods).
    hold_s: a stalled source's last pose is held this long, then the robot eases to standing.
    ease_speed: joint speed of that easing (rad/s).
    max_backlog: when more frames than this arrive at once, skip the older ones (0 = answer all).
    exit_idle_s: exit when the source has been disconnected this long (0 = run until interrupted).
    max_frames: exit after this many frames (0 = no limit).
    stats_json: write the counters and latency figures here on exit.
    quiet: no progress on stderr.
  """
  from humanoid_retarget.human.bvh_import import BvhImportConfig
  from humanoid_retarget.retarget.streaming import StreamingRetargeter
  from humanoid_retarget.robot.config import load_robot

  rob = load_robot(robot)
  cfg = StreamConfig(iterations=iterations, lookahead=lookahead, hold_s=hold_s, ease_speed=ease_speed,
                     bvh=BvhImportConfig(skeleton=skeleton, units=units, up_axis=up_axis))

  def factory(header_text: str) -> StreamingRetargeter:
    rt = StreamingRetargeter(rob, header_text, fps=fps or None, cfg=cfg)
    # Everything allocated so far (robot, model, caches) is long-lived: keep it out of the garbage
    # collector's scans, so a collection during a frame costs microseconds, not milliseconds.
    gc.collect()
    gc.freeze()
    return rt

  server = StreamServer(factory, _addr(udp), stall_ms=stall_ms, max_backlog=max_backlog, quiet=quiet)
  stopping = {"flag": False}

  def _stop(*_):
    stopping["flag"] = True

  signal.signal(signal.SIGTERM, _stop)
  try:
    if replay:
      if not os.path.exists(replay):
        raise RetargetError("no such file", replay)
      serve_replay(server, replay, rate, max_frames=max_frames, stop=lambda: stopping["flag"])
    else:
      serve_tcp(server, _addr(listen), exit_idle_s=exit_idle_s, max_frames=max_frames,
                stop=lambda: stopping["flag"],
                ready=None if quiet else (lambda a: print(f"stream: listening on {a[0]}:{a[1]}, sending to {udp}",
                                                          file=sys.stderr)))
  except KeyboardInterrupt:
    pass
  finally:
    summary = server.c.summary()
    if server.rt is not None:
      summary["solver_errors"] = server.rt.solver_errors
    if server.rt is not None:
      server.stats()
    if stats_json:
      with open(stats_json, "w") as f:
        json.dump(summary, f, indent=1)
    if not quiet:
      print("stream: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in summary.items()), file=sys.stderr)
  return 0
