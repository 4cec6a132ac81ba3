"""Self-distillation: the MPC (slow, the model in its head) taught to a small policy (fast)
on the policy's own states, DAgger-style (Ross et al., 2011).

Round 0 the teacher acts and labels its own states; from round 1 on the student acts and the
teacher labels the states the student visits, and the student is refitted on everything
labelled so far. The teacher sees the part's true state in the fitted model and plans on
the posterior (`mpc.OpeningMPC`); the student sees what a deployed policy sees, delayed and
noisy (`skill_env.SkillEnv`). The result is a `SkillPolicy` that needs no planning time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from mujoco import rollout

from puzzlebot.agent.mpc import MPCConfig, OpeningMPC, rollout_threads
from puzzlebot.agent.policy.skill_env import SkillEnv, SkillEnvConfig
from puzzlebot.agent.policy.skill_policy import OBS_FIELDS, SkillPolicy, VisitedMove
from puzzlebot.agent.rehearsal import Rehearser


@dataclass(frozen=True)
class DistillConfig:
    rounds: int = 4  # DAgger rounds (round 0: the teacher acts)
    episodes: int = 8  # per round
    query_every: int = 2  # ticks between the teacher's labels
    epochs: int = 300  # regression epochs per round, over all labels so far
    learning_rate: float = 3e-3
    hidden: tuple[int, ...] = (64, 64)
    teacher: MPCConfig = field(default_factory=lambda: MPCConfig(candidates=16, samples=4, horizon_s=0.6))
    env: SkillEnvConfig = field(default_factory=SkillEnvConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rounds", "episodes", "query_every", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"DistillConfig.{name}: {getattr(self, name)} must be >= 1")


@dataclass
class DistillReport:
    labels: int = 0
    teacher_s: float = 0.0  # compute spent planning labels
    train_s: float = 0.0  # compute spent fitting the student
    rounds: list[dict] = field(default_factory=list)  # per round: labels so far, the student's fit loss
    replayed: int = 0  # labels carried from earlier skills (`distil_mpc(previous=...)`)
    observations: np.ndarray | None = None  # every label's observation, replayed ones first
    actions: np.ndarray | None = None  # every label (an action in [-1, 1])


def distil_mpc(rehearser: Rehearser, part: str, pushing: bool, config: DistillConfig = DistillConfig(),
               previous: tuple[SkillPolicy, DistillReport] | None = None) -> tuple[SkillPolicy, DistillReport]:
    """A student policy for moving `part` to a target, distilled from the MPC (see the module).

    With `previous` (the student and report of an earlier part or puzzle), the student starts
    from its weights and every earlier label is replayed with the new ones in each fit, so what
    it learned on earlier parts is kept (learning across puzzles without forgetting)."""
    env = SkillEnv(rehearser, part, pushing, config.env)
    torch.manual_seed(config.seed)
    student = _mlp(len(OBS_FIELDS), config.hidden)
    old_obs: list[np.ndarray] = []
    old_act: list[float] = []
    if previous is not None:
        old_policy, old_report = previous
        try:
            student.load_state_dict(old_policy.module.state_dict())
        except RuntimeError as err:
            raise ValueError(f"distil_mpc(previous=...): the earlier student does not fit this config's "
                             f"network {config.hidden}: {err}") from err
        if old_report.observations is not None:
            old_obs, old_act = list(old_report.observations), list(old_report.actions)
    spec = {"part": part, "pushing": pushing, "lever": env.lever, "max_speed": config.env.max_speed,
            "max_s": config.env.max_s, "control_s": config.env.control_s, "tolerance": config.env.tolerance,
            "rest_speed": config.env.rest_speed, "observation": OBS_FIELDS, "distilled_from": "mpc",
            "network": {"kind": "mlp_tanh", "hidden": list(config.hidden)}}
    policy = SkillPolicy(student, spec)
    obs_data: list[np.ndarray] = list(old_obs)
    act_data: list[float] = list(old_act)  # in [-1, 1]
    report = DistillReport(replayed=len(old_act))
    with rollout.Rollout(nthread=rollout_threads()) as pool:
        for round_ in range(config.rounds):
            for episode in range(config.episodes):
                obs, _ = env.reset(seed=config.seed + 1000 * round_ + episode)
                teacher = OpeningMPC(rehearser, part, env.target, pushing, config.teacher, pool=pool)
                label = 0.0
                while True:
                    if env.ticks % config.query_every == 0:
                        tic = time.perf_counter()
                        q, qd = env._state()
                        label = teacher.plan(q, qd) if q < env.target else 0.0
                        report.teacher_s += time.perf_counter() - tic
                        obs_data.append(obs)
                        act_data.append(label / config.env.max_speed * 2.0 - 1.0)
                    # round 0: the teacher acts, unless the student comes with earlier skills
                    speed = label if round_ == 0 and previous is None else policy.speed(obs)
                    obs, _, terminated, truncated, _ = env.step([2.0 * speed / config.env.max_speed - 1.0])
                    if terminated or truncated:
                        break
            tic = time.perf_counter()
            loss = _fit(student, np.array(obs_data), np.array(act_data), config)
            report.train_s += time.perf_counter() - tic
            report.rounds.append({"labels": len(act_data), "loss": loss})
    report.labels = len(act_data)
    report.observations, report.actions = np.array(obs_data), np.array(act_data)
    return policy, report


def learn_from_moves(policy: SkillPolicy, report: DistillReport, rehearser: Rehearser,
                     moves: Sequence[VisitedMove], config: DistillConfig = DistillConfig()
                     ) -> tuple[SkillPolicy, DistillReport]:
    """On-the-job DAgger: the states the policy visited on the arm, labelled by the teacher
    planning from them in the refitted model, join every label so far (the replay that keeps
    earlier parts and puzzles), and a copy of the student is refitted on all of them.

    `report` holds the labels so far (`distil_mpc`'s, or an earlier call's). The policy needs a
    network it can be rebuilt from (`spec["network"]`, written by `distil_mpc`)."""
    network = policy.spec.get("network")
    if not network or network.get("kind") != "mlp_tanh":
        raise ValueError(f"policy for {policy.spec.get('part')!r} has no trainable network description "
                         f"(spec['network'] = {network!r}): it can act, not learn on the job")
    student = _mlp(len(OBS_FIELDS), tuple(network["hidden"]))
    student.load_state_dict(policy.module.state_dict())
    obs_data = list(report.observations) if report.observations is not None else []
    act_data = list(report.actions) if report.actions is not None else []
    max_speed = float(policy.spec["max_speed"])
    new = DistillReport(replayed=len(act_data), rounds=list(report.rounds))
    with rollout.Rollout(nthread=rollout_threads()) as pool:
        for move in moves:
            teacher = OpeningMPC(rehearser, move.part, move.target, move.pushing, config.teacher, pool=pool)
            for k in range(0, len(move.openings), config.query_every):
                tic = time.perf_counter()
                q, qd = float(move.openings[k]), float(move.velocities[k])
                label = teacher.plan(q, qd) if q < move.target else 0.0
                new.teacher_s += time.perf_counter() - tic
                obs_data.append(np.asarray(move.observations[k], dtype=np.float32))
                act_data.append(label / max_speed * 2.0 - 1.0)
    if len(act_data) == new.replayed:
        raise ValueError("learn_from_moves: the moves hold no state to learn from")
    tic = time.perf_counter()
    loss = _fit(student, np.array(obs_data), np.array(act_data), config)
    new.train_s = time.perf_counter() - tic
    new.rounds.append({"labels": len(act_data), "loss": loss, "on_the_job": True})
    new.labels = len(act_data)
    new.observations, new.actions = np.array(obs_data), np.array(act_data)
    return SkillPolicy(student, dict(policy.spec)), new


LABELS_NAME = "labels.npz"


@dataclass
class DeployedPolicies:
    """Skill policies deployed in the solve loop, by part, and how they learn on the job.

    With `learning` set, each policy's weights are refitted (`learn_from_moves`) on the moves it
    paced, in the model refitted to every interaction so far, before its part's next move and
    at the end of the solve; `labels` are every label so far per part (the replay)."""

    policies: dict[str, SkillPolicy]
    learning: DistillConfig | None = None  # None: the weights stay as loaded
    labels: dict[str, DistillReport] = field(default_factory=dict)
    updates: list[dict] = field(default_factory=list)  # per update: part, moves, labels, compute

    def __post_init__(self) -> None:
        if self.learning is None:
            return
        for part, policy in self.policies.items():
            network = policy.spec.get("network") or {}
            if network.get("kind") != "mlp_tanh":
                raise ValueError(f"DeployedPolicies.learning: the policy for {part!r} has no trainable network "
                                 f"description (spec['network'] = {policy.spec.get('network')!r}; distilled "
                                 "policies have one): it can be deployed, not learn on the job")

    def learn(self, rehearser: Rehearser, moves: Sequence[VisitedMove]) -> None:
        """Refit each moved part's policy on its moves (nothing if `learning` is None)."""
        if self.learning is None:
            return
        for part in sorted({m.part for m in moves}):
            own = [m for m in moves if m.part == part]
            policy, report = learn_from_moves(self.policies[part], self.labels.get(part, DistillReport()),
                                              rehearser, own, self.learning)
            self.policies[part], self.labels[part] = policy, report
            self.updates.append({"part": part, "moves": len(own), "labels": report.labels,
                                 "replayed": report.replayed, "teacher_s": report.teacher_s,
                                 "train_s": report.train_s})

    def save(self, folder: Path) -> None:
        """Each policy in `folder/<part>` (`SkillPolicy.save`), with its labels for later replay."""
        for part, policy in self.policies.items():
            policy.save(Path(folder) / part)
            report = self.labels.get(part)
            if report is not None and report.observations is not None:
                path = Path(folder) / part / LABELS_NAME
                tmp = path.with_name("tmp_" + LABELS_NAME)
                np.savez(tmp, observations=report.observations, actions=report.actions)
                tmp.replace(path)

    @classmethod
    def load(cls, folders: Sequence[Path], learning: DistillConfig | None = None) -> DeployedPolicies:
        """Policies exported by `SkillPolicy.save` (one per part), with their labels if saved."""
        deployed = cls({})
        for folder in map(Path, folders):
            policy = SkillPolicy.load(folder)
            part = str(policy.spec["part"])
            if part in deployed.policies:
                raise ValueError(f"{folder}: a second policy for part {part!r}")
            deployed.policies[part] = policy
            if (folder / LABELS_NAME).exists():
                saved = np.load(folder / LABELS_NAME)
                deployed.labels[part] = DistillReport(labels=len(saved["actions"]), observations=saved["observations"],
                                                      actions=saved["actions"])
        return cls(deployed.policies, learning, deployed.labels)  # checked for learning


def _mlp(inputs: int, hidden: tuple[int, ...]) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    width = inputs
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.Tanh()]
        width = h
    layers += [torch.nn.Linear(width, 1), torch.nn.Tanh()]  # an action in [-1, 1]
    return torch.nn.Sequential(*layers)


def _fit(student: torch.nn.Module, obs: np.ndarray, actions: np.ndarray, config: DistillConfig) -> float:
    """Full-batch regression of the student's action on the teacher's labels; the final loss."""
    x = torch.as_tensor(obs, dtype=torch.float32)
    y = torch.as_tensor(actions, dtype=torch.float32).reshape(-1, 1)
    optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    student.train()
    loss = torch.tensor(0.0)
    for _ in range(config.epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(student(x), y)
        loss.backward()
        optimizer.step()
    student.eval()
    return float(loss.detach())
