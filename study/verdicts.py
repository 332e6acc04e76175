"""The report's answers to the four questions the study must answer (issue 12, section 4).

1. Does value-guided extraction (AlignIQL, IDQL) beat behaviour cloning on the same data?
2. Does at least one method pass the behaviour data's score?
3. Do both finetuning recipes improve their pretrained starting point?
4. Does the η > 0 alignment gap stay below η < 0's?

Each is answered from the tables' numbers (final evaluations of the last checkpoints), as paired
differences per seed: a cell is the mean over seeds of one dataset, and the last column pools
datasets × seeds — the mean difference with its 95 % stratified-bootstrap interval (rliable's
scheme, `study.stats.ragged_mean_ci`: seeds resampled within their dataset, the mean of the datasets' means).
"""
from __future__ import annotations

import numpy as np

from configs import results as budgets
from study.plan import short
from study.stats import ragged_mean_ci

VALUE_GUIDED = ("idql", "aligniql_pos", "aligniql_neg", "aligniql_hard")
MODES = (("score", "argmax"), ("score_implicit", "implicit"))


def _per_seed(records, key) -> dict:
    return {r["seed"]: r[key] for r in records if r.get(key) is not None}


def _differences(c, a_by_dataset: dict, b_by_dataset: dict) -> dict:
    """{dataset: {seed: a − b}} over the seeds both have."""
    out = {}
    for d in c.datasets:
        a, b = a_by_dataset.get(d, {}), b_by_dataset.get(d, {})
        diff = {s: a[s] - b[s] for s in a if s in b}
        if diff:
            out[d] = diff
    return out


def _row(c, label: str, diffs: dict, digits: int = 1) -> str:
    cells = []
    for d in c.datasets:
        v = diffs.get(d)
        cells.append(f"{np.mean(list(v.values())):+.{digits}f} ({len(v)})" if v else "–")
    pooled = "–"
    ci = ragged_mean_ci({d: list(v.values()) for d, v in diffs.items()})
    if ci:
        runs = sum(len(v) for v in diffs.values())
        pooled = f"{ci[0]:+.{digits}f} [{ci[1]:+.{digits}f}, {ci[2]:+.{digits}f}], {len(diffs)} datasets, {runs} runs"
    return f"| {label} | " + " | ".join(cells) + f" | {pooled} |"


def _header(c, first: str) -> list[str]:
    return [f"| {first} | " + " | ".join(short(d) for d in c.datasets) + " | pooled: mean [95 % CI] |",
            "|---|" + "---:|" * len(c.datasets) + "---|"]


def verdicts_section(c, off: dict, onl: dict, ds_info: dict) -> list[str]:
    """`off`: offline records by (dataset, method) (BC under "bc"); `onl`: online records by (dataset, method, recipe)."""
    labels = {m: budgets.METHODS[m][0] for m in c.methods}
    L = ["## The study's four questions", "",
         "Paired differences per seed, final evaluations of the last checkpoints; a cell is the mean over the "
         "seeds of one dataset (their number in brackets), the last column pools them: the mean of the datasets' "
         "means and its 95 % stratified-bootstrap interval (seeds resampled within their dataset; a dataset with "
         "one seed enters fixed, so the interval is narrower than it will be with three). Positive = the first "
         "named is higher.", ""]

    # 1. value-guided extraction against BC (μ alone, one sample, the same pretrained μ as AlignIQL η=−1)
    bc = {d: _per_seed(off.get((d, "bc"), []), "score") for d in c.datasets}
    L += ["**1. Value-guided extraction − BC** (score points):", ""] + _header(c, "method, extraction")
    for m in VALUE_GUIDED:
        if m not in c.methods:
            continue
        for key, mode in MODES:
            if m == "idql" and mode == "implicit":
                continue                                  # greedy under both modes (see Reading the numbers)
            diffs = _differences(c, {d: _per_seed(off.get((d, m), []), key) for d in c.datasets}, bc)
            if diffs:
                L.append(_row(c, f"{labels[m]}, {mode}", diffs))
    L.append("")

    # 2. the best method against the behaviour data
    L += ["**2. Methods above the behaviour data** (mean over seeds against the data's mean score):", ""]
    for d in c.datasets:
        data = ds_info.get(d, {}).get("score_mean")
        if data is None:
            continue
        scored = [(np.mean(list(v.values())), labels.get(m, "BC (μ alone)" if m == "bc" else m), mode)
                  for m in (*c.methods, "bc") for key, mode in MODES
                  if (v := _per_seed(off.get((d, m), []), key))]
        if not scored:
            continue
        above = sorted([s for s in scored if s[0] > data], reverse=True)
        best = max(scored)
        L.append(f"- {short(d)} (data {data:.1f}): {len(above)} of {len(scored)} method × extraction results above; "
                 f"highest {best[1]}, {best[2]}, {best[0]:.1f}.")
    L.append("")

    # 3. finetuning: end − start of each recipe, judged by the recipe's own evaluation policy
    L += ["**3. Finetuning: after − before**, each recipe judged by the policy it explores and evaluates with "
          "(score points):", ""] + _header(c, "recipe, method")
    for r in c.recipes:
        for m in c.finetune.methods:
            diffs = {}
            for d in c.datasets:
                recs = onl.get((d, m, r), [])
                v = {x["seed"]: x["end"]["score_mean"] - x["start"]["score_mean"] for x in recs
                     if x.get("final") and x["end"].get("score_mean") is not None
                     and x["start"].get("score_mean") is not None}
                if v:
                    diffs[d] = v
            if diffs:
                L.append(_row(c, f"{budgets.RECIPES[r][0]}, {labels.get(m, m)}", diffs))
    L.append("")

    # 4. alignment gaps: η = +1 against η = −1, same seeds
    if "aligniql_pos" in c.methods and "aligniql_neg" in c.methods:
        L += ["**4. Alignment gap E_π[Q] − V, η = +1 − η = −1** (negative: η > 0 is the better aligned):", ""]
        L += _header(c, "extraction")
        for key, mode in (("gap", "argmax"), ("gap_implicit", "implicit")):
            diffs = _differences(c, {d: _per_seed(off.get((d, "aligniql_pos"), []), key) for d in c.datasets},
                                 {d: _per_seed(off.get((d, "aligniql_neg"), []), key) for d in c.datasets})
            if diffs:
                L.append(_row(c, mode, diffs, digits=3))
        L.append("")
    return L
