"""Per-part tracks relative to the puzzle base, from marker observations over time.

Camera extrinsics are unknown to the agent (a camera may be moved or knocked), so every part
pose is expressed relative to a base marker seen in the same image:
``T_base_part = inv(T_cam_base) @ T_cam_part``. The reference frame is base marker 0's (the
front face); when only marker 1 (the top) is visible, the fixed transform 0 -> 1, estimated
from images that show both, bridges the two. An image without a usable base marker gives no
relative poses, and the frame's result says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from puzzlebot.agent.perception.markers import MarkerObservation
from puzzlebot.sim.frames import quat_from_matrix
from puzzlebot.sim.markers import BASE_FRONT_ID, BASE_TOP_ID

SECONDARY_SAMPLES = 200
"""Images showing both base markers that the 0 -> 1 estimate averages (the newest ones)."""


@dataclass(frozen=True)
class PartPose:
    """A part's pose in the base frame at time `t`; `stale` poses are the last accepted one, `age` s old."""

    t: float
    position: np.ndarray  # (3,) m, base marker 0's frame
    quaternion: np.ndarray  # (4,) wxyz
    stale: bool = False
    age: float = 0.0

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous transform T_base_part."""
        T = np.eye(4)
        T[:3, :3] = quat_to_matrix(self.quaternion)
        T[:3, 3] = self.position
        return T


@dataclass
class PartTrack:
    """Timestamped 6-D poses of one part: raw accepted measurements and their smoothed values."""

    name: str
    marker_id: int
    times: list[float] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)  # raw accepted, base frame
    quaternions: list[np.ndarray] = field(default_factory=list)
    smoothed_positions: list[np.ndarray] = field(default_factory=list)
    smoothed_quaternions: list[np.ndarray] = field(default_factory=list)
    rejected: int = 0
    """Measurements refused as outliers."""
    _pending: list[PartPose] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.times)

    def clear(self) -> None:
        """Forget every pose (the tracker re-seeds a track that had locked on a wrong pose)."""
        for values in (self.times, self.positions, self.quaternions, self.smoothed_positions,
                       self.smoothed_quaternions, self._pending):
            values.clear()

    def latest(self, t: float | None = None) -> PartPose | None:
        """Newest smoothed pose; stale with its age if `t` is later than the last measurement."""
        if not self.times:
            return None
        last = self.times[-1]
        age = 0.0 if t is None else max(t - last, 0.0)
        return PartPose(last, self.smoothed_positions[-1], self.smoothed_quaternions[-1], stale=age > 0, age=age)

    def arrays(self, smoothed: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times (N,), positions (N, 3), wxyz quaternions (N, 4)) for model fitting."""
        pos, quat = (self.smoothed_positions, self.smoothed_quaternions) if smoothed else (
            self.positions, self.quaternions)
        return np.array(self.times), np.array(pos).reshape(-1, 3), np.array(quat).reshape(-1, 4)


@dataclass(frozen=True)
class TrackerConfig:
    """Gates and smoothing of `PartTracker`."""

    max_speed: float = 0.5
    """m/s: faster than any puzzle part moves under a careful arm (0.1 m/s when manipulating)."""
    max_angular_speed: float = 6.0
    """rad/s: about a turn per second."""
    position_slack: float = 0.01
    """m allowed on top of `max_speed * dt`: measurement noise between two close frames."""
    angle_slack: float = np.deg2rad(10.0)
    """rad allowed on top of `max_angular_speed * dt`."""
    reinit_after: int = 3
    """Consecutive mutually consistent rejections that re-seed a track (it had locked on a wrong pose)."""
    smoothing_tau: float = 0.05
    """s: time constant of the exponential smoothing; a gap (dropped frames) smooths less."""


@dataclass(frozen=True)
class FrameResult:
    """What one call of `update` made of one frame's observations."""

    t: float
    base_visible: bool
    poses: dict[str, PartPose]
    """Every part with a track: fresh if measured in this frame, else stale with its age."""
    base_id: int | None = None
    """The base marker the frame's poses went through (None when none was usable)."""
    accepted: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    note: str = ""


class PartTracker:
    """Turns marker observations into per-part tracks in the base frame, gating outliers."""

    def __init__(self, marker_to_part: Mapping[int, str], base_ids: tuple[int, int] = (BASE_FRONT_ID, BASE_TOP_ID),
                 config: TrackerConfig = TrackerConfig(), rest_rotations: Mapping[int, np.ndarray] | None = None):
        """Args:
            marker_to_part: marker id -> part name (ids from the puzzle's marker sheet).
            base_ids: (reference marker, secondary marker) fixed to the base.
            config: gates and smoothing.
            rest_rotations: marker id -> orientation at rest in the base frame, as built (the
                sheet's): which of a marker's two PnP tilts a new track starts from.
        """
        self.base_ids = tuple(base_ids)
        self.config = config
        self._rest = {marker_to_part[i]: quat_from_matrix(np.asarray(R)) for i, R in (rest_rotations or {}).items()
                      if i in marker_to_part}
        self._handled: set[str] = set()
        self.tracks = {name: PartTrack(name, marker_id) for marker_id, name in marker_to_part.items()}
        self._part_of = dict(marker_to_part)
        self._secondary_samples: list[np.ndarray] = []  # T_ref_secondary from images showing both
        self.T_ref_secondary: np.ndarray | None = None

    def update(self, observations: Sequence[MarkerObservation], t: float) -> FrameResult:
        """Consume one frame's observations (any number of cameras) taken at time `t`."""
        by_camera: dict[str, list[MarkerObservation]] = {}
        for obs in observations:
            by_camera.setdefault(obs.camera, []).append(obs)
        candidates: dict[str, tuple[float, np.ndarray, np.ndarray | None]] = {}  # part -> (uncertainty, T, alt.)
        base_used: int | None = None
        for camera_obs in by_camera.values():
            base = self._base_from_camera(camera_obs)
            if base is None:
                continue
            base_id, T_ref_cam = base
            base_used = base_id if base_used is None else min(base_used, base_id)
            for obs in camera_obs:
                part = self._part_of.get(obs.id)
                if part is None:
                    continue
                score = _uncertainty(obs)
                if part not in candidates or score < candidates[part][0]:  # several cameras: keep the best
                    alternative = None if obs.alternative is None else T_ref_cam @ obs.alternative
                    candidates[part] = (score, T_ref_cam @ obs.T_cam_marker, alternative)
        accepted, rejected = [], []
        for part, (_, T, alternative) in candidates.items():
            (accepted if self._accept(self.tracks[part], t, T, alternative) else rejected).append(part)
        poses = {name: pose for name, track in self.tracks.items() if (pose := track.latest(t)) is not None}
        note = "" if base_used is not None else (
            "no base marker usable in any camera: no relative poses this frame" if observations else "no markers seen")
        return FrameResult(t, base_used is not None, poses, base_used, tuple(accepted), tuple(rejected), note)

    def handled(self, part: str, may_turn: bool = True) -> None:
        """The hand is taking hold of `part`: it may turn anywhere before its marker is seen again,
        so its next pose is not chosen for nearness to its last (see `_accept`).

        `may_turn=False` says the hand's contact cannot turn it more than a few degrees (a press
        straight into its face): its tilt stays chosen for nearness, as for a part left alone. A
        button pressed 3 mm in was otherwise read 37 deg tilted (its other PnP solution fit better
        in that view), and every later press was aimed along the wrong approach.
        """
        if part not in self.tracks:
            raise KeyError(f"handled({part!r}): no such part on the sheet ({sorted(self.tracks)})")
        if may_turn:
            self._handled.add(part)
        else:
            self._handled.discard(part)

    def add_pose(self, part: str, t: float, T_base_part: np.ndarray, alternative: np.ndarray | None = None) -> bool:
        """Gate and record one already-relative pose (what `update` does per part), with the
        marker's other PnP tilt if there is one; True if accepted."""
        return self._accept(self.tracks[part], t, T_base_part, alternative)

    def _base_from_camera(self, camera_obs: list[MarkerObservation]) -> tuple[int, np.ndarray] | None:
        """(base id used, T_ref_cam) for one camera's image, or None if no base marker is usable."""
        ref_id, sec_id = self.base_ids
        seen = {obs.id: obs for obs in camera_obs if obs.id in self.base_ids}
        ref, sec = seen.get(ref_id), seen.get(sec_id)
        if ref is not None and sec is not None:
            self.learn_secondary(np.linalg.inv(ref.T_cam_marker) @ sec.T_cam_marker)
        use_sec = sec is not None and self.T_ref_secondary is not None and (
            ref is None or _uncertainty(sec) < _uncertainty(ref))
        if use_sec:
            assert sec is not None and self.T_ref_secondary is not None
            return sec_id, self.T_ref_secondary @ np.linalg.inv(sec.T_cam_marker)
        if ref is not None:
            return ref_id, np.linalg.inv(ref.T_cam_marker)
        return None

    def learn_secondary(self, T: np.ndarray) -> None:
        """Running mean of the fixed transform ref -> secondary (rotation by averaged quaternions).

        Fed by images showing both base markers, or by the caller from calibrated cameras when
        no camera sees both (a front camera and a top camera)."""
        self._secondary_samples.append(T)
        samples = self._secondary_samples = self._secondary_samples[-SECONDARY_SAMPLES:]
        quats = np.array([quat_from_matrix(s[:3, :3]) for s in samples])
        quats *= np.sign(quats @ quats[0])[:, None]
        mean = np.eye(4)
        mean[:3, :3] = quat_to_matrix(quats.mean(axis=0))
        mean[:3, 3] = np.mean([s[:3, 3] for s in samples], axis=0)
        self.T_ref_secondary = mean

    def _accept(self, track: PartTrack, t: float, T: np.ndarray, alternative: np.ndarray | None = None) -> bool:
        """Gate a measurement against the last accepted pose; append it (smoothed) if plausible.

        `alternative` is the marker's other PnP solution (the other tilt). The one nearer the
        track's last orientation is taken, and for a new track the one nearer the part's
        orientation at rest when the sheet gives it: the best-fitting tilt is not always right
        (a 30 px knob marker's fit 22 deg off beat the true tilt, 0.07 px against 0.18 px of
        reprojection error, in every frame, also after the hand had hidden it a while). For the
        first pose after the hand took hold of the part (`handled`) the better fit is taken,
        unless only the other agrees with the track: the part may have turned anywhere (a door
        swung 0.3 rad behind the hand, and the tilt nearer the closed door was the wrong one).
        """
        cfg = self.config
        pose = PartPose(t, T[:3, 3].copy(), quat_from_matrix(T[:3, :3]))
        flipped = None if alternative is None else PartPose(t, alternative[:3, 3].copy(),
                                                           quat_from_matrix(alternative[:3, :3]))
        handled = track.name in self._handled
        reference = (None if handled else track.quaternions[-1]) if track.times else self._rest.get(track.name)
        if flipped is not None and reference is not None:
            if quat_angle(reference, flipped.quaternion) < quat_angle(reference, pose.quaternion):
                pose = flipped
        if track.times:
            dt = max(t - track.times[-1], 0.0)
            if flipped is not None and handled and not self._consistent(track.positions[-1],
                                                                         track.quaternions[-1], pose, dt):
                if self._consistent(track.positions[-1], track.quaternions[-1], flipped, dt):
                    pose = flipped  # moved by the hand: the better fit, unless only the other agrees
            if not (self._consistent(track.positions[-1], track.quaternions[-1], pose, dt)
                    and (handled or flipped is not None or not self._tilted_in_place(track, pose))):
                track.rejected += 1
                track._pending.append(pose)
                if not self._reseed(track):
                    return False
                pose = track._pending[-1]
                track.clear()
        track._pending.clear()
        self._handled.discard(track.name)
        if track.times:
            alpha = 1.0 - np.exp(-max(t - track.times[-1], 0.0) / max(cfg.smoothing_tau, 1e-9))
            position = track.smoothed_positions[-1] + alpha * (pose.position - track.smoothed_positions[-1])
            quaternion = _nlerp(track.smoothed_quaternions[-1], pose.quaternion, alpha)
        else:
            position, quaternion = pose.position, pose.quaternion
        track.times.append(t)
        track.positions.append(pose.position)
        track.quaternions.append(pose.quaternion)
        track.smoothed_positions.append(position)
        track.smoothed_quaternions.append(quaternion)
        return True

    def _consistent(self, position: np.ndarray, quaternion: np.ndarray, pose: PartPose, dt: float) -> bool:
        cfg = self.config
        moved = float(np.linalg.norm(pose.position - position))
        turned = quat_angle(quaternion, pose.quaternion)
        return (moved <= cfg.max_speed * dt + cfg.position_slack
                and turned <= cfg.max_angular_speed * dt + cfg.angle_slack)

    def _tilted_in_place(self, track: PartTrack, pose: PartPose) -> bool:
        """A tilt beyond the slack with the marker still where it was: the signature of PnP's other
        solution, not of a turn (a part turning about an axis off its marker also moves it). Taken
        as a misread for a part the hand is not holding when the image gave one fit only:
        gen_d5_s9505's knob, untouched, was read 17 deg tilted from one frame on while another knob
        beside it was turned, and every later push on it was aimed beside its crank."""
        cfg = self.config
        before, after = quat_to_matrix(track.quaternions[-1])[:, 2], quat_to_matrix(pose.quaternion)[:, 2]
        tilt = float(np.arccos(np.clip(before @ after, -1.0, 1.0)))
        return tilt > cfg.angle_slack and float(np.linalg.norm(pose.position - track.positions[-1])) < cfg.position_slack

    def _reseed(self, track: PartTrack) -> bool:
        """True when the last `reinit_after` rejections agree with each other: the track was wrong."""
        pending = track._pending[-self.config.reinit_after:]
        if len(pending) < self.config.reinit_after:
            return False
        return all(self._consistent(a.position, a.quaternion, b, b.t - a.t)
                   for a, b in zip(pending[:-1], pending[1:], strict=True))


def _uncertainty(obs: MarkerObservation) -> float:
    """Relative corner error: a pose's error grows with the reprojection error and shrinks with the
    marker's size in pixels (a 20 px marker at 0.2 px error is ~4x worse than a 40 px one at 0.1 px)."""
    return obs.reprojection_error_px / max(obs.side_px, 1.0)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a (not necessarily unit) wxyz quaternion."""
    w, x, y, z = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def quat_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (rad) of the rotation between two unit wxyz quaternions."""
    return float(2.0 * np.arccos(np.clip(abs(np.dot(a, b)), 0.0, 1.0)))


def _nlerp(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """Normalised linear interpolation: slerp's small-angle equivalent, fine between close frames."""
    b = b if np.dot(a, b) >= 0 else -b
    q = (1.0 - alpha) * a + alpha * b
    return q / np.linalg.norm(q)
