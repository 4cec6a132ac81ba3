"""The reality emulator: an arm and cameras whose hidden MuJoCo world runs in another process.

The agent talks to `EmulatorBackend` and `EmulatorCamera` exactly as it would to hardware
(`puzzlebot.real.interface`): it sends commands and reads noisy, timestamped measurements and
frames, and never holds the perturbed model, which lives in a child process started with the
"spawn" context (`puzzlebot.real.emulator_process`). Every perturbation is declared in
`GapConfig` and drawn in the child from `EmulatorConfig.seed`; the drawn gap comes back only
with `episode_gap()` after `disconnect()`.

    emu = EmulatorBackend(EmulatorConfig(puzzle="puzzlebot/assets/puzzles/bolt_drawer.yaml"))
    with emu:                                   # spawns the world, waits until it is ready
        front = emu.camera("front"); front.connect()
        state = emu.read_state()                # blocks until a newer measurement arrives
        push = state.wrench[:3]                 # N, world frame, on the hand (wrist F/T sensor)
        emu.send(Command(ControlMode.JOINT, state.joint_positions + 0.05, t=state.t))
        frame = front.read_latest(max_age=0.2)  # StaleFrameError if older
    gap = emu.episode_gap()                     # what this episode faced

Pacing: `realtime=True` paces physics to the wall clock, as hardware would be. `realtime=False,
lockstep=True` steps the world with the agent instead, one control period per command, faster
than real time and deterministic for a seed; time is then the emulator's (`clock()`), which is
what a `Driver` must be given:

    emu = EmulatorBackend(EmulatorConfig(puzzle=..., realtime=False, lockstep=True))
    with Driver(emu, clock=emu.clock) as driver:  # ages and the watchdog in simulation time
        ...
"""

from __future__ import annotations

import multiprocessing as mp
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from puzzlebot.real.emulator_process import EmulatorLink
from puzzlebot.real.interface import (
    CameraBackend,
    CameraIntrinsics,
    Capabilities,
    Command,
    ControlMode,
    Fault,
    FaultKind,
    Frame,
    NotConnectedError,
    RobotBackend,
    RobotState,
    StaleFrameError,
)
from puzzlebot.sim.build import DEFAULT_CAMERAS
from puzzlebot.sim.external import ExternalPuzzleSpec
from puzzlebot.sim.robots import make_robot
from puzzlebot.sim.spec import PuzzleSpec

# Kinova's actuator datasheet (KA-75+ / KA-58), as in dm_control's kinova/jaco_arm.py: the
# firmware caps joints 1-3 at 36 deg/s and joints 4-6 at 48 deg/s.
JACO_MAX_VELOCITY = np.deg2rad([36.0, 36.0, 36.0, 48.0, 48.0, 48.0])
# Not on Kinova's datasheet: full speed within 0.5 s (a placeholder for system identification).
JACO_MAX_ACCELERATION = JACO_MAX_VELOCITY / 0.5
# Joints 1, 4, 5 and 6 turn endlessly on the Jaco; one turn either way is the span we declare.
ENDLESS_SPAN = 2.0 * np.pi
INJECTABLE = (FaultKind.DISCONNECTED, FaultKind.PROTECTIVE_STOP, FaultKind.SENSOR_INVALID, FaultKind.COMMS)


@dataclass(frozen=True)
class GapConfig:
    """The reality gap: every perturbation the emulator applies, drawn from the seed at start.

    Scale ranges match the sim's `RandomizationConfig` defaults (placeholders until system
    identification on a physical lockbox), so a policy trained over them has seen this reality.
    """

    joint_friction: tuple[float, float] = (0.5, 2.0)
    """Factor on each part joint's dry friction (`frictionloss`), drawn uniformly per part."""
    joint_damping: tuple[float, float] = (0.5, 2.0)
    """Factor on each part joint's viscous damping."""
    joint_armature: tuple[float, float] = (0.5, 2.0)
    """Factor on each part joint's armature (reflected guide inertia)."""
    part_mass: tuple[float, float] = (0.7, 1.5)
    """Factor on each part body's mass and inertia."""
    axis_tilt_deg: tuple[float, float] = (0.0, 1.5)
    """Tilt of each part joint's axis, degrees, towards a random perpendicular direction (chosen
    here: a hand-built lockbox's guides are off by a degree or so; beyond ~2 deg a 12 cm drawer
    drifts 4 mm into its guides)."""
    backlash: tuple[float, float] = (0.0, 0.004)
    """Deadband on each arm joint's target, rad, drawn per joint (placeholder: a few mrad of play)."""
    latency_mean: float = 0.03
    """Command-to-actuation latency, s (placeholder: a USB/Ethernet API plus a controller cycle)."""
    latency_jitter: float = 0.005
    """Standard deviation of the latency, s; each command draws max(0, mean + jitter * N(0, 1))."""
    joint_position_noise: float = 0.0005
    """Std of the gaussian noise on measured joint positions, rad (placeholder, ~0.03 deg)."""
    joint_velocity_noise: float = 0.005
    """Std of the gaussian noise on measured joint velocities, rad/s (placeholder)."""
    image_noise_std: float = 2.0
    """Std of the gaussian noise added to every pixel channel, in uint8 levels (placeholder)."""
    frame_drop_prob: float = 0.02
    """Probability that a camera tick delivers nothing (the reader sees a seq gap)."""
    stale_frame_prob: float = 0.01
    """Probability that a camera tick re-sends an older frame with its OLD seq and timestamp."""
    camera_hz: float = 10.0
    """Frames per second per camera (chosen here: llvmpipe renders 120x160 in ~11 ms)."""
    wrench_force_noise: float = 0.3
    """Std of the gaussian noise on each measured wrist force component, N (placeholder: an ATI
    Mini45-class sensor resolves far finer; this stands for mounting vibration as well)."""
    wrench_torque_noise: float = 0.01
    """Std of the gaussian noise on each measured wrist torque component, N·m (placeholder, as
    the force noise)."""

    def __post_init__(self) -> None:
        for name in ("joint_friction", "joint_damping", "joint_armature", "part_mass"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise ValueError(f"GapConfig.{name}: ({lo}, {hi}) must satisfy 0 < low <= high")
        for name in ("axis_tilt_deg", "backlash"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"GapConfig.{name}: ({lo}, {hi}) must satisfy 0 <= low <= high")
        for name in ("latency_mean", "latency_jitter", "joint_position_noise", "joint_velocity_noise",
                     "image_noise_std", "wrench_force_noise", "wrench_torque_noise"):
            if not (getattr(self, name) >= 0.0 and np.isfinite(getattr(self, name))):
                raise ValueError(f"GapConfig.{name}: {getattr(self, name)} must be finite and >= 0")
        if not (0.0 <= self.frame_drop_prob and 0.0 <= self.stale_frame_prob
                and self.frame_drop_prob + self.stale_frame_prob <= 1.0):
            raise ValueError(f"GapConfig.frame_drop_prob/stale_frame_prob: {self.frame_drop_prob}, "
                             f"{self.stale_frame_prob} must be >= 0 and sum to at most 1")
        if not self.camera_hz > 0.0:
            raise ValueError(f"GapConfig.camera_hz: {self.camera_hz} must be > 0")


@dataclass(frozen=True)
class EmulatorConfig:
    """One emulated arm + puzzle; everything here is pickled into the child process."""

    puzzle: str | Path | PuzzleSpec | ExternalPuzzleSpec
    """A puzzle file (PuzzleSpec YAML or MJCF description) or an already loaded spec."""
    robot: str = "jaco"
    """'jaco' (JOINT and EE control) or 'gripper' (a floating gripper, EE control only)."""
    seed: int = 0
    """Seeds the drawn gap, the noise, the latencies and the camera faults."""
    gap: GapConfig = field(default_factory=GapConfig)
    control_hz: float = 100.0
    """State rate and expected command rate, Hz (chosen here: Kinova's Gen2 API cycles at 100 Hz)."""
    cameras: tuple[str, ...] = ("front", "top", "side")
    """Names from `puzzlebot.sim.build.DEFAULT_CAMERAS`."""
    image_size: tuple[int, int] = (120, 160)
    """Height, width in pixels (small: the child renders on the CPU, shadows off)."""
    realtime: bool = True
    """Pace physics to the wall clock. False runs as fast as it can; timestamps are then the
    emulator's own clock (t0 + simulation time) and latency counts from a command's arrival."""
    lockstep: bool = False
    """Step the world with the agent (needs `realtime=False`): physics advances exactly one control
    period per command and publishes that period's state (and any frame due in it), so the agent's
    read -> send -> read loop is closed-loop control in simulation time, faster than real time and,
    for a seed and a command sequence, bit for bit repeatable. Why: free-running physics ignores the
    agent, and real time makes hundreds of probes take hours. A blocking read with no command in
    flight advances one period holding the last target (waiting is time passing). Latency, noise
    and every fault keep working, measured in simulation time; pass `clock=backend.clock` to a
    `Driver` so state ages and its watchdog are too."""
    ready_timeout: float = 60.0
    """Seconds `connect()` waits for the child to build its world."""
    link_timeout: float = 0.25
    """Silence after which the link counts as lost (DISCONNECTED), s (chosen here: 25 states at
    100 Hz, longer than the child's longest render stall). In lockstep silence is normal while the
    agent thinks: the link is lost only when the child dies or a command's period does not complete
    within max(link_timeout, 5 s) of wall time (`emulator_process.LOCKSTEP_TIMEOUT`), or 60 s
    while the child is still runnable or using CPU (`LOCKSTEP_BUSY_LIMIT`: a loaded machine)."""

    def __post_init__(self) -> None:
        if self.robot not in ("jaco", "gripper"):
            raise ValueError(f"EmulatorConfig.robot: {self.robot!r}; choose 'jaco' or 'gripper'")
        known = tuple(c.name for c in DEFAULT_CAMERAS)
        unknown = [c for c in self.cameras if c not in known]
        if unknown:
            raise ValueError(f"EmulatorConfig.cameras: unknown camera {unknown[0]!r}; choose from {known}")
        if not self.control_hz > 0.0:
            raise ValueError(f"EmulatorConfig.control_hz: {self.control_hz} must be > 0")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ValueError(f"EmulatorConfig.image_size: {self.image_size} must be (height, width) >= 8")
        if not self.link_timeout > 1.0 / self.control_hz:
            raise ValueError(f"EmulatorConfig.link_timeout: {self.link_timeout} must exceed one state period")
        if self.lockstep and self.realtime:
            raise ValueError("EmulatorConfig.lockstep: True needs realtime=False (lockstep paces physics to "
                             "the agent's commands, realtime to the wall clock)")


class EmulatorBackend(RobotBackend):
    """The emulated arm: a `RobotBackend` whose world lives in a child process.

    Capabilities and forward kinematics come from a local, kinematic-only copy of the nominal
    arm (no puzzle, no perturbation), so they are known before `connect()`.
    """

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self._kin = _ArmKinematics(config.robot)
        self._caps = self._kin.capabilities(config.control_hz)
        self._link: EmulatorLink | None = None
        self._finalizer: weakref.finalize | None = None
        self._gap: dict[str, Any] | None = None
        self._ended = ""  # why the last process ended without reporting its gap
        self._last_t: float | None = None  # the emulator's clock when its last world ended

    # ------------------------------------------------------------------ lifecycle
    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def connect(self) -> None:
        """Spawn the world (or re-open a link that was lost while the world kept running)."""
        link = self._link
        if link is not None and link.alive:
            if not link.up:
                link.reconnect()
            return
        if link is not None:
            self.disconnect()  # a dead child: collect it before starting a fresh one
        ctx = mp.get_context("spawn")
        self._link = EmulatorLink.spawn(ctx, self.config, self._caps.dof)
        self._finalizer = weakref.finalize(self, EmulatorLink.kill, self._link.process, self._link.conn)
        self._gap, self._ended = None, ""
        try:
            self._link.wait_ready(self.config.ready_timeout)
        except BaseException:
            self.disconnect()
            raise

    def disconnect(self) -> None:
        """Shut the child down and join it (idempotent); keeps the gap it reports for `episode_gap`."""
        link, self._link = self._link, None
        if link is None:
            return
        self._last_t = link.latest_t if link.latest_t is not None else self._last_t
        try:
            self._gap = link.shutdown()
            if self._gap is None:
                self._ended = link.death_reason() or "it did not answer the shutdown"
        finally:
            if self._finalizer is not None:
                self._finalizer()  # terminate/kill if it is still there, close the pipe
                self._finalizer = None

    @property
    def is_connected(self) -> bool:
        return self._link is not None and self._link.alive and self._link.up

    def __enter__(self) -> EmulatorBackend:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()

    def episode_gap(self) -> dict[str, Any]:
        """The gap this episode faced (config, drawn values, realised latencies and drops).

        Raises:
            RuntimeError: while a world is running (readable only after the episode), before any
                episode, or when the world died without reporting it.
        """
        if self._link is not None:
            raise RuntimeError("the emulator's gap is readable only after the episode: call disconnect() first")
        if self._gap is None:
            raise RuntimeError("no gap to report: " + (f"the emulator ended without reporting it ({self._ended})"
                                                       if self._ended else "no episode has run"))
        return self._gap

    def clock(self) -> float:
        """The time states and frames are stamped in, s: `time.monotonic()` when paced to the wall,
        else the emulator's own (t0 + simulation time of the newest state; frozen after disconnect).

        Raises:
            NotConnectedError: unpaced and no world has run yet (its clock starts at `connect()`).
        """
        if self.config.realtime:
            return time.monotonic()
        if self._link is not None:
            self._last_t = self._link.now()
        if self._last_t is None:
            raise NotConnectedError("the emulator's clock starts at connect(): no state yet")
        return self._last_t

    # ------------------------------------------------------------------ arm
    def read_state(self) -> RobotState:
        """The newest measurement; blocks (up to `link_timeout`) until one newer than the last read.

        In lockstep it waits for the period of the command in flight, or grants one if none is.
        """
        states = self.read_new_states(block=True)
        return states[-1]

    def read_new_states(self, block: bool = False) -> list[RobotState]:
        """Every measurement since the last read, oldest first (a recorder wants them all).

        Args:
            block: wait up to `link_timeout` for at least one; a silent link then counts as lost
                (lockstep: see `EmulatorConfig.lockstep` and `link_timeout`).

        Raises:
            NotConnectedError: not connected, the link was lost, or the child died.
        """
        link = self._require_link()
        states = link.take(block)
        if not states and not link.up:
            raise NotConnectedError(f"emulator link lost: {link.faults[FaultKind.DISCONNECTED].message}")
        return states

    def send(self, command: Command) -> None:
        """Forward a command; it takes effect after its drawn latency (stamped here, at sending).

        In lockstep each command advances the world by one control period (latency counted from
        that period's start), which ends in one new state.
        """
        if command.mode not in self._caps.control_modes:
            raise ValueError(f"{self._caps.name} takes {[m.value for m in self._caps.control_modes]} commands, "
                             f"not {command.mode.value}")
        link = self._require_link()
        link.send(("cmd", command.mode.value, np.array(command.target, dtype=float), float(command.grip),
                   time.monotonic()))

    def stop(self) -> None:
        """Hold the measured position now (skips any queued commands); best effort on a bad link."""
        if self._link is not None and self._link.alive:
            self._link.send(("stop",), best_effort=True)

    def faults(self) -> tuple[Fault, ...]:
        if self._link is None:
            return ()
        self._link.refresh()
        return tuple(self._link.faults.values())

    def clear_faults(self) -> None:
        """Acknowledge faults on the arm; DISCONNECTED stays until `connect()` re-opens the link."""
        if self._link is not None:
            self._link.clear_faults()

    def inject_fault(self, kind: FaultKind, count: int = 1) -> None:
        """Test hook: make the world misbehave. COMMS drops the next `count` state packets."""
        if kind not in INJECTABLE:
            raise ValueError(f"cannot inject {kind.value}; injectable: {[k.value for k in INJECTABLE]}")
        self._require_link().send(("inject", kind.value, int(count)))

    def forward_kinematics(self, joint_positions: np.ndarray) -> np.ndarray:
        """TCP position of the nominal arm (world frame). A floating gripper has no joints: its
        measured TCP (newest state) stands in, which is what the safety layer's resync needs."""
        if self.config.robot == "gripper":
            newest = self._link.newest if self._link is not None else None
            return newest.tcp_position.copy() if newest is not None else self._kin.home_tcp()
        return self._kin.tcp(np.asarray(joint_positions, dtype=float))

    def camera(self, name: str) -> EmulatorCamera:
        """A camera of this emulator, sharing its connection."""
        return EmulatorCamera(self, name)

    def _require_link(self) -> EmulatorLink:
        if self._link is None:
            raise NotConnectedError("the emulator is not connected: call connect() first")
        if not (self._link.alive and self._link.up):
            self._link.check()
            reason = self._link.faults.get(FaultKind.DISCONNECTED)
            raise NotConnectedError(f"emulator link lost: {reason.message if reason else 'unknown'}")
        return self._link


class EmulatorCamera(CameraBackend):
    """One camera of an emulator; connecting it connects the emulator if needed."""

    def __init__(self, backend: EmulatorBackend, name: str):
        if name not in backend.config.cameras:
            raise ValueError(f"camera {name!r} is not served by this emulator ({backend.config.cameras})")
        self.name = name
        self._backend = backend
        height, width = backend.config.image_size
        fovy = next(c.fovy for c in DEFAULT_CAMERAS if c.name == name)
        # MuJoCo's pinhole: square pixels, principal point at the image centre, vertical fovy.
        focal = 0.5 * height / np.tan(np.deg2rad(fovy) / 2.0)
        self._intrinsics = CameraIntrinsics(width, height, np.array([[focal, 0.0, width / 2.0],
                                                                     [0.0, focal, height / 2.0],
                                                                     [0.0, 0.0, 1.0]]))
        self._connected = False
        self._last_seq = 0
        self.dropped_frames = 0
        """Frames the camera failed to deliver since `connect()` (the server's count)."""
        self._dropped0 = 0

    def connect(self) -> None:
        """Start the emulator if it is not running (a lost arm link stays lost: frames still flow)."""
        link = self._backend._link
        if link is None or not link.alive:
            self._backend.connect()
            link = self._backend._link
        assert link is not None
        self._connected, self._last_seq = True, 0
        self._dropped0 = link.frame(self.name)[2]

    def disconnect(self) -> None:
        """Detach this camera; the emulator keeps running for the arm and other cameras."""
        self._connected = False

    @property
    def intrinsics(self) -> CameraIntrinsics:
        return self._intrinsics

    def read_latest(self, max_age: float) -> Frame:
        """The newest frame if at most `max_age` s old by the emulator's `clock()` (simulation time
        when unpaced); an old or re-sent frame raises StaleFrameError."""
        link = self._backend._link
        if not self._connected or link is None:
            raise NotConnectedError(f"camera {self.name!r} is not connected")
        if not link.alive:
            raise NotConnectedError(f"camera {self.name!r}: the emulator process died ({link.death_reason()})")
        seq, t, dropped, image = link.frame(self.name)
        self.dropped_frames = dropped - self._dropped0
        age = self._backend.clock() - t
        if age > max_age:
            raise StaleFrameError(f"camera {self.name!r}: newest frame (seq {seq}) is {age:.3f} s old, "
                                  f"max_age {max_age:.3f} s")
        if seq < self._last_seq:
            raise StaleFrameError(f"camera {self.name!r} re-sent frame {seq} after frame {self._last_seq}")
        self._last_seq = seq
        return Frame(self.name, seq, t, image)


class _ArmKinematics:
    """The nominal robot alone (no puzzle, no gap): capabilities and forward kinematics."""

    def __init__(self, robot: str):
        from puzzlebot.sim.build import new_scene

        self.robot = make_robot(robot)
        scene = new_scene()
        self.robot.attach(scene, self.robot.default_mount)
        self.model = scene.compile()
        self.data = mujoco.MjData(self.model)
        self.arm = self.robot.bind(self.model, self.data)
        self.arm.reset(self.data)
        self.joint_names: tuple[str, ...] = tuple(self.arm.joint_names) if robot == "jaco" else ()
        self._qadr = np.array([self.model.joint(n).qposadr[0] for n in self.joint_names], dtype=int)
        self._site = self.model.site(f"{robot}/tcp").id

    def capabilities(self, control_hz: float) -> Capabilities:
        if not self.joint_names:
            return Capabilities(name="emulator-gripper", joint_names=(), joint_lower=np.zeros(0),
                                joint_upper=np.zeros(0), max_joint_velocity=np.zeros(0),
                                max_joint_acceleration=np.zeros(0), control_modes=(ControlMode.EE,),
                                control_hz=control_hz, has_wrench=True)
        joints = [self.model.joint(n) for n in self.joint_names]
        limited = np.array([bool(j.limited[0]) for j in joints])
        rng = np.array([j.range for j in joints])
        return Capabilities(name="emulator-jaco", joint_names=self.joint_names,
                            joint_lower=np.where(limited, rng[:, 0], -ENDLESS_SPAN),
                            joint_upper=np.where(limited, rng[:, 1], ENDLESS_SPAN),
                            max_joint_velocity=JACO_MAX_VELOCITY.copy(),
                            max_joint_acceleration=JACO_MAX_ACCELERATION.copy(),
                            control_modes=(ControlMode.JOINT, ControlMode.EE), control_hz=control_hz,
                            has_wrench=True)

    def tcp(self, q: np.ndarray) -> np.ndarray:
        if q.shape != self._qadr.shape:
            raise ValueError(f"forward_kinematics: expected {self._qadr.size} joint positions, got shape {q.shape}")
        self.data.qpos[self._qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self._site].copy()

    def home_tcp(self) -> np.ndarray:
        self.arm.reset(self.data)
        return self.data.site_xpos[self._site].copy()

