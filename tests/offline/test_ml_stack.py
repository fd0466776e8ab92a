"""The `[ml]` extra is part of `make setup` (issue 10): the pinned deep/RL stack is installed and
runs deterministically on the CPU, so the deep and RL models of later issues start from a known
environment, not from whatever a machine happens to have."""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["ml"]
    pins = {}
    for req in extra:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", req)
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def test_ml_extra_pins_are_what_is_installed() -> None:
    pins = _pins()
    assert "torch" in pins, "the [ml] extra pins torch (the project standard)"
    for name, version in pins.items():
        assert md.version(name) == version, (
            f"{name}: installed {md.version(name)}, pinned {version}"
        )
    assert md.version("stable-baselines3")


def test_torch_trains_deterministically_on_cpu() -> None:
    import torch

    def fit() -> list[float]:
        torch.manual_seed(0)
        torch.use_deterministic_algorithms(True)
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

    a, b = fit(), fit()
    assert a == b  # same seed, same floats
    assert a[-1] < a[0] / 2  # it learns


def test_stable_baselines3_ppo_builds_on_cpu() -> None:
    import gymnasium as gym
    import stable_baselines3 as sb3

    model = sb3.PPO(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        n_steps=64,
        batch_size=32,
        seed=0,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=64)
    action, _ = model.predict(gym.make("CartPole-v1").reset(seed=0)[0], deterministic=True)
    assert int(action) in (0, 1)
