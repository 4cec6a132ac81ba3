"""Perception: camera images -> marker poses -> per-part tracks relative to the puzzle base.

`MarkerDetector` (ArUco + PnP, one per camera) feeds `PartTracker`; `PrivilegedTracker` is the
ground-truth ablation with the same output and is named so wherever it is used.
"""

from puzzlebot.agent.perception.markers import (
    DetectorConfig,
    MarkerDetector,
    MarkerObservation,
    intrinsics_from_fovy,
    marker_sizes,
)
from puzzlebot.agent.perception.privileged import PrivilegedTracker
from puzzlebot.agent.perception.tracker import FrameResult, PartPose, PartTrack, PartTracker, TrackerConfig

__all__ = ["DetectorConfig", "FrameResult", "MarkerDetector", "MarkerObservation", "PartPose", "PartTrack",
           "PartTracker", "PrivilegedTracker", "TrackerConfig", "intrinsics_from_fovy", "marker_sizes"]
