"""The report's "Reading the numbers" section: statements generated from the tables' numbers.

Rankings per dataset and extraction, the IDQL / AlignIQL η=−1 identity under argmax, AlignIQL-hard's
multipliers, methods above the behaviour data, evaluation noise across the three evaluations of the
same checkpoints, the online changes that exceed one seed-std, and the budget caveat.
"""
from __future__ import annotations

import json

import numpy as np

from configs import results as budgets
from study.plan import Run, short
from study.stats import mstd


def online_changes(c, onl: dict, method_labels: dict) -> list[tuple]:
    """(dataset, method label, recipe, (mean, std) of the final-evaluation change) per online cell."""
    out = []
    for d in c.datasets:
        for m in c.finetune.methods:
            for r in c.recipes:
                recs = onl.get((d, m, r), [])
                first = [x["start"].get("score_mean") for x in recs]
                last = [x["end"].get("score_mean") for x in recs]
                dm = mstd([b - a for a, b in zip(first, last) if a is not None and b is not None])
                if dm:
                    out.append((short(d), method_labels.get(m, m), r, dm))
    return out


def reading_section(c, off: dict, onl: dict, pre_runs: list[Run], ds_info: dict, base,
                    online_episodes: int) -> list[str]:
    """`off`: offline records by (dataset, method); `onl`: online records by (dataset, method, recipe);
    `base`: the pretraining base config with the budget's overrides applied; `online_episodes`: the
    finetuning evaluator's episodes per evaluation."""
    pre, ft = c.pretrain, c.finetune
    k = int(pre.final_eval_episodes)
    method_labels = {m: budgets.METHODS[m][0] for m in c.methods}
    worse = online_changes(c, onl, method_labels)
    L = ["## Reading the numbers", ""]
    for d in c.datasets:
        for key, mode in (("score", "argmax"), ("score_implicit", "implicit")):
            ranked = [(mstd([r[key] for r in off.get((d, m), [])]), m) for m in c.methods]
            ranked = sorted([(ms, m) for ms, m in ranked if ms], key=lambda t: -t[0][0])
            if len(ranked) < 2:
                continue
            chain, prev = "", None
            for ms, m in ranked:
                sep = "" if prev is None else (" = " if abs(prev - ms[0]) < 1e-9 else " > ")
                chain += f"{sep}{method_labels[m]} {ms[0]:.1f}"
                prev = ms[0]
            spread = ranked[0][0][0] - ranked[-1][0][0]
            noise = max(ms[1] for ms, _ in ranked)
            L.append(f"- {short(d)}, {mode}: {chain}. The spread between first and last ({spread:.1f} points) is "
                     f"{'smaller' if spread <= noise else 'larger'} than the largest seed-std ({noise:.1f}).")
    for d in c.datasets:
        a, b = off.get((d, "idql"), []), off.get((d, "aligniql_neg"), [])
        pairs = [(x["score"], y["score"]) for x in a for y in b if x["seed"] == y["seed"]]
        if pairs:
            same = all(x is not None and y is not None and abs(x - y) < 1e-6 for x, y in pairs)
            L.append(f"- {short(d)}: IDQL (greedy) and AlignIQL η=−1 with **argmax** extraction are the same policy — "
                     f"argmax of exp(A) is argmax of Q — and both train μ, V and Q identically; per seed their argmax "
                     f"scores are {'identical' if same else 'not identical (run-to-run nondeterminism)'} "
                     f"({len(pairs)} seed pairs). They differ only with implicit extraction (exp(A) against "
                     f"expectile weights) and in the implicit finetuning recipe.")
    for d in c.datasets:
        hard = [r for r in pre_runs if r.dataset == d and r.method == "aligniql_hard" and r.done()]
        stats = []
        for r in hard:
            rows = []
            try:
                with open(r.run_dir / "metrics.jsonl") as f:
                    rows = [json.loads(line) for line in f if '"train/stats/alpha_mean"' in line]
            except OSError:
                pass
            if rows:
                stats.append((rows[0], rows[-1]))
        if stats:
            a0, a1 = np.mean([x[0]["train/stats/alpha_mean"] for x in stats]), np.mean([x[1]["train/stats/alpha_mean"] for x in stats])
            b1 = np.mean([x[1]["train/stats/beta_mean"] for x in stats])
            q0, q1 = np.mean([x[0]["train/stats/q_mean"] for x in stats]), np.mean([x[1]["train/stats/q_mean"] for x in stats])
            gi = mstd([x["gap_implicit"] for x in off.get((d, "aligniql_hard"), [])])
            L.append(f"- {short(d)}: AlignIQL-hard's multiplier networks (Adam {base.multipliers.lr:g}, the paper's rate) "
                     f"chase a critic that is still growing: mean α(s) went {a0:+.2f} → {a1:+.2f} while mean Q went "
                     f"{q0:.1f} → {q1:.1f} (β ends at {b1:+.3f}), so Eq. 9–10 do not hold yet"
                     + (f" and its implicit policy is not aligned (implicit gap {gi[0]:+.3f})" if gi else "")
                     + "; in the bandit, where they are solved to convergence, the gap is 0.")
    for d in c.datasets:
        b = ds_info.get(d, {}).get("score_mean")
        if b is None:
            continue
        parts = []
        for key, mode in (("score", "argmax"), ("score_implicit", "implicit")):
            above = [(method_labels[m], mstd([r[key] for r in off.get((d, m), [])])) for m in c.methods]
            above = [(lab, ms[0]) for lab, ms in above if ms is not None]
            if not above:
                continue
            better = [f"{lab} ({v:.1f})" for lab, v in above if v > b]
            parts.append(f"{mode}: {', '.join(better) if better else 'none'} of {len(above)}")
        L.append(f"- {short(d)}: methods whose final mean score beats the behaviour data's {b:.1f} — "
                 + "; ".join(parts) + ".")
    seen_noise: set = set()
    for d in c.datasets:
        for m in ft.methods:
            t = {r["seed"]: r["t_score"] for r in off.get((d, m), [])}
            f = {r["seed"]: r["score"] for r in off.get((d, m), []) if r["final"]}
            # the μ-frozen argmax recipe's evaluator only: the implicit recipe's evaluates another policy
            e = {x["seed"]: x["first"].get("score_mean") for x in onl.get((d, m, "argmax"), [])}
            seeds = [sd for sd in t if sd in e and sd in f]
            triple = tuple((round(t[sd], 6), round(e[sd], 6), round(f[sd], 6)) for sd in seeds)
            if seeds and triple in seen_noise:
                continue
            seen_noise.add(triple)
            if seeds:
                L.append(f"- Evaluation noise, {short(d)}, {method_labels.get(m, m)} (argmax; IDQL's checkpoints are "
                         f"the same policy): the same pretrained "
                         f"checkpoints score (per seed) "
                         + ", ".join(f"{t[sd]:.1f} / {e[sd]:.1f} / {f[sd]:.1f}" for sd in seeds)
                         + f" in the in-training evaluation ({pre.eval_episodes} episodes) / the argmax finetuning "
                         f"run's evaluator, first evaluation ({online_episodes} episodes, other seeds) / the final "
                         f"evaluation ({k} episodes).")
    if worse:
        down = [w for w in worse if w[3][0] < 0 and -w[3][0] > w[3][1]]
        up = [w for w in worse if w[3][0] > 0 and w[3][0] > w[3][1]]
        fmt = lambda ws: "; ".join(f"{m} / {r} on {d} ({dm[0]:+.1f} ± {dm[1]:.1f})" for d, m, r, dm in ws)  # noqa: E731
        L.append(f"- Online finetuning, change of the final-evaluation score (mean ± std over seeds), where the mean "
                 f"exceeds one std: worse — {fmt(down) or 'none'}; better — {fmt(up) or 'none'}; every other "
                 f"run's change is within one std of zero.")
    L += [f"- Budget caveat: {pre.steps:,} pretraining steps are {100 * pre.steps / 1_500_000:.2g}% of the "
          f"papers' critic steps, networks are smaller, and even the final evaluations average only {k} "
          f"episodes, so differences of a few points are noise; these numbers test that "
          f"each method learns and behaves as its paper describes at small scale, not the papers' final scores.",
          ""]
    return L
