"""Does the critic rank μ's candidates by what they are really worth? Measured with rollouts.

    python -m study.ranking --checkpoint=<run>/checkpoint.pt --out=ranking.json [--states=32 --candidates=8]

Value-guided extraction (argmax over N candidates from μ, or weights on them) can only beat
behaviour cloning if, at a state, the critic's Q orders the candidates as their true values do.
This measures that order directly. At `--states` dataset states (restored in the simulator from the
observation: locomotion observations are the joint positions, less the x position, and velocities),
it draws `--candidates` actions from μ, takes each once and then follows μ itself (one sample per
state, i.e. the behaviour-cloning policy) for `--horizon` steps, `--repeats` times, and sums the
discounted rewards in the learner's reward scale: a Monte-Carlo estimate of Q^μ(s, a_i). Q^μ is not
the critic's target (IQL's expectile critic sits between Q^μ and Q*), but a candidate that is truly
better than its siblings under μ is the one an extraction should prefer, and the one-step effect of
an action dominates the difference between candidates.

Reported over states: the Spearman rank correlation between the critic's Q and the rollout value
across candidates; the true value of the critic's argmax candidate relative to the average candidate
("gain of argmax", negative: choosing by the critic is worse than choosing at random); the same for
an oracle that knew the rollout values ("room": what a perfect ranking could gain); and the standard
error of the rollout estimates, so that differences below it are not read as signal.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from absl import flags

from launch import cli
from study.paths import repo_relative


def restore(env, obs: np.ndarray) -> None:
    """Put a gymnasium MuJoCo locomotion env in the state an observation describes (x position 0)."""
    u = env.unwrapped
    nq = u.model.nq
    skip = 1 if getattr(u, "_exclude_current_positions_from_observation", True) else 0
    qpos = np.concatenate([np.zeros(skip), obs[: nq - skip]])
    qvel = obs[nq - skip: nq - skip + u.model.nv]
    u.set_state(qpos, qvel)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def measure(learner, dataset, transform, discount: float, states: int, candidates: int, repeats: int,
            horizon: int, seed: int) -> dict:
    import torch

    from actor.envs import make_env

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    idx = rng.choice(dataset.size, size=states, replace=False)
    n_roll = candidates * repeats
    envs = [make_env(dataset, seed=seed + k) for k in range(n_roll)]
    rows = []
    try:
        for i in idx:
            obs0 = np.asarray(dataset.observations[i], dtype=np.float32)
            o = torch.as_tensor(obs0)[None]
            with torch.no_grad():
                cand = learner.behavior_ema.sample(o, candidates, gen)[0]                       # [N, act]
                q_critic = learner.critic_target(o.expand(candidates, -1), cand).numpy()
                v = float(learner.value(o)[0])
            # rollouts: candidate c's r-th repeat is env c*repeats + r
            first = cand.repeat_interleave(repeats, dim=0).numpy()
            ret = np.zeros(n_roll)
            alive = np.ones(n_roll, dtype=bool)
            obs = np.zeros((n_roll, obs0.shape[0]), dtype=np.float32)
            for k, env in enumerate(envs):
                env.reset(seed=int(rng.integers(2**31)))
                restore(env, obs0)
            for t in range(horizon):
                if t == 0:
                    act = first
                else:
                    with torch.no_grad():
                        act = learner.behavior_ema.sample(torch.as_tensor(obs), 1, gen)[:, 0].numpy()
                for k in np.flatnonzero(alive):
                    nxt, r, term, _trunc, _ = envs[k].step(act[k])
                    ret[k] += discount ** t * float(transform(np.float32(r)))
                    obs[k] = nxt
                    if term:
                        alive[k] = False
                if not alive.any():
                    break
            per = ret.reshape(candidates, repeats)
            q_mc = per.mean(1)
            se = per.std(1, ddof=1).mean() / np.sqrt(repeats) if repeats > 1 else float("nan")
            best_by_critic = int(np.argmax(q_critic))
            rows.append({"spearman": spearman(q_critic, q_mc),
                         "gain_argmax": float(q_mc[best_by_critic] - q_mc.mean()),
                         "room": float(q_mc.max() - q_mc.mean()),
                         "spread_mc": float(q_mc.std()), "spread_critic": float(q_critic.std()),
                         "se_mc": float(se), "q_critic_mean": float(q_critic.mean()), "q_mc_mean": float(q_mc.mean()),
                         "v": v})
    finally:
        for env in envs:
            env.close()

    def agg(key):
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        return {"mean": float(vals.mean()), "se": float(vals.std(ddof=1) / np.sqrt(len(vals)))} if len(vals) else None

    return {"states": states, "candidates": candidates, "repeats": repeats, "horizon": horizon,
            "summary": {k: agg(k) for k in rows[0]}, "per_state": rows}


def define_flags():
    """Only when run as a program: the module is also imported (tests, other tools)."""
    flags.DEFINE_string("checkpoint", None, "Pretraining checkpoint (carries its config) or a learner "
                                "checkpoint with --config_json.", required=True)
    flags.DEFINE_string("config_json", None, "The run's config.json for a finetuning checkpoint.")
    flags.DEFINE_string("out", None, "Where the JSON goes.", required=True)
    flags.DEFINE_integer("states", 32, "Dataset states.")
    flags.DEFINE_integer("candidates", 8, "Candidates from μ per state.")
    flags.DEFINE_integer("repeats", 4, "Rollouts per candidate.")
    flags.DEFINE_integer("horizon", 300, "Rollout length (γ^300 = 0.05 at γ = 0.99).")
    flags.DEFINE_integer("seed", 0, "Seed of the state choice, μ's samples and the rollouts.")


def main(argv):
    del argv
    import torch

    from study.evaluate import load_learner

    torch.set_num_threads(1)
    from launch.pretrain import load_offline_data

    cfg, learner, _meta, transform, _env_fn = load_learner(flags.FLAGS.checkpoint, flags.FLAGS.config_json)
    dataset = load_offline_data(cfg)[0]     # the states to rank candidates at
    result = measure(learner, dataset, transform, float(cfg.discount), flags.FLAGS.states, flags.FLAGS.candidates,
                     flags.FLAGS.repeats, flags.FLAGS.horizon, flags.FLAGS.seed)
    result["checkpoint"] = str(repo_relative(flags.FLAGS.checkpoint))
    Path(flags.FLAGS.out).write_text(json.dumps(result, indent=2))
    s = result["summary"]
    print(f"{flags.FLAGS.checkpoint}: over {flags.FLAGS.states} states x {flags.FLAGS.candidates} candidates")
    for key in ("spearman", "gain_argmax", "room", "spread_mc", "spread_critic", "se_mc", "q_critic_mean", "q_mc_mean"):
        print(f"  {key:>14}: {s[key]['mean']:+8.3f} ± {s[key]['se']:.3f} (s.e. over states)")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
