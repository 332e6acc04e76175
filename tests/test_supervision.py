"""The supervisor's bookkeeping on hand-made logs: counts that can be checked by eye."""
import json

from launch.supervision import actor_transitions, last_learner_step, restored_figures
from learner.log_rows import complete_rows, set_aside


def write(path, rows, cut_last=False):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text + ('{"role": "actor", "actor_env' if cut_last else ""))


def test_actor_transitions_add_up_every_life_of_every_actor(tmp_path):
    # actor 0: a life to 40, killed, a new life to 25; actor 1: one life to 30 and a line cut by a crash
    write(tmp_path / "actor_0.jsonl", [{"actor_env_steps": n} for n in (0, 10, 40, 0, 5, 25)])
    write(tmp_path / "actor_1.jsonl", [{"actor_env_steps": n} for n in (0, 30)], cut_last=True)
    assert actor_transitions(tmp_path) == 40 + 25 + 30


def test_rows_past_a_restored_point_move_aside_and_the_rest_stay_in_order(tmp_path):
    path = tmp_path / "learner.jsonl"
    write(path, [{"learner_step": s} for s in (50, 100, 150, 200)], cut_last=True)
    assert last_learner_step(tmp_path) == 200
    moved = set_aside(path, lambda r: r["learner_step"] > 100)
    assert [r["learner_step"] for r in moved] == [150, 200]
    assert [r["learner_step"] for r in complete_rows(path)] == [50, 100]
    assert [r["learner_step"] for r in complete_rows(tmp_path / "lost" / "learner.jsonl")] == [150, 200]
    assert set_aside(path, lambda r: r["learner_step"] > 100) == []      # nothing more to move


def test_restored_figures_read_what_the_restarted_learner_said():
    hosted = ("replay server at localhost:1: 803 online transitions (restored), 803 inserted so far\n"
              "learner resumed at online step 1500\n")
    assert restored_figures(hosted) == (1500, 803)
    assert restored_figures("learner starts from /x/checkpoint.pt (30000 pretraining steps) on cpu\n") == (0, None)
    try:
        restored_figures("replay server at localhost:1: 0 online transitions (empty), 0 inserted so far\n")
    except ValueError:
        pass
    else:
        raise AssertionError("a learner that has not said where it resumed must not be read as step 0")


def test_a_killed_learners_exact_step_is_read_from_its_counter_not_its_last_log_row(tmp_path):
    import subprocess
    import sys

    from learner.online import STEP_COUNTER_NAME
    # another process writes steps 1..1234 and is SIGKILLed by itself: no log row after step 1000
    write(tmp_path / "learner.jsonl", [{"learner_step": 500}, {"learner_step": 1000}])
    code = ("import os, signal, sys; from pathlib import Path; from learner.online import StepCounter\n"
            f"c = StepCounter(Path({str(tmp_path / STEP_COUNTER_NAME)!r}))\n"
            "[c.write(s) for s in range(1, 1235)]\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert proc.returncode == -9
    assert last_learner_step(tmp_path) == 1234
