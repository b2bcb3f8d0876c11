"""Q-networks: an MLP for vector observations, the Nature DQN CNN for pixels, plain or dueling heads."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int | None = None) -> nn.Sequential:
    """Linear + ReLU layers of the given widths, then a final Linear to ``out_dim`` (if given)."""
    layers: list[nn.Module] = []
    for h in hidden_sizes:
        layers += [nn.Linear(in_dim, int(h)), nn.ReLU()]
        in_dim = int(h)
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class NatureCNN(nn.Module):
    """The convolutional torso of Mnih et al. (2015): three conv layers, then a 512-unit layer.

    Input: ``uint8[B, C, H, W]`` frames (C stacked frames or channels), scaled to [0, 1] inside;
    float inputs are taken as already scaled. Output: ``float32[B, 512]``.
    """

    def __init__(self, obs_shape: Sequence[int], features: int = 512) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"NatureCNN: obs_shape must be (C, H, W), got {tuple(obs_shape)}")
        c, h, w = (int(s) for s in obs_shape)
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = self.conv(torch.zeros(1, c, h, w)).shape[1]
        self.fc = nn.Sequential(nn.Linear(n, features), nn.ReLU())
        self.out_dim = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return self.fc(self.conv(x))


class QNetwork(nn.Module):
    """Q-values ``float32[B, n_actions]`` from observations ``[B, *obs_shape]``.

    The torso is the Nature CNN when ``pixels`` is true, otherwise an MLP over the flattened
    observation. With ``dueling`` the head is V(s) + A(s, a) - mean_a A(s, a) (Wang et al., 2016),
    each stream a hidden layer of ``hidden_sizes[-1]`` units.
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        n_actions: int,
        hidden_sizes: Sequence[int] = (128, 128),
        dueling: bool = False,
        pixels: bool = False,
    ) -> None:
        super().__init__()
        hidden_sizes = tuple(int(h) for h in hidden_sizes)
        if pixels:
            self.torso: nn.Module = NatureCNN(obs_shape)
            feat = self.torso.out_dim
            stream = [] if not hidden_sizes else [hidden_sizes[-1]]
        else:
            in_dim = math.prod(int(s) for s in obs_shape)
            trunk = hidden_sizes[:-1] if dueling and hidden_sizes else hidden_sizes
            self.torso = nn.Sequential(nn.Flatten(), mlp(in_dim, trunk))
            feat = trunk[-1] if trunk else in_dim
            stream = list(hidden_sizes[-1:]) if dueling else []
        self.dueling = bool(dueling)
        self.pixels = bool(pixels)
        if dueling:
            self.value = mlp(feat, stream, 1)
            self.advantage = mlp(feat, stream, n_actions)
        else:
            self.head = nn.Linear(feat, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dtype != torch.float32 and not (self.pixels and obs.dtype == torch.uint8):
            obs = obs.float()
        z = self.torso(obs)
        if self.dueling:
            a = self.advantage(z)
            return self.value(z) + a - a.mean(dim=1, keepdim=True)
        return self.head(z)
