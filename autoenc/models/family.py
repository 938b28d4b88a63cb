"""The autoencoder family on small gray images (28x28 Fashion-MNIST): undercomplete,
overcomplete, sparse and variational, dense and convolutional.

Every model maps (B, 1, 28, 28) in 0..1 to a code with ``encode``, back with ``decode`` (sigmoid
output), and exposes ``objective(x, generator)`` returning the training loss and its parts, so
each member carries its own regulariser:

* undercomplete (``ae_dense``, ``ae_conv``): latent smaller than the 784 inputs; MSE.
* overcomplete (``ae_overcomplete``): latent larger than the input (default 1024 > 784). Left
  alone it could learn the identity; it is kept from that by denoising (inputs corrupted with
  masking noise, target the clean image) plus an L1 penalty on the code.
* sparse (``ae_sparse``): sigmoid code with a KL(rho || rho_hat) penalty pushing each unit's
  mean activation toward ``rho``.
* variational (``vae_dense``, ``vae_conv``): encoder gives (mu, log var), reparameterisation,
  loss = -ELBO = reconstruction (binary cross-entropy, summed over pixels) + beta * KL(q || N(0, I)),
  averaged over the batch; ``sample`` draws from the prior.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autoenc.models.registry import register_model

SIDE = 28
PIXELS = SIDE * SIDE


def _mlp_encoder(hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


def _mlp_decoder(latent: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, PIXELS), nn.Unflatten(1, (1, SIDE, SIDE)))


def _conv_encoder(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(inplace=True),  # 14x14
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(inplace=True),  # 7x7
        nn.Flatten(), nn.Linear(2 * width * 49, out),
    )


def _conv_decoder(latent: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(latent, 2 * width * 49), nn.ReLU(inplace=True), nn.Unflatten(1, (2 * width, 7, 7)),
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * width, width, 3, padding=1), nn.ReLU(inplace=True),
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, 1, 3, padding=1),
    )


class _AE(nn.Module):
    """Deterministic autoencoder: ``encode`` -> code, ``decode`` -> sigmoid image."""

    variational = False

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent: int) -> None:
        super().__init__()
        self.encoder, self.decoder, self.latent = encoder, decoder, latent

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def objective(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        mse = F.mse_loss(self(x), x)
        return mse, {"mse": mse.item()}

    def diagnostics(self, code: torch.Tensor) -> dict:
        """What this member's regulariser should show on a batch of codes (none by default)."""
        return {}


@register_model("ae_dense", modality="family")
class DenseAE(_AE):
    """Undercomplete dense autoencoder 784 -> hidden -> latent -> hidden -> 784."""

    def __init__(self, channels: int = 1, latent: int = 32, hidden: int = 512) -> None:
        super().__init__(_mlp_encoder(hidden, latent), _mlp_decoder(latent, hidden), latent)


@register_model("ae_conv", modality="family")
class ConvAE(_AE):
    """Undercomplete convolutional autoencoder: two stride-2 convs -> latent -> upsample+conv."""

    def __init__(self, channels: int = 1, latent: int = 32, width: int = 32) -> None:
        super().__init__(_conv_encoder(width, latent), _conv_decoder(latent, width), latent)


@register_model("ae_overcomplete", modality="family")
class OvercompleteAE(_AE):
    """Overcomplete dense autoencoder (latent > 784) regularised by denoising (masking noise on
    the input, clean target) and an L1 penalty on the code, so it cannot just copy its input."""

    def __init__(self, channels: int = 1, latent: int = 1024, hidden: int = 1024, corruption: float = 0.3, code_l1: float = 1e-4) -> None:
        super().__init__(_mlp_encoder(hidden, latent), _mlp_decoder(latent, hidden), latent)
        self.corruption, self.code_l1 = corruption, code_l1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.encoder(x))

    def objective(self, x, generator=None):
        keep = (torch.rand(x.shape, generator=generator) >= self.corruption).to(x.dtype)
        code = self.encode(x * keep / (1 - self.corruption))  # inverted masking: clean inputs keep their scale
        mse = F.mse_loss(self.decode(code), x)
        l1 = code.abs().mean()
        return mse + self.code_l1 * l1, {"mse": mse.item(), "code_l1": l1.item()}


@register_model("ae_sparse", modality="family")
class SparseAE(_AE):
    """Sparse autoencoder: sigmoid code, KL(rho || mean activation) per unit, weight ``beta``."""

    def __init__(self, channels: int = 1, latent: int = 256, hidden: int = 512, rho: float = 0.05, beta: float = 0.1) -> None:
        super().__init__(_mlp_encoder(hidden, latent), _mlp_decoder(latent, hidden), latent)
        self.rho, self.beta = rho, beta

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.encoder(x))

    def diagnostics(self, code: torch.Tensor) -> dict:
        """Sparsity: the mean activation against ``rho``, and the share of units mostly off."""
        return {"sparsity": {"target_rho": self.rho, "mean_activation": float(code.mean()), "units_mostly_off": float((code.mean(0) < 2 * self.rho).float().mean())}}

    def objective(self, x, generator=None):
        code = self.encode(x)
        mse = F.mse_loss(self.decode(code), x)
        rho_hat = code.mean(0).clamp(1e-6, 1 - 1e-6)
        kl = (self.rho * torch.log(self.rho / rho_hat) + (1 - self.rho) * torch.log((1 - self.rho) / (1 - rho_hat))).sum()
        return mse + self.beta * kl / self.latent, {"mse": mse.item(), "kl_sparsity": kl.item(), "activation": code.mean().item()}


class _VAE(_AE):
    """Variational autoencoder; the encoder emits 2 * latent numbers: (mu, log variance)."""

    variational = True

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent: int, beta: float) -> None:
        super().__init__(encoder, decoder, latent)
        self.beta = beta

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: a deterministic embedding."""
        return self.moments(x)[0]

    def objective(self, x, generator=None):
        mu, logvar = self.moments(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
        logits = self.decoder(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)).mean()
        mse = F.mse_loss(torch.sigmoid(logits), x)
        return recon + self.beta * kl, {"recon_bce": recon.item(), "kl": kl.item(), "mse": mse.item()}

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images decoded from z ~ N(0, I)."""
        return self.decode(torch.randn(n, self.latent, generator=generator))


@register_model("vae_dense", modality="family")
class DenseVAE(_VAE):
    def __init__(self, channels: int = 1, latent: int = 16, hidden: int = 512, beta: float = 1.0) -> None:
        super().__init__(_mlp_encoder(hidden, 2 * latent), _mlp_decoder(latent, hidden), latent, beta)


@register_model("vae_conv", modality="family")
class ConvVAE(_VAE):
    def __init__(self, channels: int = 1, latent: int = 16, width: int = 32, beta: float = 1.0) -> None:
        super().__init__(_conv_encoder(width, 2 * latent), _conv_decoder(latent, width), latent, beta)
