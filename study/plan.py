"""The study's runs: one `Run` per pretraining, finetuning and final-evaluation process, and their flags.

`plan` lists every pretraining and finetuning run of a budget (configs/results.py) with the
command-line overrides that give every method the same budget; `final_eval_runs` adds one final
evaluation (`python -m study.evaluate`) of each finished run's last checkpoint. A run is done when
its summary.json (final evaluation: final_eval.json with the planned episodes and N) is there.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from configs import results as budgets


def fmt_value(v) -> str:
    """A value as ml_collections' command-line parser reads it back."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (tuple, list)):
        return repr(tuple(v))
    return str(v)


def as_flags(overrides: dict) -> list[str]:
    return [f"--config.{k}={fmt_value(v)}" for k, v in overrides.items()]


def load_config_file(path: str):
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return module.get_config()


def apply(cfg, overrides: dict):
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        node[leaf] = tuple(value) if isinstance(value, list) else value
    return cfg


def slug(dataset: str) -> str:
    s = dataset.replace("/", "_").replace(".hdf5", "").replace(".h5", "")
    return Path(s).name


def short(dataset: str) -> str:
    """'local/hopper/medium-v0' -> 'hopper-medium'."""
    parts = dataset.replace(".hdf5", "").split("/")
    return "-".join(parts[-2:]).removesuffix("-v0") if len(parts) >= 2 else parts[-1]


@dataclass
class Run:
    kind: str                   # "pretrain" | "finetune" | "final"
    method: str
    dataset: str
    seed: int
    recipe: str = ""
    run_dir: Path = Path()
    args: list[str] = field(default_factory=list)
    log: Path = Path()
    needs: Path | None = None   # a finetuning run's pretraining checkpoint; a final evaluation's summary.json
    episodes: int = 0           # final evaluations: episodes
    num_candidates: tuple[int, ...] = ()   # final evaluations: the N it evaluates

    @property
    def name(self) -> str:
        return self.run_dir.name

    def summary(self) -> dict | None:
        path = self.run_dir / "summary.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    def done(self) -> bool:
        if self.kind == "final":
            return final_eval(self.run_dir, self.episodes, self.num_candidates) is not None
        s = self.summary()
        if s is None:
            return False
        return not s.get("stopped") and not s.get("failure")


def pretrain_overrides(c, method: str, dataset: str, seed: int, workdir: Path, wandb_mode: str = "disabled") -> dict:
    pre = c.pretrain
    o = {"workdir": str(workdir), "name": method, "seed": seed, "dataset": dataset,
         "num_threads": pre.num_threads, "tau": c.tau,
         "num_critic_steps": pre.steps, "num_actor_steps": pre.steps,
         "eval.interval": pre.eval_interval, "eval.episodes": pre.eval_episodes,
         "eval.modes": tuple(pre.eval_modes), "eval.num_candidates": (pre.num_candidates,),
         "eval.max_episode_steps": pre.max_episode_steps, "wandb.mode": wandb_mode}
    o |= budgets.flat(pre.extra)
    o |= budgets.METHODS[method][1]
    return o


def final_eval(run_dir: Path, episodes: int, num_candidates=()) -> dict | None:
    """The run's final_eval.json if it has `episodes` episodes and every N of `num_candidates`."""
    path = Path(run_dir) / "final_eval.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("episodes") != episodes:
        return None
    have = data.get("num_candidates")
    have = {int(n) for n in (have if isinstance(have, list) else [have])}
    return data if {int(n) for n in num_candidates} <= have else None


def final_result(data: dict | None, mode: str, n: int | None = None) -> dict | None:
    """One (mode, N) entry of a final evaluation; IQL's "gaussian" has a single entry whatever N.

    Files written before several N per evaluation hold one summary per mode at their single N."""
    if not data:
        return None
    r = data.get("results", {}).get(mode)
    if not r:
        return None
    if "return_mean" in r:          # the one-N layout
        return r if mode == "gaussian" or n is None or n == data.get("num_candidates") else None
    if mode == "gaussian" or n is None:
        return next(iter(r.values()), None)
    return r.get(str(int(n)))


def final_eval_runs(c, pre_runs: list[Run], ft_runs: list[Run]) -> list[Run]:
    """One evaluation of every finished run's last checkpoint, K episodes on common seeds.

    The pretraining checkpoints of the method the BC baseline comes from (configs/results.py `BC`)
    are also evaluated with N = 1: one sample from μ, no critic choice."""
    k = int(c.pretrain.final_eval_episodes)
    online_n = int(budgets.flat(c.finetune.online).get("num_candidates", c.pretrain.num_candidates))
    runs = []
    for r in pre_runs:
        modes = list(c.pretrain.eval_modes)
        if "argmax" not in modes:
            modes.insert(0, "argmax")
        ns = [int(c.pretrain.num_candidates)]
        if r.method == budgets.BC["from_method"] and budgets.BC["num_candidates"] not in ns:
            ns.append(int(budgets.BC["num_candidates"]))
        args = ["study.evaluate", f"--checkpoint={r.run_dir / 'checkpoint.pt'}",
                f"--out={r.run_dir / 'final_eval.json'}", f"--episodes={k}",
                f"--modes={','.join(modes)}", f"--num_candidates={','.join(map(str, ns))}"]
        runs.append(Run("final", r.method, r.dataset, r.seed, "", r.run_dir, args,
                        r.log.with_name(r.log.stem + ".final.log"), needs=r.run_dir / "summary.json", episodes=k,
                        num_candidates=tuple(ns)))
    for r in ft_runs:
        args = ["study.evaluate", f"--checkpoint={r.run_dir / 'learner_checkpoint.pt'}",
                f"--config_json={r.run_dir / 'config.json'}", f"--out={r.run_dir / 'final_eval.json'}",
                f"--episodes={k}", "--modes=argmax,implicit", f"--num_candidates={online_n}"]
        runs.append(Run("final", r.method, r.dataset, r.seed, r.recipe, r.run_dir, args,
                        r.log.with_name(r.log.stem + ".final.log"), needs=r.run_dir / "summary.json", episodes=k,
                        num_candidates=(online_n,)))
    return runs


def plan(c, root: Path, wandb_mode: str = "disabled") -> tuple[list[Run], list[Run]]:
    """All runs of the study, seed-major so that an early stop leaves whole seeds."""
    pre_runs, ft_runs = [], []
    logs = root / "logs"
    for seed in c.seeds:
        for dataset in c.datasets:
            for method in c.methods:
                overrides = pretrain_overrides(c, method, dataset, seed, root / "pretrain", wandb_mode)
                run_dir = root / "pretrain" / f"{method}-{overrides['algorithm']}-{slug(dataset)}-s{seed}"
                # the study names its runs itself (by method, not by a hash of its overrides: launch/run_names.py)
                args = ["launch.pretrain", f"--config={c.pretrain.base_config}", *as_flags(overrides),
                        f"--run_dir={run_dir}"]
                pre_runs.append(Run("pretrain", method, dataset, seed, "", run_dir, args, logs / f"{run_dir.name}.log"))
    for seed in c.seeds:
        for dataset in c.datasets:
            for method in c.finetune.methods:
                pre_over = pretrain_overrides(c, method, dataset, seed, root / "pretrain", wandb_mode)
                pre_cfg = apply(load_config_file(c.pretrain.base_config), pre_over)
                ckpt = root / "pretrain" / f"{method}-{pre_over['algorithm']}-{slug(dataset)}-s{seed}" / "checkpoint.pt"
                for recipe in c.recipes:
                    config_file = budgets.RECIPES[recipe][1]
                    ft_default = budgets.flat(load_config_file(config_file))
                    # Same networks and hyperparameters as the checkpoint: every field the
                    # pretraining config sets differently from the recipe's config file.
                    same = {k: v for k, v in budgets.flat(pre_cfg).items()
                            if k not in ("name", "workdir") and not k.startswith("online.")
                            and ft_default.get(k, object()) != v}
                    name = f"{method}-{recipe}"
                    same |= {"name": name, "workdir": str(root / "finetune")}
                    same |= {f"online.{k}": v for k, v in budgets.flat(c.finetune.online).items()}
                    run_dir = root / "finetune" / f"{name}-{pre_over['algorithm']}-{slug(dataset)}-s{seed}"
                    args = ["launch.finetune", f"--config={config_file}", f"--pretrained={ckpt}", *as_flags(same),
                            f"--run_dir={run_dir}"]
                    ft_runs.append(Run("finetune", method, dataset, seed, recipe, run_dir, args,
                                       logs / f"{run_dir.name}.log", needs=ckpt))
    return pre_runs, ft_runs
