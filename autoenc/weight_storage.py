"""How an exported model stores its weights: half precision on disk, float32 at run time.

``store_fp16`` rewrites each parameter initializer (named ``<module>.weight`` / ``.bias``) as a
float16 initializer ``<name>::fp16`` feeding a ``Cast`` to float32 named like the parameter.
onnxruntime folds those casts into float32 constants when it builds the session, so inference
runs the same float32 kernels at the same speed; the file is half the size, and outputs differ
from float32 storage only by the weights' rounding (relative error at most 2**-11).

``as_fp32`` undoes it (the quantizer wants float32 weight initializers, and ``train.init_from``
reads parameters by name). Buffers and the exporter's folded constants are left as they are.
Torch-free.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

FP16_SUFFIX = "::fp16"
PARAMETER_SUFFIXES = (".weight", ".bias")  # initializers named like module parameters


def is_fp16_stored(model: onnx.ModelProto) -> bool:
    return any(t.name.endswith(FP16_SUFFIX) for t in model.graph.initializer)


def store_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose float32 parameter initializers are stored as float16 (see the
    module docstring); a model already stored so comes back unchanged."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    casts, keep = [], []
    for t in graph.initializer:
        if t.name.endswith(PARAMETER_SUFFIXES) and t.data_type == onnx.TensorProto.FLOAT:
            half = numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name + FP16_SUFFIX)
            keep.append(half)
            casts.append(onnx.helper.make_node("Cast", [half.name], [t.name], name=f"cast_{t.name}", to=onnx.TensorProto.FLOAT))
        else:
            keep.append(t)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = casts + list(graph.node)  # the casts first: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    return out


def as_fp32(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with float16-stored parameters back as float32 initializers under
    their parameter names (the casts removed); other models come back unchanged."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    halves = {t.name: t for t in graph.initializer if t.name.endswith(FP16_SUFFIX)}
    if not halves:
        return out
    casts = {n.output[0]: n for n in graph.node if n.op_type == "Cast" and n.input[0] in halves}
    singles = [numpy_helper.from_array(numpy_helper.to_array(halves[n.input[0]]).astype(np.float32), name) for name, n in casts.items()]
    kept = [t for t in graph.initializer if t.name not in halves] + singles
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [n for n in graph.node if n.output[0] not in casts]
    del graph.node[:]
    graph.node.extend(nodes)
    return out
