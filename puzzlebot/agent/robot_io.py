"""The arm and the cameras, one control tick at a time, with the parts tracked relative to the base.

A `RobotIO` sends one end-effector target per tick through the `Driver`, reads the arm back
and feeds every new camera frame to the marker detector and the part tracker. The base is
located from its front marker in the first views (averaged: it does not move); part markers
that a camera sees without a usable base marker are placed through that camera's calibration.
"""

from __future__ import annotations

import cv2
import numpy as np

from puzzlebot.agent.affordances import MarkerSheet
from puzzlebot.agent.perception.markers import MarkerDetector
from puzzlebot.agent.perception.registration import average_pose, base_in_world
from puzzlebot.agent.perception.tracker import PartTracker
from puzzlebot.real.driver import Driver, DriverState
from puzzlebot.real.interface import CameraBackend, Command, ControlMode, RobotState, StaleFrameError


class RobotIO:
    """One control tick at a time: send a TCP target, read the arm, feed camera frames to the tracker."""

    def __init__(self, driver: Driver, cameras: list[CameraBackend], sheet: MarkerSheet,
                 T_world_cam: dict[str, np.ndarray], max_frame_age: float = 0.3):
        self.driver, self.cameras, self.sheet = driver, cameras, sheet
        self.T_world_cam = T_world_cam
        self.max_frame_age = max_frame_age
        self.detectors = {c.name: MarkerDetector(cv2.aruco.DICT_4X4_50, sheet.sizes, c.intrinsics, camera=c.name)
                          for c in cameras}
        self.tracker = PartTracker(sheet.part_of_marker(), rest_rotations=sheet.rest_rotations)
        self._last_seq: dict[str, int] = {}
        self._base_samples: list[np.ndarray] = []
        self._secondary_views = 0
        self.T_world_base: np.ndarray | None = None
        self.state: RobotState = driver.read_state()
        self.ticks = 0
        self.park_pos = self.state.tcp_position.copy()  # where the hand started: out of the cameras' view
        self.park_quat = self.state.tcp_quaternion.copy()

    def tick(self, pos: np.ndarray, quat: np.ndarray, grip: float) -> RobotState:
        driver = self.driver
        if driver.state is not DriverState.ACTIVE:
            raise RuntimeError(f"the arm stopped: {driver.fault.kind.value if driver.fault else driver.state.value}"
                               f" ({driver.fault.message if driver.fault else ''})")
        driver.send(Command(ControlMode.EE, np.concatenate([pos, quat]), grip=grip, t=driver.clock()))
        driver.tick()
        self.state = driver.read_state()
        self.ticks += 1
        self.poll_cameras()
        return self.state

    def poll_cameras(self) -> None:
        observations = []
        for camera in self.cameras:
            try:
                frame = camera.read_latest(self.max_frame_age)
            except StaleFrameError:
                continue
            if frame.seq == self._last_seq.get(camera.name):
                continue
            self._last_seq[camera.name] = frame.seq
            if self.driver.recorder is not None and hasattr(self.driver.recorder, "log_frame"):
                self.driver.recorder.log_frame(frame)  # each frame once, with the states around it
            observations += self.detectors[camera.name].detect_frame(frame)
        if not observations:
            return
        t = max(o.t for o in observations)
        self.tracker.update(observations, t)
        base = base_in_world(observations, self.T_world_cam)
        if base is not None and len(self._base_samples) < 50:  # the base is fixed: average its first views
            self._base_samples.append(base)
            self.T_world_base = average_pose(self._base_samples)
        self._track_through_calibration(observations, t)

    def _track_through_calibration(self, observations: list, t: float) -> None:
        """Part markers seen by a camera that shows no base marker the tracker can use: placed
        relative to the base through the camera's calibrated pose instead.

        The base's second marker (on its top) is itself placed through calibration once, when
        no camera sees both base markers (a front and a top camera): from then on the tracker
        places what a top camera sees relative to it (a lid), as it does with marker 0."""
        if self.T_world_base is None:
            return
        ref_id, sec_id = self.tracker.base_ids
        T_base_world = np.linalg.inv(self.T_world_base)
        framed = {o.camera for o in observations if o.id == ref_id}
        for obs in observations:  # the base's second marker, placed once through calibration
            if obs.id == sec_id and obs.camera not in framed and obs.camera in self.T_world_cam:
                if self._secondary_views < 50:  # the base is fixed: its first views suffice
                    self._secondary_views += 1
                    self.tracker.learn_secondary(T_base_world @ self.T_world_cam[obs.camera] @ obs.T_cam_marker)
                framed.add(obs.camera)
        part_of = self.sheet.part_of_marker()
        for obs in observations:
            part = part_of.get(obs.id)
            if part is not None and obs.camera not in framed and obs.camera in self.T_world_cam:
                T_base_cam = T_base_world @ self.T_world_cam[obs.camera]
                alternative = None if obs.alternative is None else T_base_cam @ obs.alternative
                self.tracker.add_pose(part, t, T_base_cam @ obs.T_cam_marker, alternative)

    def part_pose_world(self, part: str) -> np.ndarray | None:
        """Latest tracked world pose of a part's marker (None until the base and the part were seen)."""
        pose = self.tracker.tracks[part].latest()
        if pose is None or self.T_world_base is None:
            return None
        return self.T_world_base @ pose.matrix()

    def handle_world(self, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        T = self.part_pose_world(part)
        if T is None:
            raise RuntimeError(f"part {part!r}: its marker (id {self.sheet.affordances[part].marker_id}) "
                               "has not been seen with the base marker: no handle position")
        return self.sheet.affordances[part].in_world(T)

    def seen_since(self, part: str, t: float) -> bool:
        """Whether the part's marker was tracked (relative to the base) at or after time `t`."""
        track = self.tracker.tracks[part]
        return bool(track.times) and track.times[-1] >= t

    def hold(self, seconds: float, grip: float | None = None) -> None:
        pos, quat = self.state.tcp_position.copy(), self.state.tcp_quaternion.copy()
        g = self.state.grip if grip is None else grip
        period = 1.0 / self.driver.capabilities.control_hz
        for _ in range(max(1, int(round(seconds / period)))):
            self.tick(pos, quat, g)
