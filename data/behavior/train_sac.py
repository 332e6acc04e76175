"""Compact SAC trainer that makes the behaviour policies in data/behavior/weights.

Recipe (D4RL, Fu et al. 2020, Sec. 5): train SAC online; "medium" is the
policy when it first reaches about a third of expert return; "medium-replay"
is the replay buffer up to that point. We save the actor when the
deterministic evaluation return first reaches 10%, 30%, 60% and 100% of
--target_return (files replay0..replay3), and the 100% one again as
"medium". Each snapshot is written twice: <env>_<level>.pt holds the
deterministic mean path (tanh of the mean, `BehaviorPolicy`) and
<env>_<level>_stochastic.pt the whole actor with its log-std head
(`StochasticBehaviorPolicy`), whose samples are what D4RL's data were.

SAC follows Haarnoja et al. 2018 ("Soft Actor-Critic Algorithms and
Applications", arXiv:1812.05905):
  critic  eq. (5):  y = r + gamma * (1 - terminated) * (min_j Q'_j(s', a') - alpha log pi(a'|s')),
                    a' ~ pi(.|s'). Truncation (time limit) is not termination,
                    so it still bootstraps.
  actor   eq. (7):  E[alpha log pi(a|s) - min_j Q_j(s, a)], a = tanh(mu + sigma * eps)
                    with the tanh log-det correction of Appendix C, eq. (21).
  alpha   eq. (18): E[-alpha (log pi(a|s) + target_entropy)], target_entropy = -act_dim.
  targets: Polyak averaging with tau (Sec. 4.2 / Algorithm 1).

Usage:
  python -m data.behavior.train_sac --env=Hopper-v5 --seed=0 --steps=300000 --target_return=1400
  python -m data.behavior.train_sac --env=Hopper-v5 --measure   # re-measure saved files
  python -m data.behavior.train_sac --env=Hopper-v5 --measure --weights_dir=data/behavior/weights/v0
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data.behavior.policy import (LEVELS, WEIGHTS_DIR, BehaviorPolicy, StochasticBehaviorPolicy,
                                  load_behavior_policy, policy_path, stochastic_policy_path)

REPLAY_FRACTIONS = (0.1, 0.3, 0.6, 1.0)  # of --target_return, files replay0..replay3
EVAL_SEED_BASE = 10_000  # eval episode i uses reset(seed=EVAL_SEED_BASE + i); training env uses --seed


# ----------------------------------------------------------------------------- networks
class Actor(StochasticBehaviorPolicy):
    """Gaussian policy squashed by tanh (trunk, mean and log-std heads live in
    `StochasticBehaviorPolicy`, which the dataset maker loads back)."""

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action in [-1, 1] and its log-probability."""
        mu, log_std = self.mean_log_std(obs)
        a, u = self.squash(mu, log_std, torch.randn_like(mu))
        # Gaussian log-density minus log|det da/du|, with the stable form
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
        log_prob = (-0.5 * ((u - mu) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return a, log_prob


class EnsembleLinear(nn.Module):
    """E independent linear layers applied with one batched matmul."""

    def __init__(self, ensemble: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # same init range as nn.Linear
        self.weight = nn.Parameter(torch.empty(ensemble, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [E, B, d_in] -> [E, B, d_out]
        return torch.baddbmm(self.bias, x, self.weight)


class TwinCritic(nn.Module):
    """Two Q-networks (clipped double Q) evaluated together."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, ensemble: int = 2):
        super().__init__()
        self.ensemble = ensemble
        self.net = nn.Sequential(
            EnsembleLinear(ensemble, obs_dim + act_dim, hidden), nn.ReLU(),
            EnsembleLinear(ensemble, hidden, hidden), nn.ReLU(),
            EnsembleLinear(ensemble, hidden, 1))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:  # -> [E, B]
        x = torch.cat([obs, act], -1).unsqueeze(0).expand(self.ensemble, -1, -1)
        return self.net(x).squeeze(-1)


# ----------------------------------------------------------------------------- replay
class Replay:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int):
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.rew = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.capacity, self.size, self.ptr = capacity, 0, 0

    def add(self, obs, act, rew, next_obs, terminated):
        i = self.ptr
        self.obs[i], self.act[i], self.rew[i], self.next_obs[i], self.terminated[i] = (
            obs, act, rew, next_obs, terminated)
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int):
        idx = rng.integers(0, self.size, batch)
        return tuple(torch.from_numpy(x[idx]) for x in
                     (self.obs, self.act, self.rew, self.next_obs, self.terminated))


# ----------------------------------------------------------------------------- SAC
class SAC:
    def __init__(self, obs_dim, act_dim, actor_hidden, critic_hidden, lr=3e-4, gamma=0.99, tau=0.005):
        self.actor = Actor(obs_dim, act_dim, actor_hidden)
        self.critic = TwinCritic(obs_dim, act_dim, critic_hidden)
        self.critic_target = TwinCritic(obs_dim, act_dim, critic_hidden)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.target_entropy = -float(act_dim)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)
        self.gamma, self.tau = gamma, tau

    def update(self, obs, act, rew, next_obs, terminated) -> dict[str, float]:
        alpha = self.log_alpha.exp().detach()
        # Critic, eq. (5): bootstrap unless the episode *terminated*.
        with torch.no_grad():
            next_a, next_logp = self.actor.sample(next_obs)
            next_q = self.critic_target(next_obs, next_a).min(0).values - alpha * next_logp
            y = rew + self.gamma * (1.0 - terminated) * next_q
        q = self.critic(obs, act)
        critic_loss = 0.5 * ((q - y) ** 2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        # Actor, eq. (7).
        a, logp = self.actor.sample(obs)
        self.critic.requires_grad_(False)
        q_pi = self.critic(obs, a).min(0).values
        self.critic.requires_grad_(True)
        actor_loss = (alpha * logp - q_pi).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        # Temperature, eq. (18).
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        # Polyak target update.
        with torch.no_grad():
            for p, pt in zip(self.critic.parameters(), self.critic_target.parameters()):
                pt.lerp_(p, self.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
                "alpha": alpha.item(), "entropy": -logp.mean().item()}


# ----------------------------------------------------------------------------- evaluation
_EVAL_ENVS: dict[tuple[str, int], list[gym.Env]] = {}


def evaluate(policy: BehaviorPolicy, env_id: str, episodes: int = 10,
             seed_base: int = EVAL_SEED_BASE) -> np.ndarray:
    """Deterministic returns of `episodes` episodes, episode i reset with seed seed_base + i.

    The episodes run side by side so the policy is called once per step on a batch.
    """
    key = (env_id, episodes)
    if key not in _EVAL_ENVS:  # made once: gym.make recompiles the MuJoCo model each time
        _EVAL_ENVS[key] = [gym.make(env_id) for _ in range(episodes)]
    envs = _EVAL_ENVS[key]
    obs = np.stack([env.reset(seed=seed_base + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    returns = np.zeros(episodes)
    alive = np.ones(episodes, bool)
    while alive.any():
        actions = policy.act(obs)
        for i in np.flatnonzero(alive):
            o, r, term, trunc, _ = envs[i].step(actions[i])
            obs[i] = o
            returns[i] += r
            alive[i] = not (term or trunc)
    return returns


def actor_states(actor: Actor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(deterministic mean-path state_dict, whole-actor state_dict), detached copies."""
    full = {k: v.detach().clone().cpu() for k, v in actor.state_dict().items()}
    return actor.behavior_state_dict(), full


def save_states(states: tuple[dict, dict], out_dir: Path, env_id: str, level: str) -> None:
    """<env>_<level>.pt (BehaviorPolicy) and <env>_<level>_stochastic.pt (StochasticBehaviorPolicy)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mean_path, full = states
    torch.save(mean_path, out_dir / policy_path(env_id, level).name)
    torch.save(full, out_dir / stochastic_policy_path(env_id, level).name)


# ----------------------------------------------------------------------------- main loop
def train(args) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out_dir = Path(args.out_dir)

    env = gym.make(args.env)
    low, high = env.action_space.low, env.action_space.high
    if not (np.allclose(low, -1) and np.allclose(high, 1)):
        sys.exit(f"{args.env}: action space is [{low}, {high}]; this trainer assumes [-1, 1].")
    env.action_space.seed(args.seed)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    hidden = tuple(int(h) for h in args.actor_hidden.split(","))
    sac = SAC(obs_dim, act_dim, hidden, args.critic_hidden, lr=args.lr, gamma=args.gamma, tau=args.tau)
    replay = Replay(obs_dim, act_dim, args.steps)

    thresholds = [f * args.target_return for f in REPLAY_FRACTIONS]
    saved: dict[str, tuple[int, float, float]] = {}  # level -> (step, return, wall)
    best = (-np.inf, -1)
    best_state = None
    start = last_t = time.time()
    last_step = 0
    stats: dict[str, float] = {}
    obs, _ = env.reset(seed=args.seed)
    ep_ret, ep_count, recent = 0.0, 0, []
    print(f"SAC on {args.env} seed={args.seed} obs={obs_dim} act={act_dim} actor={hidden} "
          f"critic=2x{args.critic_hidden} target_return={args.target_return} "
          f"snapshots at {[round(t) for t in thresholds]}", flush=True)

    for step in range(1, args.steps + 1):
        if step <= args.start_steps:
            action = env.action_space.sample()
        else:
            with torch.no_grad():
                action = sac.actor.sample(torch.from_numpy(obs.astype(np.float32))[None])[0][0].numpy()
        next_obs, rew, terminated, truncated, _ = env.step(action)
        replay.add(obs, action, rew, next_obs, float(terminated))  # truncated still bootstraps
        ep_ret += rew
        obs = next_obs
        if terminated or truncated:
            recent = (recent + [ep_ret])[-10:]
            ep_count += 1
            obs, _ = env.reset()
            ep_ret = 0.0

        if step > args.start_steps:
            stats = sac.update(*replay.sample(rng, args.batch))

        if step % args.eval_every == 0 or step == args.steps:
            sac.actor.eval()
            ret = float(evaluate(sac.actor, args.env, args.eval_episodes).mean())
            sac.actor.train()
            now = time.time()
            sps = (step - last_step) / (now - last_t)
            last_t, last_step = now, step
            if ret > best[0]:
                best, best_state = (ret, step), actor_states(sac.actor)
            print(f"step {step:7d} | {sps:6.0f} steps/s | eval {ret:8.1f} (best {best[0]:.1f}) | "
                  f"train ep {np.mean(recent) if recent else float('nan'):8.1f} ({ep_count} eps) | "
                  + " ".join(f"{k} {v:.3g}" for k, v in stats.items())
                  + f" | {(now - start) / 60:.1f} min", flush=True)
            for k, thr in enumerate(thresholds):
                level = f"replay{k}"
                if level not in saved and ret >= thr:
                    save_states(actor_states(sac.actor), out_dir, args.env, level)
                    saved[level] = (step, ret, now - start)
                    print(f"  saved {level} (return {ret:.1f} >= {thr:.0f})", flush=True)
            if "replay3" in saved:
                save_states(actor_states(sac.actor), out_dir, args.env, "medium")
                saved["medium"] = saved["replay3"]
                print(f"  saved medium at step {step}, return {ret:.1f}", flush=True)
                break
            if (now - start) / 60 > args.max_minutes:
                print(f"  wall-time budget of {args.max_minutes} min reached", flush=True)
                break

    if "medium" not in saved:
        # Target not reached: ship the best evaluated actor as medium (and as
        # any missing replay level) and say so.
        print(f"TARGET NOT REACHED: best eval return {best[0]:.1f} at step {best[1]}; "
              "saving it as medium and for missing replay levels", flush=True)
        for level in LEVELS:
            if level not in saved:
                save_states(best_state, out_dir, args.env, level)
                saved[level] = (best[1], best[0], time.time() - start)
    print(f"total wall time {(time.time() - start) / 60:.1f} min", flush=True)
    for level in LEVELS:
        step, ret, wall = saved[level]
        print(f"  {args.env}_{level}.pt: step {step}, eval return {ret:.1f}, wall {wall / 60:.1f} min")
    return 0


class _Sampling:
    """Adapter: `evaluate` calls .act(obs); this samples from the stochastic actor."""

    def __init__(self, policy: StochasticBehaviorPolicy, rng: np.random.Generator):
        self.policy, self.rng = policy, rng

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.policy.act(obs, self.rng)


def measure(args) -> int:
    """Re-evaluate the stored files of --env (--eval_episodes seeded deterministic episodes each).

    With the default --eval_seed_base these are the episodes the trainer used to
    decide when to save; another base gives a held-out check. Where the
    stochastic actor is stored too, it is checked to hold the same mean path
    and its return with sampled actions (eps from --seed) is printed as well.
    """
    torch.set_num_threads(args.threads)
    weights_dir = Path(args.weights_dir)
    for level in LEVELS:
        policy = load_behavior_policy(args.env, level, weights_dir)
        r = evaluate(policy, args.env, args.eval_episodes, args.eval_seed_base)
        size = policy_path(args.env, level, weights_dir).stat().st_size
        line = (f"{args.env}_{level}.pt: return {r.mean():.1f} +- {r.std():.1f} "
                f"(min {r.min():.1f}, max {r.max():.1f}, {len(r)} episodes), {size / 1024:.0f} KB")
        if stochastic_policy_path(args.env, level, weights_dir).is_file():
            stochastic = StochasticBehaviorPolicy.from_state_dict(torch.load(
                stochastic_policy_path(args.env, level, weights_dir), map_location="cpu", weights_only=True))
            same = all(torch.equal(v, stochastic.state_dict()[k]) for k, v in policy.state_dict().items())
            rng = np.random.default_rng(np.random.SeedSequence(args.seed))
            rs = evaluate(_Sampling(stochastic, rng), args.env, args.eval_episodes, args.eval_seed_base)
            line += (f"; _stochastic.pt: same mean path {'yes' if same else 'NO'}, sampled-action "
                     f"return {rs.mean():.1f} +- {rs.std():.1f}")
        print(line, flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=300_000, help="max environment steps")
    p.add_argument("--target_return", type=float, default=1400.0, help="deterministic return for 'medium'")
    p.add_argument("--start_steps", type=int, default=5_000, help="uniform random actions first")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--tau", type=float, default=0.005)
    p.add_argument("--actor_hidden", default="128,128")
    p.add_argument("--critic_hidden", type=int, default=128,
                   help="2x128 critics: about 250 updates/s on one CPU core (2x256: about 100)")
    p.add_argument("--eval_every", type=int, default=2_500)
    p.add_argument("--eval_episodes", type=int, default=10)
    p.add_argument("--max_minutes", type=float, default=25.0, help="stop and ship the best actor after this")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out_dir", default=str(WEIGHTS_DIR))
    p.add_argument("--measure", action="store_true", help="only re-measure the stored files")
    p.add_argument("--weights_dir", default=str(WEIGHTS_DIR),
                   help="--measure: the folder to measure (e.g. data/behavior/weights/v0)")
    p.add_argument("--eval_seed_base", type=int, default=EVAL_SEED_BASE,
                   help="--measure: episode i resets with this + i (training evals use %(default)s)")
    args = p.parse_args(argv)
    return measure(args) if args.measure else train(args)


if __name__ == "__main__":
    sys.exit(main())
