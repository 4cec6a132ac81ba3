"""What puzzlebot carries from one puzzle to the next of a family (learning across puzzles).

A lab that hands puzzlebot ten lockboxes from one maker expects the tenth to go faster than
the first: the drawers were the locked ones, the knobs beside them what locked them, the bolts
slid sideways. `FamilyMemory` keeps what the agent concluded from each puzzle it finished —
the evidence its own probes gave on every part's blockers (never the puzzle's truth), which
way each part gave, and its fitted dynamics — and turns all of it into priors for the next:

- lock pattern: the odds that one part blocks another, from what the marker sheet and the
  first look show of the pair (both handles' kinds, and whether the blocker is among the
  part's two nearest handles). The weights are refitted on every part seen so far (replay)
  by maximising the marginal likelihood of the probes' evidence (empirical Bayes), with a
  Gaussian prior centred on the default odds: evidence that cannot tell two blocker sets
  apart (a distractor opened before the drawer: did it block it too?) moves nothing, and one
  odd puzzle cannot overwrite ten;
- directions: per handle class (`probing.handle_class`: a drawer's bar, a door's, a lid's
  button...), and per class and handle shape (`probing.handle_shape`: a button's flush cap and
  a knob's crank pin are both pushed from the side, and give different ways), how often each of
  the prober's five ways (`probing.CANONICAL`) was the one a part gave to, so the likeliest is
  tried first (by shape where that shape gave before, else by class);
- dynamics: per (handle kind, joint kind), the log-normal spread of the friction, damping and
  inertia fitted so far (`dynamics_prior`): the prior the next puzzle's joints are fitted
  under (`solve.solve` with a memory), in place of `sysid.cold_prior`. It tells most where a
  motion tells least (a button's damping).
- views: per handle class, how far the handle seen from the hand just backed off lay from where
  the cameras put it with the hand parked (`ProbeConfig.compare_views`, a few probes per class).
  Once a class's backed-off views were all seen and all agreed (`near_view_classes`), its
  probes are judged from there and the trip to the park and back is saved: most of a probe's
  free motion. Which views the hand spoils is the cell's (its cameras' placement), not a
  puzzle's: it carries to every puzzle on the same bench.
- reaches: per handle class, how far short of its target each guarded reach touched something
  (a handle nearer than the cameras put it, the face behind it, a neighbour) or that it got
  there untouched. Once a class has `GUARD_MIN_REACHES`, its reaches cross the standoff faster
  and slow down only over the last `guard_spans` (the farthest touch seen, plus a margin).

It is saved as JSON (atomically) and grows by `learn` after each puzzle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from puzzlebot.agent.locks import OPEN, LockBeliefs
from puzzlebot.agent.probing import CANONICAL, HANDLE_CLASSES, SHAPE_SEP, Interaction, ProbeConfig, handle_key
from puzzlebot.agent.sysid import PARAMS
from puzzlebot.files import write_text_atomic

MODES = ("grasp", "push")
PAIR_FEATURES = ("push blocks grasp", "push blocks push", "grasp blocks grasp", "grasp blocks push",
                 "nearest handle", "second nearest handle")
DEFAULT_ODDS = {"grasp": 1.0, "push": 0.3}  # `explorer.ExplorerConfig.locked_prior`, by the blocked part's kind
PRIOR_STD = 1.5  # of each weight (log odds) around the default's: ten puzzles move it, one does not
SAME_WAY = 0.9  # cosine between a tried direction and a canonical one that counts as the same way
DYNAMICS_PRIOR_MIN_FITS = 3  # fitted joints of a handle and joint kind before the family's prior replaces the cold one
DYNAMICS_PRIOR_MIN_STD = 0.3  # log: the family's prior is never sharper than ~35 % per parameter
DEFAULT_ORDER_WEIGHT = 2.0  # parts' worth of evidence for the default's first way (halved down the order)
NEAR_VIEW_MIN = 3  # compared views of a handle class seen and agreeing before its probes skip the park
NEAR_VIEW_MAX = 6  # compared views of a class at most: one that has not earned trust by then keeps parking
NEAR_VIEW_TOLERANCE = 0.003  # m: a backed-off view this close to the parked one agrees with it
GUARD_MIN_REACHES = 8  # guarded reaches of a handle class before its slow span is learned
GUARD_MARGIN = 0.01  # m added to the farthest touch short of a target seen in the class
GUARD_MIN_SPAN = 0.02  # m: the last stretch of a reach is always slow


@dataclass(frozen=True)
class PartView:
    """What the sheet and the cameras' first look show of a part before it is touched."""

    mode: str  # the handle's kind on the marker sheet: "grasp" | "push"
    handle: tuple[float, ...]  # the handle's point at rest, m, world
    directions: tuple[tuple[float, ...], ...] = ()  # `probing.canonical_directions` at rest, world
    handle_class: str = ""  # `probing.handle_class`: how the handle sits (a drawer's bar, a door's, a lid's button)
    handle_shape: str = ""  # `probing.handle_shape`: the sheet's radius, stand-out and offset of the handle


def pair_features(views: dict[str, PartView], blocker: str, part: str) -> np.ndarray:
    """The features of "`blocker` blocks `part`" (`PAIR_FEATURES`)."""
    x = np.zeros(len(PAIR_FEATURES))
    x[_cell(views[blocker].mode, views[part].mode)] = 1.0
    here = np.asarray(views[part].handle)
    others = sorted((p for p in views if p != part), key=lambda p: np.linalg.norm(np.asarray(views[p].handle) - here))
    rank = others.index(blocker)
    if rank < 2:
        x[4 + rank] = 1.0
    return x


def _cell(blocker_mode: str, part_mode: str) -> int:
    for mode in (blocker_mode, part_mode):
        if mode not in MODES:
            raise ValueError(f"handle mode {mode!r}: expected one of {MODES}")
    return {("push", "grasp"): 0, ("push", "push"): 1, ("grasp", "grasp"): 2, ("grasp", "push"): 3}[
        (blocker_mode, part_mode)]


def default_weights(odds: dict[str, float] = DEFAULT_ODDS) -> np.ndarray:
    """The weights that give the default prior: odds by the blocked part's kind, nothing else."""
    w = np.zeros(len(PAIR_FEATURES))
    w[0] = w[2] = np.log(odds["grasp"])
    w[1] = w[3] = np.log(odds["push"])
    return w


@dataclass
class FamilyMemory:
    """The evidence and fits of the puzzles finished so far (see the module doc)."""

    puzzles: list[str] = field(default_factory=list)
    locks: list[dict] = field(default_factory=list)  # per part: its blocker sets' features and log-likelihood
    directions: dict[str, list[int]] = field(default_factory=dict)  # handle class -> times each way gave
    dynamics: dict[str, list[list[float]]] = field(default_factory=dict)  # "mode/kind" -> log PARAMS per joint
    views: dict[str, list[float | None]] = field(default_factory=dict)  # handle class -> backed-off view's
    # distance from the parked one per compared probe, m (None: not seen backed off)
    reaches: dict[str, list[float | None]] = field(default_factory=dict)  # handle class -> m short of its
    # target each guarded reach touched (None: untouched)
    default_odds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ODDS))

    # ------------------------------------------------------------------ priors for the next puzzle

    def lock_weights(self) -> np.ndarray:
        """Log-odds weights of `PAIR_FEATURES`: the default's, moved by the marginal likelihood
        of every part's evidence so far (MAP under the Gaussian prior)."""
        w0 = default_weights(self.default_odds)
        informative = [(np.array(r["features"]), np.array(r["loglik"])) for r in self.locks if np.ptp(r["loglik"]) > 0]
        if not informative:
            return w0

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = 0.5 * np.sum((w - w0) ** 2) / PRIOR_STD**2, (w - w0) / PRIOR_STD**2
            for F, ll in informative:  # -log sum_S p(evidence | S) p(S | w), p(S | w) = exp(F_S w) / Z(w)
                prior = F @ w
                value -= logsumexp(ll + prior) - logsumexp(prior)
                grad -= softmax(ll + prior) @ F - softmax(prior) @ F
            return float(value), grad

        # Without closes the probes cannot rule out an extra blocker that was opened before the
        # part (was the distractor opened before the drawer a second lock on it?), so the
        # likelihood only ever rises with an edge kind's odds: the evidence may lower them
        # below the default's, never raise them above it.
        bounds = [(None, w) for w in w0[:4]] + [(None, None)] * (len(w0) - 4)
        return minimize(loss, w0, jac=True, method="L-BFGS-B", bounds=bounds).x

    def edge_odds(self, views: dict[str, PartView]) -> dict[tuple[str, str], float]:
        """Prior odds that each part blocks each other (for `LockBeliefs(edge_odds=...)`)."""
        w = self.lock_weights()
        return {(b, p): float(np.exp(np.clip(pair_features(views, b, p) @ w, -12.0, 12.0)))
                for p in views for b in views if b != p}

    def direction_order(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Per handle class seen so far, the canonical ways most often given to first, for
        `ProbeConfig.direction_order`. The default order counts as evidence: its first way as
        `DEFAULT_ORDER_WEIGHT` parts, each next one half the one before (one odd part does not
        reorder a class, two do)."""
        def score(counts: list[int], i: int) -> tuple[float, int]:
            return -(counts[i] + DEFAULT_ORDER_WEIGHT * 0.5**i), i
        return tuple((kind, tuple(sorted(range(len(CANONICAL)), key=lambda i: score(counts, i))))
                     for kind, counts in sorted(self.directions.items()))

    def near_view_classes(self) -> tuple[str, ...]:
        """Handle classes whose probes can be judged from the backed-off hand: at least
        `NEAR_VIEW_MIN` compared views seen there, every one within `NEAR_VIEW_TOLERANCE` of the
        park's, and seen at least half the time (a look that sees nothing costs a look, then the
        park; one that saw the handle wrongly would misjudge a probe)."""
        trusted = []
        for kind, errors in sorted(self.views.items()):
            seen = [e for e in errors if e is not None]
            if len(seen) >= NEAR_VIEW_MIN and 2 * len(seen) >= len(errors) and max(seen) <= NEAR_VIEW_TOLERANCE:
                trusted.append(kind)
        return tuple(trusted)

    def compare_view_classes(self) -> tuple[str, ...]:
        """Handle classes still worth a backed-off look before parking: not trusted yet, with
        fewer than `NEAR_VIEW_MAX` comparisons and none that disagreed."""
        trusted = self.near_view_classes()
        return tuple(kind for kind in HANDLE_CLASSES
                     if kind not in trusted and len(self.views.get(kind, [])) < NEAR_VIEW_MAX
                     and all(e is None or e <= NEAR_VIEW_TOLERANCE for e in self.views.get(kind, [])))

    def guard_spans(self, standoff: float) -> tuple[tuple[str, float], ...]:
        """Per handle class with `GUARD_MIN_REACHES` reaches, the last stretch of a reach to make
        slowly: the farthest short of its target that any of them touched on the way in, plus
        `GUARD_MARGIN` (at least `GUARD_MIN_SPAN`, at most the whole `standoff`). A hand already
        touching at the stand-off (the table under a low handle) met it in free motion: the
        guarded stretch's speed did not matter to it."""
        spans = []
        for kind, touches in sorted(self.reaches.items()):
            if len(touches) >= GUARD_MIN_REACHES:  # a touch at the stand-off came before the guarded stretch
                farthest = max((t for t in touches if t is not None and t < standoff - GUARD_MIN_SPAN / 4),
                               default=0.0)
                spans.append((kind, float(np.clip(farthest + GUARD_MARGIN, GUARD_MIN_SPAN, standoff))))
        return tuple(spans)

    def probe_config(self, base: ProbeConfig | None = None) -> ProbeConfig:
        """`base` (the default probe config if None) with the family's direction order, where its
        cameras can judge a probe from (`near_view_classes`, `compare_view_classes`) and how much
        of a reach must be slow (`guard_spans`)."""
        base = base or ProbeConfig()
        return replace(base, direction_order=self.direction_order(), near_view=self.near_view_classes(),
                       compare_views=self.compare_view_classes(), guard_spans=self.guard_spans(base.standoff))

    def dynamics_prior(self, mode: str, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The family's prior over the dynamics of a joint of this handle and joint kind: mean and
        standard deviation of the log of each of `sysid.PARAMS` over the joints fitted so far
        (`sysid.fit_driven`'s `prior`). None before `DYNAMICS_PRIOR_MIN_FITS` were fitted: the
        cold prior stands. The spread is that of a new joint (the sample's, widened by 1/n for
        the mean's own uncertainty) and never under `DYNAMICS_PRIOR_MIN_STD`: a few alike
        fits do not make a new part's parameter known."""
        rows = self.dynamics.get(f"{mode}/{kind}", [])
        if len(rows) < DYNAMICS_PRIOR_MIN_FITS:
            return None
        logs = np.array(rows)
        spread = logs.std(axis=0, ddof=1) * np.sqrt(1.0 + 1.0 / len(rows))
        return logs.mean(axis=0), np.maximum(spread, DYNAMICS_PRIOR_MIN_STD)

    # ------------------------------------------------------------------ learning

    def learn(self, puzzle: str, beliefs: LockBeliefs, views: dict[str, PartView],
              interactions: list[Interaction] = (), model=None) -> None:
        """Add what one finished puzzle showed: every part's evidence on its blocker sets (the
        beliefs' likelihood, with each set's features), which canonical way each part gave to
        when it opened, the dynamics of every joint fitted in `model` (a `FittedModel`), and how
        the backed-off views its probes compared agreed with the parked ones."""
        missing = sorted(set(beliefs.parts) - set(views))
        if missing:
            raise ValueError(f"FamilyMemory.learn({puzzle!r}): no view of parts {missing}")
        for part in beliefs.parts:
            features = [sum((pair_features(views, b, part) for b in blockers), np.zeros(len(PAIR_FEATURES)))
                        for blockers in beliefs.hypotheses[part]]
            self.locks.append({"puzzle": puzzle, "part": part, "features": np.array(features).tolist(),
                               "loglik": np.maximum(beliefs.log_likelihood(part), -50.0).tolist()})
        for interaction in interactions:
            view = views.get(interaction.part)
            if not (interaction.moved and interaction.direction == OPEN and interaction.tried and view
                    and view.directions):
                continue
            cosines = np.array(view.directions) @ np.asarray(interaction.tried[-1])
            if cosines.max() >= SAME_WAY and view.handle_class:
                keys = [view.handle_class] + ([handle_key(view.handle_class, view.handle_shape)]
                                              if view.handle_shape else [])
                for key in keys:  # the class, and the class narrowed by the handle's shape
                    counts = self.directions.setdefault(key, [0] * len(CANONICAL))
                    counts[int(np.argmax(cosines))] += 1
        for interaction in interactions:
            if interaction.near_view_error and interaction.handle_class:
                self.views.setdefault(interaction.handle_class, []).extend(interaction.near_view_error)
            if interaction.reach_touches and interaction.handle_class:
                self.reaches.setdefault(interaction.handle_class, []).extend(interaction.reach_touches)
        for fitted in (model.parts if model is not None else []):
            if fitted.dynamics is None or fitted.name not in views:
                continue
            values = fitted.dynamics.values
            key = f"{views[fitted.name].mode}/{fitted.articulation.kind}"
            self.dynamics.setdefault(key, []).append([float(np.log(values[k])) for k in PARAMS])
        self.puzzles.append(puzzle)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> FamilyMemory:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a family memory (bad JSON: {err})") from err
        known = {"puzzles", "locks", "directions", "dynamics", "default_odds", "views", "reaches"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown family-memory field {unknown[0]!r} (known: {', '.join(sorted(known))})")
        memory = cls(**data)
        for i, record in enumerate(memory.locks):
            F, ll = np.asarray(record.get("features", [])), np.asarray(record.get("loglik", []))
            if (F.ndim != 2 or F.shape[1] != len(PAIR_FEATURES) or ll.shape != (F.shape[0],)
                    or not np.isfinite(ll).all()):
                raise ValueError(f"{path}: locks[{i}] is malformed (features: sets x {len(PAIR_FEATURES)}, "
                                 "loglik: one finite value per set)")
        for kind, counts in memory.directions.items():
            if kind.split(SHAPE_SEP)[0] not in HANDLE_CLASSES or len(counts) != len(CANONICAL):
                raise ValueError(f"{path}: directions[{kind!r}] must be {len(CANONICAL)} counts of a handle class "
                                 f"in {HANDLE_CLASSES}")
        for name, what, low in (("views", "not seen", 0.0), ("reaches", "untouched", -np.inf)):
            for kind, values in getattr(memory, name).items():
                if kind not in HANDLE_CLASSES or not all(
                        v is None or (isinstance(v, int | float) and np.isfinite(v) and v >= low) for v in values):
                    raise ValueError(f"{path}: {name}[{kind!r}] must be distances (m, or null: {what}) of a "
                                     f"handle class in {HANDLE_CLASSES}")
        return memory

    @classmethod
    def open(cls, path: str | Path) -> FamilyMemory:
        """The memory saved at `path`, or an empty one if there is none yet (a family's first puzzle)."""
        return cls.load(path) if Path(path).exists() else cls()
