"""The hardware driver layer: Robot/Camera interfaces, safety layer, reality emulator, arms.

Nothing here yet: it is built in the driver-layer issue. It may import `puzzlebot.sim`;
it never contains learning or planning.
"""
