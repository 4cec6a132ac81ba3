"""The solve loop: goal-directed planning on lock beliefs, and an end-to-end solve on the emulator."""

from pathlib import Path

import numpy as np
import pytest

from puzzlebot.agent.affordances import TaskGoal, marker_sheet, task_goals
from puzzlebot.agent.locks import OPEN, TEST, ActiveExplorer, Attempt, LockBeliefs, relevance
from puzzlebot.agent.probing import ACTIVITIES
from puzzlebot.agent.session import SessionConfig, run_solve
from puzzlebot.agent.solve import SolveConfig, _next_move
from puzzlebot.real.emulator import EmulatorBackend, EmulatorConfig
from puzzlebot.sim.generator import GeneratorConfig, generate


def test_task_goal_is_an_opening_from_the_start():
    spec = generate(GeneratorConfig(depth=2, seed=1))
    (goal,) = task_goals(spec)
    assert goal.part == spec.goal[0].part and goal.min_opening == pytest.approx(spec.goal[0].min)
    assert not goal.holds(0.0) and goal.holds(goal.min_opening + 1e-6)
    assert TaskGoal("drawer", 0.05, 0.08).holds(0.06) and not TaskGoal("drawer", 0.05, 0.08).holds(0.09)
    # with a margin, an estimate just past the bound is not enough
    assert not TaskGoal("door", 1.1).holds(1.18, margin=0.1) and TaskGoal("door", 1.1).holds(1.22, margin=0.1)
    with pytest.raises(ValueError, match="goal_margin"):
        SolveConfig(goal_margin=0.7)


def test_a_failed_goal_open_is_replanned_through_a_blocker_then_probed_when_stuck():
    beliefs = LockBeliefs(["door", "bolt"], slip=0.05)
    config, chooser, rng = SolveConfig(planner="map"), ActiveExplorer(), np.random.default_rng(0)
    failed: dict = {}
    probe, why = _next_move("door", beliefs, frozenset(), failed, {}, config, chooser, rng)
    assert (probe.part, probe.direction) == ("door", OPEN)  # the MAP graph has no lock: just open it
    # the robust planner hedges: the bolt may block the door, and opening it first costs one move
    hedged, why = _next_move("door", beliefs, frozenset(), failed, {}, SolveConfig(), chooser, rng)
    assert (hedged.part, hedged.direction) == ("bolt", OPEN) and "open bolt -> open door" in why
    beliefs.update(Attempt("door", frozenset(), False, OPEN))
    probe, why = _next_move("door", beliefs, frozenset(), failed, {}, config, chooser, rng)
    assert (probe.part, probe.direction) == ("bolt", OPEN) and "open bolt -> open door" in why
    # the plan's first move failing twice in one state is a stuck plan: ask the beliefs instead
    failed[("bolt", frozenset())] = config.replan_failures
    probe, why = _next_move("door", beliefs, frozenset(), failed, {}, config, chooser, rng)
    assert why.startswith("the plan is stuck")


def test_a_stuck_plan_opens_the_likeliest_blocker_of_its_blocker_not_a_repeat_or_a_test():
    # door <- bolt <- knob in truth; the lever blocks nothing
    parts = ["door", "bolt", "knob", "lever"]
    beliefs = LockBeliefs(parts, slip=0.05, size_prior={"door": 1.0, "bolt": 0.3, "knob": 0.3, "lever": 0.3})
    for attempt in (Attempt("door", frozenset(), False, OPEN), Attempt("bolt", frozenset(), False, OPEN),
                    Attempt("lever", frozenset(), True, TEST), Attempt("bolt", frozenset(), False, TEST)):
        beliefs.update(attempt)
    seen = {("bolt", OPEN, frozenset()): [False], ("door", OPEN, frozenset()): [False]}
    failed = {("bolt", frozenset()): 2, ("door", frozenset()): 2}
    config, chooser, rng = SolveConfig(), ActiveExplorer(), np.random.default_rng(0)
    weight = relevance(beliefs, "door")
    assert weight[beliefs.index["door"]] == 1.0 and np.all((weight >= 0.05) & (weight <= 1.0))
    # the bolt may block the door (it failed where the door failed); the knob only through it
    assert weight[beliefs.index["bolt"]] == pytest.approx(beliefs.probability_blocks("bolt", "door"))
    # the knob and the lever may each block the bolt; the lever is known free, the knob not yet
    probe, why = _next_move("door", beliefs, frozenset(), failed, seen, config, chooser, rng)
    # what failed here already comes last, even when it is the most relevant part
    assert probe.direction == OPEN and probe.part in ("knob", "lever")
    # once everything failed here, the plan is stuck and the least repeated open comes first
    # (not the goal part for ever)
    seen.update({("knob", OPEN, frozenset()): [False], ("lever", OPEN, frozenset()): [False, False]})
    seen[("door", OPEN, frozenset())] = [False, False, False]
    failed.update({("knob", frozenset()): 2, ("lever", frozenset()): 2})
    probe, why = _next_move("door", beliefs, frozenset(), failed, seen, config, chooser, rng)
    assert probe.part in ("bolt", "knob") and "open most likely" in why


@pytest.mark.slow
def test_a_depth_two_lockbox_is_solved_on_the_emulator_from_camera_images(tmp_path: Path):
    spec = generate(GeneratorConfig(depth=2, seed=1))
    emulator = EmulatorBackend(EmulatorConfig(puzzle=spec, robot="gripper", seed=1, cameras=("closeup", "top"),
                                              image_size=(480, 640), realtime=False, lockstep=True))
    result = run_solve(emulator, marker_sheet(spec), task_goals(spec), tmp_path,
                       SessionConfig(record_episode=False), SolveConfig(max_attempts=10, max_robot_s=240.0))
    assert result.solved  # the emulator's own joints meet the goal
    assert result.outcome.believed_solved and len(result.outcome.attempts) <= 10
    goal = spec.goal[0]
    assert result.final_positions[goal.part] >= goal.min
    # the agent's own estimate of the goal part's opening agrees with the world's joint
    assert result.outcome.openings[goal.part] == pytest.approx(result.final_positions[goal.part], abs=0.15)
    assert (tmp_path / "solve.json").exists() and (tmp_path / "fitted_model.xml").exists()
    # where the robot time went: every control period the prober ticked, each under one activity
    spent = result.outcome.robot_s_by_activity
    assert set(spent) <= set(ACTIVITIES) and {"free_motion", "guarded_approach"} <= set(spent)
    assert sum(spent.values()) == pytest.approx(result.outcome.robot_time_s, rel=0.02)


def test_a_door_marker_turn_is_read_about_the_fitted_axis_only():
    from scipy.spatial.transform import Rotation

    from puzzlebot.agent.part_state import _turn_about

    rest = Rotation.from_euler("xyz", [0.2, -0.1, 0.3])  # a marker on a door face, tilted in the base frame
    swung = Rotation.from_rotvec([0.0, 0.0, 1.1]) * rest  # the door turned 1.1 rad about a vertical hinge
    wxyz = [1, 2, 3, 0]
    q0, q1 = rest.as_quat()[wxyz], swung.as_quat()[wxyz]
    assert _turn_about(q0, q1, np.array([0.0, 0.0, 1.0])) == pytest.approx(1.1)
    assert _turn_about(q0, q1, np.array([1.0, 0.0, 0.0])) == pytest.approx(0.0, abs=1e-9)
    assert _turn_about(q1, q0, np.array([0.0, 0.0, 1.0])) == pytest.approx(1.1)  # the angle, either way


def test_a_part_believed_open_is_doubted_only_once_every_open_left_has_failed():
    from puzzlebot.agent.solve import _doubted

    parts = ["drawer", "bolt", "knob", "button"]
    beliefs = LockBeliefs(parts, slip=0.05, size_prior={"drawer": 1.0, "bolt": 0.3, "knob": 0.3, "button": 0.3})
    opened = frozenset({"knob", "button"})  # the knob's "open" was a finger sliding off its pin
    history = [Attempt("knob", frozenset(), True, OPEN), Attempt("button", frozenset({"knob"}), True, OPEN),
               Attempt("drawer", opened, False, OPEN)]
    beliefs.update_all(history)
    seen = {("drawer", OPEN, opened): [False]}
    assert _doubted("drawer", beliefs, opened, seen, set()) is None  # the bolt is still untried here
    seen[("bolt", OPEN, opened)] = [False]
    beliefs.update(Attempt("bolt", opened, False, OPEN))
    doubt = _doubted("drawer", beliefs, opened, seen, set())
    assert doubt in opened
    assert _doubted("drawer", beliefs, opened, seen, {("knob", opened), ("button", opened)}) is None  # once here
    later = opened | {"bolt"}  # the bolt opened since: every open left failed again, in this new state
    seen[("drawer", OPEN, later)] = [False]
    before = {("knob", opened), ("button", opened)}
    first = _doubted("drawer", beliefs, later, seen, before)
    assert first in later
    again = _doubted("drawer", beliefs, later, seen, before | {(first, later)})
    assert again in later - {first}  # and those doubted in the old state may be doubted in this one
    assert _doubted("drawer", beliefs, later, seen, before | {(p, later) for p in later}) is None
    # re-read: the knob was closed all along; the beliefs are rebuilt from the corrected attempts
    corrected = history[:1] + [Attempt(a.part, a.displaced - {"knob"}, a.moved, a.direction) for a in history[1:]]
    before = beliefs.probability_blocks("knob", "bolt")
    beliefs.refit(corrected + [Attempt("bolt", opened - {"knob"}, False, OPEN)])
    fresh = LockBeliefs(parts, slip=0.05, size_prior={"drawer": 1.0, "bolt": 0.3, "knob": 0.3, "button": 0.3})
    fresh.update_all(corrected + [Attempt("bolt", opened - {"knob"}, False, OPEN)])
    assert beliefs.probability_blocks("knob", "bolt") == pytest.approx(fresh.probability_blocks("knob", "bolt"))
    assert beliefs.probability_blocks("knob", "bolt") > before  # the bolt failed with the knob closed


def test_a_bolt_knocked_back_by_another_probe_is_seen_to_have_slid_back():
    from types import SimpleNamespace

    from puzzlebot.agent.part_state import slid_back
    from puzzlebot.agent.perception.tracker import PartTrack
    from puzzlebot.agent.probing import Interaction

    rng = np.random.default_rng(0)
    track = PartTrack("bolt", 5)
    # pushed 40 mm along x (t 0-2 s), then seen at rest at 40 mm, then at 27 mm after the door's tug (t 6 s)
    travel = np.concatenate([np.linspace(0.0, 0.04, 40), np.full(20, 0.04)])
    for k, x in enumerate(travel):
        track.times.append(0.05 * k)
        track.positions.append(np.array([x, 0.0, 0.0]) + rng.normal(0, 0.001, 3))
        track.quaternions.append(np.array([1.0, 0.0, 0.0, 0.0]))
    pushed = Interaction("bolt", "push", "open", moved=True, contact="side", times=[0.0, 2.0],
                         tcp_positions=[np.zeros(3), np.array([0.04, 0.0, 0.0])])  # a side push: the marker says
    door = Interaction("door", "grasp", "test", moved=True, contact="grasp", times=[4.0, 5.0])
    io = SimpleNamespace(T_world_base=np.eye(4), tracker=SimpleNamespace(tracks={"bolt": track}))
    prober = SimpleNamespace(io=io)
    assert not slid_back(prober, [pushed, door], "bolt")  # not seen since the door's probe
    for k, x in enumerate([0.04, 0.041, 0.039, 0.04, 0.04]):  # parked, the cameras see it where it was left
        track.times.append(6.0 + 0.1 * k)
        track.positions.append(np.array([x, 0.0, 0.0]))
        track.quaternions.append(np.array([1.0, 0.0, 0.0, 0.0]))
    assert not slid_back(prober, [pushed, door], "bolt")
    track.positions[-5:] = [np.array([x, 0.0, 0.0]) for x in (0.027, 0.026, 0.07, 0.027, 0.028)]  # one flipped pose
    assert slid_back(prober, [pushed, door], "bolt")  # 13 mm back of 40
    pressed = Interaction("bolt", "push", "open", moved=True, contact="press", times=[0.0, 2.0],
                          tcp_positions=pushed.tcp_positions)
    assert not slid_back(prober, [pressed, door], "bolt")  # a cap's depth is the cameras' noisiest axis


def test_a_part_given_a_skill_policy_is_paced_by_it_not_by_the_mpc(monkeypatch):
    """`solve(policies=...)`: the world model hands the policy's pace to moves of its part (the
    fit and the rehearser are stubbed: the routing is under test, not the MPC)."""
    from types import SimpleNamespace

    import torch

    from puzzlebot.agent.policy.distill import DeployedPolicies
    from puzzlebot.agent.policy.skill_policy import OBS_FIELDS, PolicyPace, SkillPolicy
    from puzzlebot.agent.solve import WorldModel

    module = torch.nn.Linear(len(OBS_FIELDS), 1)
    torch.nn.init.zeros_(module.weight)
    torch.nn.init.constant_(module.bias, 0.5)  # speed fraction (0.5 + 1) / 2
    spec = {"part": "drawer", "lever": 1.0, "max_speed": 0.1, "max_s": 3.0, "tolerance": 0.003, "rest_speed": 0.005}
    policy = SkillPolicy(module, spec)
    sheet = SimpleNamespace(affordances={"drawer": SimpleNamespace(mode="grasp")})
    io = SimpleNamespace(T_world_base=np.eye(4), sheet=sheet)
    world = WorldModel(SimpleNamespace(io=io), None, [], SolveConfig(), DeployedPolicies({"drawer": policy}))
    monkeypatch.setattr(world, "refitted", lambda: SimpleNamespace(parts={"drawer": None}))
    world.model = SimpleNamespace(part=lambda name: SimpleNamespace(articulation=SimpleNamespace(kind="prismatic")))
    pace = world.pace("drawer", 0.0, 0.05)
    assert isinstance(pace, PolicyPace)
    assert pace(0.0, 0.0) == pytest.approx(0.075)  # the policy's speed: 0.75 of its 0.1 m/s
    assert pace(0.1, 0.06) is None  # past the target: stop, as the MPC's pace does
    (entry,) = world.paced
    assert entry["pacer"] == "policy" and entry["finished"] and entry["calls"] == 1


def test_a_deployed_policy_learns_from_its_last_move_before_its_next(monkeypatch):
    """On the job: the moves a policy paced are labelled in the refitted model and its weights
    refitted before its part's next move (the fit is a stubbed drawer model here)."""
    from types import SimpleNamespace

    from puzzlebot.agent.policy.distill import DeployedPolicies, DistillConfig, _mlp
    from puzzlebot.agent.policy.skill_policy import OBS_FIELDS, SkillPolicy
    from puzzlebot.agent.rehearsal import RehearsalConfig, Rehearser
    from puzzlebot.agent.solve import WorldModel
    from tests.agent.test_fitted_model import drawer
    from tests.agent.test_rehearsal import model_of, with_dynamics

    rehearser = Rehearser(model_of(with_dynamics(drawer(), 0.3, 0.2, 0.45)), RehearsalConfig(samples=4, threads=1))
    spec = {"part": "drawer_0", "pushing": True, "lever": rehearser.lever("drawer_0"), "max_speed": 0.096,
            "max_s": 3.0, "tolerance": 0.003, "rest_speed": 0.005, "observation": OBS_FIELDS,
            "network": {"kind": "mlp_tanh", "hidden": [8]}}
    first = SkillPolicy(_mlp(len(OBS_FIELDS), (8,)), spec)
    deployed = DeployedPolicies({"drawer_0": first}, learning=DistillConfig(epochs=20))
    sheet = SimpleNamespace(affordances={"drawer_0": SimpleNamespace(mode="push")})
    world = WorldModel(SimpleNamespace(io=SimpleNamespace(T_world_base=np.eye(4), sheet=sheet)), None, [],
                       SolveConfig(), deployed)
    monkeypatch.setattr(world, "refitted", lambda: rehearser)
    world.model = rehearser.fitted
    pace = world.pace("drawer_0", 0.0, 0.03)
    for k in range(6):  # the arm's ticks: the hand's travel so far
        pace(0.01 * k, 0.002 * k)
    assert deployed.updates == []  # nothing learned while the move is on
    world.pace("drawer_0", 0.012, 0.04)
    (update,) = deployed.updates
    assert update["part"] == "drawer_0" and update["moves"] == 1 and update["labels"] >= 3
    assert deployed.policies["drawer_0"] is not first  # the next move is paced by the refitted weights
