"""PointMaze Medium, local data, where online finetuning clearly pays: IDQL's μ-frozen + argmax recipe.

    python -m launch.finetune --config=configs/pointmaze_finetune.py
    python -m study.lift --config=configs/pointmaze_finetune.py --seeds=0,1,2 --runs_dir=results/lift_pointmaze \
        --out=docs/lift_pointmaze.md          # seeds 0-2 committed: reruns reuse them (~35 min a seed on 2 cores)

Why this task and recipe (pilot, seed 0, measured 2026-12-02 with the same pretrained checkpoint):
- The data (`local/pointmaze/medium-v0`, D4RL's maze2d recipe) are one continuing run whose goal is
  redrawn the moment it is reached, so no transition shows the ball *staying* at a goal; the
  evaluation episode keeps one goal for 600 steps and its return counts the steps spent there. The
  offline policy reaches the goal (success 45-100 % by extraction) but drifts off it: normalised
  score 7-26. Staying is exactly what online data can teach and offline data cannot.
- μ finetuned + implicit (configs/pointmaze.py, AlignIQL's aligned weights exp(-η A²), η = +1): 14.1
  → 16.1 over 10k online steps. The aligned weights prefer candidates whose Q matches V, so they
  do not chase what the online data reveal, and μ then imitates its own actions.
- μ frozen + argmax over Q (IDQL -Max, IDQL's best AntMaze recipe): 7.1 → 44.2 (success 45 % → 70 %)
  in 3.5 minutes of online steps: the critic learns from online rows that the goal cell is worth
  staying in, and argmax picks the candidates that stay.
The pilot's in-run figures are one seed on its evaluator's own 20 episodes (the episode-to-episode
spread is ~20 points). Measured on the same 50 seeded episodes per seed
(docs/lift_pointmaze.md, runs committed under results/lift_pointmaze/):
normalised score 18.2 → 49.3, **lift +31.1, 95 % bootstrap interval [+25.7, +34.4]** (seeds +33.0,
+34.4, +25.7), from staying at the goal; success rate 67 % → 83 %, +15.3 [−10.0, +44.0] (54 → 98,
78 → 68, 70 → 82 %): reaching the goal is μ's and μ is frozen, so it is not reliably better.
The first 3 runs of this job (20 episodes, machine loaded 3-5 on 2 cores; docs/archive/lift_pointmaze_v0_20ep.md)
gave +14.0 [+1.1, +24.3] (+1.1, +24.3, +16.6): the online phase is not bit-reproducible (actor and
learner timing) and a run's lift varies by more than its evaluation noise; all six runs rose.
"""
from configs import pointmaze


def get_config():
    c = pointmaze.get_config()
    c.name = "pointmaze-finetune"
    c.dataset = "local/pointmaze/medium-v0"
    c.eval.weighting = "greedy"            # argmax over Q: the policy this recipe finetunes, evaluated offline too
    c.online.exploration = "argmax"
    c.online.exploration_weighting = "greedy"
    c.online.finetune_mu = False           # IDQL recipe 1: μ frozen, only Q and V learn online
    c.online.eval_mode = "argmax"          # what it explores with is what is evaluated
    return c
