"""The autoencoder family on Fashion-MNIST (undercomplete, overcomplete, sparse, variational):
data, fit, evaluate and export; the models live in ``autoenc.models.family`` and the applications
on exported parts (embed, anomaly, sample) in the torch-free ``autoenc.runtime.latent``."""
