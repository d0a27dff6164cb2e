"""The noise schedule (ᾱ_t of the forward process x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε) and deterministic DDIM
sampling over it (η = 0), as diffusers' DDPM and DDIM schedulers compute them, so a model trained under one samples
the same under the other. Only torch is imported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
SCHEDULE_FIELDS = ("prediction_type", "beta_schedule", "num_train_timesteps", "beta_start", "beta_end")


def betas_for(schedule: str, T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """(T,) float32 β_t: linear in β, linear in sqrt(β) ("scaled_linear", Stable Diffusion's), or the cosine
    schedule of Nichol & Dhariwal (β_t = 1 − ᾱ((t+1)/T) / ᾱ(t/T), ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), capped at
    0.999)."""
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=torch.float32) ** 2
    if schedule == "squaredcos_cap_v2":
        def alpha_bar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)],
                            dtype=torch.float32)
    raise ValueError(f"unknown beta_schedule {schedule!r}; available: {', '.join(BETA_SCHEDULES)}")


@dataclass(frozen=True)
class NoiseSchedule:
    """The forward process a generator was trained under: the fields of a diffusers scheduler_config.json, with the
    defaults diffusers gives a file that leaves one out."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    prediction_type: str = "epsilon"

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"unknown beta_schedule {self.beta_schedule!r}; available: {', '.join(BETA_SCHEDULES)}")

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """(T,) float32 ᾱ_t = Π_{s ≤ t} (1 − β_s)."""
        betas = betas_for(self.beta_schedule, self.num_train_timesteps, self.beta_start, self.beta_end)
        return torch.cumprod(1 - betas, dim=0)


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """'Trailing' spacing: `steps` timesteps from T − 1 down, round(T − k·(T/steps)) − 1 for k = 0 … steps − 1
    (halves rounded to even)."""
    if not 1 <= steps <= T:
        raise ValueError(f"DDIM steps must be in [1, {T}], got {steps}")
    return [round(T - k * (T / steps)) - 1 for k in range(steps)]


def ddim_step(x_t: torch.Tensor, pred: torch.Tensor, t: int, steps: int, alphas_cumprod: torch.Tensor,
              prediction_type: str) -> torch.Tensor:
    """One deterministic DDIM update x_t -> x_{t'} (Song et al. 2021, η = 0) with t' = t − ⌊T/steps⌋:

        x̂0, ε̂ from the prediction (ε, v or x0);   x_{t'} = sqrt(ᾱ_{t'}) x̂0 + sqrt(1 − ᾱ_{t'}) ε̂,

    with ᾱ_{t'} = 1 once t' < 0 (the last step lands on the clean image). As in diffusers' DDIM, t' may differ by
    one from the next 'trailing' timestep when steps does not divide T. x_t, pred (B, C, h, w)."""
    a = alphas_cumprod[t]
    prev = t - len(alphas_cumprod) // steps
    a_prev = alphas_cumprod[prev] if prev >= 0 else alphas_cumprod.new_ones(())
    b = 1 - a
    if prediction_type == "epsilon":
        x0, eps = (x_t - b ** 0.5 * pred) / a ** 0.5, pred
    elif prediction_type == "sample":
        x0 = pred
        eps = (x_t - a ** 0.5 * x0) / b ** 0.5
    elif prediction_type == "v_prediction":
        x0, eps = a ** 0.5 * x_t - b ** 0.5 * pred, a ** 0.5 * pred + b ** 0.5 * x_t
    else:
        raise ValueError(f"unknown prediction_type {prediction_type!r}")
    return a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
