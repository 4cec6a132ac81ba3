"""The reality emulator's child process: the hidden world, paced to the wall clock or the agent.

Everything here runs in a process started with the "spawn" context, so the agent's process
never holds the perturbed model. What crosses the boundary is what a real arm would give:

* commands and control messages, parent -> child, over a `Pipe`;
* measured states, child -> parent, through a ring of `RING` slots in shared memory (the
  writer never blocks on a slow reader, and a reader can still see every packet it missed);
* camera frames, child -> parent, through one latest-frame slot per camera;
* the drawn gap, child -> parent, only in answer to "shutdown".

Time: simulation time 0 is the monotonic instant `t0` (0 itself when unpaced); physics is stepped until its clock
catches up with the wall, and every event (applying a command, measuring a state, exposing
a frame) is scheduled in simulation time. A loop that falls a few milliseconds behind (a
render) catches up without moving any event, so latencies and timestamps stay exact.
Unpaced (`realtime=False`), physics runs as fast as it can instead; in lockstep it advances one
control period per grant (a command, or a reader's "tick" when it waits with none in flight),
handling messages strictly in order, so an episode is a function of the message sequence alone.

`EmulatorLink` is the parent's end of the same protocol: the process, the pipe, the shared
memory, and the faults the parent infers from what arrives (or stops arriving).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from puzzlebot.real.interface import Fault, FaultKind, NotConnectedError, RobotState

if TYPE_CHECKING:
    from puzzlebot.real.emulator import EmulatorConfig, GapConfig

RING = 256
"""States kept in shared memory: 2.56 s at 100 Hz, longer than any sane pause between reads."""
STATE_HEAD = 6
"""Slot layout: seq, t, wall time written, dropped packets so far, fault bits, grip; then q, qd,
tcp (3), quat (4), wrench (6). The wall time tells the reader how long the link has been silent."""
WRENCH = 6
"""Wrist force (3, N) then torque (3, N·m about the TCP), world frame, at the end of each slot."""
FRAME_HEAD = 4
"""Frame header: seq, t (exposure, monotonic), frames dropped so far, stale frames re-sent so far."""
PROTECTIVE_BIT = 1
SENSOR_BIT = 2
HISTORY = 5
"""Frames kept per camera for re-sending as stale ones."""
GRANTS = ("cmd", "tick")
"""Messages that, in lockstep, each advance the world by one control period."""
LOCKSTEP_TIMEOUT = 5.0
"""Least wall-clock wait, s, with a granted lockstep period in flight and no sign of life from the
child (no physics step, no frame rendered), before the link counts as lost (chosen here: one step
or one 480x640 render on llvmpipe takes well under 0.2 s, but a child can get no CPU for seconds).
Not the period's whole length: on two cores shared by five busy processes a period took over 2 s,
and four model-building sessions were lost to a timeout while the child was stepping. At 2 s,
with two benchmarks and the test suite sharing two cores, three sessions were lost to a child
that went 2 s without a single step: a lockstep world has no deadline, and a hung child is still
caught, 3 s later."""
LOCKSTEP_BUSY_LIMIT = 60.0
"""Most wall-clock wait, s, for a granted period while the child, silent, is still runnable or
using CPU (starved by a loaded machine, or in a long render): with three heavy jobs on two cores a
child went over 5 s without a step and live sessions were lost. A child that sleeps, or is stopped,
with a period in flight is lost after `LOCKSTEP_TIMEOUT`; one that spins this long is lost too."""


def child_cpu(pid: int) -> tuple[str, int] | None:
    """A process's scheduler state letter and the CPU ticks its threads have used, from Linux's
    /proc (None where there is none, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the name, in parentheses, may hold spaces
    return fields[0], int(fields[11]) + int(fields[12])  # state; utime + stime


def state_slot_size(dof: int) -> int:
    return STATE_HEAD + 2 * dof + 7 + WRENCH


@dataclass
class SharedBuffers:
    """Shared-memory blocks and their locks; pickled into the child only while spawning it."""

    states: Any  # RawArray('d', RING * slot)
    head: Any  # RawArray('q', 3): states written so far, lockstep periods completed so far, and
    # the child's heartbeat (bumped at every physics step and rendered frame: busy, not lost)
    state_lock: Any
    stepped: Any  # Semaphore released after every lockstep period (wakes a waiting reader)
    frames: dict[str, Any]  # camera -> RawArray('B', H * W * 3)
    frame_heads: dict[str, Any]  # camera -> RawArray('d', FRAME_HEAD)
    frame_lock: Any


def run_child(config: EmulatorConfig, buffers: SharedBuffers, conn: Connection) -> None:
    """Process entry point: build the world, report ready, serve until shutdown or EOF."""
    os.environ.setdefault("MUJOCO_GL", "egl")  # no display: render offscreen (the parent also sets it)
    # Ctrl-C reaches the whole process group: the parent handles it (stops the arm, then shuts
    # the world down), so the world must not die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = None
    try:
        child = _Child(config, buffers, conn)
        child.serve()
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone: nothing left to serve
    except BaseException:  # report any crash to the parent before dying: it explains the DISCONNECTED fault
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
        raise SystemExit(1) from None
    finally:
        if child is not None:
            child.close()


class EmulatorLink:
    """The parent's handle on one child: process, pipe, shared memory, and the faults seen on it."""

    def __init__(self, process: SpawnProcess, conn: Connection, buffers: SharedBuffers, config: EmulatorConfig,
                 dof: int):
        self.process, self.conn, self.buf, self.config, self.dof = process, conn, buffers, config, dof
        self.states = np.frombuffer(buffers.states, dtype=np.float64).reshape(RING, state_slot_size(dof))
        self.up = True
        """False once the link is lost (silence, dead child, broken pipe) until `reconnect`."""
        self.faults: dict[FaultKind, Fault] = {}
        """Latched faults by kind, first occurrence kept, until `clear_faults` (or reconnect)."""
        self.newest: RobotState | None = None
        """The newest finite measurement."""
        self.latest_t: float | None = None
        """Timestamp of the newest measurement taken out of the ring (finite or not): the emulator's
        clock when it is not paced to the wall."""
        self._read = 0  # states taken out of the ring
        self._unread: deque[RobotState] = deque(maxlen=RING)
        self._last_rx = time.monotonic()
        self._dropped_seen = 0
        self._clean_from = 0  # states before this seq were measured before the last clear
        self._error = ""
        # Lockstep: periods granted (commands and ticks sent), completed (the child's count), the
        # wall time each grant still in flight was sent, and when the child last completed one.
        self._granted = self._completed = 0
        self._in_flight: deque[float] = deque()
        self._progress = time.monotonic()
        self._beat = 0  # the child's heartbeat when last read
        self._ticks: int | None = None  # the child's CPU ticks when last read, and when they last grew
        self._cpu_at = time.monotonic()
        self.lockstep_timeout = max(config.link_timeout, LOCKSTEP_TIMEOUT)
        """Lockstep: wall-clock wait for a granted period after which the link counts as lost, s."""

    @classmethod
    def spawn(cls, ctx: SpawnContext, config: EmulatorConfig, dof: int) -> EmulatorLink:
        """Allocate shared memory, start the child, and return without waiting for it."""
        height, width = config.image_size
        buffers = SharedBuffers(
            states=ctx.RawArray("d", RING * state_slot_size(dof)), head=ctx.RawArray("q", 3), state_lock=ctx.Lock(),
            stepped=ctx.Semaphore(0),
            frames={n: ctx.RawArray("B", height * width * 3) for n in config.cameras},
            frame_heads={n: ctx.RawArray("d", FRAME_HEAD) for n in config.cameras}, frame_lock=ctx.Lock())
        parent, child = ctx.Pipe()
        process = ctx.Process(target=run_child, args=(config, buffers, child), daemon=True,
                              name=f"puzzlebot-emulator-seed{config.seed}")
        with _offscreen_env():
            process.start()
        child.close()  # else the parent's copy keeps the pipe open and the child never sees EOF
        return cls(process, parent, buffers, config, dof)

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def wait_ready(self, timeout: float) -> None:
        """Block until the child reports ready; a crash or a timeout raises with the reason."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._receive(0.05)
            if msg is not None and msg[0] == "ready":
                self._last_rx = time.monotonic()
                return
            if not self.alive:
                raise RuntimeError(f"the emulator process failed to start: {self.death_reason()}")
        raise TimeoutError(f"the emulator did not report ready within {timeout:.0f} s "
                           f"(EmulatorConfig.ready_timeout); is MUJOCO_GL usable in a child process?")

    # ------------------------------------------------------------------ states
    def take(self, block: bool) -> list[RobotState]:
        """Every state not taken yet, oldest first; `block` waits for one until the link times out.

        In lockstep a blocked reader with no period in flight grants one ("tick": waiting is time
        passing, the arm holds its last target), so a read never waits on a world that is not moving.
        """
        while True:
            self._pump()
            if self._unread or not block or not self.check():
                break
            if not self.config.lockstep:
                time.sleep(0.0005)
                continue
            if self._granted == self._completed:
                self.send(("tick",), best_effort=True)
            self._await_period()
        self.check()
        states = list(self._unread)
        self._unread.clear()
        return states

    def _await_period(self) -> None:
        """Lockstep: until the child ends a period, or for 50 ms (the caller checks the link meanwhile).

        No spinning first: on two cores a reader that spins competes with the child and made a
        gripper episode without cameras 1.3x slower than sleeping on the semaphore."""
        if self.buf.stepped.acquire(timeout=0.05):
            while self.buf.stepped.acquire(block=False):
                pass  # wake-ups of periods whose states were already taken

    def refresh(self) -> None:
        """Move new states into the unread queue (updating faults) and check the link."""
        self._pump()
        self.check()

    def check(self) -> bool:
        """Whether the link is up; a dead child or `link_timeout` of silence loses it.

        In lockstep silence is normal (no commands, no states): only a granted period that the
        child does not complete within `lockstep_timeout` of wall time loses the link.
        """
        if not self.up:
            return False
        if not self.alive:
            self.lose(f"the emulator process died: {self.death_reason()}")
        elif self.config.lockstep:
            # Since the oldest grant in flight was sent, or the child last ended a period if later.
            stall = time.monotonic() - max(self._progress, self._in_flight[0]) if self._in_flight else 0.0
            busy = self._child_busy() if stall > 0.5 else False
            if stall > self.lockstep_timeout and not (busy and stall < LOCKSTEP_BUSY_LIMIT):
                self.lose(f"no state for {stall:.3f} s after a command (lockstep timeout {self.lockstep_timeout} s"
                          + (f", {LOCKSTEP_BUSY_LIMIT} s while the child is busy)" if busy else ")"))
        elif (silence := time.monotonic() - self._last_rx) > self.config.link_timeout:
            self.lose(f"no state for {silence:.3f} s (link_timeout {self.config.link_timeout} s)")
        return self.up

    def _child_busy(self) -> bool:
        """Whether the silent child is waiting for a CPU or used one within `lockstep_timeout`:
        starved or working, not hung (False where the OS does not say)."""
        cpu = child_cpu(self.process.pid)
        if cpu is None:
            return False
        state, ticks = cpu
        if self._ticks is None or ticks > self._ticks:  # (a first reading: it may have just worked)
            self._cpu_at = time.monotonic()
        self._ticks = ticks
        return state == "R" or time.monotonic() - self._cpu_at < self.lockstep_timeout

    def now(self) -> float | None:
        """The emulator's clock: the newest state's timestamp (taking new ones in if the child lives)."""
        if self.alive:
            self._pump()
        return self.latest_t

    def lose(self, reason: str) -> None:
        if self.up:
            self.up = False
            self.faults[FaultKind.DISCONNECTED] = Fault(FaultKind.DISCONNECTED, reason, time.monotonic())

    def _pump(self) -> None:
        rows = None
        with _locked(self.buf.state_lock):
            head, completed, beat = int(self.buf.head[0]), int(self.buf.head[1]), int(self.buf.head[2])
            if head != self._read:
                rows = self.states[np.arange(max(self._read, head - RING), head) % RING].copy()
        if beat != self._beat:  # the child is working on it: slow is not lost
            self._beat, self._progress = beat, time.monotonic()
        if completed > self._completed:  # lockstep periods ended: their grants are no longer in flight
            self._completed, self._progress = completed, time.monotonic()
            while len(self._in_flight) > self._granted - completed:
                self._in_flight.popleft()
        if rows is None:
            return
        self._read = head
        self._last_rx = max(self._last_rx, float(rows[-1, 2]))  # when the child wrote it, not when we read it
        self._unread.extend(self._parse(row) for row in rows)

    def _parse(self, row: np.ndarray) -> RobotState:
        n = self.dof
        seq, t, dropped, bits, grip = int(row[0]), float(row[1]), int(row[3]), int(row[4]), float(row[5])
        q, qd = row[STATE_HEAD:STATE_HEAD + n], row[STATE_HEAD + n:STATE_HEAD + 2 * n]
        tcp, quat = row[STATE_HEAD + 2 * n:STATE_HEAD + 2 * n + 3], row[STATE_HEAD + 2 * n + 3:-WRENCH]
        wrench = row[-WRENCH:]
        finite = bool(np.all(np.isfinite(row)))
        faults = []
        if seq >= self._clean_from:  # a state measured before the last clear carries old news
            if bits & PROTECTIVE_BIT:
                faults.append(self._latch(FaultKind.PROTECTIVE_STOP, "protective stop: the arm holds", t))
            if bits & SENSOR_BIT or not finite:
                faults.append(self._latch(FaultKind.SENSOR_INVALID, f"non-finite joint reading at seq {seq}", t))
        if dropped > self._dropped_seen:
            lost = dropped - self._dropped_seen
            faults.append(self._latch(FaultKind.COMMS, f"{lost} state packet(s) lost before seq {seq}", t))
            self._dropped_seen = dropped
        state = RobotState(seq, t, q, qd, tcp, quat, grip, tuple(faults), wrench)
        self.latest_t = t
        if finite:
            self.newest = state
        return state

    def _latch(self, kind: FaultKind, message: str, t: float) -> Fault:
        return self.faults.setdefault(kind, Fault(kind, message, t))

    def frame(self, name: str) -> tuple[int, float, int, np.ndarray]:
        """Seq, exposure time, frames dropped so far, and a copy of the image in one camera's slot."""
        height, width = self.config.image_size
        with _locked(self.buf.frame_lock):
            head = np.frombuffer(self.buf.frame_heads[name], dtype=np.float64).copy()
            image = np.frombuffer(self.buf.frames[name], dtype=np.uint8).reshape(height, width, 3).copy()
        return int(head[0]), float(head[1]), int(head[2]), image

    # ------------------------------------------------------------------ control
    def send(self, msg: tuple, best_effort: bool = False) -> None:
        try:
            self.conn.send(msg)
        except (OSError, ValueError) as err:  # a broken or closed pipe
            self.lose(f"the pipe to the emulator broke: {err!r}")
            if not best_effort:
                raise NotConnectedError(f"emulator link lost: {err!r}") from err
            return
        if self.config.lockstep and msg[0] in GRANTS:
            self._granted += 1
            self._in_flight.append(time.monotonic())

    def clear_faults(self) -> None:
        """Clear the arm's faults and the latched ones; DISCONNECTED waits for `reconnect`."""
        if not (self.up and self.alive):
            return
        self._pump()  # states already measured keep their faults out of the cleared set
        seq = self._request(("clear",), "cleared")
        if seq is None:
            self.lose("the emulator did not answer clear_faults")
            return
        self._clean_from = seq
        self.faults = {}

    def reconnect(self) -> None:
        """Re-open a link that was lost while the world kept running (the arm held meanwhile)."""
        seq = self._request(("reconnect",), "reconnected")
        if seq is None:
            raise NotConnectedError(f"the emulator did not answer a reconnect: {self.death_reason()}")
        self._pump()  # nothing from before the reconnect should count as fresh
        self.up, self._last_rx = True, time.monotonic()
        # Grants sent while the link was down never reached the world; the child answered after
        # completing every one it accepted.
        self._granted = self._completed
        self._in_flight.clear()
        self.faults.pop(FaultKind.DISCONNECTED, None)

    def shutdown(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """Ask the child to stop; returns its gap, or None if it is dead or does not answer."""
        if not self.alive:
            return None
        return self._request(("shutdown",), "gap", timeout)

    def death_reason(self) -> str:
        self._receive(0.0)  # pick up a crash report if one is waiting
        code = self.process.exitcode
        where = f"exit code {code}" if code is not None else "still running"
        return f"{where}\n{self._error}" if self._error else where

    def _request(self, msg: tuple, reply: str, timeout: float = 1.0) -> Any:
        self.send(msg, best_effort=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self._receive(0.01)
            if answer is not None and answer[0] == reply:
                return answer[1]
            if answer is None and not self.alive:
                return None
        return None

    def _receive(self, timeout: float) -> tuple | None:
        """One message from the child, or None; a crash report is kept for `death_reason`."""
        try:
            if not self.conn.poll(timeout):
                return None
            msg = self.conn.recv()
        except (EOFError, OSError):
            return None
        if msg[0] == "error":
            self._error = msg[1]
        return msg

    @staticmethod
    def kill(process: SpawnProcess, conn: Connection) -> None:
        """Leave no orphan: join, then terminate, then kill (also run at exit and on garbage collection)."""
        if process.pid is not None and process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                conn.send(("shutdown",))
            process.join(2.0)
        if process.is_alive():
            process.terminate()
            process.join(1.0)
        if process.is_alive():
            process.kill()
            process.join(1.0)
        conn.close()


@contextlib.contextmanager
def _offscreen_env() -> Iterator[None]:
    """The child inherits MUJOCO_GL=egl when the parent set nothing (it renders without a display)."""
    missing = "MUJOCO_GL" not in os.environ
    if missing:
        os.environ["MUJOCO_GL"] = "egl"
    try:
        yield
    finally:
        if missing:
            os.environ.pop("MUJOCO_GL", None)


@contextlib.contextmanager
def _locked(lock: Any, timeout: float = 1.0) -> Iterator[None]:
    """A shared-memory lock that cannot hang the parent if the child died holding it."""
    if not lock.acquire(timeout=timeout):
        raise NotConnectedError("the emulator's shared memory stayed locked: the child is stuck or dead")
    try:
        yield
    finally:
        lock.release()


class _Child:
    """The hidden world: a perturbed `PuzzleWorld`, its renderer, and the link state."""

    def __init__(self, config: EmulatorConfig, buffers: SharedBuffers, conn: Connection):
        import mujoco

        from puzzlebot.sim.build import DEFAULT_CAMERAS
        from puzzlebot.sim.external import load_puzzle
        from puzzlebot.sim.world import PuzzleWorld, WorldConfig

        self.cfg, self.gap_cfg, self.buf, self.conn = config, config.gap, buffers, conn
        spec = load_puzzle(config.puzzle) if isinstance(config.puzzle, str | Path) else config.puzzle
        cams = tuple(c for c in DEFAULT_CAMERAS if c.name in config.cameras)
        self.world = PuzzleWorld(spec, WorldConfig(robot=config.robot, cameras=cams))
        self.model, self.data, self.arm = self.world.model, self.world.data, self.world.arm
        # Independent streams: the drawn gap never depends on how many commands or frames came.
        # A fifth stream for the wrench noise: spawn(5)'s first four are spawn(4)'s, so adding the
        # sensor left every other stream (and each seed's episode) as it was.
        draw_seq, noise_seq, lat_seq, cam_seq, wrench_seq = np.random.SeedSequence(config.seed).spawn(5)
        self.drawn = draw_gap(self.world, self.gap_cfg, np.random.default_rng(draw_seq))
        self.world.reset()
        self.rng_noise = np.random.default_rng(noise_seq)
        self.rng_latency = np.random.default_rng(lat_seq)
        self.rng_cam = np.random.default_rng(cam_seq)
        self.rng_wrench = np.random.default_rng(wrench_seq)
        self.wrist = WristSensor(self.model, self.data, self.arm, config.robot)
        self.dof = len(self.arm.joint_names) if config.robot == "jaco" else 0
        if self.dof:
            from puzzlebot.sim.robots.jaco import ARM_JOINTS, PREFIX

            self.act = np.array([self.model.actuator(f"{PREFIX}act_{j}").id for j in ARM_JOINTS])
            self.half_play = 0.5 * np.array([self.drawn["backlash"][n] for n in self.arm.joint_names])
            self.play_state = self.data.ctrl[self.act].copy()
        self.renderer = None
        if config.cameras:
            self.renderer = mujoco.Renderer(self.model, *config.image_size)
            self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            self.renderer.update_scene(self.data, camera=config.cameras[0])
            self.renderer.render()  # warm-up: the first render compiles shaders (~60 ms on llvmpipe)
        self.slot = state_slot_size(self.dof)
        self.states = np.frombuffer(buffers.states, dtype=np.float64).reshape(RING, self.slot)
        self.frames = {n: np.frombuffer(a, dtype=np.uint8).reshape(*config.image_size, 3)
                       for n, a in buffers.frames.items()}
        self.frame_heads = {n: np.frombuffer(a, dtype=np.float64) for n, a in buffers.frame_heads.items()}
        # Link and fault state.
        self.pending: deque[tuple[float, str, np.ndarray, float]] = deque()  # (apply at, mode, target, grip)
        self.last_apply = 0.0
        self.ee_target: tuple[np.ndarray, np.ndarray] | None = None
        self.seq = 0
        self.written = 0
        self.disconnected = self.protective = self.sensor_latched = self.nan_next = False
        self.comms_drop = 0
        self.stats: dict[str, Any] = {"latencies": [], "commands_ignored": 0, "states_dropped": 0,
                                      "frames_dropped": dict.fromkeys(config.cameras, 0),
                                      "frames_stale": dict.fromkeys(config.cameras, 0), "max_lag_s": 0.0}
        self.cam_seq = dict.fromkeys(config.cameras, 0)
        self.history: dict[str, deque] = {n: deque(maxlen=HISTORY) for n in config.cameras}
        self.t0 = 0.0
        # Schedule, in simulation time.
        self.state_period, self.cam_period = 1.0 / config.control_hz, 1.0 / self.gap_cfg.camera_hz
        self.next_state = self.state_period
        self.next_frame: dict[str, float] = {}
        self.periods = 0  # lockstep periods completed

    # ------------------------------------------------------------------ main loop
    def serve(self) -> None:
        cfg = self.cfg
        # Simulation time 0 (data.time is 0 after reset): the wall's now when paced to it; else 0,
        # so that an unpaced episode's stamps, and every comparison made on them, do not depend on
        # how long the machine has been up (at t0 ~ 5000 s a tracked knob's turn was read from a
        # different set of frames than at t0 ~ 1000 s, and a probing test failed on one machine)
        self.t0 = time.monotonic() if cfg.realtime else 0.0
        self._publish_state()
        for name in cfg.cameras:  # the first frame of every camera (seq 1) is always delivered
            self.cam_seq[name] += 1
            self._render(name)
        self.next_state = self.state_period
        # Cameras staggered over the period, so their renders never pile up on one step.
        self.next_frame = {n: self.cam_period * (1 + i / len(cfg.cameras)) for i, n in enumerate(cfg.cameras)}
        self.conn.send(("ready", {"t0": self.t0}))
        if cfg.lockstep:
            self._serve_lockstep()
        else:
            self._serve_paced()

    def _serve_paced(self) -> None:
        """Physics chases the wall clock (realtime) or runs flat out, reading messages between periods."""
        realtime, dt = self.cfg.realtime, self.model.opt.timestep
        while True:
            if not self._handle_messages():
                return
            target = self._now() if realtime else self.data.time + self.state_period
            if realtime and self.data.time > 0.1:  # how far physics trailed the wall clock, once started
                self.stats["max_lag_s"] = max(self.stats["max_lag_s"], target - self.data.time)
            while self.data.time + dt <= target:  # never ahead of the wall: no state from the future
                self._step()
            wait = self.data.time + dt - self._now() if realtime else 0.0
            self.conn.poll(max(wait, 0.0))

    def _serve_lockstep(self) -> None:
        """One message at a time, in order; each grant the link lets through advances one control period.

        Taking messages one by one (never a drained batch) puts each at a definite simulation time,
        however the agent's sends and the child's steps interleave on the wall clock: commands sent
        back to back apply one period apart, and a seed and a message sequence fix the episode.
        """
        while True:
            msg = self.conn.recv()  # blocks: no grant, no time passes
            granted = msg[0] in GRANTS and not self.disconnected  # a lost link never delivers it
            if not self._handle(msg):
                return
            if not granted:
                continue
            while not self._step():  # to the end of the period: its state is published there
                pass
            self.periods += 1
            with self.buf.state_lock:
                self.buf.head[1] = self.periods
            self.buf.stepped.release()

    def _step(self) -> bool:
        """One physics step and every event due on it; True if it ended a control period."""
        self._apply_due()
        self.world.step()
        self.buf.head[2] += 1  # heartbeat (one writer: this process)
        self.wrist.accumulate()
        t = self.data.time + 1e-9
        for name, due in self.next_frame.items():
            if t >= due:
                self._camera_tick(name)
                self.buf.head[2] += 1  # heartbeat: a render can be the longest thing a period does
                self.next_frame[name] = due + self.cam_period
        # The state last: a reader that sees it (lockstep: the period's end) sees this step's frames too.
        ticked = t >= self.next_state
        if ticked:
            self._control_tick()
            self.next_state += self.state_period
        return ticked

    def _now(self) -> float:
        """The wall clock in simulation time."""
        return time.monotonic() - self.t0

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()  # else EGL complains in __del__ at exit (NOTES.md)

    # ------------------------------------------------------------------ messages
    def _handle_messages(self) -> bool:
        """Drain the pipe; False on shutdown."""
        while self.conn.poll():
            if not self._handle(self.conn.recv()):
                return False
        return True

    def _handle(self, msg: tuple) -> bool:
        """Act on one message; False on shutdown. A disconnected arm answers only reconnect/shutdown."""
        kind = msg[0]
        if kind == "shutdown":
            self.conn.send(("gap", self.episode_gap()))
            return False
        if self.disconnected and kind != "reconnect":
            self.stats["commands_ignored"] += kind == "cmd"
            return True
        if kind == "cmd":
            self._queue(*msg[1:])
        elif kind == "stop":
            self.pending.clear()
            self._hold()
        elif kind == "inject":
            self._inject(msg[1], msg[2])
        elif kind == "clear":
            self.protective = self.sensor_latched = self.nan_next = False
            self.comms_drop = 0
            self.conn.send(("cleared", self.seq + 1))
        elif kind == "reconnect":
            self.disconnected = False
            self.conn.send(("reconnected", self.seq + 1))
        return True  # "tick" only grants a period (lockstep)

    def _queue(self, mode: str, target: np.ndarray, grip: float, t_sent: float) -> None:
        """Schedule a command after its latency; FIFO, so a late draw never overtakes an earlier one."""
        if self.protective:
            self.stats["commands_ignored"] += 1
            return
        gap = self.gap_cfg
        latency = max(0.0, gap.latency_mean + gap.latency_jitter * float(self.rng_latency.standard_normal()))
        sent = t_sent - self.t0 if self.cfg.realtime else self.data.time
        self.last_apply = max(sent + latency, self.last_apply)
        self.stats["latencies"].append(self.last_apply - sent)
        self.pending.append((self.last_apply, mode, target, grip))

    def _inject(self, kind: str, count: int) -> None:
        if kind == "disconnected":
            self.disconnected = True
            self.pending.clear()
            self._hold()  # a real controller holds the arm when its link drops
        elif kind == "protective_stop":
            self.protective = True
            self.pending.clear()
            self._hold()
        elif kind == "sensor_invalid":
            self.nan_next = True
        elif kind == "comms":
            self.comms_drop += count
        else:
            raise ValueError(f"cannot inject fault kind {kind!r}")

    # ------------------------------------------------------------------ acting
    def _apply_due(self) -> None:
        while self.pending and self.pending[0][0] <= self.data.time + 1e-12:
            _, mode, target, grip = self.pending.popleft()
            if mode == "joint":
                self.ee_target = None
                self.arm.set_joint_targets(target)
                self._backlash()
            else:
                self.ee_target = (np.asarray(target[:3], float), np.asarray(target[3:], float))
                self._track_ee()
            self.arm.set_grip(grip)

    def _track_ee(self) -> None:
        """Re-solve the IK towards the held EE target (it converges over several control ticks)."""
        if self.ee_target is not None:
            self.arm.set_tcp_target(*self.ee_target)
            self._backlash()

    def _backlash(self) -> None:
        """Deadband of drawn width on each arm target: it moves only when the command leaves the play."""
        if self.dof:
            ctrl = self.data.ctrl[self.act]
            self.play_state = np.clip(self.play_state, ctrl - self.half_play, ctrl + self.half_play)
            self.data.ctrl[self.act] = self.play_state

    def _hold(self) -> None:
        """Hold the measured position now (stop, protective stop, lost link)."""
        if self.dof:
            q = self.arm.joint_positions()
            self.arm.set_joint_targets(q)
            self.play_state = self.data.ctrl[self.act].copy()
            self.ee_target = None
        else:
            self.ee_target = self.arm.tcp_pose()
            self.arm.set_tcp_target(*self.ee_target)

    # ------------------------------------------------------------------ sensing
    def _control_tick(self) -> None:
        if not (self.protective or self.disconnected):
            self._track_ee()
        self._publish_state()

    def _publish_state(self) -> None:
        gap, rng, n = self.gap_cfg, self.rng_noise, self.dof
        self.seq += 1  # consumed even when the packet is lost: the reader sees the gap
        wrench = self.wrist.take()  # the sensor's window moves on whether or not the packet arrives
        if self.disconnected:
            return
        if self.comms_drop > 0:
            self.comms_drop -= 1
            self.stats["states_dropped"] += 1
            return
        q = self.arm.joint_positions()[:n] + rng.normal(0.0, gap.joint_position_noise, n)
        qd = self.arm.joint_velocities()[:n] + rng.normal(0.0, gap.joint_velocity_noise, n)
        if self.nan_next:
            q[:] = np.nan
            self.nan_next, self.sensor_latched = False, True
        pos, quat = self.arm.tcp_pose()
        wrench[:3] += self.rng_wrench.normal(0.0, gap.wrench_force_noise, 3)
        wrench[3:] += self.rng_wrench.normal(0.0, gap.wrench_torque_noise, 3)
        bits = PROTECTIVE_BIT * self.protective + SENSOR_BIT * self.sensor_latched
        row = np.concatenate([[self.seq, self.t0 + self.data.time, time.monotonic(), self.stats["states_dropped"],
                               bits, self.arm.grip()], q, qd, pos, quat, wrench])
        with self.buf.state_lock:
            self.states[self.written % RING] = row
            self.written += 1
            self.buf.head[0] = self.written

    def _camera_tick(self, name: str) -> None:
        """Deliver, drop, or re-send an old frame (with its old seq and timestamp)."""
        gap = self.gap_cfg
        self.cam_seq[name] += 1
        u = float(self.rng_cam.random())
        if u < gap.frame_drop_prob:
            self.stats["frames_dropped"][name] += 1
            self._write_header(name)
        elif u < gap.frame_drop_prob + gap.stale_frame_prob:
            self.stats["frames_stale"][name] += 1
            history = self.history[name]
            older = list(history)[:-1] or list(history)  # not the newest: that one is already there
            seq, t, image = older[int(self.rng_cam.integers(len(older)))]
            self._write_frame(name, seq, t, image)
        else:
            self._render(name)

    def _render(self, name: str) -> None:
        assert self.renderer is not None  # only cameras in config.cameras tick
        self.renderer.update_scene(self.data, camera=name)
        image = self.renderer.render()
        if self.gap_cfg.image_noise_std > 0:
            noise = self.rng_cam.normal(0.0, self.gap_cfg.image_noise_std, image.shape)
            image = np.clip(image + noise, 0, 255).astype(np.uint8)
        seq, t = self.cam_seq[name], self.t0 + self.data.time
        self.history[name].append((seq, t, image))
        self._write_frame(name, seq, t, image)

    def _write_frame(self, name: str, seq: int, t: float, image: np.ndarray) -> None:
        with self.buf.frame_lock:
            self.frames[name][:] = image
            self.frame_heads[name][:2] = (seq, t)
            self._write_header(name, locked=True)

    def _write_header(self, name: str, locked: bool = False) -> None:
        counts = (self.stats["frames_dropped"][name], self.stats["frames_stale"][name])
        if locked:
            self.frame_heads[name][2:] = counts
        else:
            with self.buf.frame_lock:
                self.frame_heads[name][2:] = counts

    # ------------------------------------------------------------------ the gap
    def episode_gap(self) -> dict[str, Any]:
        """What this episode faced: the config, the drawn values, and what was realised."""
        lat = np.array(self.stats["latencies"]) if self.stats["latencies"] else np.zeros(0)
        realised = {k: v for k, v in self.stats.items() if k != "latencies"}
        realised["commands"] = int(lat.size)
        if lat.size:
            realised["latency"] = {"mean": float(lat.mean()), "std": float(lat.std()), "min": float(lat.min()),
                                   "max": float(lat.max())}
        # Where the episode left the puzzle, for scoring on the world itself (never the agent's model).
        final = {"part_positions": self.world.part_state(), "goal_reached": bool(self.world.goal_reached())}
        return {"seed": self.cfg.seed, "config": asdict(self.gap_cfg), "drawn": self.drawn, "realised": realised,
                "final": final}


class WristSensor:
    """A 6-axis force/torque sensor at the wrist flange, read from the contacts on the hand.

    Why contacts: the environment touches the hand only through them, so their sum is the
    external wrench on the hand, already tared (no weight, no inertia, no pull of the floating
    gripper's mocap weld). Each physics step's sum is averaged over the control period, as a
    real sensor's anti-alias filter does: a single step's contact force chatters.

    Convention: force (N) then torque (N·m about the TCP), world frame, exerted ON the hand.
    """

    FLANGE = {"jaco": "jaco/hand/hand", "gripper": "gripper/palm"}
    """Per robot, the body bolted to the sensor: it and every body below it are sensed."""

    def __init__(self, model: Any, data: Any, arm: Any, robot: str):
        import mujoco

        self.model, self.data, self.arm = model, data, arm
        self._contact_force = mujoco.mj_contactForce
        flange = model.body(self.FLANGE[robot]).id
        # MuJoCo numbers bodies depth first (a parent before its children): one pass marks the subtree.
        distal = np.zeros(model.nbody, dtype=bool)
        for body in range(model.nbody):
            distal[body] = body == flange or (body > 0 and distal[model.body_parentid[body]])
        self.robot_geom = np.zeros(model.ngeom, dtype=bool)
        self.robot_geom[arm.geom_ids()] = True
        self.sensed_geom = self.robot_geom & distal[model.geom_bodyid]
        """The hand's geoms; the arm's links beyond the flange (a Jaco's forearm) are not sensed."""
        self._sum, self._steps = np.zeros(WRENCH), 0

    def accumulate(self) -> None:
        """Add the contact wrench of the step just taken (contacts and forces are that step's)."""
        self._steps += 1
        ncon = self.data.ncon
        if ncon == 0:
            return
        contact = self.data.contact
        geom = contact.geom[:ncon]
        sensed, robot = self.sensed_geom[geom], self.robot_geom[geom]
        # Exactly one side is the robot's, and that side is on the hand; excluded contacts carry no force.
        hit = ((sensed[:, 0] & ~robot[:, 1]) | (sensed[:, 1] & ~robot[:, 0])) & (contact.efc_address[:ncon] >= 0)
        if not hit.any():
            return
        rows = np.flatnonzero(hit)
        local = np.empty((rows.size, 6))
        for row, i in zip(local, rows, strict=True):
            self._contact_force(self.model, self.data, int(i), row)
        # Rows of each contact frame are its axes (normal first, from geom 1 to geom 2), and the
        # contact-frame wrench is the one geom 1 exerts on geom 2: the hand as geom 1 feels its negative.
        frames = contact.frame[rows].reshape(-1, 3, 3)
        sign = np.where(sensed[rows, 0], -1.0, 1.0)[:, None]
        force = sign * np.einsum("kij,ki->kj", frames, local[:, :3])
        torque = sign * np.einsum("kij,ki->kj", frames, local[:, 3:])  # torsional/rolling friction (condim > 3)
        # Sum of lever x force about the TCP, from the 3x3 sum of outer products (np.cross is slow on tiny arrays).
        outer = (contact.pos[rows] - self.arm.tcp_pose()[0]).T @ force
        self._sum[:3] += force.sum(axis=0)
        self._sum[3:] += torque.sum(axis=0) + (outer[1, 2] - outer[2, 1], outer[2, 0] - outer[0, 2],
                                               outer[0, 1] - outer[1, 0])

    def take(self) -> np.ndarray:
        """The mean wrench since the last take (zero before any step); starts the next window."""
        mean = self._sum / self._steps if self._steps else np.zeros(WRENCH)
        self._sum, self._steps = np.zeros(WRENCH), 0
        return mean


def draw_gap(world: Any, gap: GapConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Draw every declared perturbation and write it into the world's model, by name.

    Args:
        world: the child's `PuzzleWorld` (its model is changed in place).
        gap: the ranges to draw from.
        rng: the stream reserved for this draw.

    Returns:
        The drawn values, keyed by joint or part name (JSON-friendly).
    """
    import mujoco

    model = world.model
    drawn: dict[str, Any] = {k: {} for k in ("joint_friction", "joint_damping", "joint_armature", "part_mass",
                                             "axis_tilt", "backlash")}
    scaled_bodies: set[int] = set()
    for part in world.part_names:
        joint = model.joint(world.joint_name(part))
        for key, attr in (("joint_friction", "frictionloss"), ("joint_damping", "damping"),
                          ("joint_armature", "armature")):
            factor = float(rng.uniform(*getattr(gap, key)))
            getattr(joint, attr)[:] *= factor
            drawn[key][part] = factor
        body = model.body(int(model.jnt_bodyid[joint.id]))
        if body.id not in scaled_bodies:  # two parts on one body (an MJCF puzzle) scale it once
            factor = float(rng.uniform(*gap.part_mass))
            body.mass[:] *= factor
            body.inertia[:] *= factor
            scaled_bodies.add(body.id)
            drawn["part_mass"][part] = factor
        # Tilt the axis by a drawn angle towards a random direction perpendicular to it.
        axis = model.jnt_axis[joint.id].copy()
        angle = np.deg2rad(float(rng.uniform(*gap.axis_tilt_deg)))
        perp = rng.standard_normal(3)
        perp -= (perp @ axis) * axis
        perp /= np.linalg.norm(perp)
        model.jnt_axis[joint.id] = np.cos(angle) * axis + np.sin(angle) * perp
        drawn["axis_tilt"][part] = {"deg": float(np.rad2deg(angle)), "axis": model.jnt_axis[joint.id].tolist()}
    if world.config.robot == "jaco":
        for name in world.arm.joint_names:
            drawn["backlash"][name] = float(rng.uniform(*gap.backlash))
    mujoco.mj_setConst(model, world.data)  # mass-dependent constants (body_subtreemass, invweights, ...)
    return drawn
