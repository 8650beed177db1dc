"""``backend.optim.adam``: torch's fused Adam on the CPU, the same updates as the default one."""

from __future__ import annotations

import copy

import torch

from backend.optim import adam


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(8, 3, 1))


def _steps(net: torch.nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(2, 3, 12, 12, generator=gen)
        opt.zero_grad(set_to_none=True)
        net(x).square().mean().backward()
        opt.step()


def test_adam_is_fused_on_the_cpu_and_updates_as_the_default_adam_does() -> None:
    a, b = _net(), _net()
    default = torch.optim.Adam(a.parameters(), lr=1e-2, betas=(0.9, 0.99))
    fused = adam(b.parameters(), lr=1e-2, betas=(0.9, 0.99))
    assert fused.defaults["fused"] is True and not default.defaults["fused"]
    _steps(a, default, 30, seed=1)
    _steps(b, fused, 30, seed=1)
    start = _net()
    moved = max(float((p - q).detach().abs().max())
                for p, q in zip(a.parameters(), start.parameters(), strict=True))
    assert moved > 0.05  # the weights really moved
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_fused_step_bumps_the_version_counters() -> None:
    """The translator's inference plan is cached on the weights' version counters, which torch's
    fused step leaves alone; without the bump a plan made mid-fit would outlive its weights."""
    net = _net()
    opt = adam(net.parameters(), lr=1e-2)
    before = [p._version for p in net.parameters()]
    _steps(net, opt, 1, seed=5)
    assert all(p._version > v for p, v in zip(net.parameters(), before, strict=True))


def test_param_groups_keep_their_rates_and_may_be_generators() -> None:
    net = _net()
    first, second = net[0], net[2]
    opt = adam([{"params": first.parameters(), "lr": 0.0}, {"params": (p for p in second.parameters())}],
               lr=1e-2)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2] and opt.defaults["fused"] is True
    before = [p.detach().clone() for p in net.parameters()]
    _steps(net, opt, 3, seed=2)
    after = list(net.parameters())
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])  # lr 0: held
    assert not torch.equal(after[2], before[2])


def test_states_saved_by_either_adam_resume_with_the_same_updates() -> None:
    """Checkpoints keep stage 1's optimisers. One written before the fused step resumes (on the
    default step, as its groups say); one written by the fused step resumes fused."""
    for saved_by in ("default", "fused"):
        a = _net()
        first = (torch.optim.Adam(a.parameters(), lr=1e-2, betas=(0.9, 0.99)) if saved_by == "default"
                 else adam(a.parameters(), lr=1e-2, betas=(0.9, 0.99)))
        _steps(a, first, 5, seed=3)
        b = copy.deepcopy(a)
        resumed = adam(b.parameters(), lr=1e-2, betas=(0.9, 0.99))
        resumed.load_state_dict(copy.deepcopy(first.state_dict()))  # as read back from a file
        assert bool(resumed.param_groups[0]["fused"]) is (saved_by == "fused")
        _steps(a, first, 5, seed=4)
        _steps(b, resumed, 5, seed=4)
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
