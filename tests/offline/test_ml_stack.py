"""The `[ml]` extra is part of `make setup` (issue 10): the pinned deep/RL stack is installed and
runs deterministically on the CPU, so the deep and RL models of later issues start from a known
environment, not from whatever a machine happens to have."""

from __future__ import annotations

import importlib.metadata as md
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _ml_extra() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["optional-dependencies"]["ml"]]


def test_ml_extra_pins_are_what_is_installed() -> None:
    reqs = {r.name: r for r in _ml_extra() if r.name != "cryptoflow"}
    assert str(reqs["torch"].specifier).startswith("=="), "the [ml] extra pins torch"
    for name, req in reqs.items():
        installed = md.version(name)  # PackageNotFoundError: setup skipped the extra
        assert req.specifier.contains(installed), f"{name}: installed {installed}, wants {req}"


def test_torch_trains_deterministically_on_cpu() -> None:
    import torch

    def fit() -> list[float]:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = torch.linspace(-1, 1, 64).reshape(16, 4)
        y = x.sum(dim=1, keepdim=True)
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    saved = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # process-wide: restored for the other tests
    try:
        a, b = fit(), fit()
    finally:
        torch.use_deterministic_algorithms(saved)
    assert a == b  # same seed, same floats
    assert a[-1] < a[0] / 2  # it learns


def test_stable_baselines3_ppo_builds_on_cpu() -> None:
    import gymnasium as gym
    import stable_baselines3 as sb3

    env = gym.make("CartPole-v1")
    model = sb3.PPO(
        "MlpPolicy",
        env,
        n_steps=64,
        batch_size=32,
        seed=0,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=64)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert int(action) in (0, 1)
