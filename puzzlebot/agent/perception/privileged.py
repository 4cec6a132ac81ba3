"""PRIVILEGED ablation: part tracks read straight from the simulator's marker sites.

This reads hidden ground truth (the world's MjData), which the agent must never do outside
an ablation. It answers "how well would the agent do with perfect perception?" and gives
tests a reference. Output types are the visual `PartTracker`'s, in the same frame (base
marker 0's), so the two are interchangeable downstream.
"""

from __future__ import annotations

import numpy as np

from puzzlebot.agent.perception.tracker import FrameResult, PartTrack, PartTracker, TrackerConfig
from puzzlebot.sim.markers import BASE_FRONT_ID
from puzzlebot.sim.spec import PuzzleSpec
from puzzlebot.sim.world import PuzzleWorld

BASE_SITE = "base_front/marker"


def site_pose(world: PuzzleWorld, site: str) -> np.ndarray:
    """PRIVILEGED: 4x4 world pose of a named site (ground truth)."""
    sid = world.model.site(site).id
    T = np.eye(4)
    T[:3, :3] = world.data.site_xmat[sid].reshape(3, 3)
    T[:3, 3] = world.data.site_xpos[sid]
    return T


def privileged_relative_poses(world: PuzzleWorld) -> dict[str, np.ndarray]:
    """PRIVILEGED: T_base_part (base marker 0's frame -> part marker frame) for every part."""
    T_world_base_inv = np.linalg.inv(site_pose(world, BASE_SITE))
    return {name: T_world_base_inv @ site_pose(world, f"{name}/marker") for name in world.part_names}


class PrivilegedTracker:
    """PRIVILEGED ablation of `PartTracker`: exact marker poses, every part visible every frame."""

    def __init__(self, world: PuzzleWorld, config: TrackerConfig | None = None):
        """Args:
            world: the simulated world whose ground truth is read (hence "privileged").
            config: smoothing as in the visual tracker (gates never trip on exact poses).
        """
        if not isinstance(world.spec, PuzzleSpec):
            raise ValueError("the privileged tracker needs a PuzzleSpec world (MJCF puzzles carry no markers)")
        self.world = world
        marker_to_part = {p.marker_id: p.name for p in world.spec.parts if p.marker_id is not None}
        # The visual tracker's bookkeeping, fed exact poses instead of PnP estimates.
        self._tracker = PartTracker(marker_to_part, config=config or TrackerConfig())

    @property
    def tracks(self) -> dict[str, PartTrack]:
        return self._tracker.tracks

    def update(self, t: float) -> FrameResult:
        """Record every part's ground-truth pose relative to the base at time `t`."""
        tracker = self._tracker
        accepted = []
        for name, T in privileged_relative_poses(self.world).items():
            if tracker.add_pose(name, t, T):
                accepted.append(name)
        poses = {name: pose for name, track in tracker.tracks.items() if (pose := track.latest(t)) is not None}
        return FrameResult(t, True, poses, BASE_FRONT_ID, tuple(accepted), (), "privileged: ground truth")
