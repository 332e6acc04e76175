"""Online actors and the online evaluator against a real Reverb server and real Hopper-v5.

Networks are tiny (their values do not matter, only that what the actor
wrote, acted with and logged is exactly right); every server is stopped and
every thread joined in finalizers, and every wait is bounded.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("reverb")

from actor.actor_loop import VectorActor, run_actor  # noqa: E402
from errors import ConfigError  # noqa: E402
from networks.factory import natural_weighting  # noqa: E402
from configs import finetune  # noqa: E402
from networks.factory import acting_params, build_acting_modules, load_acting_params, make_policy  # noqa: E402
from replay import TRANSITION_FIELDS  # noqa: E402
from replay.sampler import OnlineSampler  # noqa: E402
from replay.server import ReplaySpec, start_server  # noqa: E402
from replay.weights import WeightPublisher  # noqa: E402
from replay.writer import TransitionWriter  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS, ACT = 11, 3
UNLIMITED = 1e9
KEY = bytes(range(32))   # the run's secret (replay/auth.py) in these tests
STRANGER_KEY = bytes(range(1, 33))
META = {"obs_dim": OBS, "act_dim": ACT, "env_id": "Hopper-v5", "env_spec_json": None,
        "reward_transform": {"scale": 2.0, "shift": 0.5}, "ref_min_score": -20.0, "ref_max_score": 3234.3}


def tiny_config():
    cfg = finetune.get_config()
    cfg.critic_hidden = (32, 32)
    cfg.diffusion.width = 16
    cfg.diffusion.inner = 32
    cfg.diffusion.num_blocks = 1
    cfg.diffusion.time_dim = 8
    cfg.online.envs_per_actor = 3
    cfg.online.num_candidates = 4
    cfg.online.weight_sync_interval = 6
    cfg.online.eval_interval = 30
    cfg.online.eval_episodes = 2
    return cfg


def params_for(cfg, key):
    with torch.random.fork_rng():
        torch.manual_seed(key)
        return acting_params(build_acting_modules(cfg, OBS, ACT), cfg.algorithm)


def policy_for(cfg, params):
    modules = build_acting_modules(cfg, OBS, ACT)
    load_acting_params(modules, params)
    return make_policy(cfg, modules, natural_weighting(cfg, cfg.online.exploration_weighting),
                       cfg.online.exploration, cfg.online.num_candidates)


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_until(pred, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def hopper_healthy(obs):
    """Hopper-v5's is_healthy from its observation (qpos[1:], qvel), default thresholds."""
    z, angle = obs[0], obs[1]
    return bool(np.all(np.abs(obs[1:]) < 100.0) and z > 0.7 and abs(angle) < 0.2)


@pytest.fixture
def server(request):
    servers = []

    def make(**kw):
        spec = ReplaySpec(OBS, ACT, **{"max_size": 10_000, "samples_per_insert": 1, "min_size_to_sample": 1,
                                       "error_buffer": UNLIMITED, **kw})
        srv, address = start_server(spec)
        servers.append(srv)
        return address

    request.addfinalizer(lambda: [s.stop() for s in servers])
    return make


@pytest.fixture
def threads(request):
    """Threads started through this fixture are stopped (event) and joined after the test."""
    started = []

    def start(target, **kwargs):
        stop = threading.Event()
        result = {}

        def body():
            try:
                result["value"] = target(stop_event=stop, **kwargs)
            except BaseException as e:  # surfaced by the test through result
                result["error"] = e

        t = threading.Thread(target=body, daemon=True)
        t.start()
        started.append((t, stop))
        return t, stop, result

    def stop_all():
        for t, stop in started:
            stop.set()
        for t, _ in started:
            t.join(timeout=30)

    request.addfinalizer(stop_all)
    return start


def rows_of(batch):
    n = len(batch["reward"])
    flat = np.concatenate([np.asarray(batch[k], np.float32).reshape(n, -1) for k in TRANSITION_FIELDS], 1)
    return [r.tobytes() for r in flat]


def test_each_algorithm_acts_with_its_papers_weighting():
    cfg = tiny_config()
    expected = {"aligniql": "align", "aligniql_hard": "align_hard", "idql": "expectile", "iql": None}
    for algorithm in ("aligniql", "aligniql_hard", "idql", "iql"):
        for loss in ("expectile", "quantile", "exponential"):
            cfg.algorithm, cfg.value_loss = algorithm, loss
            assert natural_weighting(cfg) == expected[algorithm]   # V's loss no longer picks IDQL's weights
    cfg.algorithm, cfg.weighting = "idql", "quantile"
    assert natural_weighting(cfg) == "quantile"                     # config.weighting, then the override
    assert natural_weighting(cfg, "greedy") == "greedy"


def test_bf16_mu_option_samples_in_bf16_and_keeps_the_choice_and_evaluation_in_fp32():
    cfg = tiny_config()
    params = params_for(cfg, 3)
    modules = build_acting_modules(cfg, OBS, ACT)
    load_acting_params(modules, params)
    weighting = natural_weighting(cfg)
    fp32 = make_policy(cfg, modules, weighting, "argmax", 8)
    bf16 = make_policy(cfg, modules, weighting, "argmax", 8, mu_dtype="bfloat16")
    obs = torch.randn(64, OBS)
    g32, g16 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    c32 = fp32.behavior.sample(obs, 8, g32)
    c16 = bf16.behavior.sample(obs, 8, g16)
    assert c16.dtype == torch.float32 and c16.shape == c32.shape
    diff = (c16 - c32).abs().max().item()
    assert 0 < diff < 0.1, diff            # bf16 rounding shows, but the same noise gives nearly the same actions
    a16, stats = bf16.act(obs, torch.Generator().manual_seed(1))
    assert a16.dtype == torch.float32 and torch.isfinite(stats["q"]).all()
    assert bf16.critic is fp32.critic and not isinstance(fp32.behavior, type(bf16.behavior))
    with pytest.raises(ConfigError, match="float32' or 'bfloat16"):
        make_policy(cfg, modules, weighting, "argmax", 8, mu_dtype="float16")
    # the actor takes the option from its config; a real Hopper step with bf16 candidates
    cfg.online.actor_mu_dtype = "bfloat16"
    actor = VectorActor(cfg, META, seed=0)
    try:
        actor.load(1, params)
        assert type(actor.policy.behavior).__name__ == "AutocastSampler"
        actor.step()
    finally:
        actor.close()


def test_actor_writes_exact_transitions(server, tmp_path):
    cfg = tiny_config()
    address = server()
    WeightPublisher(address, key=KEY).publish(params_for(cfg, 1), version=1)
    steps = []
    max_steps = 200          # not a multiple of envs_per_actor: the last batch is cut
    summary = run_actor(cfg, META, address, actor_id=1, seed=3, run_dir=tmp_path, max_env_steps=max_steps,
                        on_step=steps.append, connect_timeout_s=10, key=KEY)
    assert summary["env_steps"] == max_steps
    written = {k: np.concatenate([s[k] for s in steps]) for k in steps[0] if k not in
               ("weights_version", "generator_state", "num_envs")}
    assert len(written["reward"]) == max_steps
    assert written["action"].dtype == np.float32 and np.all(np.abs(written["action"]) <= 1.0)

    # What the learner samples is exactly what the actor wrote, row for row.
    sampler = OnlineSampler(address, batch_size=32, rate_limiter_timeout_ms=5000, key=KEY)
    expected = set(rows_of(written))
    assert len(expected) == max_steps
    seen = set()
    for _ in range(400):
        seen |= set(rows_of(next(sampler)))
        if len(seen) >= max_steps:
            break
    assert seen == expected

    # Discount 0 exactly at terminations; truncations (none this short) keep 1.
    assert written["terminated"].any(), "no Hopper episode terminated; lengthen the run"
    np.testing.assert_array_equal(written["discount"], np.where(written["terminated"], 0.0, 1.0))
    np.testing.assert_array_equal(written["reward"], np.float32(2.0) * written["raw_reward"] + np.float32(0.5))
    # s' is the true next state: unhealthy exactly where Hopper terminated (never the reset state) ...
    for nxt, term in zip(written["next_observation"], written["terminated"]):
        assert hopper_healthy(nxt) == (not term)
    # ... and chains into the next observation of the same environment unless the episode ended.
    for a, b in zip(steps[:-1], steps[1:]):
        for i in range(len(b["reward"])):
            done = a["terminated"][i] or a["truncated"][i]
            assert np.array_equal(a["next_observation"][i], b["observation"][i]) == (not done)

    rows = read_jsonl(tmp_path / "logs" / "actor_1.jsonl")
    episodes = [r for r in rows if "episode_return" in r]
    assert len(episodes) == int((written["terminated"] | written["truncated"]).sum())
    for r in episodes:
        assert {"role", "actor_id", "time", "actor_env_steps", "episode_return", "episode_length",
                "weights_version"} <= set(r)
        assert r["role"] == "actor" and r["actor_id"] == 1 and r["weights_version"] == 1
    # Episode returns are raw rewards: rebuild environment 0's first episode from the transitions.
    env0_raw = np.concatenate([s["raw_reward"][:1] for s in steps])
    env0_done = np.concatenate([(s["terminated"] | s["truncated"])[:1] for s in steps])
    end = int(np.flatnonzero(env0_done)[0])
    assert any(r["episode_length"] == end + 1 and
               r["episode_return"] == pytest.approx(float(env0_raw[:end + 1].astype(np.float64).sum()), abs=1e-3)
               for r in episodes)
    assert any("actor_steps_per_second" in r for r in rows)


def test_actor_switches_to_new_weights(server, threads, tmp_path):
    cfg = tiny_config()
    address = server()
    publisher = WeightPublisher(address, key=KEY)
    params_a, params_b = params_for(cfg, 1), params_for(cfg, 2)
    publisher.publish(params_a, version=1)
    steps = []
    _, stop, result = threads(run_actor, cfg=cfg, meta=META, replay_address=address, actor_id=0, seed=5, key=KEY,
                              run_dir=tmp_path, on_step=steps.append, connect_timeout_s=10)
    wait_until(lambda: len(steps) >= 5 or "error" in result, 30, "the actor's first steps")
    publisher.publish(params_b, version=2)
    wait_until(lambda: (steps and steps[-1]["weights_version"] == 2) or "error" in result, 30,
               "the actor to pick up version 2")
    stop.set()
    wait_until(lambda: "value" in result or "error" in result, 30, "the actor to stop")
    assert "error" not in result, result.get("error")
    assert result["value"]["weights_version"] == 2

    versions = [s["weights_version"] for s in steps]
    assert versions[0] == 1 and versions[-1] == 2 and versions == sorted(versions)
    # The actor acted with exactly the published networks: replaying its generator
    # state through a policy rebuilt from the same params gives its actions, bit for bit.
    policy_a, policy_b = policy_for(cfg, params_a), policy_for(cfg, params_b)

    def replay(policy, step):
        g = torch.Generator()
        g.set_state(step["generator_state"])
        return policy.act(torch.as_tensor(step["observation"]), g)[0].numpy()

    first_v2 = steps[versions.index(2)]
    np.testing.assert_array_equal(replay(policy_b, first_v2), first_v2["action"])
    assert not np.array_equal(replay(policy_a, first_v2), first_v2["action"])
    np.testing.assert_array_equal(replay(policy_a, steps[0]), steps[0]["action"])

    rows = read_jsonl(tmp_path / "logs" / "actor_0.jsonl")
    assert [r["weights_version"] for r in rows if r.get("event") == "weights"] == [1, 2]
    assert rows[-1].get("event") == "stopped"


def test_actor_stops_while_rate_limited(server, threads, tmp_path):
    """A learner that no longer samples must not keep actors from shutting down."""
    cfg = tiny_config()
    address = server(samples_per_insert=1, min_size_to_sample=1, error_buffer=2)
    WeightPublisher(address, key=KEY).publish(params_for(cfg, 1), version=1)
    steps = []
    _, stop, result = threads(run_actor, cfg=cfg, meta=META, replay_address=address, actor_id=0, seed=0, key=KEY,
                              run_dir=tmp_path, on_step=steps.append, connect_timeout_s=10)
    # The limiter admits about error_buffer items without samples; the writer's periodic
    # flush then holds the actor.
    deadline = time.monotonic() + 30
    n, since = -1, time.monotonic()
    while time.monotonic() - since < 2.0:
        assert time.monotonic() < deadline and "error" not in result, "the actor was never held"
        if len(steps) != n:
            n, since = len(steps), time.monotonic()
        time.sleep(0.05)
    assert n > 0
    t0 = time.monotonic()
    stop.set()
    wait_until(lambda: "value" in result or "error" in result, 10, "a blocked actor to stop")
    assert "error" not in result, result.get("error")
    assert time.monotonic() - t0 < 5.0


@pytest.mark.parametrize("total_env_steps", [10_000, 40])
def test_evaluator_rows(server, threads, tmp_path, total_env_steps):
    """Start-up, interval and final rows; a run that has reached its length gets no interval evaluation
    at its end, only the final one of its last weights (one evaluation, not two in a row)."""
    from launch.evaluator import run_evaluator

    cfg = tiny_config()
    cfg.online.total_env_steps = total_env_steps
    ends_here = total_env_steps <= 40
    address = server()
    publisher = WeightPublisher(address, key=KEY)
    publisher.publish(params_for(cfg, 1), version=1)
    path = tmp_path / "logs" / "evaluator.jsonl"
    _, stop, result = threads(run_evaluator, cfg=cfg, meta=META, replay_address=address, seed=7, key=KEY,
                              run_dir=tmp_path, connect_timeout_s=10, poll_interval_s=0.1)
    wait_until(lambda: len(read_jsonl(path)) >= 1 or "error" in result, 30, "the startup evaluation")
    startup = read_jsonl(path)[0]
    assert startup["env_steps"] == 0 and startup["weights_version"] == 1 and startup["trigger"] == "startup"

    # 40 environment steps from some actor: past eval_interval (30), so one more evaluation.
    with TransitionWriter(address, key=KEY) as w:
        rng = np.random.default_rng(0)
        w.add_batch(rng.standard_normal((40, OBS)), rng.uniform(-1, 1, (40, ACT)), rng.standard_normal(40),
                    rng.standard_normal((40, OBS)), np.ones(40))
    if ends_here:
        time.sleep(1.0)      # ten polls: time enough for an interval evaluation it must not make
        assert len(read_jsonl(path)) == 1
    else:
        wait_until(lambda: len(read_jsonl(path)) >= 2 or "error" in result, 30, "the interval evaluation")
    publisher.publish(params_for(cfg, 2), version=2)
    stop.set()
    wait_until(lambda: "value" in result or "error" in result, 30, "the evaluator to stop")
    assert "error" not in result, result.get("error")

    rows = read_jsonl(path)
    if ends_here:
        assert [(r["trigger"], r["weights_version"]) for r in rows] == [("startup", 1), ("final", 2)]
        assert rows[1]["env_steps"] == 40
    else:
        assert [(r["trigger"], r["weights_version"]) for r in rows] == [("startup", 1), ("interval", 1),
                                                                        ("final", 2)]
        # The interval row may have read the table while the 40 inserts were still landing.
        assert 30 <= rows[1]["env_steps"] <= 40 and rows[2]["env_steps"] == 40
    for r in rows:
        assert {"role", "time", "env_steps", "weights_version", "return_mean", "return_std", "score_mean",
                "score_std", "alignment_gap"} <= set(r)
        assert r["role"] == "evaluator"
        expect = 100.0 * (r["return_mean"] - META["ref_min_score"]) / (META["ref_max_score"] - META["ref_min_score"])
        assert r["score_mean"] == pytest.approx(expect, rel=1e-6, abs=1e-6)
    if not ends_here:   # same seeds and weights: the same score, so versions are compared on the same episodes
        assert rows[0]["return_mean"] == rows[1]["return_mean"]


def test_actor_and_evaluator_take_only_the_learners_weights(server, threads, tmp_path):
    """The issue's live attack: a stranger on the port publishes all-zero weights as version 10**12."""
    from launch.evaluator import run_evaluator

    cfg = tiny_config()
    address = server()
    learner = WeightPublisher(address, key=KEY)
    learner.publish(params_for(cfg, 1), version=1)
    steps, eval_path = [], tmp_path / "logs" / "evaluator.jsonl"
    _, stop_actor, actor = threads(run_actor, cfg=cfg, meta=META, replay_address=address, actor_id=0, seed=5,
                                   key=KEY, run_dir=tmp_path, on_step=steps.append, connect_timeout_s=10,
                                   log=lambda m: None)
    _, stop_eval, evaluator = threads(run_evaluator, cfg=cfg, meta=META, replay_address=address, seed=7, key=KEY,
                                      run_dir=tmp_path, connect_timeout_s=10, poll_interval_s=0.1,
                                      log=lambda m: None)
    failed = lambda: "error" in actor or "error" in evaluator   # noqa: E731
    wait_until(lambda: (len(steps) >= 5 and read_jsonl(eval_path)) or failed(), 60, "actor and evaluator to start")

    zeros = {k: np.zeros_like(v) for k, v in params_for(cfg, 1).items()}
    WeightPublisher(address, key=STRANGER_KEY).publish(zeros, version=10**12)
    n_steps, n_evals = len(steps), len(read_jsonl(eval_path))
    # the actor polls every weight_sync_interval (6) environment steps; each evaluation polls first
    wait_until(lambda: (len(steps) >= n_steps + 20 and len(read_jsonl(eval_path)) >= n_evals + 2) or failed(),
               60, "actor and evaluator to poll the forged weights")
    assert not failed(), actor.get("error") or evaluator.get("error")
    assert {s["weights_version"] for s in steps} == {1}
    evals = read_jsonl(eval_path)
    assert {r["weights_version"] for r in evals} == {1} and evals[-1]["weights_rejected"] >= 1

    learner.publish(params_for(cfg, 2), version=2)      # the learner's next publication is still taken
    wait_until(lambda: steps[-1]["weights_version"] == 2 or failed(), 30, "the actor to pick up version 2")
    stop_actor.set()
    stop_eval.set()
    wait_until(lambda: all("value" in r or "error" in r for r in (actor, evaluator)), 60,
               "actor and evaluator to stop")
    assert not failed(), actor.get("error") or evaluator.get("error")
    assert actor["value"]["weights_version"] == 2
    assert [s["weights_version"] for s in steps] == sorted(s["weights_version"] for s in steps)
    assert read_jsonl(tmp_path / "logs" / "actor_0.jsonl")[-1]["weights_rejected"] >= 1
    evals = read_jsonl(eval_path)        # version 2 scored at the next interval or, on stop, finally
    assert evals[-1]["weights_version"] == 2 and {r["weights_version"] for r in evals} == {1, 2}


def _write_run_files(tmp_path, cfg):
    (tmp_path / "config.json").write_text(cfg.to_json())
    (tmp_path / "dataset_meta.json").write_text(json.dumps(META))
    fd = os.open(tmp_path / "run_key", os.O_WRONLY | os.O_CREAT, 0o600)   # as launch.finetune writes it
    os.write(fd, KEY.hex().encode())
    os.close(fd)
    return str(tmp_path / "config.json")


@pytest.mark.parametrize("program", ["launch.actor", "launch.evaluator"])
def test_role_program_unreachable_server(tmp_path, program):
    """A role that cannot reach the replay says so and exits 2. Before that it has lowered its own CPU
    priority as configured (online.actor_nice / evaluator_nice, launch/priority.py), whichever launcher
    started it."""
    import portpicker

    cfg = tiny_config()
    cfg.online.actor_nice, cfg.online.evaluator_nice = 3, 7
    config_json = _write_run_files(tmp_path, cfg)
    proc = subprocess.run(
        [sys.executable, "-m", program, f"--config_json={config_json}",
         f"--replay_address=localhost:{portpicker.pick_unused_port()}", "--connect_timeout_s=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Cannot reach the replay server" in proc.stderr
    assert "Traceback" not in proc.stderr
    want = 3 if program == "launch.actor" else 7
    assert f"CPU niceness {max(want, os.nice(0))}" in proc.stdout, proc.stdout


def test_actor_program_stops_on_sigterm(server, tmp_path):
    cfg = tiny_config()
    address = server()
    WeightPublisher(address, key=KEY).publish(params_for(cfg, 1), version=1)
    config_json = _write_run_files(tmp_path, cfg)
    proc = subprocess.Popen(
        [sys.executable, "-m", "launch.actor", f"--config_json={config_json}", f"--replay_address={address}",
         "--actor_id=2", "--seed=0", f"--run_dir={tmp_path}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = tmp_path / "logs" / "actor_2.jsonl"
        wait_until(lambda: any(r.get("event") == "weights" for r in read_jsonl(log)) or proc.poll() is not None,
                   60, "the actor program to start acting")
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    rows = read_jsonl(log)
    assert rows[-1].get("event") == "stopped" and rows[-1]["actor_env_steps"] > 0
