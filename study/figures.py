"""The report's figures: offline learning curves per dataset, online curves per dataset and recipe.

Lines are in-training evaluations (mean ± std over seeds); diamonds are the final evaluations of
the last checkpoints (study.evaluate), the tables' numbers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from configs import results as budgets

def _plt():
    import logging

    import matplotlib
    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt
    return plt


COLOURS = {"iql": "#7f7f7f", "idql": "#1f77b4", "aligniql_pos": "#2ca02c", "aligniql_neg": "#d62728",
           "aligniql_hard": "#9467bd"}


def _band(ax, xs: dict, label: str, colour: str, dashed: bool = False):
    """xs: x -> list of y over seeds; line = mean, band = ± std."""
    x = sorted(k for k, v in xs.items() if v)
    if not x:
        return
    m = np.array([np.mean(xs[k]) for k in x])
    s = np.array([np.std(xs[k]) for k in x])
    n = max(len(xs[k]) for k in x)
    ax.plot(x, m, marker="s" if dashed else "o", ms=3, color=colour, ls="--" if dashed else "-",
            label=f"{label} (n={n})")
    ax.fill_between(x, m - s, m + s, color=colour, alpha=0.15)


def weighting_note(tag: str | None) -> str:
    """' [align_eta-1]': the weighting a run's evaluation keys name (launch/run_names.py), for a legend
    label; '' for runs logged before keys named it (their method's label says it) and for IQL."""
    from launch.run_names import parse_eval_tag

    parsed = parse_eval_tag(f"eval/{tag}") if tag else None
    return f" [{parsed.weighting}]" if parsed is not None and parsed.weighting else ""


def offline_figure(records: dict, dataset: str, methods: list[str], behaviour: dict, path: Path) -> Path | None:
    """Left: the argmax extraction (the papers' evaluation, the tables' ranking); right: implicit."""
    plt = _plt()
    has_implicit = any(r.get("curve_implicit") for m in methods for r in records.get((dataset, m), []))
    fig, axes = plt.subplots(1, 2 if has_implicit else 1, figsize=(13 if has_implicit else 7, 4.4),
                             sharey=True, squeeze=False)
    key, any_line = "score", False
    for col, (curve_key, what) in enumerate([("curve", "argmax extraction (IQL: Gaussian mean)"),
                                             ("curve_implicit", "implicit extraction (draw by weight)")]):
        if col >= axes.shape[1]:
            break
        ax = axes[0, col]
        for method in methods:
            recs = [r for r in records.get((dataset, method), []) if r.get(curve_key)]
            if not recs:
                continue
            use_score = recs[0][curve_key][0][1] is not None
            key = "score" if use_score else "return"
            xs: dict = {}
            for r in recs:
                for step, score, ret, _gap in r[curve_key]:
                    xs.setdefault(step, []).append(score if use_score else ret)
            label = budgets.METHODS[method][0] + weighting_note(recs[0].get("tag"))
            if method == "idql" and curve_key == "curve_implicit":
                label = "IDQL (eval.weighting=greedy: the argmax policy again)"
            _band(ax, xs, label, COLOURS.get(method, None), dashed=(method == "idql"))
            any_line = True
            fkey = "score" if curve_key == "curve" else "score_implicit"
            fin = [r[fkey] for r in recs if r["final"] and r[fkey] is not None]
            if fin and use_score:
                x_end = max(r["step"] for r in recs)
                spread = 0.012 * x_end * (methods.index(method) - (len(methods) - 1) / 2)
                ax.errorbar([x_end + spread], [np.mean(fin)], yerr=[np.std(fin)],
                            fmt="D", ms=6, mfc="none", capsize=3, color=COLOURS.get(method, None))
        b = behaviour.get(f"{key}_mean")
        if b is not None:
            ax.axhline(b, color="k", ls="--", lw=1, label=f"behaviour data ({b:.1f})")
        ax.set_xlabel("learner step")
        ax.set_ylabel("normalised score" if key == "score" else "return")
        ax.set_title(what, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if not any_line:
        plt.close(fig)
        return None
    fig.suptitle(f"offline pretraining on {dataset}: in-training evaluations (lines), final evaluation of the last "
                 f"checkpoint (diamonds); mean ± std over seeds\nIDQL dashed: under argmax it is the same policy as "
                 f"AlignIQL η=−1 (the lines coincide)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def online_figure(records: dict, dataset: str, recipe: str, methods: list[str], interval: int,
                  behaviour: dict, path: Path, final_x: int = 0, final_k: int = 0) -> Path | None:
    """Lines: the run's evaluator (few episodes); diamonds: final evaluations of start and end checkpoints."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    any_line = False
    for method in methods:
        recs = records.get((dataset, method, recipe), [])
        if not recs:
            continue
        xs: dict = {}
        for r in recs:
            per_bin = {}
            for row in r["evals"]:
                # The pretrained weights (version 0) are the curve's start whenever the evaluator got to
                # them; later evaluations land a few steps after each multiple of the interval.
                x = 0 if row.get("weights_version") == 0 else int(row["env_steps"] // interval) * interval
                per_bin[x] = row   # the last one in a bin
            for x, row in per_bin.items():
                xs.setdefault(x, []).append(row["score_mean"] if row.get("score_mean") is not None
                                            else row["return_mean"])
        tag = next((row.get("tag") for r in recs for row in r["evals"] if row.get("tag")), None)
        _band(ax, xs, budgets.METHODS[method][0] + weighting_note(tag), COLOURS.get(method, None),
              dashed=(method == "idql"))
        any_line = True
        fin = [r for r in recs if r["final"]]
        if fin and final_x:
            ys = [[r["start"].get("score_mean") for r in fin], [r["end"].get("score_mean") for r in fin]]
            if all(y is not None for row in ys for y in row):
                off_x = 0.01 * final_x * (1 if method == "idql" else -1)
                ax.errorbar([off_x, final_x + off_x], [np.mean(y) for y in ys], yerr=[np.std(y) for y in ys],
                            fmt="D", ms=6, mfc="none", capsize=3, color=COLOURS.get(method, None),
                            label=f"{budgets.METHODS[method][0]}: final evaluations ({final_k} ep.)")
    if not any_line:
        plt.close(fig)
        return None
    b = behaviour.get("score_mean")
    if b is not None:
        ax.axhline(b, color="k", ls="--", lw=1, label=f"behaviour data ({b:.1f})")
    ax.set_xlabel("environment steps (online)")
    ax.set_ylabel("normalised score (argmax)")
    ax.set_title(f"online finetuning on {dataset}\n{budgets.RECIPES[recipe][0]}: mean ± std over seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
