"""Reward preprocessing shared by the offline data and the online actors.

The critic is trained on transformed rewards; once fine-tuning starts, online
transitions must be transformed identically or the offline and online halves
of each batch would disagree about the value scale. So the transform is a
tiny affine object that is computed once from the offline dataset, saved
with the run (``to_dict``) and handed to actors (``from_dict``).

Recipes (IDQL appendix D.1, AlignIQL appendix D.1; docs/algorithm.md "Data"):
locomotion r <- 1000 r / (R_max - R_min) over the dataset's episode returns;
AntMaze r <- r - 1 (offline and online); Adroit unchanged.

PointMaze (D4RL maze2d) has no recipe in either paper (IQL and IDQL evaluate
AntMaze, not maze2d). It is the same kind of task, sparse goal reaching with
no terminal states, so it takes AntMaze's r - 1: the locomotion scale would
divide by the spread of episode returns, which for success-cut episodes is
about 1 (0 or 1 per episode) and would multiply rewards by 1000.

The domain is guessed from the dataset and environment ids (``infer_domain``:
anything unrecognised is locomotion) and the reference scores come from the
dataset; for an environment of your own either guess can be wrong, so
``config.domain`` and ``config.reference_scores`` override them
(``apply_config``), and the console says which were guessed and which given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping


import numpy as np

from errors import ConfigError, DatasetError

if TYPE_CHECKING:  # pragma: no cover
    from data.dataset import OfflineDataset


@dataclass(frozen=True)
class RewardTransform:
    """r -> scale * r + shift."""

    scale: float = 1.0
    shift: float = 0.0

    def __call__(self, r):
        if np.isscalar(r):
            return float(self.scale * r + self.shift)
        r = np.asarray(r, dtype=np.float32)
        return (np.float32(self.scale) * r + np.float32(self.shift)).astype(np.float32)

    def to_dict(self) -> dict[str, float]:
        return {"scale": float(self.scale), "shift": float(self.shift)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RewardTransform":
        return cls(scale=float(d["scale"]), shift=float(d["shift"]))


def reward_transform_for(dataset: "OfflineDataset") -> RewardTransform:
    """The paper's preprocessing for the dataset's domain.

    Locomotion divides by the spread of complete-episode returns, so a
    dataset whose episodes all return the same (or that has fewer than two
    complete episodes) has no defined scale: that is reported rather than
    silently dividing by zero.
    """
    if dataset.domain in ("antmaze", "pointmaze"):
        return RewardTransform(1.0, -1.0)
    if dataset.domain == "adroit":
        return RewardTransform(1.0, 0.0)
    returns = np.asarray(dataset.episode_returns, dtype=np.float64)
    spread = float(returns.max() - returns.min()) if returns.size >= 2 else 0.0
    if not spread > 0.0:
        raise DatasetError(
            f"Dataset '{dataset.name or dataset.env_id}' has {returns.size} complete episode(s) "
            f"with return spread {spread:g}; the locomotion reward scale 1000/(R_max - R_min) needs "
            "at least two complete episodes with different returns. Train on the raw rewards with "
            "--config.reward_scale=none (right for a task whose episodes all return the same, e.g. "
            "every episode runs to the time limit with a constant reward), or use a larger dataset."
        )
    return RewardTransform(1000.0 / spread, 0.0)


DOMAIN_FIELD = "config.domain"
REFERENCE_FIELD = "config.reference_scores"


def check_domain(domain) -> str:
    """`config.domain`: "" (guess from the ids) or one of the domains the platform has recipes for."""
    from data.dataset import DOMAINS

    text = "" if domain is None else str(domain).strip()
    if text and text not in DOMAINS:
        raise ConfigError(
            f"Invalid setting {DOMAIN_FIELD}={domain!r}: choose one of {', '.join(DOMAINS)}, or leave it empty to "
            "guess it from the dataset and environment ids. The domain picks the reward preprocessing "
            "(locomotion: 1000 r / (R_max - R_min); antmaze, pointmaze: r - 1; adroit: r unchanged) and whether "
            "the score is the success rate (antmaze); for raw rewards in any domain use "
            "--config.reward_scale=none.")
    return text


def parse_reference_scores(text) -> tuple[float, float] | None:
    """`config.reference_scores`: "" (the dataset's own) or "min,max", the returns that score 0 and 100.

    One string rather than two numbers, so that leaving it empty means "the dataset's", and so it
    reads like `config.action_bounds` ("low,high").
    """
    from data.bounds import parse_number_pair

    return parse_number_pair(
        text, REFERENCE_FIELD,
        "give the reference returns as 'min,max' (two numbers, e.g. '-1200,0': the return of a random policy, "
        "which scores 0, and of an expert, which scores 100), or leave it empty to take the dataset's.",
        "the reference returns must be finite with min < max (normalised score = 100 (R - min) / (max - min): "
        "min scores 0, max scores 100).")


def check_overrides(c) -> None:
    """Rejects a bad config.domain or config.reference_scores naming the field (learner.config_check calls it)."""
    check_domain(c.get("domain", ""))
    parse_reference_scores(c.get("reference_scores", ""))


def apply_config(dataset: "OfflineDataset", domain="", reference_scores="", reward_scale: str = "auto",
                 say=print) -> RewardTransform:
    """Apply the config's overrides to ``dataset`` and return its reward transform.

    ``domain`` and ``reference_scores`` replace the guessed domain and the dataset's reference
    scores when given (empty: keep them); ``reward_scale`` "auto" is the domain's recipe
    (``reward_transform_for``), "none" the raw rewards. ``say`` (None: silent) gets one line saying
    which of the two were guessed or taken from the dataset and which were given, so that a run on
    an environment of one's own shows what decided its reward scale and its scores.
    """
    given_domain = check_domain(domain)
    refs = parse_reference_scores(reference_scores)
    label = dataset.name or dataset.env_id
    if given_domain:
        dataset.domain = given_domain
        domain_note = f"domain {dataset.domain} (given: {DOMAIN_FIELD})"
    else:
        domain_note = (f"domain {dataset.domain} (guessed from the ids {dataset.name!r} and {dataset.env_id!r}; "
                       f"set {DOMAIN_FIELD} if wrong)")
    if refs is not None:
        dataset.ref_min_score, dataset.ref_max_score = refs
        ref_note = f"reference scores {refs[0]:g}, {refs[1]:g} (given: {REFERENCE_FIELD})"
    elif dataset.ref_min_score is not None and dataset.ref_max_score is not None:
        ref_note = (f"reference scores {dataset.ref_min_score:g}, {dataset.ref_max_score:g} (from the dataset; "
                    f"set {REFERENCE_FIELD}=min,max to change them)")
    else:
        ref_note = (f"no reference scores (the dataset has min {dataset.ref_min_score}, max "
                    f"{dataset.ref_max_score}): raw returns are reported, not normalised scores; give them "
                    f"with {REFERENCE_FIELD}=min,max")
    if reward_scale == "none":
        transform, scale_note = RewardTransform(1.0, 0.0), "raw rewards (given: config.reward_scale=none)"
    else:
        transform = reward_transform_for(dataset)
        scale_note = f"reward r <- {transform.scale:.4g}*r + {transform.shift:g} (the {dataset.domain} recipe)"
    if say is not None:
        say(f"dataset {label}: {domain_note}; {ref_note}; {scale_note}")
    return transform
