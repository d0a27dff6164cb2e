"""The noise schedule and DDIM against diffusers' DDPM and DDIM schedulers (the reference they must reproduce)."""
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from xmgie.models.noise_schedule import NoiseSchedule, ddim_step, ddim_timesteps

SCHEDULES = [dict(beta_schedule="squaredcos_cap_v2"), dict(beta_schedule="linear"),
             dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)]


@pytest.mark.parametrize("kw", SCHEDULES)
def test_alphas_cumprod_equal_diffusers(kw):
    ours = NoiseSchedule(num_train_timesteps=1000, **kw).alphas_cumprod
    ref = DDPMScheduler(num_train_timesteps=1000, **kw).alphas_cumprod
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=0, rtol=0)


@pytest.mark.parametrize("T,steps", [(1000, 1), (1000, 8), (1000, 32), (1000, 50), (1000, 333), (100, 7), (1000, 1000)])
def test_trailing_timesteps_equal_diffusers(T, steps):
    ref = DDIMScheduler(num_train_timesteps=T, timestep_spacing="trailing")
    ref.set_timesteps(steps)
    assert ddim_timesteps(T, steps) == ref.timesteps.tolist()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("kw", SCHEDULES[:2])
def test_a_ddim_trajectory_equals_diffusers(prediction_type, kw):
    """A whole 10-step trajectory under a fixed stand-in model, step for step."""
    schedule = NoiseSchedule(prediction_type=prediction_type, **kw)
    ref = DDIMScheduler(**{k: getattr(schedule, k) for k in ("num_train_timesteps", "beta_schedule", "beta_start",
                                                              "beta_end", "prediction_type")},
                        timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False)
    ref.set_timesteps(10)
    torch.manual_seed(0)
    x = y = torch.randn(2, 3, 4, 4)
    for t in ddim_timesteps(1000, 10):
        pred = torch.tanh(y * 0.7 + t / 1000)  # any function of the sample
        x = ddim_step(x, torch.tanh(x * 0.7 + t / 1000), t, 10, schedule.alphas_cumprod, prediction_type)
        y = ref.step(pred, t, y).prev_sample
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown beta_schedule 'cosine'"):
        NoiseSchedule(beta_schedule="cosine")
    with pytest.raises(ValueError, match=r"DDIM steps must be in \[1, 1000\]"):
        ddim_timesteps(1000, 0)
