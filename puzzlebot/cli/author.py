"""puzzlebot-author: create, check, preview, solve, export and generate puzzle files.

A file-oriented tool, so plain argparse subcommands (the training and sim apps use hydra);
every subcommand returns an exit code: 0 success, 1 an invalid, unsolvable or unsolved
puzzle (or a refused write), 2 a usage error (argparse).

    puzzlebot-author new my_box --template bolt_drawer -o puzzles/
    puzzlebot-author validate puzzles/*.yaml
    puzzlebot-author render puzzles/my_box.yaml -o my_box.png --views front,side --size 480x640
    puzzlebot-author solve puzzles/my_box.yaml --robot gripper
    puzzlebot-author export puzzles/my_box.yaml -o mjcf/
    puzzlebot-author generate -o suite/ --depths 1-5 --seeds 3
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from puzzlebot.sim.external import ExternalPuzzleSpec, load_puzzle
from puzzlebot.sim.logic import PuzzleLogic
from puzzlebot.sim.spec import MECHANISMS, PuzzleSpec, SpecError, save_spec, spec_from_dict

TEMPLATES = ("bolt_drawer", "minimal")
ROBOTS = ("gripper", "jaco")


@dataclass
class Consoles:
    """Where results (stdout) and problems (stderr) go; soft wrap keeps messages greppable."""

    out: Console
    err: Console


def _fail(io: Consoles, message: str) -> int:
    io.err.print(f"[bold red]error[/] {escape(message)}")
    return 1


def _parts(n: int) -> str:
    return f"{n} part" if n == 1 else f"{n} parts"


def _load(path: str, io: Consoles) -> PuzzleSpec | None:
    """Load and validate, printing the SpecError (file, field, reason) on failure."""
    try:
        return load_puzzle(path)
    except SpecError as err:
        _fail(io, str(err))
        return None


# --------------------------------------------------------------------------- new

def template_path(template: str) -> Path:
    """The shipped template file (package data, so it works from an installed wheel too)."""
    return Path(str(resources.files("puzzlebot") / "assets" / "templates" / f"{template}.yaml"))


def _renamed(text: str, name: str) -> str:
    """Template text with its top-level ``name:`` line replaced, keeping the author-facing comments."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("name:"):
            lines[i] = yaml.safe_dump({"name": name})  # quotes names YAML would read as numbers or bools
            return "".join(lines)
    raise ValueError("template has no top-level 'name:' line")


def cmd_new(args: argparse.Namespace, io: Consoles) -> int:
    if not (args.name.isascii() and args.name.replace("_", "").isalnum()):
        return _fail(io, f"puzzle name {args.name!r} must be ASCII letters, digits and underscores (it names files)")
    path = Path(args.output) / f"{args.name}.yaml"
    if path.exists() and not args.force:
        return _fail(io, f"{path} exists; pass --force to overwrite it")
    text = _renamed(template_path(args.template).read_text(), args.name)
    spec_from_dict(yaml.safe_load(text), source=str(path))  # a template that does not validate is a bug here
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    io.out.print(f"wrote {escape(str(path))} (template {args.template})")
    return 0


# --------------------------------------------------------------------------- validate

def cmd_validate(args: argparse.Namespace, io: Consoles) -> int:
    bad = 0
    for file in args.files:
        try:
            spec = load_puzzle(file)
            if isinstance(spec, ExternalPuzzleSpec):
                io.out.print(f"[bold green]OK[/] {escape(file)}: {spec.name}, MJCF puzzle with joints "
                             f"{', '.join(spec.joints)} (no declared locks)")
                continue
            depth = PuzzleLogic(spec).depth()
        except (SpecError, RuntimeError) as err:  # RuntimeError: the logic search ran out of states
            bad += 1
            message = str(err) if isinstance(err, SpecError) else f"{file}: {err}"
            io.out.print(f"[bold red]INVALID[/] {escape(message)}")
            continue
        io.out.print(f"[bold green]OK[/] {escape(file)}: {spec.name}, {_parts(len(spec.parts))}, depth {depth}")
    return 1 if bad else 0


# --------------------------------------------------------------------------- render

def _size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (pixels per view)."""
    height, sep, width = text.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit() or int(height) < 16 or int(width) < 16:
        raise argparse.ArgumentTypeError(f"expected HxW in pixels (each >= 16), e.g. 480x640, got {text!r}")
    return int(height), int(width)


def _views(text: str) -> tuple[str, ...]:
    views = tuple(v.strip() for v in text.split(",") if v.strip())
    if not views:
        raise argparse.ArgumentTypeError("give at least one camera name, e.g. front,top,side")
    return views


def cmd_render(args: argparse.Namespace, io: Consoles) -> int:
    from puzzlebot.cli.preview import save_preview  # imports the renderer only when needed

    spec = _load(args.file, io)
    if spec is None:
        return 1
    output = Path(args.output) if args.output else Path(args.file).with_suffix(".png")
    try:
        path = save_preview(spec, output, args.views, args.size)
    except ValueError as err:  # an unknown camera name
        return _fail(io, str(err))
    io.out.print(str(path), highlight=False)
    return 0


# --------------------------------------------------------------------------- solve

def _unit(spec: PuzzleSpec, part: str) -> str:
    return "m" if MECHANISMS[spec.part(part).mechanism] == "slide" else "rad"


def cmd_solve(args: argparse.Namespace, io: Consoles) -> int:
    from puzzlebot.sim.oracle import Oracle, explain_unsolvable, plan
    from puzzlebot.sim.world import WorldConfig

    try:
        spec = load_puzzle(args.file)
    except SpecError as err:
        return _fail(io, str(err))  # an unsolvable file's error already says why
    if isinstance(spec, ExternalPuzzleSpec):
        return _fail(io, f"{spec.name} is an MJCF puzzle with no declared locks: the oracle cannot plan it")
    moves = plan(spec)
    if moves is None:  # validation already rejects these; kept for specs that change under us
        return _fail(io, f"{spec.name} is unsolvable: {explain_unsolvable(spec)}")
    table = Table(title=f"{spec.name}: shortest solution, depth {len(moves)}")
    for column in ("step", "part", "mechanism", "target"):
        table.add_column(column)
    for i, move in enumerate(moves, 1):
        table.add_row(str(i), move.part, spec.part(move.part).mechanism, f"{move.target:.3f} {_unit(spec, move.part)}")
    io.out.print(table)
    if args.plan_only:
        return 0

    result = Oracle(spec, WorldConfig(robot=args.robot)).solve()
    runs = Table(title=f"executed with the {args.robot}")
    for column in ("attempt", "part", "target", "reached", "ok", "sim time"):
        runs.add_column(column)
    for i, run in enumerate(result.executed, 1):
        unit = _unit(spec, run.part)
        runs.add_row(str(i), run.part, f"{run.target:.3f} {unit}", f"{run.reached:.3f} {unit}",
                     "yes" if run.success else "[red]no[/]", f"{run.sim_time_s:.2f} s")
    io.out.print(runs)
    verdict = "[bold green]solved[/]" if result.solved else "[bold red]NOT solved[/]"
    io.out.print(f"{verdict}: sim time {result.sim_time_s:.2f} s, attempts {result.attempts}")
    if not result.solved:
        io.out.print(f"reason: {escape(result.reason)}")
    return 0 if result.solved else 1


# --------------------------------------------------------------------------- export

def cmd_export(args: argparse.Namespace, io: Consoles) -> int:
    from puzzlebot.sim.export import export_mjcf

    spec = _load(args.file, io)
    if spec is None:
        return 1
    out_dir = Path(args.output) if args.output else Path(f"{spec.name}_mjcf")
    io.out.print(str(export_mjcf(spec, out_dir)), highlight=False)
    return 0


# --------------------------------------------------------------------------- generate

def _depths(text: str) -> tuple[int, ...]:
    """Parse ``3``, ``1-5`` or ``1,3,5``."""
    depths: list[int] = []
    for item in text.split(","):
        lo, sep, hi = item.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise argparse.ArgumentTypeError(f"expected depths like 3, 1-5 or 1,3,5, got {text!r}")
        depths += range(int(lo), int(hi) + 1) if sep else [int(lo)]
    if not depths or not all(1 <= d <= 6 for d in depths):
        raise argparse.ArgumentTypeError(f"depths must be in 1..6, got {text!r}")
    return tuple(dict.fromkeys(depths))


def cmd_generate(args: argparse.Namespace, io: Consoles) -> int:
    from puzzlebot.sim.generator import GeneratorConfig, generate

    if args.seeds < 1 or args.branching < 1:
        return _fail(io, f"--seeds and --branching must be >= 1, got {args.seeds} and {args.branching}")
    if args.parts is not None and args.parts < max(args.depths):
        return _fail(io, f"--parts {args.parts} is below the largest depth {max(args.depths)}: a depth-d "
                         "puzzle needs at least d parts")
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = []
    for depth in args.depths:
        for seed in range(args.seeds):
            config = GeneratorConfig(depth=depth, n_parts=args.parts, branching=args.branching, seed=seed)
            try:
                spec = generate(config)
            except (RuntimeError, ValueError) as err:  # no valid puzzle within the tries, or a bad setting
                return _fail(io, str(err))
            file = f"gen_d{depth}_s{seed}.yaml"
            save_spec(spec, out_dir / file)
            index.append({"file": file, "depth": depth, "seed": seed, "parts": len(spec.parts)})
            io.out.print(f"wrote {escape(str(out_dir / file))}: {_parts(len(spec.parts))}, depth {depth}")
    suite = {"generator": {"parts": args.parts, "branching": args.branching}, "puzzles": index}
    (out_dir / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    io.out.print(f"wrote {escape(str(out_dir / 'suite.yaml'))}: {len(index)} puzzles")
    return 0


# --------------------------------------------------------------------------- wiring

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="puzzlebot-author", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace, Consoles], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = add("new", cmd_new, "write a new puzzle YAML from a template")
    p.add_argument("name", help="puzzle name (also the file name)")
    p.add_argument("--template", choices=TEMPLATES, default="bolt_drawer")
    p.add_argument("-o", "--output", default=".", help="folder for NAME.yaml (default: here)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = add("validate", cmd_validate, "check puzzle files; print part count and depth, or what is wrong")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = add("render", cmd_render, "preview PNG montage with part names, from the scene cameras")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", help="PNG path (default: FILE with .png)")
    p.add_argument("--views", type=_views, default=("front", "top", "side"), help="comma-separated camera names")
    p.add_argument("--size", type=_size, default=(480, 640), help="HxW of each view in pixels (default 480x640)")

    p = add("solve", cmd_solve, "print the oracle's shortest solution, then execute it with the arm")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--robot", choices=ROBOTS, default="gripper")
    p.add_argument("--plan-only", action="store_true", help="print the plan from the lock logic; no simulation")

    p = add("export", cmd_export, "write NAME.xml (MJCF) and its marker PNGs")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", help="folder (default: ./NAME_mjcf)")

    p = add("generate", cmd_generate, "write a suite of seeded generated puzzles and suite.yaml")
    p.add_argument("-o", "--output", required=True, help="folder for gen_d{d}_s{s}.yaml and suite.yaml")
    p.add_argument("--depths", type=_depths, default=(1, 2, 3, 4, 5), help="e.g. 3, 1-5 or 1,3,5 (default 1-5)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per depth (default 3)")
    p.add_argument("--parts", type=int, help="total parts per puzzle (default: depth + 1)")
    p.add_argument("--branching", type=int, default=1, help="most blockers per part (1 = chains)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code so tests can call it directly."""
    args = build_parser().parse_args(argv)
    io = Consoles(Console(soft_wrap=True, highlight=False), Console(stderr=True, soft_wrap=True, highlight=False))
    return args.handler(args, io)


if __name__ == "__main__":
    raise SystemExit(main())
