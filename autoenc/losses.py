"""Training losses for denoisers, chosen once by name (``train.loss``) before the loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stft_loss(est: torch.Tensor, ref: torch.Tensor, ffts: tuple[int, ...] = (512, 1024, 2048)) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, averaged over
    FFT sizes (hop = size / 4, Hann window) — as in Parallel WaveGAN / Demucs."""
    total = est.new_zeros(())
    e, r = est.reshape(-1, est.shape[-1]), ref.reshape(-1, ref.shape[-1])
    for n in ffts:
        win = torch.hann_window(n, device=est.device)
        E = torch.stft(e, n, n // 4, window=win, return_complex=True).abs().clamp(min=1e-5)
        R = torch.stft(r, n, n // 4, window=win, return_complex=True).abs().clamp(min=1e-5)
        sc = torch.linalg.norm(R - E) / torch.linalg.norm(R).clamp(min=1e-7)
        total = total + sc + F.l1_loss(E.log(), R.log())
    return total / len(ffts)


def psnr_loss(est: torch.Tensor, ref: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Mean over samples of 10 log10(MSE + floor) (= minus the mean PSNR on the 0..1 scale).

    A plain MSE is dominated by the noisiest samples, so a blind model under-fits low noise
    (Gnanasambandam & Chan 2020); the log weighs each sample by 1 / its own error instead.
    ``floor`` (about 60 dB) stops clean inputs from pulling without bound."""
    mse = (est - ref).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(mse + floor).mean()


def snr_loss(est: torch.Tensor, ref: torch.Tensor, cap_db: float = 50.0) -> torch.Tensor:
    """Mean over samples of -SNR in dB, 10 log10(|ref - est|^2 / |ref|^2), each capped at
    ``cap_db``: every segment counts by its own ratio, so quiet noise (a near-clean input)
    weighs as much as loud noise, and a gain change is an error (unlike SI-SDR)."""
    err = (est - ref).pow(2).flatten(1).sum(1)
    power = ref.pow(2).flatten(1).sum(1).clamp(min=1e-12)
    return 10 * torch.log10(err / power + 10 ** (-cap_db / 10)).mean()


LOSSES = {
    "l1": F.l1_loss,
    "l2": F.mse_loss,
    "charbonnier": lambda a, b: torch.sqrt((a - b) ** 2 + 1e-6).mean(),
    "l1+stft": lambda a, b: F.l1_loss(a, b) + 0.5 * stft_loss(a, b),
    "psnr": psnr_loss,
    "snr+stft": lambda a, b: 0.1 * snr_loss(a, b) + 0.5 * stft_loss(a, b),
}
