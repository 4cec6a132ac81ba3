"""puzzlebot-camera-calib: print a ChArUco board, then calibrate a camera from views of it.

    puzzlebot-camera-calib board -o board.png             # print it at 100 % scale
    puzzlebot-camera-calib calibrate --images shots/ -o cam.yaml --camera usb0
    puzzlebot-camera-calib calibrate --device 0 --count 25 -o cam.yaml   # hold the board in view

The result is a versioned CameraCalibration YAML that OpenCVCamera loads for its intrinsics.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
from rich.console import Console

from puzzlebot.real.cameras import CharucoBoardSpec, calibrate_charuco


def _board(args: argparse.Namespace, console: Console) -> int:
    spec = CharucoBoardSpec(args.squares_x, args.squares_y, args.square, args.marker)
    px_per_m = args.dpi / 0.0254
    size = (int(spec.squares_x * spec.square_length * px_per_m), int(spec.squares_y * spec.square_length * px_per_m))
    cv2.imwrite(str(args.output), spec.board().generateImage(size))
    console.print(f"wrote {args.output} ({size[0]}x{size[1]} px at {args.dpi} dpi): print at 100 % and measure "
                  f"a square: it must be {spec.square_length * 1000:.1f} mm")
    return 0


def _calibrate(args: argparse.Namespace, console: Console) -> int:
    spec = CharucoBoardSpec(args.squares_x, args.squares_y, args.square, args.marker)
    if args.images:
        paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    else:
        capture = cv2.VideoCapture(args.device)
        if not capture.isOpened():
            console.print(f"[red]cannot open camera {args.device!r}[/]")
            return 1
        images = []
        with console.status("move the board around the view...") as status:
            while len(images) < args.count:
                ok, bgr = capture.read()
                if ok:
                    images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                    status.update(f"captured {len(images)}/{args.count}")
                time.sleep(args.interval)
        capture.release()
    try:
        calibration = calibrate_charuco(images, spec, camera=args.camera)
    except ValueError as err:
        console.print(f"[red]calibration failed:[/] {err}")
        return 1
    calibration.save(args.output)
    console.print(f"[green]wrote {args.output}[/]: {calibration.views} views, reprojection RMS "
                  f"{calibration.rms_px:.3f} px, fx {calibration.matrix[0][0]:.1f} fy {calibration.matrix[1][1]:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="puzzlebot-camera-calib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("board", "calibrate"):
        p = sub.add_parser(name)
        p.add_argument("--squares-x", type=int, default=7)
        p.add_argument("--squares-y", type=int, default=5)
        p.add_argument("--square", type=float, default=0.04, help="square side, m")
        p.add_argument("--marker", type=float, default=0.03, help="marker side, m")
        p.add_argument("-o", "--output", type=Path, required=True)
        if name == "board":
            p.add_argument("--dpi", type=int, default=300)
            p.set_defaults(handler=_board)
        else:
            source = p.add_mutually_exclusive_group(required=True)
            source.add_argument("--images", type=Path, help="folder of board images")
            source.add_argument("--device", help="cv2.VideoCapture source to capture from")
            p.add_argument("--count", type=int, default=25)
            p.add_argument("--interval", type=float, default=0.5, help="s between captures")
            p.add_argument("--camera", default="usb0")
            p.set_defaults(handler=_calibrate)
    args = parser.parse_args(argv)
    if getattr(args, "device", None) is not None and str(args.device).isdigit():
        args.device = int(args.device)
    return args.handler(args, Console())


if __name__ == "__main__":
    raise SystemExit(main())
