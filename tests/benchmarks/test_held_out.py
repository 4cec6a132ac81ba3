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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_pool_workers_end_when_the_benchmark_is_killed(tmp_path):
    """A benchmark killed mid-run must not leave its workers playing episodes on the cores."""
    import os
    import signal
    import subprocess
    import time

    script = tmp_path / "bench.py"
    script.write_text(
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2] / 'benchmarks')!r})\n"
        "from held_out import run_episodes\n"
        "def play(task):\n"
        f"    open({str(tmp_path)!r} + f'/worker{{task}}', 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n"
        "    return {}\n"
        "if __name__ == '__main__':\n"
        "    run_episodes(['a', 'b'], play, jobs=2, label=str)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = [tmp_path / "workera", tmp_path / "workerb"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(f.exists() and f.read_text() for f in files):
        time.sleep(0.1)
    workers = [int(f.read_text()) for f in files]
    proc.kill()  # no cleanup of its own: SIGKILL
    proc.wait()

    def alive(pid: int) -> bool:  # a zombie waiting for its new parent to reap it is dead
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    try:
        assert not any(alive(pid) for pid in workers)
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_resumed_run_says_how_many_episodes_an_earlier_run_played(tmp_path):
    from held_out import run_note

    tasks = ["a", "bb"]
    first = EpisodeCheckpoint(tmp_path, {"budget": "10"})
    run_episodes(tasks[:1], _runner([]), jobs=1, label=str, checkpoint=first)
    assert first.resumed == 0
    again = EpisodeCheckpoint(tmp_path, {"budget": "10"})
    run_episodes(tasks, _runner([]), jobs=1, label=str, checkpoint=again)
    assert again.resumed == 1
    note = run_note({"wall_s": 120.0, "resumed_episodes": again.resumed, "code": "abc1234"})
    assert "1 more were resumed" in note and "abc1234" in note
    assert run_note({"wall_s": 120.0, "resumed_episodes": 0}) == "2 min"
