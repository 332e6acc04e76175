"""The learner's fast paths against the eager reference, as far as a CPU can check them (issue 10).

The CUDA graph itself needs a GPU (`python -m bench.gpu_check` runs the graph-vs-eager check there);
here: the pieces it depends on that run on a CPU — a tensor learning rate advanced in place trains
exactly as the float one, checkpoints of the capturable form load on the eager path, the compiled
objectives give the eager losses and parameters, and the graph path is refused without CUDA.
"""
import inspect

import pytest
import torch

from configs import finetune
from errors import UserFacingError
from learner.agent import Learner
from learner.config_check import check_config
from learner.fast_path import PretrainStep, make_capturable, set_matmul_precision
from learner.nonfinite import NonFiniteWatch
from learner.offline_buffer import OfflineBuffer

OBS, ACT = 5, 2
CPU = torch.device("cpu")


def small_config(algorithm="aligniql", steps=12):
    cfg = finetune.get_config()
    cfg.algorithm = algorithm
    cfg.critic_hidden = (16, 16)
    cfg.iql.hidden = (16, 16)
    cfg.multipliers.hidden = (16, 16)
    cfg.diffusion.width, cfg.diffusion.inner, cfg.diffusion.num_blocks = 16, 16, 1
    cfg.critic_batch_size = cfg.actor_batch_size = 32
    cfg.num_critic_steps = cfg.num_actor_steps = steps
    return cfg


def offline_buffer(n=256):
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(n, OBS, generator=g)
    return OfflineBuffer(obs.numpy(), (torch.rand(n, ACT, generator=g) * 2 - 1).numpy(),
                         torch.randn(n, generator=g).numpy(), torch.randn(n, OBS, generator=g).numpy(),
                         (torch.rand(n, generator=g) < 0.05).float().numpy(), CPU)


def train(cfg, steps, how="eager", capturable=False):
    """`steps` pretraining iterations from seed 0; returns (learner, per-step losses)."""
    torch.manual_seed(0)
    learner = Learner(cfg, OBS, ACT, CPU)
    if capturable:
        make_capturable(learner.optimizers, CPU)
    step = PretrainStep(learner, offline_buffer(), 32, NonFiniteWatch(CPU), how)
    losses = []
    for _ in range(steps):
        metrics = step(train_actor=learner.actor_steps < cfg.num_actor_steps,
                       train_critic=learner.critic_steps < cfg.num_critic_steps)
        losses.append({k: float(v) for k, v in metrics.items() if k.startswith("loss/")})
    return learner, losses


def parameters(learner):
    return {f"{name}.{k}": v.detach().clone() for name, m in learner.modules.items()
            for k, v in m.state_dict().items()}


def assert_same_training(ref, ref_losses, got, got_losses, rtol, atol):
    """Every step's losses and the final parameters (and buffers) of two runs agree within tolerance."""
    for a, b in zip(ref_losses, got_losses, strict=True):
        assert a == pytest.approx(b, rel=rtol, abs=atol)
    p_ref, p_got = parameters(ref), parameters(got)
    for k in p_ref:
        torch.testing.assert_close(p_got[k], p_ref[k], rtol=rtol, atol=atol, msg=k)


@pytest.mark.parametrize("algorithm", ["aligniql", "iql", "aligniql_hard"])
def test_a_tensor_learning_rate_advanced_in_place_trains_as_the_float_one(algorithm):
    # The captured optimiser reads its rate from a device tensor that the schedule overwrites; a wrong
    # in-place update (or one the schedule skips) would leave the cosine at its first value.
    cfg = small_config(algorithm)
    ref, ref_losses = train(cfg, 12)
    got, got_losses = train(cfg, 12, capturable=True)
    sched = "actor" if algorithm == "iql" else "behavior"
    lr = got.schedulers[sched].optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor)
    assert float(lr) == pytest.approx(ref.schedulers[sched].optimizer.param_groups[0]["lr"], rel=1e-6, abs=1e-12)
    assert float(lr) < 1e-3 * cfg.diffusion.lr or algorithm == "iql" and float(lr) < 1e-3 * cfg.iql.actor_lr
    assert_same_training(ref, ref_losses, got, got_losses, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_the_capturable_form_resumes_on_the_eager_path():
    cfg = small_config()
    learner, _ = train(cfg, 6, capturable=True)
    state = learner.state_dict()
    for opt_state in state["optimizers"].values():
        for group in opt_state["param_groups"]:
            assert isinstance(group["lr"], float) and not group.get("capturable", False)
    torch.manual_seed(0)
    eager = Learner(cfg, OBS, ACT, CPU)
    eager.load_state_dict(state)
    assert eager.behavior_opt.param_groups[0]["lr"] == pytest.approx(float(learner.behavior_opt.param_groups[0]["lr"]))
    metrics = PretrainStep(eager, offline_buffer(), 32, NonFiniteWatch(CPU))(True, True)
    assert all(torch.isfinite(v) for v in metrics.values())
    assert eager.actor_steps == 7 and eager.critic_steps == 7


def test_compiled_objectives_give_the_eager_losses_and_parameters():
    # Inductor draws its own random numbers unless told to use torch's: with fallback_random the
    # diffusion noise and timesteps are the eager ones, so the two runs must agree to float rounding.
    import torch._inductor.config as inductor_config

    cfg = small_config(steps=4)
    ref, ref_losses = train(cfg, 4)
    old = inductor_config.fallback_random
    inductor_config.fallback_random = True
    try:
        torch._dynamo.reset()
        got, got_losses = train(cfg, 4, how="compile")
    finally:
        inductor_config.fallback_random = old
        torch._dynamo.reset()
    assert not inspect.ismethod(got.value_objective)             # replaced by torch.compile's wrapper
    assert inspect.ismethod(ref.value_objective)
    assert_same_training(ref, ref_losses, got, got_losses, rtol=1e-4, atol=1e-5)


def test_the_graph_path_needs_cuda_and_bad_settings_are_named():
    learner = Learner(small_config(), OBS, ACT, CPU)
    with pytest.raises(UserFacingError, match="needs a CUDA device"):
        PretrainStep(learner, offline_buffer(), 32, NonFiniteWatch(CPU), "graph")
    cfg = small_config()
    cfg.learner_step = "graphs"
    with pytest.raises(UserFacingError, match="config.learner_step='graphs'"):
        check_config(cfg)
    assert set_matmul_precision("auto", CPU) == "highest"
    assert torch.get_float32_matmul_precision() == "highest"


def test_gpu_check_runs_and_says_what_it_could_not_check_here():
    # The script that verifies the GPU path must itself work before a GPU is at hand.
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--quick", "--paths=eager,graph",
                          "--sizes=aligniql_hard"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    for check in ("cpu_vs_cuda", "checkpoint", "cuda_to_actor", "graph_vs_eager"):
        assert any(line.startswith(("SKIP", "PASS")) and check in line for line in lines), out.stdout
    eager = next(line for line in lines if line.startswith("aligniql_hard") and " eager " in line)
    assert float(eager.split()[2]) > 0 and "min" in eager
    assert any("graph" in line and "SKIP" in line for line in lines)
