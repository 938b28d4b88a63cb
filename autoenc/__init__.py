"""autoenc: convolutional denoising autoencoders for folders of images and audio.

The package is a plain library: training needs the ``[train]`` extra (torch), while
inference (``autoenc.runtime.infer``, ``autoenc.runtime.media``) runs on onnxruntime + numpy + pillow only.
Prefect flows live in the separate ``pipelines`` package.
"""

__version__ = "0.1.0"
# Bumped when the meaning of ONNX metadata or checkpoint fields changes; readers refuse others.
FORMAT_VERSION = 1  # a model file whose input is the image (or audio) alone
NOISE_LEVEL_FORMAT = 2  # a model whose input also carries a noise-level plane: a runtime that reads only format 1 refuses it up front
PREFILTER_FORMAT = 3  # an audio model whose input first passes a classical prefilter (autoenc.runtime.prefilter): an older runtime would skip it, so it refuses the file
RAW_PLANE_FORMAT = 4  # an audio model that takes the prefiltered input and the input itself as planes: a runtime that reads only up to format 3 would feed one
NOISE_PROFILE_FORMAT = 5  # an image model whose input carries the noise profile after its level plane: a runtime that reads only up to format 4 would feed the level alone
READ_FORMATS = (FORMAT_VERSION, NOISE_LEVEL_FORMAT, PREFILTER_FORMAT, RAW_PLANE_FORMAT, NOISE_PROFILE_FORMAT)  # what this autoenc reads
