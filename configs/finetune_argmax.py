"""IDQL finetuning recipe 1: μ frozen, argmax exploration, only Q and V updated online."""
from configs import finetune


def get_config():
    c = finetune.get_config()
    c.name = "finetune-argmax"
    c.online.exploration = "argmax"
    c.online.finetune_mu = False
    c.online.eval_mode = "argmax"      # what it explores with is what is evaluated
    return c
