"""The final evaluation of one run: its last checkpoint, K episodes per extraction mode and N.

    python -m study.evaluate --checkpoint=<run>/learner_checkpoint.pt --config_json=<run>/config.json \
        --out=eval.json --episodes=20 --modes=argmax,implicit --num_candidates=1,4,16

A pretraining checkpoint carries its config (no --config_json); a finetuning run's learner
checkpoint needs the run's config.json. The JSON written to --out holds
`results[mode][str(N)]` = the evaluator's summary (score, return, alignment gap, ...) plus its
seconds; IQL's Gaussian actor has one entry, `results["gaussian"]["1"]` (its mean, whatever N).
With N = 1 every extraction picks the one candidate (a sample from μ alone: behaviour cloning by
μ), so only the first mode is evaluated there.

`--etas=1` adds the AlignIQL weights at other η (training of Q, V and μ does not depend on η,
only the extraction does), keyed `results["<mode>_eta<η>"][str(N)]`. Every summary also carries
the critic's calibration on the actions taken (`q_chosen_mean`, `mc_return_mean`,
`q_minus_return`: Q of each action taken against the discounted return that followed it).

Seeds: config.seed + FINAL_EVAL_SEED_OFFSET for the environments and the candidate generator, the
same for every mode and N, for a pretrained checkpoint and for the runs finetuned from it
(common random numbers).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from absl import flags

from launch import cli
from study.paths import repo_relative

FINAL_EVAL_SEED_OFFSET = 20_000_000   # never an in-training (100,000), evaluator (10,000,000) or actor seed


def load_learner(ckpt: str, config_json: str | None = None):
    """(config, learner in eval mode on the CPU, the run's dataset metadata, reward transform, env factory).

    A pretraining checkpoint carries its config and its dataset's metadata (sizes, environment,
    reward transform, reference scores, action bounds: `launch.api.checkpoint_meta`); a finetuning
    run's learner checkpoint needs the run's config.json, with dataset_meta.json beside it. The
    dataset itself is loaded only for checkpoints made before that metadata was recorded.
    """
    import ml_collections
    import torch

    from actor.actor_loop import env_source
    from actor.envs import make_env
    from data.bounds import bounds_from_meta
    from data.rewards import RewardTransform
    from launch.api import checkpoint_meta
    from learner.agent import Learner
    from learner.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt, map_location="cpu")
    from networks.factory import upgrade_config     # runs recorded before a field was renamed read as they ran
    cfg = ml_collections.ConfigDict(upgrade_config(json.loads(Path(config_json).read_text() if config_json
                                                              else state["config"])))
    meta, complete = checkpoint_meta(state, Path(ckpt), config_json, say=None)
    if complete:
        transform = RewardTransform.from_dict(meta["reward_transform"])
        bounds = bounds_from_meta(meta, f"The metadata of checkpoint {ckpt}")

        def env_fn(seed: int):
            return make_env(env_source(meta), seed=seed, action_bounds=bounds)
    else:
        from data.dataset import dataset_meta
        from launch.pretrain import load_offline_data

        print(f"{ckpt} records no dataset metadata (made before it was recorded): loading the dataset "
              f"{cfg.dataset} for its environment and reference scores", flush=True)
        dataset, transform, env_fn = load_offline_data(cfg)
        meta = dataset_meta(dataset, transform)
    learner = Learner(cfg, int(meta["obs_dim"]), int(meta["act_dim"]), torch.device("cpu"))
    learner.load_state_dict(state["learner"])
    learner.train(False)
    return cfg, learner, meta, transform, env_fn


def evaluate_checkpoint(ckpt: str, out: str, episodes: int, modes: list[str], num_candidates: list[int],
                        config_json: str | None = None, etas: list[float] | None = None) -> dict:
    """Evaluate `ckpt` for every mode and N; writes `out` atomically and returns its content."""
    import torch

    from actor.evaluator import evaluate

    ns = [int(n) for n in num_candidates]
    from launch.evaluator import score_normalizer

    cfg, learner, meta, transform, env_fn = load_learner(ckpt, config_json)
    normalize = score_normalizer(meta)        # None without usable reference scores
    seed = int(cfg.seed) + FINAL_EVAL_SEED_OFFSET
    if cfg.algorithm == "iql":
        settings = [("gaussian", 1, None)]
    else:
        settings = [(mode, n, None) for n in ns for mode in (modes[:1] if n == 1 else modes)]
        settings += [(mode, n, float(eta)) for eta in (etas or []) for n in ns if n > 1 for mode in modes]
    results: dict = {}
    base_eta = cfg.eta
    for mode, n, eta in settings:
        cfg.eta = base_eta if eta is None else eta       # read by the policy's extraction spec
        policy = learner.acting_policy() if mode == "gaussian" else learner.acting_policy(
            weighting=(cfg.eval.weighting or None) if eta is None else "align", mode=mode, num_candidates=n)
        t0 = time.time()
        r = evaluate(policy, env_fn, episodes, seed=seed, device=torch.device("cpu"),
                     max_episode_steps=cfg.eval.max_episode_steps,
                     normalize=normalize,
                     reward_transform=transform, discount=float(cfg.discount))
        key = mode if eta is None else f"{mode}_eta{eta:+g}"
        results.setdefault(key, {})[str(n)] = {**r.summary(), "seconds": time.time() - t0}
        print(f"{key}, N = {n}: {results[key][str(n)]}", flush=True)
    cfg.eta = base_eta
    data = {"checkpoint": str(repo_relative(ckpt)), "episodes": episodes, "seed": seed, "num_candidates": ns,
            "weighting": cfg.eval.weighting or "", "results": results}
    tmp = Path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(out)
    return data


def define_flags():
    """Only when run as a program (the study imports this module's constants)."""
    flags.DEFINE_string("checkpoint", None, "Checkpoint to evaluate (checkpoint.pt or learner_checkpoint.pt).",
                        required=True)
    flags.DEFINE_string("config_json", None, "The run's config.json (finetuning runs; a pretraining checkpoint "
                        "carries its config).")
    flags.DEFINE_string("out", None, "Where the evaluation's JSON goes.", required=True)
    flags.DEFINE_integer("episodes", 20, "Episodes per mode and N.")
    flags.DEFINE_list("modes", ["argmax"], "Extraction modes (argmax, implicit).")
    flags.DEFINE_list("num_candidates", ["16"], "N: candidates sampled from μ per state, one or several.")
    flags.DEFINE_list("etas", [], "Also evaluate AlignIQL's weights at these η (e.g. 1), at every N > 1 and mode.")


def main(argv):
    del argv
    import torch
    torch.set_num_threads(1)
    f = flags.FLAGS
    evaluate_checkpoint(f.checkpoint, f.out, f.episodes, list(f.modes), [int(n) for n in f.num_candidates],
                        f.config_json, [float(e) for e in f.etas])


if __name__ == "__main__":
    define_flags()
    cli.run(main)
