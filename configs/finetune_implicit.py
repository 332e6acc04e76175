"""IDQL finetuning recipe 2: μ finetuned too, the actors explore with the implicit policy, which is evaluated.

The default job's data and pretraining (configs/finetune.py); online, μ keeps training (online.mu_steps_per_update
steps per V+Q update, its cosine schedule continued) and the actors draw one of μ's N candidates by the
extraction weights instead of taking the argmax. The study's "implicit" recipe (configs/results.py).
"""
from configs import finetune


def get_config():
    c = finetune.get_config()
    c.name = "finetune-implicit"
    c.online.exploration = "implicit"
    c.online.finetune_mu = True
    c.online.eval_mode = "implicit"    # what it explores with is what is evaluated
    c.eval.modes = ("argmax", "implicit")
    return c
