"""Networks and their upkeep: Q-networks (MLP or Nature CNN torso, plain or dueling head, scalar or
distributional outputs, plain or noisy linear layers), the deterministic actor and Q(s, a) critics
of DDPG / TD3, Adam with the fused kernel, Polyak updates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int | None = None, linear: Any = nn.Linear) -> nn.Sequential:
    """Linear + ReLU layers of the given widths, then a final Linear to ``out_dim`` (if given);
    ``linear(in, out)`` makes each linear layer (:class:`NoisyLinear` for a noisy head)."""
    layers: list[nn.Module] = []
    for h in hidden_sizes:
        layers += [linear(in_dim, int(h)), nn.ReLU()]
        in_dim = int(h)
    if out_dim is not None:
        layers.append(linear(in_dim, out_dim))
    return nn.Sequential(*layers)


@torch.no_grad()
def factorised_noise_(eps: Sequence[torch.Tensor], generator: torch.Generator | None = None) -> None:
    """Refill each tensor of ``eps`` (one device and dtype) with ``f(e) = sign(e) sqrt(|e|)``,
    ``e ~ N(0, 1)`` drawn from ``generator`` tensor by tensor in order; ``f`` by foreach kernels
    (4 calls for all the tensors instead of 5 per tensor: the same values)."""
    eps = list(eps)
    for e in eps:
        e.normal_(generator=generator)
    signs = torch._foreach_sign(eps)
    torch._foreach_abs_(eps)
    torch._foreach_sqrt_(eps)
    torch._foreach_mul_(eps, signs)


class NoisyLinear(nn.Module):
    """A linear layer with factorised Gaussian noise on its weights (Fortunato et al., 2018):
    ``y = (mu_w + sigma_w * (f(e_out) f(e_in)^T)) x + mu_b + sigma_b * f(e_out)``, ``f(e) = sign(e)
    sqrt(|e|)``, ``e ~ N(0, 1)``. ``mu`` starts at U(-1/sqrt(in), 1/sqrt(in)), ``sigma`` at
    ``sigma0 / sqrt(in)``.

    The noise lives in two buffers (so it is in ``state_dict`` and checkpoints) and changes only
    when :meth:`reset_noise` draws it from the generator it is given. With ``noise_on`` false the
    layer uses the mean weights ``mu`` (greedy evaluation).
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        self.eps_in: torch.Tensor
        self.eps_out: torch.Tensor
        self.register_buffer("eps_in", torch.zeros(in_features))
        self.register_buffer("eps_out", torch.zeros(out_features))
        self.noise_on = True

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """New noise ``f(e)`` for both factors, drawn from ``generator``."""
        factorised_noise_([self.eps_in, self.eps_out], generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_on:
            return nn.functional.linear(x, self.weight_mu, self.bias_mu)
        weight = torch.addcmul(self.weight_mu, self.weight_sigma, torch.outer(self.eps_out, self.eps_in))
        return nn.functional.linear(x, weight, torch.addcmul(self.bias_mu, self.bias_sigma, self.eps_out))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


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
        elif x.dtype != torch.float32:
            x = x.float()
        return self.fc(self.conv(x))


class MinAtarCNN(nn.Module):
    """The torso of the MinAtar paper's DQN (Young and Tian, 2019): one 3x3 conv, 16 channels,
    stride 1, then a 128-unit layer.

    Input: ``bool`` / ``uint8`` / ``float32[B, H, W, C]`` grids, channels last as MinAtar returns
    them; permuted and converted on the tensor inside (no per-step conversion in Python).
    Output: ``float32[B, features]``.
    """

    def __init__(self, obs_shape: Sequence[int], channels: int = 16, features: int = 128) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"MinAtarCNN: obs_shape must be (H, W, C), got {tuple(obs_shape)}")
        h, w, c = (int(s) for s in obs_shape)
        self.conv = nn.Conv2d(c, channels, 3, stride=1)
        self.fc = nn.Linear(channels * (h - 2) * (w - 2), features)
        self.out_dim = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).float()
        x = torch.relu(self.conv(x))
        return torch.relu(self.fc(x.flatten(1)))


def is_small_grid(obs_shape: Sequence[int], dtype: Any) -> bool:
    """Channels-last ``bool`` / ``uint8`` grids of at most 16x16 (MinAtar's ``[10, 10, C]``): what
    ``network="auto"`` gives :class:`MinAtarCNN`."""
    return len(obs_shape) == 3 and obs_shape[0] <= 16 and obs_shape[1] <= 16 and str(dtype) in ("bool", "uint8")


class QNetwork(nn.Module):
    """Q-values ``float32[B, n_actions]`` (or ``float32[B, n_actions, atoms]`` with ``atoms > 1``:
    the logits of C51 or the quantiles of QR-DQN per action) from observations ``[B, *obs_shape]``.

    The torso is the Nature CNN when ``pixels`` is true (or ``"nature"``), :class:`MinAtarCNN`
    when it is ``"minatar"``, otherwise an MLP over the flattened observation. With ``dueling`` the head is V(s) + A(s, a) - mean_a A(s, a) (Wang et al., 2016),
    each stream a hidden layer of ``hidden_sizes[-1]`` units (per atom with ``atoms > 1``). With
    ``noisy`` the head's linear layers are :class:`NoisyLinear` (``sigma0``): each stream's, or,
    without dueling, the last hidden layer and the output layer.
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        n_actions: int,
        hidden_sizes: Sequence[int] = (128, 128),
        dueling: bool = False,
        pixels: bool | str = False,
        atoms: int = 1,
        noisy: bool = False,
        sigma0: float = 0.5,
    ) -> None:
        super().__init__()
        hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.n_actions, self.atoms = int(n_actions), int(atoms)
        split = dueling or noisy  # the last hidden layer belongs to the head's stream(s)
        if pixels:
            self.torso: nn.Module = MinAtarCNN(obs_shape) if pixels == "minatar" else NatureCNN(obs_shape)
            feat = self.torso.out_dim
            stream = [] if not hidden_sizes else [hidden_sizes[-1]]
            if not split:
                stream = []
        else:
            in_dim = math.prod(int(s) for s in obs_shape)
            trunk = hidden_sizes[:-1] if split and hidden_sizes else hidden_sizes
            body = mlp(in_dim, trunk)
            self.torso = nn.Sequential(nn.Flatten(), body)
            feat = trunk[-1] if trunk else in_dim
            stream = list(hidden_sizes[-1:]) if split else []
        self.dueling = bool(dueling)
        self.pixels = bool(pixels)
        linear: Any = (lambda i, o: NoisyLinear(i, o, sigma0)) if noisy else nn.Linear
        out = self.n_actions * self.atoms
        self.head: nn.Module
        if dueling:
            self.value = mlp(feat, stream, self.atoms, linear)
            self.advantage = mlp(feat, stream, out, linear)
        elif noisy:
            self.head = mlp(feat, stream, out, linear)
        else:
            self.head = nn.Linear(feat, out)
        self.noisy_layers: tuple[NoisyLinear, ...] = tuple(m for m in self.modules() if isinstance(m, NoisyLinear))
        # The MLP's layers without their containers (Flatten, Sequential: ~2 us of Python per
        # module call), for forward; the modules stay where they are (same state_dict keys).
        self._layers: tuple[nn.Module, ...] | None = None
        self._trunk: tuple[nn.Module, ...] | None = None
        self._streams: tuple[tuple[nn.Module, ...], ...] = ()
        if not pixels and not dueling and not noisy:
            self._layers = (*body, self.head)
        elif not pixels:
            self._trunk = tuple(body)
            self._streams = (
                (tuple(self.advantage), tuple(self.value)) if dueling else (tuple(cast(nn.Sequential, self.head)),)
            )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dtype != torch.float32 and not self.pixels:  # the CNNs convert (and scale) inside
            obs = obs.float()
        if self._layers is not None:  # the plain MLP, layer by layer
            x = obs if obs.dim() == 2 else obs.flatten(1)
            for layer in self._layers:
                x = layer(x)
            return x if self.atoms == 1 else x.view(-1, self.n_actions, self.atoms)
        if self._trunk is not None:  # the MLP trunk and the head's streams, layer by layer
            z = obs if obs.dim() == 2 else obs.flatten(1)
            for layer in self._trunk:
                z = layer(z)
            outs = []
            for stream in self._streams:
                x = z
                for layer in stream:
                    x = layer(x)
                outs.append(x)
            if not self.dueling:
                return outs[0] if self.atoms == 1 else outs[0].view(-1, self.n_actions, self.atoms)
            a, v = outs
        else:
            z = self.torso(obs)
            if not self.dueling:
                x = self.head(z)
                return x if self.atoms == 1 else x.view(-1, self.n_actions, self.atoms)
            a = self.advantage(z)
            v = self.value(z)
        if self.atoms > 1:
            a, v = a.view(-1, self.n_actions, self.atoms), v.view(-1, 1, self.atoms)
        return v + a - a.mean(dim=1, keepdim=True)

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """New noise in every :class:`NoisyLinear` layer (none without ``noisy``): each layer's
        ``eps_in`` then ``eps_out``, layer by layer, from ``generator``."""
        if self.noisy_layers:
            factorised_noise_([e for layer in self.noisy_layers for e in (layer.eps_in, layer.eps_out)], generator)

    def set_noise(self, on: bool) -> None:
        """Noisy weights (``on``) or the mean weights in every :class:`NoisyLinear` layer."""
        for layer in self.noisy_layers:
            layer.noise_on = on


def final_layer_uniform_(layer: nn.Linear, bound: float) -> nn.Linear:
    """Weights and bias of ``layer`` drawn from U(-bound, bound) (Lillicrap et al., 2015: 3e-3),
    so the first actions and Q-values are near zero."""
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        layer.bias.uniform_(-bound, bound)
    return layer


class Actor(nn.Module):
    """Deterministic policy: observations ``[B, *obs_shape]`` -> actions ``float32[B, action_dim]`` in
    [-1, 1] (tanh output); the final layer starts at U(-final_init, final_init)."""

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        final_init: float = 3e-3,
    ) -> None:
        super().__init__()
        body = mlp(math.prod(int(s) for s in obs_shape), hidden_sizes, action_dim)
        if final_init > 0:
            final_layer_uniform_(cast(nn.Linear, body[-1]), final_init)
        self.net = nn.Sequential(nn.Flatten(), body)
        self._layers = tuple(body)  # called one by one: no container calls (see QNetwork)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        x = x if x.dim() == 2 else x.flatten(1)
        for layer in self._layers:
            x = layer(x)
        return torch.tanh(x)


class Critic(nn.Module):
    """``n_critics`` independent Q(s, a) MLPs over ``cat(flatten(obs), action)``.

    ``forward(obs, action)`` -> ``float32[n_critics, B]``; ``q1`` -> the first critic's ``float32[B]``
    (what the actor climbs). The final layers start at U(-final_init, final_init).
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        n_critics: int = 1,
        final_init: float = 3e-3,
    ) -> None:
        super().__init__()
        in_dim = math.prod(int(s) for s in obs_shape) + int(action_dim)
        qs = [mlp(in_dim, hidden_sizes, 1) for _ in range(n_critics)]
        if final_init > 0:
            for q in qs:
                final_layer_uniform_(cast(nn.Linear, q[-1]), final_init)
        self.qs = nn.ModuleList(qs)

    def _input(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.cat([obs.float().flatten(1), action.float()], dim=1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = self._input(obs, action)
        return torch.stack([q(x).squeeze(1) for q in self.qs])

    def q1(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.qs[0](self._input(obs, action)).squeeze(1)


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam`` plus :meth:`lean_step` and :meth:`clear_grads`: the same update, less Python.

    It is a plain ``torch.optim.Adam`` otherwise (``step()``, ``state_dict()``, ``load_state_dict()``
    and checkpoints are unchanged). :meth:`lean_step` calls the fused kernel that ``step()`` ends
    in, ``torch._fused_adam_``, on the optimizer's own state tensors, without ``step()``'s Python
    wrapper (hooks, profiler ranges, the per-parameter ``_init_group`` walk, regrouping by device
    and dtype: ~100 us of a ~400 us DQN update on one CPU thread). The parameters and the state
    come out bit-identical to ``step()`` (tests/test_lean.py). Step hooks registered on the
    optimizer are not called by :meth:`lean_step`.

    It falls back to ``step()`` for the first step (which creates the state) and for anything but
    one parameter group of fused Adam on one device and dtype without amsgrad, maximize or
    decoupled weight decay, or when a parameter has no gradient.
    """

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._lean: tuple[list[torch.Tensor], ...] | bool | None = None
        """(params, exp_avgs, exp_avg_sqs, steps, ones) once the state exists; False: use step()."""

    def _lean_lists(self) -> tuple[list[torch.Tensor], ...] | bool | None:
        if len(self.param_groups) != 1:
            return False
        g = self.param_groups[0]
        params = g["params"]
        if (
            not g.get("fused")
            or g["amsgrad"]
            or g["maximize"]
            or g.get("decoupled_weight_decay", False)
            or g["differentiable"]
            or len({(p.device, p.dtype) for p in params}) != 1
        ):
            return False
        states: list[dict[str, Any]] = [self.state.get(p) or {} for p in params]
        if any(not st for st in states):
            return None  # no state yet: the next step() creates it
        steps = [st["step"] for st in states]
        one = torch.ones((), dtype=steps[0].dtype, device=steps[0].device)
        return (
            list(params),
            [st["exp_avg"] for st in states],
            [st["exp_avg_sq"] for st in states],
            steps,
            [one] * len(steps),  # steps += 1 as a tensor list: half the cost of a scalar on CPU
        )

    def lean_step(self) -> None:
        """One Adam step, the same as ``step()`` (see the class)."""
        lists = self._lean
        if lists is None:
            lists = self._lean = self._lean_lists()
        if not isinstance(lists, tuple):
            self.step()
            if lists is None:
                self._lean = self._lean_lists()
            return
        params, exp_avgs, exp_avg_sqs, steps, ones = lists
        grads = [p.grad for p in params]
        if any(g is None for g in grads):
            self.step()
            return
        g = self.param_groups[0]
        beta1, beta2 = g["betas"]
        torch._foreach_add_(steps, ones)
        torch._fused_adam_(
            params,
            grads,  # type: ignore[arg-type]
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            amsgrad=False,
            lr=g["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=g["weight_decay"],
            eps=g["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )

    def clear_grads(self) -> None:
        """``zero_grad(set_to_none=True)`` without its profiler range and regrouping."""
        if len(self.param_groups) != 1:
            self.zero_grad(set_to_none=True)
            return
        for p in self.param_groups[0]["params"]:
            p.grad = None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._lean = None  # a second group: lean_step checks again (and uses step())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's, keeping this optimizer's ``capturable`` (a checkpoint of a CUDA-graph run
        loads into an agent on the CPU, and the other way round)."""
        capturable = self.defaults.get("capturable", False)
        super().load_state_dict(state_dict)
        for g in self.param_groups:
            g["capturable"] = capturable
        self._lean = None  # the state tensors were replaced


def step_(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.lean_step()`` for a :class:`LeanAdam`, ``optimizer.step()`` for any other."""
    if isinstance(optimizer, LeanAdam):
        optimizer.lean_step()
    else:
        optimizer.step()


def clear_grads_(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.clear_grads()`` for a :class:`LeanAdam`, ``zero_grad(set_to_none=True)`` for any other."""
    if isinstance(optimizer, LeanAdam):
        optimizer.clear_grads()
    else:
        optimizer.zero_grad(set_to_none=True)


def adam(params: Any, lr: float, eps: float, device: torch.device, capturable: bool = False) -> LeanAdam:
    """A :class:`LeanAdam` with the fused kernel where torch has one for ``device``, else the
    foreach one (``capturable``: its state on the device, for CUDA graph capture)."""
    params = list(params)
    extra = {"capturable": True} if capturable else {}
    if device.type in ("cuda", "cpu", "mps"):
        try:
            return LeanAdam(params, lr=lr, eps=eps, fused=True, **extra)
        except (RuntimeError, TypeError, ValueError):
            pass
    return LeanAdam(params, lr=lr, eps=eps, foreach=True, **extra)


@torch.no_grad()
def clip_grad_norm_(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)`` for the gradients
    ``grads`` of one device and dtype: the same kernels and the same result, without its Python
    regrouping. No host-device synchronisation (the scale is clamped on the device). Returns the
    total norm (a 0-d tensor) before clipping."""
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    clip_coef = max_norm / (total + 1e-6)
    torch._foreach_mul_(grads, torch.clamp(clip_coef, max=1.0))
    return total


def clip_grads_(params: Sequence[torch.Tensor], max_norm: float, clip_value: float = 0.0) -> None:
    """Clip the gradients of ``params`` element-wise to [-clip_value, clip_value] (if > 0), then
    their global norm to ``max_norm`` (if > 0), as torch's clip_grad_value_ and clip_grad_norm_."""
    if clip_value > 0:
        torch.nn.utils.clip_grad_value_(params, clip_value)
    if max_norm > 0:
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            if len({(g.device, g.dtype) for g in grads}) == 1:
                clip_grad_norm_(grads, max_norm)
            else:
                torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)


@torch.no_grad()
def polyak_(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: float) -> None:
    """``target += tau * (online - target)`` for every pair, in one foreach kernel per dtype and
    device (``tau == 1`` copies)."""
    if tau >= 1.0:
        torch._foreach_copy_(list(target), list(online))
    else:
        torch._foreach_lerp_(list(target), list(online), tau)


def copy_buffers_(target: nn.Module | Sequence[torch.Tensor], online: nn.Module | Sequence[torch.Tensor]) -> None:
    """Copy non-parameter buffers (e.g. batch-norm statistics) of ``online`` into ``target``
    (modules, or their ``list(module.buffers())``: no module walk per call)."""
    t = list(target.buffers()) if isinstance(target, nn.Module) else list(target)
    o = list(online.buffers()) if isinstance(online, nn.Module) else list(online)
    if t:
        with torch.no_grad():
            torch._foreach_copy_(t, o)


def agent_state(agent: Any, parts: Sequence[str]) -> dict[str, Any]:
    """An agent's checkpoint state: the ``state_dict()`` of each of its attributes named in
    ``parts`` (networks, optimizers, exploration schedule, noise), its generator's state and its
    update count."""
    return {
        **{k: getattr(agent, k).state_dict() for k in parts},
        "rng": agent.rng.bit_generator.state,
        "updates": agent.updates,
    }


def load_agent_state(agent: Any, parts: Sequence[str], state: dict[str, Any]) -> None:
    """The inverse of :func:`agent_state`."""
    for k in parts:
        getattr(agent, k).load_state_dict(state[k])
    agent.rng.bit_generator.state = state["rng"]
    agent.updates = int(state["updates"])
