"""The torch-free worker side: everything ``autoenc denoise`` and ``autoenc serve`` need on a
CPU server (onnxruntime + numpy + pillow + soundfile + pydantic). Nothing in this package may
import torch; a test imports every module here with torch blocked."""
