"""dlib face descriptor network -> an equivalent ONNX graph, built with the `onnx` helpers only.

The graph takes the chips exactly as dlib does: uint8 RGB, N x 150 x 150 x 3 (any batch size),
and does dlib's input scaling itself ((pixel - mean_rgb) / 256, input_rgb_image_sized). Each
affine layer (dlib's inference-time replacement for batch norm) is folded into the convolution
before it, in float64. Residual additions follow dlib's add_prev: when the two tensors differ in
size (channels after a down-sampling block, rows/cols where the strided convolution and the 2x2
average pool round differently), the smaller is zero-padded at the end, as dlib's tt::add does.
The output "descriptors" is the 128-d fc_no_bias output, not normalised (as dlib returns it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from facesearch.vision.dlib_onnx.architecture import resolve
from facesearch.vision.dlib_onnx.reader import (
    AddPrev,
    Affine,
    Conv,
    DlibFormatError,
    DlibNetwork,
    Fc,
    Layer,
    Pool,
    Relu,
)

INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"
OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime >= 1.15


@dataclass
class _Builder:
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    counter: int = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter}"

    def const(self, prefix: str, value: npt.NDArray[np.generic]) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], prefix: str, **attrs: Any) -> str:
        out = self.name(prefix)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _out_size(size: int, window: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - window) // stride


def _pad_to(b: _Builder, x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
    if shape == target:
        return x
    extra = [t - s for s, t in zip(shape, target, strict=True)]
    pads = np.array([0, 0, 0, 0, 0, *extra], dtype=np.int64)
    return b.node("Pad", [x, b.const("pads", pads)], "pad", mode="constant")


def build_onnx(network: DlibNetwork, *, fold_affine: bool = True) -> onnx.ModelProto:
    """The ONNX model equivalent to `network` (a dlib face ResNet read by `read_network`)."""
    pairs = resolve(network)
    b = _Builder()
    inp = network.input
    x = b.node("Cast", [INPUT_NAME], "cast", to=TensorProto.FLOAT)
    mean = np.asarray(inp.mean_rgb, dtype=np.float32)
    x = b.node("Sub", [x, b.const("mean_rgb", mean)], "centre")
    x = b.node("Mul", [x, b.const("scale", np.asarray(1.0 / 256.0, dtype=np.float32))], "scale")
    x = b.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    shape = (3, inp.rows, inp.cols)

    tags: dict[int, tuple[str, tuple[int, int, int]]] = {}
    index = 0
    while index < len(pairs):
        token, layer = pairs[index]
        nxt: Layer | None = pairs[index + 1][1] if index + 1 < len(pairs) else None
        if isinstance(layer, Conv):
            weights = layer.weights.astype(np.float64)
            bias = layer.bias.astype(np.float64)
            if fold_affine and isinstance(nxt, Affine) and nxt.conv_mode:
                gamma = nxt.gamma.astype(np.float64)
                weights = weights * gamma[:, None, None, None]
                bias = bias * gamma + nxt.beta.astype(np.float64)
                index += 1
            kh, kw = layer.weights.shape[2:]
            (sy, sx), (py, px) = layer.stride, layer.padding
            w_name = b.const("W", weights.astype(np.float32))
            b_name = b.const("B", bias.astype(np.float32))
            x = b.node(
                "Conv",
                [x, w_name, b_name],
                "conv",
                kernel_shape=[kh, kw],
                strides=[sy, sx],
                pads=[py, px, py, px],
            )
            shape = (
                layer.weights.shape[0],
                _out_size(shape[1], kh, sy, py),
                _out_size(shape[2], kw, sx, px),
            )
        elif isinstance(layer, Affine):
            channels = shape[0]
            if layer.conv_mode:
                g = layer.gamma.reshape(1, channels, 1, 1)
                be = layer.beta.reshape(1, channels, 1, 1)
            else:
                g = layer.gamma.reshape(1, *shape)
                be = layer.beta.reshape(1, *shape)
            x = b.node("Mul", [x, b.const("gamma", g.astype(np.float32))], "affine_mul")
            x = b.node("Add", [x, b.const("beta", be.astype(np.float32))], "affine_add")
        elif isinstance(layer, Relu):
            x = b.node("Relu", [x], "relu")
        elif isinstance(layer, Pool):
            (wy, wx), (sy, sx), (py, px) = layer.window, layer.stride, layer.padding
            if (wy, wx) == (0, 0):
                op = "GlobalMaxPool" if layer.kind == "max" else "GlobalAveragePool"
                x = b.node(op, [x], "gpool")
                shape = (shape[0], 1, 1)
            else:
                attrs: dict[str, Any] = {
                    "kernel_shape": [wy, wx],
                    "strides": [sy, sx],
                    "pads": [py, px, py, px],
                }
                if layer.kind == "avg":
                    attrs["count_include_pad"] = 0
                op = "MaxPool" if layer.kind == "max" else "AveragePool"
                x = b.node(op, [x], "pool", **attrs)
                shape = (shape[0], _out_size(shape[1], wy, sy, py), _out_size(shape[2], wx, sx, px))
        elif isinstance(layer, AddPrev):
            other, other_shape = tags[token.tag]
            target = (
                max(shape[0], other_shape[0]),
                max(shape[1], other_shape[1]),
                max(shape[2], other_shape[2]),
            )
            left = _pad_to(b, x, shape, target)
            right = _pad_to(b, other, other_shape, target)
            x = b.node("Add", [left, right], "add_prev")
            shape = target
        elif isinstance(layer, Fc):
            x = b.node("Flatten", [x], "flatten", axis=1)
            if layer.weights.shape[0] != int(np.prod(shape)):
                raise DlibFormatError("fc input size does not match the network's output")
            x = b.node("MatMul", [x, b.const("fc_W", layer.weights)], "fc")
            if layer.bias is not None:
                x = b.node("Add", [x, b.const("fc_B", layer.bias.reshape(1, -1))], "fc_bias")
            shape = (layer.weights.shape[1], 1, 1)
        elif token.kind == "tag":
            tags[token.tag] = (x, shape)
        elif token.kind == "skip":
            x, shape = tags[token.tag]
        else:  # pragma: no cover - resolve() rejects anything else
            raise DlibFormatError(f"cannot convert {layer!r}")
        index += 1

    b.nodes.append(helper.make_node("Identity", [x], [OUTPUT_NAME], name="output"))
    graph = helper.make_graph(
        b.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.UINT8, ["N", inp.rows, inp.cols, 3]
            )
        ],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", shape[0]])],
        b.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="facesearch.vision.dlib_onnx",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model
