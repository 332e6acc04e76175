"""The former default job: Hopper medium-v1, AlignIQL η = +1, μ finetuned + implicit exploration.

Kept as the measured case where the offline data leave finetuning no room: one μ sample already scores
~57 against the data's 50, the critic's advantages over μ's 16 candidates spread by ~0.1 on a Q of ~90, and
the 5-seed lift was +0.4 [+0.03, +0.68] (docs/lift_hopper_medium.md, docs/finetuning.md §3 and §7).

Why these choices, measured on this data:
- local/hopper/medium-v1 (actions sampled from the medium SAC policy's own Gaussian), not -v0 (its mean +
  N(0, 0.1²)): on -v0 μ's candidates differ in true value by less than rollout noise and the critic's order
  of them is unrelated to it (Spearman +0.07; -v1: +0.29), 5-seed lift −0.8 [−2.9, +1.3].
- η = +1 (exp(−η A²), the sign AlignIQL's §5.2 calls aligned): where η = −1 leans on advantages this small
  the policy falls in some episodes (implicit N = 16 after pretraining: 55.7 ± 10.9 against 56.9 ± 0.8);
  20-episode lifts did not tell the two signs apart (−0.7 [−3.8, +1.9] and −1.8 [−5.2, +1.3]).
- the implicit policy evaluated: on the same 5 seeds AlignIQL's argmax lifted +4.4 [−5.0, +13.1] (seeds
  −8.6 to +17.1) and fell in 32 of 250 final episodes; the implicit policy +0.4 and 7 falls.
"""
from configs import finetune


def get_config():
    c = finetune.get_config()
    c.name = "finetune-hopper-medium"
    c.dataset = "local/hopper/medium-v1"
    c.eta = 1.0
    c.eval.modes = ("argmax", "implicit")
    c.online.exploration = "implicit"
    c.online.finetune_mu = True
    c.online.eval_mode = "implicit"
    return c
