"""Gaussian Blurring (GB, §3.6, Eq. 18–19): blur the edited image inside the mask with a per-pixel σ that
depends on the distance to the mask's edge, so the edit's seam blends into the kept background.

    D(p)   = Euclidean distance (pixels) from an inside-mask pixel p to the nearest pixel outside the mask
    σ(p)   = σ_max · exp(−D(p)² / (2 σ_s²))                                              (Eq. 18)
    X_blur = X ⊙ (1 − M) + (X ∗ G_σ(p)) ⊙ M                                              (Eq. 19)

With this formula the blur is strongest at the edge (D = 1) and fades inwards (the equation is implemented, not
the paper's prose; docs/modules.md). The per-pixel blur is approximated by blurring at a few σ levels (separable
Gaussians, reflect padding: `separable_gaussian`) and interpolating each pixel between its two neighbouring levels,
linearly in the variance σ², the quantity Gaussian blurs add up in. `brute_force_blur` is the exact per-pixel
reference.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.fft import next_fast_len

from xmgie.modules.plugin import EditCondition, EditPlugin

# σ levels as fractions of σ_max: geometric with ratio 1.5 (and 0). Against the exact per-pixel blur this keeps the
# worst error on uniform noise in [-1, 1] about 0.07 (0.035 on `shapes` images) at ~2.9x the kernel work of one
# σ_max blur; ratio 2 costs 2x but errs by 0.22, even linear steps of σ_max/10 (5.5x) still err by 0.06.
LEVEL_FRACTIONS = (0.0,) + tuple(1.5 ** -k for k in range(7, -1, -1))
# Rows or columns of this many samples or more (padding included) are blurred through the FFT: on a 1000² RGB crop
# (2 cores) a direct depthwise pass costs 54-87 ms for 9 to 33 taps and 102 ms for 241, the FFT 6-16 ms; below 256
# samples both take under 1.3 ms, and small images (training at 32 px) keep the direct form.
FFT_LENGTH = 256


def min_plus_rows(f: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """(..., N) -> (..., N): out[..., i] = min_j f[..., j] + (i − j)², the 1-D squared-distance transform by direct
    minimisation (O(N²) per line, in chunks of `chunk` output positions to bound the memory)."""
    n = f.shape[-1]
    pos = torch.arange(n, device=f.device, dtype=f.dtype)
    outs = []
    for start in range(0, n, chunk):
        i = pos[start:start + chunk]
        outs.append((f[..., None, :] + (i[:, None] - pos[None, :]).square()).amin(dim=-1))  # (..., c)
    return torch.cat(outs, dim=-1)


def inside_distance(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) mask in {0, 1} -> (B, 1, H, W) float32: exact Euclidean distance (pixels) from each inside
    pixel to the nearest outside pixel, 0 outside, +inf where the mask has no outside pixel (an all-ones "edit
    anywhere" mask: no seam, so no blur). The mask carries no gradient.

    On the CPU SciPy's linear-time transform (a 512² mask in milliseconds, where the direct torch form takes 5.5 s);
    on an accelerator `separable_distance`, which stays on the device."""
    if on_accelerator(mask):
        return separable_distance(mask)
    m = (mask.detach() > 0.5).numpy()
    out = np.zeros(m.shape, dtype=np.float32)
    for i in range(m.shape[0]):
        if m[i, 0].all():
            out[i, 0] = np.inf
        elif m[i, 0].any():
            out[i, 0] = ndimage.distance_transform_edt(m[i, 0])
    return torch.from_numpy(out)


def on_accelerator(t: torch.Tensor) -> bool:
    """Whether GB takes its device path for `t` (whole image, torch distance, no host reads)."""
    return t.device.type != "cpu"


def separable_distance(mask: torch.Tensor) -> torch.Tensor:
    """`inside_distance` in torch, on the mask's device with no host reads: the squared distance is separable, a
    min-plus pass along the columns then one along the rows (Felzenszwalb & Huttenlocher's decomposition, each pass
    minimised directly: O(H·W·(H + W)) work, parallel)."""
    inside = mask.detach() > 0.5                                                # (B, 1, H, W)
    H, W = inside.shape[-2:]
    big = float((H + W) ** 2)  # more than any squared distance inside the image: "no outside pixel in reach"
    f = torch.where(inside, big, 0.0).to(torch.float32)
    cols = min_plus_rows(f.transpose(-1, -2)).transpose(-1, -2)                  # along each column
    d2 = min_plus_rows(cols.clamp(max=big))                                      # then along each row
    return torch.where(d2 >= big, torch.inf, d2.sqrt())


def blur_sigma(distance: torch.Tensor, sigma_max: float, sigma_s: float) -> torch.Tensor:
    """Eq. 18: σ = σ_max · exp(−D² / (2 σ_s²)) inside the mask (D > 0), 0 outside (D = 0). Same shape."""
    sigma = sigma_max * torch.exp(-distance.square() / (2 * sigma_s**2))
    return torch.where(distance > 0, sigma, torch.zeros_like(sigma))


def gaussian_kernel1d(radius: int, sigma: float, dtype: torch.dtype = torch.float32,
                      device: torch.device | None = None) -> torch.Tensor:
    """(2·radius + 1,) Gaussian taps exp(−x²/(2σ²)) at x = −radius … radius, normalised to sum 1."""
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-x.square() / (2 * sigma**2))
    return k / k.sum()


def separable_gaussian(image: torch.Tensor, sigma: float, radius_y: int, radius_x: int) -> torch.Tensor:
    """(B, C, H, W) -> same: correlation with a Gaussian of σ pixels along the rows, then the columns, over
    borders reflected about the edge pixel (… c b | a b c … | … b a); each radius must be below its side. Sides of
    FFT_LENGTH samples or more (large photos) are filtered through the FFT."""
    C = image.shape[1]
    for radius, dim in ((radius_x, -1), (radius_y, -2)):
        taps = gaussian_kernel1d(radius, sigma, device=image.device).to(image.dtype)  # (2r + 1,), made in fp32
        pad = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
        padded = F.pad(image, pad, mode="reflect")
        if padded.shape[dim] >= FFT_LENGTH:
            image = fft_correlate(padded, taps, dim)
        else:
            shape = (C, 1, 1, -1) if dim == -1 else (C, 1, -1, 1)
            image = F.conv2d(padded, taps.expand(C, -1).reshape(shape), groups=C)
    return image


def fft_correlate(x: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    """x with n samples along `dim` (the signal padded by r on both sides), taps (k,) = (2r + 1,) -> n − k + 1
    samples y[i] = Σ_j x[i + j] taps[j], as a circular convolution with the reversed taps over m ≥ n samples (x
    zero-extended to a length with only the factors 2, 3 and 5, which the FFT is fastest at): no kept output reads
    a wrapped-around sample, so it equals the direct sum to rounding (computed in float32 at least)."""
    n, k = x.shape[dim], len(taps)
    m = next_fast_len(n, real=True)
    work = x.movedim(dim, -1)
    work = work if work.dtype in (torch.float32, torch.float64) else work.float()
    spectrum = torch.fft.rfft(work, n=m) * torch.fft.rfft(taps.flip(0).to(work.dtype), n=m)
    return torch.fft.irfft(spectrum, n=m)[..., k - 1:n].to(x.dtype).movedim(-1, dim)


def kernel_radius(sigma: float, size: int) -> int:
    """Kernel half-width for σ: ⌈3σ⌉ (99.7 % of the mass), capped so reflect padding stays valid."""
    return min(math.ceil(3 * sigma), size - 1)


def level_weights(sigma: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) σ map and (L,) increasing levels (levels[0] = 0) -> (B, L, H, W) weights: each pixel's two
    neighbouring levels, interpolated linearly in σ²; σ beyond the last level gets the last level."""
    var, lv = sigma.square(), levels.square()                              # (B, 1, H, W), (L,)
    var = torch.minimum(var, lv[-1])  # a device scalar: no host read
    upper = torch.searchsorted(lv, var.contiguous(), right=False).clamp(1, len(lv) - 1)  # (B, 1, H, W)
    lo_v, hi_v = lv[upper - 1], lv[upper]
    w_hi = ((var - lo_v) / (hi_v - lo_v)).clamp(0, 1)
    weights = torch.zeros(sigma.shape[0], len(lv), *sigma.shape[2:], dtype=sigma.dtype, device=sigma.device)
    weights.scatter_(1, upper, w_hi)
    weights.scatter_add_(1, upper - 1, 1 - w_hi)
    return weights


def variable_blur(image: torch.Tensor, sigma: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """(B, C, H, W) image, (B, 1, H, W) per-pixel σ in [0, σ_max] -> (B, C, H, W) blurred at each pixel's σ
    (level interpolation). Only the levels some pixel needs are computed."""
    H, W = image.shape[-2:]
    sigmas = [f * sigma_max for f in LEVEL_FRACTIONS]
    levels = torch.tensor(sigmas, dtype=image.dtype, device=image.device)
    weights = level_weights(sigma.to(image.dtype), levels)              # (B, L, H, W)
    if not on_accelerator(image):  # skip the levels no pixel needs (a host read: free on the CPU)
        used = torch.nonzero(weights.flatten(2).amax(dim=(0, 2)) > 0).flatten().tolist()
    else:  # on an accelerator every level, so that nothing waits for the device
        used = range(len(LEVEL_FRACTIONS))
    out = torch.zeros_like(image)
    for k in used:
        s = sigmas[k]
        if s == 0:
            blurred = image
        else:
            # the kernels from Python floats: nothing is read back from the device
            blurred = separable_gaussian(image, s, kernel_radius(s, H), kernel_radius(s, W))
        out = out + weights[:, k:k + 1] * blurred
    return out


def gaussian_blur_edit(image: torch.Tensor, mask: torch.Tensor, sigma_max: float = 5.0,
                       sigma_s: float = 10.0) -> torch.Tensor:
    """Eq. 18–19. image (B, C, H, W) float, mask (B, 1, H, W) in {0, 1} -> (B, C, H, W).

    Outside the mask the output is the input exactly; σ_max = 0 is the identity. Differentiable w.r.t. the
    image. On the CPU only the mask's bounding box (plus the largest kernel radius) is processed; on an
    accelerator the whole image, with static shapes and no host reads.
    """
    if sigma_max < 0 or sigma_s <= 0:
        raise ValueError(f"need sigma_max >= 0 and sigma_s > 0, got {sigma_max}, {sigma_s}")
    if sigma_max == 0:
        return image
    if on_accelerator(image):  # static shapes and no host reads on an accelerator: the whole image
        return blur_whole(image, mask, sigma_max, sigma_s)
    box = mask_box(mask, margin=max(kernel_radius(sigma_max, max(image.shape[-2:])), 1))
    if box is None:
        return image
    (y0, y1), (x0, x1) = box
    crop, crop_mask = image[..., y0:y1, x0:x1].contiguous(), mask[..., y0:y1, x0:x1]  # convs are slow on views
    sigma = blur_sigma(inside_distance(crop_mask), sigma_max, sigma_s)  # (B, 1, h, w), Eq. 18
    blurred = torch.where(sigma > 0, variable_blur(crop, sigma, sigma_max), crop)  # Eq. 19, exact outside
    out = image.clone()
    out[..., y0:y1, x0:x1] = blurred
    return out


def blur_whole(image: torch.Tensor, mask: torch.Tensor, sigma_max: float, sigma_s: float) -> torch.Tensor:
    """Eq. 18–19 over the whole image (B, C, H, W) -> same: what `gaussian_blur_edit` computes on the mask's box."""
    sigma = blur_sigma(inside_distance(mask), sigma_max, sigma_s)                # (B, 1, H, W), Eq. 18
    return torch.where(sigma > 0, variable_blur(image, sigma, sigma_max), image)  # Eq. 19, exact outside


def mask_box(mask: torch.Tensor, margin: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Rows and columns [start, stop) of the masks' bounding box grown by `margin` and clipped to the image, or
    None for empty masks. With margin ≥ the largest kernel radius (and ≥ 1), blurring and the distance transform
    on this crop give exactly the full image's values inside the mask: every kernel window and every nearest
    outside pixel lies in the crop, and the crop meets the image border wherever the full image does."""
    inside = mask.detach().amax(dim=(0, 1)) > 0.5                        # (H, W)
    rows, cols = torch.nonzero(inside.any(1)).flatten(), torch.nonzero(inside.any(0)).flatten()
    if not len(rows):
        return None
    H, W = inside.shape
    return ((max(int(rows[0]) - margin, 0), min(int(rows[-1]) + margin + 1, H)),
            (max(int(cols[0]) - margin, 0), min(int(cols[-1]) + margin + 1, W)))


def brute_force_blur(image: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Reference for `variable_blur`: (C, H, W) float64 image, (H, W) σ map -> each pixel with σ > 0 replaced by
    its own normalised Gaussian (radius `kernel_radius`, reflect padding) average. Slow: tests and benchmarks."""
    C, H, W = image.shape
    out = image.copy()
    for y, x in zip(*np.nonzero(sigma > 0)):
        s = float(sigma[y, x])
        ry, rx = kernel_radius(s, H), kernel_radius(s, W)
        gy = np.exp(-np.arange(-ry, ry + 1) ** 2 / (2 * s * s))
        gx = np.exp(-np.arange(-rx, rx + 1) ** 2 / (2 * s * s))
        gy, gx = gy / gy.sum(), gx / gx.sum()  # Kornia normalises each 1-D kernel
        rows = _reflect(np.arange(y - ry, y + ry + 1), H)
        cols = _reflect(np.arange(x - rx, x + rx + 1), W)
        patch = image[:, rows][:, :, cols]                              # (C, 2ry+1, 2rx+1)
        out[:, y, x] = np.einsum("cij,i,j->c", patch, gy, gx)
    return out


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices reflected into [0, n) without repeating the edge (torch's 'reflect' padding)."""
    idx = np.abs(idx)
    return np.where(idx >= n, 2 * (n - 1) - idx, idx)


class GaussianBlur(EditPlugin):
    """GB as a generator plugin: post-processes x̂0 (training) and the final DDIM sample (editing)."""

    name = "gb"

    def __init__(self, sigma_max: float = 5.0, sigma_s: float = 10.0):
        super().__init__()
        self.sigma_max, self.sigma_s = sigma_max, sigma_s

    def postprocess(self, x0: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        return gaussian_blur_edit(x0, cond.mask, self.sigma_max, self.sigma_s)

    def extra_repr(self) -> str:
        return f"sigma_max={self.sigma_max}, sigma_s={self.sigma_s}"
