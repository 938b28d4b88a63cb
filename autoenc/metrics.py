"""Image quality metrics in numpy (torch-free, so the inference side can report them too)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def psnr(ref: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of ``test`` against ``ref`` (same shape)."""
    mse = float(np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2))
    if mse == 0:
        return float("inf")
    return 10.0 * np.log10(data_range**2 / mse)


def _gauss_kernel(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _filter(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of a 2-D float64 array."""
    tmp = sliding_window_view(img, k.size, axis=0) @ k
    return sliding_window_view(tmp, k.size, axis=1) @ k


def ssim(ref: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 gaussian window, sigma 1.5, K1=0.01,
    K2=0.03), averaged over channels. Arrays are (H, W) or (H, W, C); H, W >= 11."""
    if ref.ndim == 2:
        ref, test = ref[..., None], test[..., None]
    k = _gauss_kernel()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for c in range(ref.shape[2]):
        x, y = ref[..., c].astype(np.float64), test[..., c].astype(np.float64)
        mx, my = _filter(x, k), _filter(y, k)
        sxx = _filter(x * x, k) - mx * mx
        syy = _filter(y * y, k) - my * my
        sxy = _filter(x * y, k) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        vals.append(float(s.mean()))
    return float(np.mean(vals))


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), 1-D signals."""
    ref = ref.astype(np.float64) - ref.mean()
    est = est.astype(np.float64) - est.mean()
    alpha = np.dot(est, ref) / max(np.dot(ref, ref), 1e-12)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10(max(np.dot(target, target), 1e-12) / max(np.dot(noise, noise), 1e-12)))


def pesq_wb(ref: np.ndarray, est: np.ndarray, sample_rate: int = 16000) -> float:
    """Wideband PESQ (ITU-T P.862.2) via the ``pesq`` package; NaN where it finds no speech."""
    from pesq import pesq

    try:
        return float(pesq(sample_rate, ref.astype(np.float64), est.astype(np.float64), "wb"))
    except Exception:  # NoUtterancesError and friends on silent input
        return float("nan")


def stoi(ref: np.ndarray, est: np.ndarray, sample_rate: int = 16000) -> float:
    """Short-time objective intelligibility (Taal et al. 2011) via ``pystoi``."""
    from pystoi import stoi as _stoi

    return float(_stoi(ref.astype(np.float64), est.astype(np.float64), sample_rate, extended=False))
