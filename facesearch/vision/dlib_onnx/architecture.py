"""The layer stack of dlib's face descriptor network (`anet_type` in
dlib/examples/dnn_face_recognition_ex.cpp), innermost layer first.

dlib does not record which tag a tag/skip/add_prev layer refers to, so the wiring of the residual
connections comes from this template; `resolve()` checks it against the layers actually read from
the file (type by type, position by position), so a different network is refused, not mis-wired.

    residual      = add_prev1<block<N,1,tag1<SUB>>>
    residual_down = add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<SUB>>>>>>
    block         = affine<con<N,3,3,1,1,relu<affine<con<N,3,3,S,S,SUB>>>>>
    ares          = relu<residual>,  ares_down = relu<residual_down>
    anet_type = loss_metric<fc_no_bias<128,avg_pool_everything<
        ares_down<256, ares<256,ares<256,ares_down<256, ares<128,ares<128,ares_down<128,
        ares<64,ares<64,ares<64,ares_down<64, ares<32,ares<32,ares<32,
        max_pool<3,3,2,2,relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>>
"""

from __future__ import annotations

from dataclasses import dataclass

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
    TagOrSkip,
)


@dataclass(frozen=True)
class Token:
    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, tag, skip, fc
    tag: int = 0  # for tag/skip/add_prev


def _block(stride_down: bool) -> list[Token]:
    del stride_down  # the stride is read from the file; the token sequence is the same
    return [Token("con"), Token("affine"), Token("relu"), Token("con"), Token("affine")]


def _ares() -> list[Token]:
    return [Token("tag", 1), *_block(False), Token("add_prev", 1), Token("relu")]


def _ares_down() -> list[Token]:
    return [
        Token("tag", 1),
        *_block(True),
        Token("tag", 2),
        Token("skip", 1),
        Token("avg_pool"),
        Token("add_prev", 2),
        Token("relu"),
    ]


def face_resnet_v1() -> list[Token]:
    tokens = [Token("con"), Token("affine"), Token("relu"), Token("max_pool")]
    tokens += _ares() * 3  # level 4: 32 filters
    tokens += _ares_down() + _ares() * 3  # level 3: 64
    tokens += _ares_down() + _ares() * 2  # level 2: 128
    tokens += _ares_down() + _ares() * 2  # level 1: 256
    tokens += _ares_down()  # level 0: 256
    tokens += [Token("avg_pool"), Token("fc")]
    return tokens


def _kind_of(layer: Layer) -> set[str]:
    if isinstance(layer, Conv):
        return {"con"}
    if isinstance(layer, Affine):
        return {"affine"}
    if isinstance(layer, Relu):
        return {"relu"}
    if isinstance(layer, Pool):
        return {f"{layer.kind}_pool"}
    if isinstance(layer, AddPrev):
        return {"add_prev"}
    if isinstance(layer, Fc):
        return {"fc"}
    if isinstance(layer, TagOrSkip):
        return {"tag", "skip"}
    raise DlibFormatError(f"unknown layer {layer!r}")


def resolve(network: DlibNetwork, template: list[Token] | None = None) -> list[tuple[Token, Layer]]:
    """Pair every layer read from the file with its template token (which carries tag ids)."""
    tokens = template if template is not None else face_resnet_v1()
    if len(tokens) != len(network.layers):
        raise DlibFormatError(
            f"network has {len(network.layers)} layers; the face ResNet template has {len(tokens)}"
        )
    pairs = []
    for index, (token, layer) in enumerate(zip(tokens, network.layers, strict=True)):
        if token.kind not in _kind_of(layer):
            raise DlibFormatError(
                f"layer {index}: file has {type(layer).__name__}, template expects {token.kind}"
            )
        pairs.append((token, layer))
    return pairs
