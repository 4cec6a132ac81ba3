"""The benchmarks' episode runner resumes a stopped run from its checkpoint, and only from rows
played with the same settings."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from held_out import EpisodeCheckpoint, run_episodes  # noqa: E402


def _runner(played: list[str]):
    def play(task: str) -> dict:
        played.append(task)
        return {"task": task, "value": len(task)}
    return play


def test_a_resumed_run_replays_nothing_it_has(tmp_path):
    tasks = ["a", "bb", "ccc"]
    played: list[str] = []
    first = run_episodes(tasks, _runner(played), jobs=1, label=str,
                         checkpoint=EpisodeCheckpoint(tmp_path, {"budget": "10"}))
    assert played == tasks
    played.clear()
    again = run_episodes(tasks + ["dddd"], _runner(played), jobs=1, label=str,
                         checkpoint=EpisodeCheckpoint(tmp_path, {"budget": "10"}))
    assert played == ["dddd"]
    assert again[:3] == first and again[3] == {"task": "dddd", "value": 4}


def test_rows_of_other_settings_or_half_written_are_played_again(tmp_path):
    tasks = ["a", "bb"]
    run_episodes(tasks, _runner([]), jobs=1, label=str, checkpoint=EpisodeCheckpoint(tmp_path, {"budget": "10"}))
    played: list[str] = []
    run_episodes(tasks, _runner(played), jobs=1, label=str, checkpoint=EpisodeCheckpoint(tmp_path, {"budget": "20"}))
    assert played == tasks
    checkpoint = EpisodeCheckpoint(tmp_path, {"budget": "20"})
    checkpoint._path("bb").write_text('{"key": "bb", "fingerp')  # a crash mid-write, before the rename
    played.clear()
    run_episodes(tasks, _runner(played), jobs=1, label=str, checkpoint=checkpoint)
    assert played == ["bb"]


def test_labels_must_be_unique_to_key_the_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        run_episodes(["a", "a"], _runner([]), jobs=1, label=str, checkpoint=EpisodeCheckpoint(tmp_path, {}))


def test_failed_episodes_are_played_again_on_resume(tmp_path):
    played: list[str] = []

    def flaky(task: str) -> dict:
        played.append(task)
        return {"task": task, "error": "NotConnectedError: emulator link lost"} if task == "bb" else {"task": task}

    run_episodes(["a", "bb"], flaky, jobs=1, label=str, checkpoint=EpisodeCheckpoint(tmp_path, {}))
    played.clear()
    rows = run_episodes(["a", "bb"], _runner(played), jobs=1, label=str, checkpoint=EpisodeCheckpoint(tmp_path, {}))
    assert played == ["bb"] and rows[1] == {"task": "bb", "value": 2}
