"""The diagnosis tools: rollouts from a dataset state start where the data were, and the lift report."""
import numpy as np
import pytest

from actor.envs import make_env
from study.lift import report
from study.ranking import restore, spearman


@pytest.mark.parametrize("env_id", ["Hopper-v5", "HalfCheetah-v5"])
def test_a_state_restored_from_its_observation_continues_as_the_original(env_id):
    a, b = make_env(env_id, seed=0), make_env(env_id, seed=1)
    obs, _ = a.reset(seed=0)
    b.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs, *_ = a.step(rng.uniform(-1, 1, a.action_space.shape).astype(np.float32))
    restore(b, obs)
    assert np.allclose(b.unwrapped._get_obs(), obs, atol=1e-6)
    act = rng.uniform(-1, 1, a.action_space.shape).astype(np.float32)
    oa, ra, *_ = a.step(act)
    ob, rb, *_ = b.step(act)
    assert np.allclose(oa, ob, atol=1e-5) and ra == pytest.approx(rb, abs=1e-5)


def test_spearman_by_hand():
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)


def test_lift_report_states_the_mean_lift_its_interval_and_the_worst_seed():
    def row(seed, before, after):
        return {"seed": seed, "policy": "implicit, N = 16",
                "pretrained": {"score_mean": before, "score_std": 1.0, "q_minus_return": -30.0},
                "final": {"score_mean": after, "score_std": 1.0, "q_minus_return": -10.0}}
    rows = [row(0, 30.0, 35.0), row(1, 40.0, 43.0), row(2, 33.0, 32.0)]
    text = report(rows, 20, "configs/finetune.py", [], "")
    assert "Lift: +2.3" in text and "worst seed -1.0" in text
    assert "| 2 | 33.0 ± 1.0 | 32.0 ± 1.0 | -1.0 | n/a | -30.0 → -10.0 |" in text
    assert "terminal state" not in text          # rows without the termination rate: no fall line
    for r, (b, a) in zip(rows, [(0.1, 0.0), (0.05, 0.05), (0.0, 0.15)]):
        r["pretrained"]["termination_rate"], r["final"]["termination_rate"] = b, a
    text = report(rows, 20, "configs/finetune.py", [], "")
    assert "3 of 60 after pretraining, 4 of 60 at the end (per seed: 2 → 0, 1 → 1, 0 → 3)" in text
    for r, (b, a) in zip(rows, [(50.0, 50.0), (52.0, 51.0), (54.0, 52.0)]):     # the same runs seen another way
        r["also"] = {"implicit": {"policy": "implicit, N = 16",
                                  "pretrained": {"score_mean": b, "termination_rate": 0.05},
                                  "final": {"score_mean": a, "termination_rate": 0.0}}}
    text = report(rows, 20, "configs/finetune.py", [], "")
    assert "| implicit, N = 16 | 52.0 | 51.0 | -1.0 [" in text and "| +0.0, -1.0, -2.0 | 3 → 0 of 60 |" in text


def test_lift_report_gives_success_rates_and_steps_to_the_threshold_on_goal_tasks():
    from study.lift import steps_to

    def row(seed, before, after, curve):
        return {"seed": seed, "policy": "implicit, N = 16", "success_curve": curve,
                "pretrained": {"score_mean": 10.0, "score_std": 1.0, "success_rate": before},
                "final": {"score_mean": 20.0, "score_std": 1.0, "success_rate": after}}
    rows = [row(0, 0.5, 0.9, [(0, 0.5), (2500, 0.7), (5000, 0.85)]), row(1, 0.6, 0.8, [(0, 0.6), (2500, 0.6)])]
    text = report(rows, 20, "configs/pointmaze.py", [], "", success_threshold=0.8)
    assert "Success rate: 55 % after pretraining → 85 % at the end; change +30.0" in text
    assert "| 0 | 50 % | 90 % | 50 % → 85 % | 5,000 |" in text
    assert "| 1 | 60 % | 80 % | 60 % → 60 % | not reached |" in text
    assert steps_to([(0, 0.2), (100, 0.9)], 0.9) == 100.0 and steps_to([], 0.5) is None
    # locomotion rows (no success rate) keep the report as it was
    assert "Success rate" not in report([{**rows[0], "pretrained": {"score_mean": 1.0, "score_std": 0.0},
                                          "final": {"score_mean": 2.0, "score_std": 0.0}}], 20, "c", [], "")


def test_report_goal_rows_give_the_lift_success_and_steps_to_the_threshold(tmp_path):
    import json

    from study.goal_rows import goal_rows_section

    def row(seed, before, after, s_before, s_after, curve):
        return {"seed": seed, "policy": "argmax, N = 16", "success_curve": curve,
                "pretrained": {"score_mean": before, "success_rate": s_before},
                "final": {"score_mean": after, "success_rate": s_after}}
    rows = [row(0, 10.0, 30.0, 0.5, 0.7, [(0, 0.5), (4000, 0.85)]),
            row(1, 20.0, 30.0, 0.6, 0.6, [(0, 0.6), (2000, 0.8), (9000, 0.9)]),
            row(2, 30.0, 30.0, 0.7, 0.8, [(0, 0.7)])]
    record = tmp_path / "lifts" / "lift_maze.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"rows": rows, "config": "configs/pointmaze_finetune.py", "extra": [],
                                  "dataset": "local/pointmaze/medium-v0", "episodes": 50}))
    docs = tmp_path / "docs"
    lines = goal_rows_section([str(record), str(tmp_path / "absent.json")], docs)
    line = next(x for x in lines if x.startswith("| local/pointmaze/medium-v0 |"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[2:5] == ["3", "50", "20.0 → 30.0"]
    assert cells[5].startswith("+10.0 [")                     # lifts +20, +10, 0
    assert cells[6] == "60 % → 70 %" and cells[7].startswith("+10.0 [")
    assert cells[8] == "3,000 (2 of 3 seeds)"                 # 2,000 and 4,000 reached; seed 2 never did
    assert cells[9] == "[lift_maze.md](../lifts/lift_maze.md)"
    assert any("absent.json` not found" in x for x in lines)
