"""The report's result tables: offline per dataset, online per dataset and recipe, and the aggregates.

Per-dataset cells are mean ± std over seeds; the aggregates pool datasets × seeds into an
interquartile mean with a 95 % stratified-bootstrap interval (study/stats.py). Every number is a
run's last checkpoint, never its best.
"""
from __future__ import annotations

from pathlib import Path

from configs import results as budgets
from study.figures import offline_figure, online_figure
from study.plan import short, slug
from study.stats import REPS, balanced, fmt_iqm, mstd, paired_difference_ci, pm

BC_LABEL = budgets.BC["label"]


def labels(c) -> dict:
    """method key -> label, with the BC baseline's."""
    return {m: budgets.METHODS[m][0] for m in c.methods} | {"bc": BC_LABEL}


def offline_section(c, off: dict, ds_info: dict, figures: Path) -> list[str]:
    """`off`: (dataset, method) -> records (study.records.offline_records, plus bc_records)."""
    pre = c.pretrain
    k = int(pre.final_eval_episodes)
    method_labels = labels(c)
    L = ["## Offline pretraining: the last checkpoint", "",
          f"Normalised score = 100·(return − random)/(expert − random) with the dataset's references. "
          f"Each cell: mean ± std over seeds (population std) of each run's **last** checkpoint (step "
          f"{pre.steps:,}; never the best one), evaluated once more after training on {k} episodes "
          f"(the in-training evaluations average only {pre.eval_episodes}; the last of them is in the "
          f"last column). Alignment gap = E_π[Q] − V (AlignIQL Def. 3.1) averaged over the states the "
          f"evaluation visited, exact over the N = {pre.num_candidates} candidates for the extraction evaluated "
          f"(argmax: the chosen candidate's Q − V; implicit: the weight-averaged Q − V). **argmax** (the papers' "
          f"evaluation) is what the scores rank by; **implicit** draws the action by weight (the policy the "
          f"weights define). IQL's Gaussian actor is evaluated at its mean. IDQL runs with "
          f"`eval.weighting=greedy` (argmax over Q), which both modes use: its implicit column is the same greedy "
          f"policy drawn with a different random stream, a measure of evaluation noise. {BC_LABEL} is "
          f"{budgets.METHODS[budgets.BC['from_method']][0]}'s pretrained checkpoint in the same final evaluation "
          f"with N = {budgets.BC['num_candidates']}: one sample from μ per state, no critic choice (behaviour "
          f"cloning by the same μ; an evaluation, not a training run).", "",
          f"| dataset | method | score, argmax | return, argmax | alignment gap, argmax | score, implicit | "
          f"alignment gap, implicit | last in-training evaluation, argmax ({pre.eval_episodes} ep.) | seeds |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for d in c.datasets:
        b = ds_info.get(d, {})
        if b.get("return_mean") is not None:
            L.append(f"| {short(d)} | behaviour data ({b['episodes']} episodes) | "
                     f"{b['score_mean']:.1f} ± {b['score_std']:.1f}* | {b['return_mean']:.0f} ± {b['return_std']:.0f}* "
                     f"| | | | | |")
        for m in c.methods:
            recs = off.get((d, m), [])
            if not recs:
                L.append(f"| {short(d)} | {method_labels[m]} | not run | | | | | | 0 |")
                continue
            mark = "" if all(r["final"] for r in recs) else " ‡"
            imp_s, imp_g = [r["score_implicit"] for r in recs], [r["gap_implicit"] for r in recs]
            L.append(f"| {short(d)} | {method_labels[m]} | {pm([r['score'] for r in recs])}{mark} | "
                     f"{pm([r['return'] for r in recs], 0)} | {pm([r['gap'] for r in recs], 3)} | "
                     f"{pm(imp_s) if mstd(imp_s) else '–'} | {pm(imp_g, 3) if mstd(imp_g) else '–'} | "
                     f"{pm([r['t_score'] for r in recs])} | {len(recs)} |")
        if budgets.BC["from_method"] in c.methods:
            recs = off.get((d, "bc"), [])
            L.append(f"| {short(d)} | {BC_LABEL} | " + (
                f"{pm([r['score'] for r in recs])} | {pm([r['return'] for r in recs], 0)} | "
                f"{pm([r['gap'] for r in recs], 3)} | – | – | – | {len(recs)} |" if recs
                else "not run | | | | | | 0 |"))
    L += ["", "\\* behaviour data: mean ± std over the dataset's complete episodes. ‡ no final evaluation yet: "
          "the last in-training evaluation.", ""]
    for d in c.datasets:
        p = offline_figure(off, d, c.methods, ds_info.get(d, {}), figures / f"offline_{slug(d)}.png")
        if p:
            L += [f"![offline {d}](figures/{p.name})", ""]
    return L


def online_section(c, onl: dict, ds_info: dict, figures: Path, online: dict) -> list[str]:
    """`onl`: (dataset, method, recipe) -> records (study.records.online_records); `online`: the
    finetuning runs' config.online."""
    ft = c.finetune
    k = int(c.pretrain.final_eval_episodes)
    method_labels = labels(c)
    L = ["## Online finetuning: after pretraining → at the end", "",
          f"Each recipe is judged by its own evaluation policy (N = {online['num_candidates']}): argmax for "
          f"μ frozen + argmax, the implicit policy for μ finetuned + implicit. \"After "
          f"pretraining\" and \"at the end\" are the final evaluations ({k} episodes, the same environment and "
          f"candidate seeds for both) of the pretrained checkpoint and of the learner's last checkpoint; the "
          f"next-to-last column gives the finetuning run's own evaluator, first → last evaluation "
          f"({online['eval_episodes']} episodes each). Mean ± std over seeds.", "",
          "| dataset | pretrained method | recipe | score after pretraining | score at the end | change | "
          f"return at the end | alignment gap at the end | evaluator: first → last ({online['eval_episodes']} ep.) "
          "| env steps | seeds |",
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d in c.datasets:
        for m in ft.methods:
            for r in c.recipes:
                recs = onl.get((d, m, r), [])
                if not recs:
                    L.append(f"| {short(d)} | {method_labels.get(m, m)} | {r} | not run | | | | | | | 0 |")
                    continue
                mark = "" if all(x["final"] for x in recs) else " ‡"
                first = [x["start"].get("score_mean") for x in recs]
                last = [x["end"].get("score_mean") for x in recs]
                delta = [b - a for a, b in zip(first, last) if a is not None and b is not None]
                ev = (f"{pm([x['first'].get('score_mean') for x in recs])} → "
                      f"{pm([x['last'].get('score_mean') for x in recs])}")
                L.append(f"| {short(d)} | {method_labels.get(m, m)} | {r} | {pm(first)}{mark} | {pm(last)}{mark} | "
                         f"{pm(delta)} | {pm([x['end']['return_mean'] for x in recs], 0)} | "
                         f"{pm([x['end']['alignment_gap'] for x in recs], 3)} | {ev} | "
                         f"{pm([x['env_steps'] for x in recs], 0)} | {len(recs)} |")
    L += ["", "‡ no final evaluation yet: the evaluator's first and last rows."]
    L.append("")
    for d in c.datasets:
        for r in c.recipes:
            p = online_figure(onl, d, r, ft.methods, int(online["eval_interval"]), ds_info.get(d, {}),
                              figures / f"online_{slug(d)}_{r}.png", int(online["total_env_steps"]), k)
            if p:
                L += [f"![online {d} {r}](figures/{p.name})", ""]
    return L


def _iqm_cell(records: list[list[dict]], key) -> tuple[str, str]:
    """records per dataset -> ('IQM [lo, hi]' with ‡ if a headline is not a final evaluation, 'datasets × seeds')."""
    x, seeds = balanced({i: {r["seed"]: key(r) for r in recs} for i, recs in enumerate(records)})
    if x.size == 0:
        return "n/a", "0"
    mark = "" if all(r["final"] for recs in records for r in recs if r["seed"] in seeds) else " ‡"
    return fmt_iqm(x) + mark, f"{x.shape[1]} × {x.shape[0]}"


def aggregate_section(c, off: dict, onl: dict) -> list[str]:
    """One table per phase (offline; online, one per recipe): IQM and 95 % CI of the normalised score over
    datasets × seeds per method, and the critic's choice against BC as a paired difference."""
    method_labels = labels(c)
    n = int(c.pretrain.num_candidates)
    L = ["## Aggregates over datasets × seeds: interquartile mean and 95 % confidence interval", "",
         f"The same final evaluations as the tables above (normalised score), pooled over the {len(c.datasets)} "
         f"dataset(s) × {len(c.seeds)} seed(s) of the budget: the interquartile mean (IQM, the mean of the "
         f"middle 50 % of runs, robust to one outlying seed) and its 95 % percentile interval from a stratified "
         f"bootstrap ({REPS:,} resamples of the seeds within each dataset; Agarwal et al. 2021, `rliable`). "
         f"With few seeds the interval is wide; with one seed per dataset it is the point itself. Seeds missing "
         f"on one dataset are left out of that method's aggregate (the bootstrap draws the same number of "
         f"runs from every dataset). ‡: some headline is the last in-training evaluation.", "",
         "### Offline: the last checkpoint", "",
         "| method | IQM score, argmax [95 % CI] | IQM score, implicit [95 % CI] | runs (datasets × seeds) |",
         "|---|---:|---:|---:|"]
    rows = list(c.methods) + (["bc"] if budgets.BC["from_method"] in c.methods else [])
    for m in rows:
        recs = [off.get((d, m), []) for d in c.datasets]
        arg, runs = _iqm_cell(recs, lambda r: r["score"])
        imp, _ = _iqm_cell(recs, lambda r: r["score_implicit"])
        L.append(f"| {method_labels[m]} | {arg} | {imp if imp != 'n/a' else '–'} | {runs} |")
    src = budgets.BC["from_method"]
    pairs = {d: {r["seed"]: r["score"] for r in off.get((d, src), []) if r["final"]} for d in c.datasets}
    bc = {d: {r["seed"]: r["score"] for r in off.get((d, "bc"), [])} for d in c.datasets}
    both = {d: [s for s in pairs[d] if s in bc[d] and pairs[d][s] is not None and bc[d][s] is not None]
            for d in c.datasets}
    a, seeds = balanced({d: {s: pairs[d][s] for s in both[d]} for d in c.datasets})
    b, _ = balanced({d: {s: bc[d][s] for s in both[d]} for d in c.datasets})
    if a.size:
        m, lo, hi = paired_difference_ci(a, b)
        L += ["", f"The critic's choice over μ alone: {method_labels.get(src, src)} (argmax over N = {n}) minus "
              f"{BC_LABEL} on the same checkpoints and evaluation seeds, {m:+.1f} points (95 % paired "
              f"stratified-bootstrap interval [{lo:+.1f}, {hi:+.1f}], {a.shape[1]} × {a.shape[0]} runs)."]
    for r in c.recipes:
        L += ["", f"### Online: {budgets.RECIPES[r][0]}", "",
              "| pretrained method | IQM score after pretraining [95 % CI] | IQM score at the end [95 % CI] "
              "| runs (datasets × seeds) |", "|---|---:|---:|---:|"]
        for m in c.finetune.methods:
            recs = [onl.get((d, m, r), []) for d in c.datasets]
            start, runs = _iqm_cell(recs, lambda x: x["start"].get("score_mean"))
            end, _ = _iqm_cell(recs, lambda x: x["end"].get("score_mean"))
            L.append(f"| {method_labels.get(m, m)} | {start} | {end} | {runs} |")
    return L + [""]
