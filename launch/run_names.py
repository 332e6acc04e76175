"""Names that keep runs apart: run directories, evaluation metric keys, wandb groups.

Run directories. `<workdir>/<name>-<algorithm>-<dataset slug>-s<seed>` named a run by what its
config file and three flags said, so a sweep over η or τ (`--config.eta=...`) wrote every point
into one directory (the second refused, or with --resume continued the first). A run whose
command line changes what is trained now carries a short hash of those settings:
`<name>-<algorithm>-<slug>-<6 hex>-s<seed>`, and the settings themselves are kept beside the run
in `overrides.json`. With no such change the name is the one it always was, so existing runs,
`--resume` and the study's committed runs keep their directories. Settings that do not change
what is trained (where it runs, how fast, what it logs) or that the name already holds are left
out of the hash (`NOT_HASHED`): a run resumed with more threads or a later stop_after_steps is
the same run.

Evaluation keys. `eval/<mode>_N<n>/...` said nothing of the extraction weighting, so two runs
with different weightings (or η, τ) logged under one key and one wandb panel mixed them. Keys
are now `eval/<weighting>/<mode>_N<n>/...`, the weighting with the parameter it uses:
`eval/align_eta-1/argmax_N16/score_mean`, `eval/expectile_tau0p7/implicit_N64/...`,
`eval/greedy/argmax_N16/...`; IQL's Gaussian policy keeps `eval/gaussian/...` (no weighting).
A decimal point is written `p`: wandb reads a '.' in a metric name as nesting, and a metric
so named loses its custom x axis (wandb/wandb#6659). `parse_eval_tag` reads old and new keys.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from configs.results import flat     # a nested config (ConfigDict or dict) as {"diffusion.width": 32, ...}

# Left out of the settings hash: already in the name (name, algorithm, dataset, seed), the
# directory itself (workdir), not changing what is trained (logging, checkpoints, threads,
# devices, process placement), or how long a finetuning run goes (online.total_env_steps: the
# documented way to lengthen a run is `--resume` with a larger total, which must find the same
# directory). A field ending in '.' covers its whole group.
NOT_HASHED = ("name", "algorithm", "dataset", "seed", "workdir", "wandb.", "stop_after_steps",
              "online.total_env_steps", "log_interval",
              "checkpoint_interval", "num_threads", "device", "cpu_matmul", "matmul_precision", "learner_step",
              "eval.background", "online.log_interval", "online.allow_remote", "online.replay_port",
              "online.ray_actor_cpus", "online.actor_restart_limit", "online.evaluator_restart_limit",
              "online.learner_restart_limit", "online.replay_checkpoint_interval_s", "online.replay_in_learner",
              "online.sampler_workers", "online.prefetch_batches", "pretrain_processes", "online.actor_nice",
              "online.evaluator_nice")

SETTINGS_FILE = "overrides.json"


def _plain(v):
    """A value as JSON holds it, so that (4, 8) and [4, 8] compare equal and hash the same."""
    return json.loads(json.dumps(v, default=str))


def hashed(key: str) -> bool:
    return not any(key == f or (f.endswith(".") and key.startswith(f)) for f in NOT_HASHED)


@dataclass(frozen=True)
class Settings:
    """What a command line changed in its config file (`differing`: flat field -> value)."""
    config_file: str
    differing: dict = field(default_factory=dict)

    @property
    def named(self) -> dict:
        """The changes that name the run directory (sorted)."""
        return {k: self.differing[k] for k in sorted(self.differing) if hashed(k)}

    def hash(self) -> str:
        """6 hex digits of the named changes; "" when there are none (the name stays as before)."""
        if not self.named:
            return ""
        return hashlib.sha256(json.dumps(self.named, sort_keys=True).encode()).hexdigest()[:6]

    def write(self, run_dir: Path) -> None:
        """overrides.json beside the run: the config file and every field the command line changed."""
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / SETTINGS_FILE).write_text(json.dumps(
            {"config_file": self.config_file, "hash": self.hash(), "differing": self.differing,
             "named": self.named}, indent=2) + "\n")


def differing_settings(cfg, defaults) -> dict:
    """Flat fields of `cfg` whose value is not the one in `defaults` (the config file as written)."""
    have, base = flat(cfg), flat(defaults)
    return {k: _plain(v) for k, v in sorted(have.items()) if k not in base or _plain(v) != _plain(base[k])}


def settings_of(cfg, config_file: str, defaults) -> Settings:
    return Settings(str(config_file), differing_settings(cfg, defaults))


def dataset_slug(dataset: str) -> str:
    """'local/hopper/medium-v0' -> 'local_hopper_medium-v0'; a file path -> its name without .hdf5."""
    slug = dataset.replace("/", "_").replace(".hdf5", "").replace(".h5", "")
    return Path(slug).name


def run_name(cfg, settings: Settings | None = None) -> str:
    digest = settings.hash() if settings is not None else ""
    return f"{cfg.name}-{cfg.algorithm}-{dataset_slug(cfg.dataset)}" + (f"-{digest}" if digest else "") + \
        f"-s{cfg.seed}"


def run_directory(cfg, settings: Settings | None = None) -> Path:
    """<workdir>/<name>-<algorithm>-<dataset slug>[-<settings hash>]-s<seed>."""
    return Path(cfg.workdir) / run_name(cfg, settings)


def resumable_directory(cfg, settings: Settings | None, saved_settings: Callable[[Path], dict | None]) -> Path:
    """The run directory; on --resume of a run started before directories carried the settings hash,
    that run's directory (the name without the hash) when the config it saved agrees on every
    named setting. `saved_settings(dir)`: the flat config a run in `dir` saved, or None (no run there)."""
    named = run_directory(cfg, settings)
    if settings is None or not settings.named or saved_settings(named) is not None:
        return named
    legacy = run_directory(cfg)
    saved = saved_settings(legacy)
    if saved is None or any(k not in saved or _plain(saved[k]) != v for k, v in settings.named.items()):
        return named
    print(f"continuing {legacy} (started before run directories named their settings; new runs of these "
          f"settings go to {named.name})", flush=True)
    return legacy


def saved_finetune_config(run_dir: Path) -> dict | None:
    """The flat config a launch.finetune run in `run_dir` wrote (config.json), or None (no run there)."""
    run_dir = Path(run_dir)
    if not (run_dir / "finetune_state.json").exists() or not (run_dir / "config.json").exists():
        return None
    return flat(json.loads((run_dir / "config.json").read_text()))


# ---- evaluation keys ----

# how a config field a weighting reads is written in a label (the field's own name otherwise)
PARAMETER_LABELS = {"exp_alpha": "alpha"}


def _number(x) -> str:
    """-1.0 -> '-1', 0.7 -> '0p7': no '.' in a wandb metric name."""
    return f"{float(x):g}".replace(".", "p")


def extraction_weighting(cfg, override: str | None = None) -> str | None:
    """The weighting an evaluation extracts with: `override`, else `eval.weighting`, else the config's
    (networks/factory.py natural_weighting); None for a policy without candidates (IQL)."""
    from networks.factory import natural_weighting

    return natural_weighting(cfg, override if override is not None else (cfg.eval.weighting or ""))


def weighting_label(cfg, weighting: str | None = None) -> str:
    """'align_eta-1', 'expectile_tau0p7', 'exponential_alpha1', 'align_hard', 'greedy': the weighting with
    the values of the config fields it reads (networks/extraction.py WEIGHTINGS, so a weighting added
    there is named with its own settings); IQL, which weighs no candidates, 'gaussian' (its policy)."""
    from networks.extraction import settings_of

    weighting = weighting or extraction_weighting(cfg)
    if cfg.algorithm == "iql" or weighting is None:
        return "gaussian"
    return weighting + "".join(f"_{PARAMETER_LABELS.get(f, f)}{_number(v)}" for f, v in settings_of(weighting, cfg))


def eval_tag(cfg, mode: str, num_candidates: int, weighting: str | None = None) -> str:
    """The key prefix of one evaluation, without 'eval/': 'align_eta-1/argmax_N16', or 'gaussian' (IQL)."""
    if mode == "gaussian" or cfg.algorithm == "iql":
        return "gaussian"
    return f"{weighting_label(cfg, weighting)}/{mode}_N{int(num_candidates)}"


_TAG = re.compile(r"^(?:eval/)?(?:(?P<label>[^/]+)/)?(?P<mode>argmax|implicit)_N(?P<n>\d+)$")


@dataclass(frozen=True)
class EvalTag:
    weighting: str | None      # None: a key written before keys named the weighting, or IQL's Gaussian
    mode: str                  # "argmax" | "implicit" | "gaussian"
    num_candidates: int | None


def parse_eval_tag(tag: str) -> EvalTag | None:
    """'eval/align_eta-1/argmax_N16', 'eval/argmax_N16' (older runs), 'eval/gaussian' -> EvalTag; else None."""
    if tag.removeprefix("eval/") == "gaussian":
        return EvalTag(None, "gaussian", None)
    m = _TAG.match(tag)
    if not m:
        return None
    return EvalTag(m.group("label"), m.group("mode"), int(m.group("n")))


def eval_tags(metrics: dict) -> list[str]:
    """The evaluation prefixes ('eval/...') of a row's metric keys, old or new layout."""
    tags = {k.rsplit("/", 1)[0] for k in metrics if k.startswith("eval/") and "/" in k.removeprefix("eval/")}
    return sorted(t for t in tags if parse_eval_tag(t) is not None)
