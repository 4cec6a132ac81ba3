"""The family memory learns lock patterns and directions from the agent's own evidence, and
the next puzzle of the family is explored with fewer probes for it (logic level: the world
answers by its true lock graph)."""

import numpy as np
import pytest

from puzzlebot.agent.locks import CLOSE, OPEN, ActiveExplorer, LockBeliefs, graph_moves, simulate_exploration
from puzzlebot.agent.memory import DEFAULT_ODDS, PAIR_FEATURES, FamilyMemory, PartView
from puzzlebot.agent.probing import (
    CANONICAL,
    HANDLE_CLASSES,
    Interaction,
    ProbeConfig,
    candidate_directions,
    canonical_directions,
    handle_class,
)


def family_member(rng: np.random.Generator) -> tuple[dict[str, PartView], dict[str, frozenset[str]]]:
    """A lockbox of a made-up family: a drawer locked by the knob beside it, the knob by a bolt
    beside it, and a button elsewhere that locks nothing; positions jittered."""
    drawer = rng.uniform(-0.1, 0.1, 3)
    knob = drawer + [0.05, 0.0, 0.0] + rng.normal(0, 0.005, 3)
    bolt = knob + [0.0, 0.05, 0.0] + rng.normal(0, 0.005, 3)
    button = drawer + [-0.2, -0.1, 0.0] + rng.normal(0, 0.02, 3)
    views = {"drawer": PartView("grasp", tuple(drawer)), "knob": PartView("push", tuple(knob)),
             "bolt": PartView("push", tuple(bolt)), "button": PartView("push", tuple(button))}
    truth = {"drawer": frozenset({"knob"}), "knob": frozenset({"bolt"}), "bolt": frozenset(), "button": frozenset()}
    return views, truth


def explore(views, truth, memory: FamilyMemory | None):
    parts = list(views)
    beliefs = LockBeliefs(parts, size_prior={p: DEFAULT_ODDS[views[p].mode] for p in parts},
                          edge_odds=memory.edge_odds(views) if memory else None)
    beliefs.cannot.update((p, CLOSE) for p in parts)  # as the arm explores: no closes
    result = simulate_exploration(graph_moves(truth), parts, ActiveExplorer(), np.random.default_rng(0), 60,
                                  beliefs=beliefs, truth=truth)
    return result, beliefs


def test_a_family_lock_pattern_is_learned_from_own_evidence_and_saves_probes():
    rng = np.random.default_rng(3)
    memory = FamilyMemory()
    for k in range(6):
        views, truth = family_member(rng)
        _, beliefs = explore(views, truth, None)
        memory.learn(f"puzzle{k}", beliefs, views)
    odds = dict(zip(PAIR_FEATURES, np.exp(memory.lock_weights()), strict=True))
    assert odds["grasp blocks push"] < 0.5 * DEFAULT_ODDS["push"]  # drawers never locked anything
    assert odds["nearest handle"] > 1.5  # the lock is the neighbour
    assert odds["push blocks grasp"] <= DEFAULT_ODDS["grasp"] + 1e-9  # unidentifiable upwards: never raised
    fresh, carried = [], []
    for _ in range(4):
        views, truth = family_member(rng)
        plain, _ = explore(views, truth, None)
        learned, _ = explore(views, truth, memory)
        assert learned.correct or not plain.correct
        fresh.append(plain.probes)
        carried.append(learned.probes)
    assert np.mean(carried) < np.mean(fresh)


def test_an_empty_memory_is_the_default_prior():
    views, _ = family_member(np.random.default_rng(0))
    odds = FamilyMemory().edge_odds(views)
    assert odds[("knob", "drawer")] == pytest.approx(DEFAULT_ODDS["grasp"])
    assert odds[("drawer", "knob")] == pytest.approx(DEFAULT_ODDS["push"])


def test_the_way_parts_gave_orders_the_next_puzzles_tries():
    approach = np.array([1.0, 0.0, 0.0])
    ways = canonical_directions("push", approach, None)
    kind = handle_class("push", approach, None)
    assert kind == "push from the side"
    views = {"bolt": PartView("push", (0.0, 0.0, 0.0), tuple(tuple(d) for d in ways), kind)}
    memory = FamilyMemory()
    beliefs = LockBeliefs(["bolt"])

    def gave(way: int) -> None:
        memory.learn("p", beliefs, views, [Interaction("bolt", "push", OPEN, moved=True, tried=[ways[0], ways[way]])])
    gave(3)
    assert dict(memory.direction_order())[kind][0] == 0  # one odd part does not reorder the class
    gave(3)
    gave(3)
    gave(1)
    gave(1)
    order = dict(memory.direction_order())[kind]
    assert order[:3] == (3, 1, 0) and sorted(order) == list(range(len(CANONICAL)))
    config = memory.probe_config()
    tries = candidate_directions(config, "push", approach, None)
    assert np.allclose(tries[0], ways[3]) and np.allclose(tries[1], ways[1])  # the prober tries them in that order
    grasp = candidate_directions(config, "grasp", approach, np.array([0.0, 0.0, 1.0]))
    assert np.allclose(grasp[0], -approach)  # another class keeps the default: pull first


def test_memory_round_trips_and_malformed_files_name_the_field(tmp_path):
    rng = np.random.default_rng(1)
    views, truth = family_member(rng)
    memory = FamilyMemory()
    memory.learn("p0", explore(views, truth, None)[1], views)
    memory.save(tmp_path / "memory.json")
    again = FamilyMemory.load(tmp_path / "memory.json")
    assert np.allclose(again.lock_weights(), memory.lock_weights())
    (tmp_path / "bad.json").write_text('{"puzzles": [], "lock": []}')
    with pytest.raises(ValueError, match="'lock'"):
        FamilyMemory.load(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text('{"locks": [{"features": [[1, 0]], "loglik": [0]}]}')
    with pytest.raises(ValueError, match=r"locks\[0\]"):
        FamilyMemory.load(tmp_path / "bad2.json")
    assert FamilyMemory.open(tmp_path / "none.json").puzzles == []


def test_bad_odds_and_direction_orders_are_refused():
    with pytest.raises(ValueError, match="edge_odds"):
        LockBeliefs(["a", "b"], edge_odds={("a", "b"): 0.0})
    with pytest.raises(ValueError, match="direction_order"):
        ProbeConfig(direction_order=(("push from above", (0, 1, 2)),))
    with pytest.raises(ValueError, match="handle class"):
        ProbeConfig(direction_order=(("push", (0, 1, 2, 3, 4)),))


def test_a_handle_class_is_judged_from_the_backed_off_hand_once_its_views_agreed():
    kind, other = "push from above", "grasp, fingers close across"
    memory = FamilyMemory()
    assert memory.near_view_classes() == ()  # a fresh agent parks for every look
    assert set(memory.compare_view_classes()) == set(HANDLE_CLASSES)
    beliefs = LockBeliefs(["button", "drawer"])

    def probed(part: str, kind: str, errors: list) -> None:
        views = {"button": PartView("push", (0.0, 0.0, 0.0)), "drawer": PartView("grasp", (0.1, 0.0, 0.0))}
        memory.learn("p", beliefs, views, [Interaction(part, "push", OPEN, moved=True, handle_class=kind,
                                                       near_view_error=errors)])
    probed("button", kind, [0.001, 0.0015])
    assert kind not in memory.near_view_classes()  # two agreeing looks are not enough
    probed("button", kind, [0.0008])
    probed("drawer", other, [None, None, 0.001, None])  # seen backed off too rarely to be worth a look
    assert memory.near_view_classes() == (kind,)
    config = memory.probe_config()
    assert config.near_view == (kind,)
    assert kind not in config.compare_views and other in config.compare_views
    probed("drawer", other, [None, None])  # six compared, never worth it: no more looks spent on it
    assert other not in memory.probe_config().compare_views and other not in memory.near_view_classes()
    probed("button", kind, [0.02])  # a backed-off view that put the handle 2 cm off: trust is gone
    assert memory.near_view_classes() == ()
    assert kind not in memory.compare_view_classes()


def test_a_memory_with_backed_off_views_round_trips_and_bad_views_name_the_field(tmp_path):
    memory = FamilyMemory(views={"push from above": [0.001, None]})
    memory.save(tmp_path / "memory.json")
    assert FamilyMemory.load(tmp_path / "memory.json").views == memory.views
    (tmp_path / "bad.json").write_text('{"views": {"push from above": [-1.0]}}')
    with pytest.raises(ValueError, match=r"views\['push from above'\]"):
        FamilyMemory.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="near_view"):
        ProbeConfig(near_view=("push",))


def test_reaches_slow_down_only_where_the_familys_touches_came():
    kind = "push from the side"
    memory = FamilyMemory()
    standoff = ProbeConfig().standoff
    assert memory.guard_spans(standoff) == ()  # a fresh agent comes the whole standoff in slowly
    beliefs = LockBeliefs(["bolt"])
    views = {"bolt": PartView("push", (0.0, 0.0, 0.0))}

    def reached(touches: list) -> None:
        memory.learn("p", beliefs, views, [Interaction("bolt", "push", OPEN, moved=True, handle_class=kind,
                                                       reach_touches=touches)])
    reached([None, 0.004, None, 0.012])
    assert memory.guard_spans(standoff) == ()  # four reaches tell too little
    reached([None, None, 0.006, None])
    assert dict(memory.probe_config().guard_spans)[kind] == pytest.approx(0.012 + 0.01)
    reached([0.13, standoff])  # touching at the stand-off already: not met on the guarded stretch
    assert dict(memory.guard_spans(standoff))[kind] == pytest.approx(0.012 + 0.01)
    reached([0.07])  # something met 7 cm out: the whole standoff is slow again
    assert dict(memory.guard_spans(standoff))[kind] == pytest.approx(standoff)
    with pytest.raises(ValueError, match="guard_spans"):
        ProbeConfig(guard_spans=((kind, 0.2),))


def test_a_knobs_way_is_learned_apart_from_the_buttons_pushed_from_the_same_side(tmp_path):
    """Buttons (flush caps) and knobs (a crank pin off the dial's centre) are both pushed from the
    side: one order for the class tried the buttons' way on every knob. By the sheet's shape,
    each is tried its own way first, and a shape never seen keeps the class's order."""
    from puzzlebot.agent.affordances import Affordance
    from puzzlebot.agent.probing import handle_shape

    approach = np.array([1.0, 0.0, 0.0])
    ways = canonical_directions("push", approach, None)
    kind = handle_class("push", approach, None)
    button = Affordance("button", 1, np.array([0.0, 0.0, -0.002]), np.array([0.0, 0.0, -1.0]), "push", 0.02)
    knob = Affordance("knob", 2, np.array([0.0, 0.032, 0.02]), np.array([0.0, 0.0, -1.0]), "push", 0.006)
    lever = Affordance("lever", 3, np.array([0.0, 0.1, 0.021]), np.array([0.0, 0.0, -1.0]), "push", 0.01)
    assert len({handle_shape(button), handle_shape(knob), handle_shape(lever)}) == 3
    memory = FamilyMemory()
    for aff, way in ((button, 0), (knob, 1), (button, 0), (knob, 1), (button, 0), (button, 0)):
        views = {aff.part: PartView("push", (0.0, 0.0, 0.0), tuple(tuple(d) for d in ways), kind,
                                    handle_shape(aff))}
        memory.learn("p", LockBeliefs([aff.part]), views,
                     [Interaction(aff.part, "push", OPEN, moved=True, tried=[ways[way]])])
    config = memory.probe_config()
    first = {aff.part: candidate_directions(config, "push", approach, None, shape=handle_shape(aff))[0]
             for aff in (button, knob, lever)}
    assert np.allclose(first["button"], ways[0]) and np.allclose(first["knob"], ways[1])
    assert np.allclose(first["lever"], ways[0])  # an unseen shape: the class's order (pressed most)
    memory.save(tmp_path / "memory.json")
    assert FamilyMemory.load(tmp_path / "memory.json").direction_order() == memory.direction_order()
