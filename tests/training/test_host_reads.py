"""The training step's compute on the accelerator path reads nothing back to the host (each such read stalls a
GPU until its queue drains). On the CPU, host reads are explicit calls, so patching them to raise finds every
one; GB is switched to its device path (on a CPU it keeps SciPy's faster distance transform on purpose)."""
import pytest
import torch

from data_modules.base import collate
from data_modules.synthetic import ShapesDataModule
from xmgie.conditioning import TextEncoderConfig
from xmgie.models import GeneratorConfig, losses
from xmgie.modules import gaussian_blur
from xmgie.modules.config import CAMConfig, GBConfig, IEConfig, ModulesConfig, PFBConfig
from xmgie.training.config import SamplingConfig
from xmgie.training.ema import clip_gradients, ema_update
from xmgie.training.lit_generator import XMGIEModule

READS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


@pytest.fixture
def no_host_reads(monkeypatch):
    """Within the test, a tensor read back to the host or a SciPy distance transform raises."""
    def refuse(name):
        def read(self, *args, **kwargs):
            raise AssertionError(f"host read: Tensor.{name}")
        return read

    import scipy.ndimage

    monkeypatch.setattr(gaussian_blur, "on_accelerator", lambda t: True)
    yield lambda: [monkeypatch.setattr(torch.Tensor, name, refuse(name)) for name in READS] + [
        monkeypatch.setattr(scipy.ndimage, "distance_transform_edt", refuse("scipy"))]


def test_the_generator_and_discriminator_updates_make_no_host_reads(no_host_reads):
    torch.manual_seed(0)
    modules = ModulesConfig(PFBConfig(True, ("mid", "up0", "out"), alpha_init=0.95), CAMConfig(True),
                            IEConfig(True, dim=16, attention="decoupled"), GBConfig(True, 1.0, 2.0))
    m = XMGIEModule(generator=GeneratorConfig(size="micro", mask_channel=True, residual=True, prediction_type="sample",
                                              text=TextEncoderConfig(width=32, layers=1, heads=2)),
                    modules=modules, discriminator_channels=8, sampling=SamplingConfig(text_dropout=0.5,
                                                                                       image_dropout=0.5))
    ds = ShapesDataModule(resolution=16).dataset("train")
    batch = collate([ds[i] for i in range(4)])
    opt_g, opt_d = m.configure_optimizers()  # fused Adam, as in training
    no_host_reads()
    out = m.generator_forward(batch)                                       # steps 1–4
    d_loss = losses.discriminator_loss(m.discriminator(batch["target"]), m.discriminator(out["x_edit"].detach()))
    d_loss.backward()                                                      # step 5
    clip_gradients(opt_d, 1.0)
    opt_d.step()
    terms = m.generator_terms(out, adversarial=True)                       # step 6
    assert set(terms) == {"diff", "recon", "id", "adv"}
    g_loss = sum(terms.values())
    g_loss.backward()
    clip_gradients(opt_g, 1.0)
    opt_g.step()
    ema_update(m.ema, m.generator, 0.999, 10)                              # step 7


def test_the_progress_bar_reads_the_losses_every_logging_interval_on_an_accelerator():
    """Each refresh of the bar reads the logged losses to the host: on CPU that is free, on a GPU it would make
    every step wait for the device, so there the bar refreshes when the logger writes."""
    from types import SimpleNamespace

    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

    from xmgie.training.lightning_cli import StepProgressBar

    for accelerator, every in ((CPUAccelerator(), 1), (CUDAAccelerator(), 25)):
        bar = StepProgressBar()
        bar.setup(SimpleNamespace(accelerator=accelerator, log_every_n_steps=25, is_global_zero=True), None, "fit")
        assert bar.refresh_rate == every
