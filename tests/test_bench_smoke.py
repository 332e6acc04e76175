"""Smoke test of bench.all's row functions at tiny sizes: they run and return finite positive figures.

No timing is asserted (the machine is shared); the GEMM enumeration of bench.matmul_bound is
checked against what torch.profiler sees in a real step, and the scaling bench's log
arithmetic on synthetic learner rows. The whole-system scaling runs are too slow for a smoke test.
"""
from __future__ import annotations

import math

import pytest
import torch

from configs import quickstart


def tiny_config(algorithm: str = "aligniql_hard"):
    cfg = quickstart.get_config()
    cfg.algorithm = algorithm
    cfg.critic_hidden = (32, 32)
    cfg.multipliers.hidden = (16, 16)
    cfg.critic_batch_size, cfg.actor_batch_size = 32, 48
    cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks = 16, 32, 1
    return cfg


def check_rows(rows, allow_zero_units=("relative", "ratio", "fraction", "fraction of states")):
    assert rows
    for r in rows:
        assert set(r) == {"bench", "config", "measure", "value", "unit", "note"}
        assert math.isfinite(r["value"]), r
        if r["unit"] in allow_zero_units:
            assert r["value"] >= 0, r
        else:
            assert r["value"] > 0, r


def test_learner_rows_and_gemm_enumeration():
    from bench import learner_throughput as lt
    from bench.matmul_bound import profile_gemms, step_gemms

    for algorithm in ("aligniql_hard", "idql"):
        cfg = tiny_config(algorithm)
        rows = lt.rows(configs=[("tiny", cfg)], devices=["cpu"], seconds=0.02, reps=1, obs_dim=5, act_dim=2)
        check_rows(rows)
        measures = {r["measure"] for r in rows}
        assert "critic+value, default Adam" in measures and "whole step, fused Adam" in measures
        assert ("multipliers, fused Adam" in measures) == (algorithm == "aligniql_hard")
        # the enumerated GEMMs are exactly the ones a real step runs
        learner, batch = lt.build(cfg, "cpu", 5, 2)
        fns = lt.update_fns(learner, cfg, batch)
        for what, gemms in step_gemms(cfg, 5, 2).items():
            calls, flops = profile_gemms(fns[what])
            assert calls == len(gemms), what
            assert flops == sum(g.flops for g in gemms), what


def test_fused_optimizers_keep_the_maths():
    from bench import learner_throughput as lt

    assert lt.fused_numerics(tiny_config(), "cpu", 5, 2, steps=3) < 1e-5


def test_actor_rows():
    from bench import actor_throughput as at

    check_rows(at.throughput_rows(seconds=0.02, ns=(4,), envs=(2,), bf16=True))
    check_rows(at.bf16_check_rows(ns=(4,), num_states=16, timing_batch=2, seconds=0.02))


def test_replay_rows():
    from bench.all import replay_rows

    check_rows(replay_rows(inserts=300, writers=1, batch_size=32, sample_seconds=0.2))


def test_feed_rows():
    from bench import learner_feed
    from configs.finetune import online_defaults

    cfg = tiny_config("aligniql")
    cfg.online = online_defaults()
    cfg.online.online_batch_size = cfg.online.offline_batch_size = 16
    got = learner_feed.rows(seconds=0.2, fill=500, cfg=cfg, device="cpu")
    check_rows(got)
    assert {r["config"].split(":")[0] for r in got} == {"before", "remote", "hosted"}
    assert all(r["value"] < 1 for r in got if r["unit"] == "fraction")


def test_scaling_steady_state_from_learner_log():
    from bench.scaling import steady_state

    rows = [{"role": "learner", "time": 100.0 + 2 * i, "learner_step": 50 * (i + 1), "env_steps": 1000 + 40 * i,
             "batch_wait_fraction": 0.25} for i in range(6)]
    rows.append({"role": "learner", "time": 200.0, "learner_step": 300, "event": "stopped"})
    s = steady_state(rows)
    assert s["env_steps_per_s"] == pytest.approx(20.0)
    assert s["updates_per_s"] == pytest.approx(25.0)
    assert s["wait_fraction"] == pytest.approx(0.25)
    assert steady_state(rows[:1]) == {}


def test_bench_all_rejects_unknown_benchmark(capsys):
    from bench import all as bench_all

    with pytest.raises(SystemExit):
        bench_all.main(["--only=nonsense"])
    assert "unknown benchmark" in capsys.readouterr().err


def test_threads():
    # the benches are imported in this process; none may change the thread count at import
    assert torch.get_num_threads() == 1
