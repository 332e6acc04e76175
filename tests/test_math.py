"""The algorithm's maths on cases solvable by hand.

A one-state bandit whose actions fall in three clusters with known Q stands in
for μ's candidates at one state; V is computed in closed form from the same
samples, so every claim of the papers can be checked exactly.
"""
import math

import pytest
import torch

from learner.losses import expectile_loss, exponential_loss, multiplier_losses, quantile_loss
from networks import extraction
from networks.diffusion import DiffusionBehavior, vp_beta_schedule


def fit_scalar(loss_fn, init: float = 0.0, steps: int = 3000, lr: float = 0.05) -> float:
    v = torch.tensor(init, requires_grad=True)
    opt = torch.optim.Adam([v], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(v).backward()
        opt.step()
    return float(v.detach())


# ----------------------------------------------------------------- value losses
def test_expectile_of_known_samples():
    # τ-expectile v of {0, 1}: 0.7·(1 − v) = 0.3·v  =>  v = 0.7
    x = torch.tensor([0.0, 1.0])
    assert fit_scalar(lambda v: expectile_loss(x - v, 0.7).mean()) == pytest.approx(0.7, abs=1e-3)
    # {0, 0, 0, 1}, τ = 0.9: 0.9·(1 − v) = 0.1·3v  =>  v = 0.75
    x = torch.tensor([0.0, 0.0, 0.0, 1.0])
    assert fit_scalar(lambda v: expectile_loss(x - v, 0.9).mean()) == pytest.approx(0.75, abs=1e-3)
    # τ = 0.5 is the mean
    x = torch.tensor([1.0, 2.0, 6.0])
    assert fit_scalar(lambda v: expectile_loss(x - v, 0.5).mean()) == pytest.approx(3.0, abs=1e-3)


def test_quantile_and_exponential_minimisers():
    x = torch.arange(1.0, 11.0)  # 1..10
    q = fit_scalar(lambda v: quantile_loss(x - v, 0.75).mean(), steps=4000, lr=0.02)
    assert 7.0 <= q <= 8.05     # any point of the 0.75-quantile interval [7.5, 8] up to step noise
    # linex minimiser: V = (1/α) log E[exp(αQ)]  (IDQL Eq. 11)
    x = torch.tensor([0.0, 1.0, 3.0])
    alpha = 0.5
    expected = math.log(sum(math.exp(alpha * float(t)) for t in x) / 3) / alpha
    assert fit_scalar(lambda v: exponential_loss(x - v, alpha).mean()) == pytest.approx(expected, abs=1e-3)


# ----------------------------------------------------------------- diffusion
def test_vp_schedule_values():
    betas = vp_beta_schedule(5)
    # α_1 = exp(−0.1/5 − 0.5·9.9·1/25) = exp(−0.218)
    assert float(betas[0]) == pytest.approx(1 - math.exp(-0.218), abs=1e-6)
    assert betas.tolist() == pytest.approx([0.196, 0.459, 0.636, 0.755, 0.835], abs=2e-3)


def test_reverse_diffusion_recovers_a_point_mass_with_the_exact_noise_predictor():
    # For data a0 = c the optimal ε-predictor is ε(x_t, t) = (x_t − √ᾱ_t c)/√(1 − ᾱ_t); with it the
    # last DDPM step (IDQL Eq. 5, no noise) lands exactly on c whatever x_1 was.
    c = torch.tensor([0.3, -0.6])
    model = DiffusionBehavior(obs_dim=1, act_dim=2, num_steps=5, width=8, inner=8, num_blocks=1, dropout=0.0)

    def exact_eps(x, obs, t):
        ab = model.alpha_bars[t].unsqueeze(-1)
        return (x - ab.sqrt() * c) / (1 - ab).sqrt()

    model.noise_net.forward = exact_eps
    samples = model.sample(torch.zeros(4, 1), num_candidates=7, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 7, 2)
    assert torch.allclose(samples, c.expand_as(samples), atol=1e-5)


# ----------------------------------------------------------------- bandit
@pytest.fixture
def bandit():
    """Candidates from μ at one state: three clusters with Q ≈ 0, 1, 2 (probabilities ½, ⅓, ⅙)."""
    g = torch.Generator().manual_seed(0)
    n = 600
    cluster = torch.multinomial(torch.tensor([3.0, 2.0, 1.0]), n, replacement=True, generator=g)
    q = cluster.float() + 0.05 * torch.randn(n, generator=g)
    return q.unsqueeze(0)   # [B=1, N]


def sample_expectile(q: torch.Tensor, tau: float) -> torch.Tensor:
    """Exact τ-expectile by bisection on τ·E[(q−v)+] = (1−τ)·E[(v−q)+]."""
    lo, hi = q.min(), q.max()
    for _ in range(100):
        v = (lo + hi) / 2
        excess = tau * (q - v).clamp(min=0).mean() - (1 - tau) * (v - q).clamp(min=0).mean()
        lo, hi = (v, hi) if excess > 0 else (lo, v)
    return ((lo + hi) / 2).reshape(1)


def gap(logw, q, v, mode="implicit"):
    return float(extraction.expected_q(logw, q, mode) - v)


def test_idql_implicit_actors_are_aligned_with_their_own_optimal_value(bandit):
    # IDQL Theorem 4.1: with V* the minimiser of the critic loss, π_imp ∝ μ·w has E_π[Q] = V*.
    q = bandit
    v = sample_expectile(q[0], 0.7)
    assert abs(gap(extraction.log_weights("expectile", q, v, tau=0.7), q, v)) < 1e-4
    alpha = 0.8
    v_exp = (torch.logsumexp(alpha * q[0], 0) - math.log(q.shape[1])).reshape(1) / alpha   # IDQL Eq. 11
    assert abs(gap(extraction.log_weights("exponential", q, v_exp, exp_alpha=alpha), q, v_exp)) < 1e-3


def test_align_positive_eta_shrinks_the_alignment_gap(bandit):
    q = bandit
    v = sample_expectile(q[0], 0.7)
    gap_pos = gap(extraction.log_weights("align", q, v, eta=1.0), q, v)
    gap_neg = gap(extraction.log_weights("align", q, v, eta=-1.0), q, v)
    assert abs(gap_pos) < abs(gap_neg)
    assert gap_neg > 0          # the AWR-like weights overshoot V: they favour A > 0
    # and the same holds for the greedy policies
    assert abs(gap(extraction.log_weights("align", q, v, eta=1.0), q, v, "argmax")) < \
        abs(gap(extraction.log_weights("align", q, v, eta=-1.0), q, v, "argmax"))


def test_aligniql_hard_multipliers_enforce_policy_alignment(bandit):
    # Solve Eq. 11 for the scalar multipliers of the single state; then the weights of Eq. 8
    # must satisfy Eq. 9 (normalisation) and Eq. 10 (E_π[Q] = V), for any V inside Q's range.
    q = bandit[0]
    v = sample_expectile(q, 0.7)
    alpha = torch.zeros(1, requires_grad=True)
    beta = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([alpha, beta], lr=0.05)
    for _ in range(4000):
        la, lb = multiplier_losses(alpha.expand_as(q), beta.expand_as(q), q, v.expand_as(q))
        opt.zero_grad()
        (la + lb).backward()
        opt.step()
    g = torch.exp(-alpha - beta * q - 1).detach()
    assert float(g.mean()) == pytest.approx(1.0, abs=1e-2)               # Eq. 9
    logw = extraction.log_weights("align_hard", q.unsqueeze(0), v, alpha_s=alpha.detach(), beta_s=beta.detach())
    assert abs(gap(logw, q.unsqueeze(0), v)) < 1e-2                       # Eq. 10: aligned
    assert float(beta) < 0        # V above the mean of Q: the policy tilts towards high Q (Remark 4.2)


def test_argmax_and_implicit_pick_what_they_should(bandit):
    q = bandit
    v = sample_expectile(q[0], 0.7)
    best = int(q.argmax())
    # greedy and the AWR-like weights pick the best Q
    for w in (extraction.log_weights("greedy", q, v), extraction.log_weights("align", q, v, eta=-1.0)):
        assert int(extraction.select(w, q, "argmax")) == best
    # expectile weights tie for every A ≥ 0: argmax breaks the tie with Q
    assert int(extraction.select(extraction.log_weights("expectile", q, v, tau=0.7), q, "argmax")) == best
    # the aligned argmax takes the candidate whose Q is closest to V
    chosen = int(extraction.select(extraction.log_weights("align", q, v, eta=1.0), q, "argmax"))
    assert chosen == int((q[0] - v).abs().argmin())
    # implicit draws follow the normalised weights
    logw = extraction.log_weights("align", q[:, :5], v, eta=1.0)
    probs = torch.softmax(logw, -1)[0]
    g = torch.Generator().manual_seed(0)
    draws = extraction.select(logw.expand(20000, 5), q[:, :5].expand(20000, 5), "implicit", g)
    freq = torch.bincount(draws, minlength=5).float() / 20000
    assert torch.allclose(freq, probs, atol=0.015)


def test_weights_are_finite_for_extreme_values():
    q = torch.tensor([[-1e4, 0.0, 1e4, 3.0]])
    v = torch.tensor([2.0])
    for name, kw in [("align", {"eta": 5.0}), ("align", {"eta": -5.0}), ("quantile", {"tau": 0.6}),
                     ("exponential", {"exp_alpha": 1.0}), ("expectile", {"tau": 0.9})]:
        logw = extraction.log_weights(name, q, v, **kw)
        probs = torch.softmax(logw, -1)
        assert torch.isfinite(probs).all(), name
        assert float(probs.sum()) == pytest.approx(1.0)


# ----------------------------------------------------------------- overflow guards keep the gradient's sign
def test_multiplier_gradient_keeps_its_sign_beyond_the_overflow_guard():
    # Exponent −α − βQ − 1 = 29 (above the guard at 20) with Q = V = 150. The true gradients of
    # L_α = e^x + α and L_β = e^x + βV are (1 − e^29, V − Q e^29): both negative, so descent raises
    # α and β and brings the exponent down. A clamp by value turns them into (+1, +150).
    q = torch.tensor([150.0])
    v = torch.tensor([150.0])
    beta = torch.tensor([-0.2], requires_grad=True)
    alpha = (torch.tensor([29.0]) * -1 - beta.detach() * q - 1.0).requires_grad_(True)   # x = 29
    assert float(-alpha - beta * q - 1.0) == pytest.approx(29.0)
    la, lb = multiplier_losses(alpha, beta, q, v)
    ga, = torch.autograd.grad(la, alpha)
    gb, = torch.autograd.grad(lb, beta)
    assert float(ga) < -1e6 and float(gb) < -1e8
    # and a few clipped descent steps bring the exponent back below the guard
    opt = torch.optim.SGD([alpha, beta], lr=0.01)
    for _ in range(200):
        la, lb = multiplier_losses(alpha, beta, q, v)
        opt.zero_grad()
        (la + lb).backward()
        torch.nn.utils.clip_grad_norm_([alpha], 1.0)
        torch.nn.utils.clip_grad_norm_([beta], 1.0)
        opt.step()
    assert float(-alpha - beta * q - 1.0) < 20.0


def test_exponential_value_loss_still_pushes_a_cold_v_up():
    # V = 0 under Q = 100 with α = 1: αu = 100 is far past the guard. The loss must still pull V up
    # (negative gradient in V), not sit flat as a clamped linex does.
    q = torch.tensor([100.0, 100.0])
    v = torch.zeros(2, requires_grad=True)
    loss = exponential_loss(q - v, 1.0).mean()
    assert torch.isfinite(loss)
    g, = torch.autograd.grad(loss, v)
    assert (g < 0).all()
    # below the guard it is exactly the linex loss, value and gradient
    u = torch.tensor([-3.0, 0.5, 4.0], requires_grad=True)
    exact = torch.exp(0.5 * u) - 0.5 * u - 1
    assert torch.allclose(exponential_loss(u, 0.5), exact)
    g_ours, = torch.autograd.grad(exponential_loss(u, 0.5).sum(), u)
    g_exact, = torch.autograd.grad(exact.sum(), u)
    assert torch.allclose(g_ours, g_exact)
