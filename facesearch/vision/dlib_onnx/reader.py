"""A reader for dlib's `serialize()` format, enough to load a DNN such as the face descriptor
network `dlib_face_recognition_resnet_model_v1.dat` without dlib.

The format (dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, loss.h, tensor.h):

* integers: one header byte (low nibble = number of payload bytes, bit 7 = negative) followed by
  that many bytes of the magnitude, little endian. Zero is ``01 00``.
* floats and doubles: two integers, a mantissa and an int16 exponent; value = mantissa * 2**exponent
  (exponents 32000/32001/32002 mean +inf/-inf/nan).
* bools: one ASCII byte, ``'1'`` or ``'0'``. strings: an integer length, then the bytes.
* tensors: an integer version; 1 = four integer dims then dlib floats, 2 = four integer dims then
  raw little-endian IEEE float32. alias tensors: version 1 and the four dims.
* networks serialise outside-in: ``add_loss_layer`` writes its version, its loss details, then its
  subnetwork; every ``add_layer`` writes its version, then its subnetwork, then its own details and
  state; tag and skip layers write only version 1 and their subnetwork (their tag id is *not* in
  the file). So the file is every wrapper's version number, outermost first, then the input layer,
  then each layer's details from the innermost outwards. Each details block starts with a version
  string ("con_4", "affine_", "relu_", ...) that names the layer type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

_INF_EXP, _NINF_EXP, _NAN_EXP = 32000, 32001, 32002


class DlibFormatError(ValueError):
    """The bytes are not the dlib serialisation this reader understands."""


class Stream:
    """Sequential reader over a dlib-serialised byte string."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos}")

    def read_int(self) -> int:
        self._need(1)
        header = self.data[self.pos]
        size = header & 0x0F
        if size > 8 or header & 0x70:
            raise DlibFormatError(f"bad integer header 0x{header:02x} at byte {self.pos}")
        self._need(1 + size)
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if header & 0x80 else value

    def read_float(self) -> float:
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _INF_EXP:
            return math.inf
        if exponent == _NINF_EXP:
            return -math.inf
        if exponent == _NAN_EXP:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def read_bool(self) -> bool:
        self._need(1)
        char = self.data[self.pos]
        self.pos += 1
        if char not in (ord("0"), ord("1")):
            raise DlibFormatError(f"bad bool byte 0x{char:02x} at byte {self.pos - 1}")
        return char == ord("1")

    def read_string(self) -> str:
        size = self.read_int()
        if size < 0 or size > 10_000:
            raise DlibFormatError(f"implausible string length {size} at byte {self.pos}")
        self._need(size)
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        return raw.decode("latin-1")

    def peek_string(self) -> str | None:
        """The string at the current position, if one plausibly starts here (position kept)."""
        saved = self.pos
        try:
            text = self.read_string()
        except DlibFormatError:
            return None
        finally:
            self.pos = saved
        return text if text.isprintable() and text else None

    def read_dims(self) -> tuple[int, int, int, int]:
        n, k, nr, nc = (self.read_int() for _ in range(4))
        return n, k, nr, nc

    def read_tensor(self) -> FloatArray:
        version = self.read_int()
        dims = self.read_dims()
        count = int(np.prod(dims))
        if version == 2:
            self._need(4 * count)
            values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos)
            self.pos += 4 * count
            return values.astype(np.float32).reshape(dims)
        if version == 1:
            flat = np.array([self.read_float() for _ in range(count)], dtype=np.float32)
            return flat.reshape(dims)
        raise DlibFormatError(f"unknown tensor version {version}")

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.read_int()
        if version != 1:
            raise DlibFormatError(f"unknown alias_tensor version {version}")
        return self.read_dims()


# ---------------------------------------------------------------------------------------------
# Layers as read from the file (inner to outer).


@dataclass(frozen=True)
class InputRGB:
    mean_rgb: tuple[float, float, float]
    rows: int
    cols: int


@dataclass(frozen=True)
class Conv:
    weights: FloatArray  # filters x channels x rows x cols
    bias: FloatArray  # filters
    stride: tuple[int, int]  # y, x
    padding: tuple[int, int]  # y, x


@dataclass(frozen=True)
class Affine:
    """y = x * gamma + beta, per channel (conv mode) or per element (fc mode)."""

    gamma: FloatArray
    beta: FloatArray
    conv_mode: bool


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class Pool:
    kind: str  # "max" or "avg"
    window: tuple[int, int]  # rows, cols; 0 = the whole input ("pool everything")
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class AddPrev:
    """Adds the output of the nearest tag below (which tag is not recorded in the file)."""


@dataclass(frozen=True)
class Fc:
    weights: FloatArray  # inputs x outputs
    bias: FloatArray | None


@dataclass(frozen=True)
class TagOrSkip:
    """A tag or skip layer: dlib writes only its version, so the two are indistinguishable."""


Layer = Conv | Affine | Relu | Pool | AddPrev | Fc | TagOrSkip


@dataclass(frozen=True)
class DlibNetwork:
    loss: str
    loss_params: tuple[float, ...]
    input: InputRGB
    layers: list[Layer] = field(default_factory=list)  # innermost first


def _read_input(s: Stream) -> InputRGB:
    name = s.read_string()
    if name != "input_rgb_image_sized":
        raise DlibFormatError(f"unsupported input layer {name!r}")
    mean = (s.read_float(), s.read_float(), s.read_float())
    rows, cols = s.read_int(), s.read_int()
    return InputRGB(mean_rgb=mean, rows=rows, cols=cols)


def _slice(params: FloatArray, offset: int, dims: tuple[int, ...]) -> FloatArray:
    size = int(np.prod(dims))
    flat = params.reshape(-1)
    if offset + size > flat.size:
        raise DlibFormatError("alias tensor runs past its parameter tensor")
    return flat[offset : offset + size].reshape(dims).copy()


def _read_details(s: Stream) -> Layer:
    name = s.read_string()
    if name == "con_4":
        params = s.read_tensor()
        num_filters, rows, cols = s.read_int(), s.read_int(), s.read_int()
        stride = (s.read_int(), s.read_int())
        padding = (s.read_int(), s.read_int())
        filters = s.read_alias_tensor()
        biases = s.read_alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            s.read_float()
        if filters[0] != num_filters or filters[2:] != (rows, cols):
            raise DlibFormatError("con_ filter shape does not match its header")
        weights = _slice(params, 0, filters)
        bias = _slice(params, weights.size, (int(np.prod(biases)),))
        return Conv(weights=weights, bias=bias, stride=stride, padding=padding)
    if name == "affine_":
        params = s.read_tensor()
        gamma_dims = s.read_alias_tensor()
        beta_dims = s.read_alias_tensor()
        mode = s.read_int()
        gamma = _slice(params, 0, gamma_dims)
        beta = _slice(params, gamma.size, beta_dims)
        return Affine(gamma=gamma.reshape(-1), beta=beta.reshape(-1), conv_mode=mode == 0)
    if name in ("bn_con2", "bn_fc2"):
        # A batch-norm layer stored by a training network: dlib turns it into an affine layer
        # when loading (affine_(const bn_&)); do the same.
        params = s.read_tensor()
        gamma_dims = s.read_alias_tensor()
        beta_dims = s.read_alias_tensor()
        for _ in range(2):  # means, invstds of the last batch
            s.read_tensor()
        running_means = s.read_tensor().reshape(-1).astype(np.float64)
        running_vars = s.read_tensor().reshape(-1).astype(np.float64)
        s.read_int()  # num_updates
        s.read_int()  # running_stats_window_size
        for _ in range(4):
            s.read_float()
        eps = s.read_float()
        g = _slice(params, 0, gamma_dims).reshape(-1).astype(np.float64)
        b = _slice(params, g.size, beta_dims).reshape(-1).astype(np.float64)
        gamma64 = g / np.sqrt(running_vars + eps)
        return Affine(
            gamma=gamma64.astype(np.float32),
            beta=(b - gamma64 * running_means).astype(np.float32),
            conv_mode=name == "bn_con2",
        )
    if name == "relu_":
        return Relu()
    if name in ("max_pool_2", "avg_pool_2"):
        window = (s.read_int(), s.read_int())
        stride = (s.read_int(), s.read_int())
        padding = (s.read_int(), s.read_int())
        return Pool(kind=name[:3], window=window, stride=stride, padding=padding)
    if name == "add_prev_":
        return AddPrev()
    if name == "fc_2":
        num_outputs, num_inputs = s.read_int(), s.read_int()
        params = s.read_tensor()
        weight_dims = s.read_alias_tensor()
        bias_dims = s.read_alias_tensor()
        bias_mode = s.read_int()
        for _ in range(4):
            s.read_float()
        weights = _slice(params, 0, weight_dims).reshape(num_inputs, num_outputs)
        fc_bias = _slice(params, weights.size, (num_outputs,)) if bias_mode == 0 else None
        del bias_dims
        return Fc(weights=weights, bias=fc_bias)
    raise DlibFormatError(f"unsupported dlib layer {name!r}")


def _read_loss(s: Stream) -> tuple[str, tuple[float, ...]]:
    name = s.read_string()
    if name == "loss_metric_2":
        return name, (s.read_float(), s.read_float())  # margin, distance threshold
    if name == "loss_metric_":
        return name, ()
    raise DlibFormatError(f"unsupported loss layer {name!r}")


def read_network(data: bytes) -> DlibNetwork:
    """Parse a dlib DNN (loss layer over add_layer/tag/skip wrappers over an input layer)."""
    s = Stream(data)
    if s.read_int() != 1:
        raise DlibFormatError("not a dlib add_loss_layer (version != 1)")
    loss, loss_params = _read_loss(s)
    # Wrapper versions, outermost first, until the input layer's name appears.
    versions: list[int] = []
    while True:
        versions.append(s.read_int())
        following = s.peek_string()
        if following is not None and following.startswith("input"):
            break
        if len(versions) > 100_000:
            raise DlibFormatError("no input layer found")
    input_version = versions.pop()
    if input_version not in (2, 3):
        raise DlibFormatError(f"unsupported input add_layer version {input_version}")
    input_layer = _read_input(s)
    layers: list[Layer] = [_read_details(s)]
    _read_add_layer_state(s, innermost=True, version=input_version)
    for version in reversed(versions):
        if version == 1:
            layers.append(TagOrSkip())
        elif version == 2:
            layers.append(_read_details(s))
            _read_add_layer_state(s, innermost=False, version=version)
        else:
            raise DlibFormatError(f"unsupported add_layer version {version}")
    if s.pos != len(data):
        raise DlibFormatError(f"{len(data) - s.pos} bytes left after the network")
    return DlibNetwork(loss=loss, loss_params=loss_params, input=input_layer, layers=layers)


def _read_add_layer_state(s: Stream, *, innermost: bool, version: int) -> None:
    """Training state stored after each layer's details; read and dropped."""
    for _ in range(3):  # setup called, gradient stale, getters disabled
        s.read_bool()
    s.read_tensor()  # x_grad
    s.read_tensor()  # cached_output
    if innermost:
        s.read_tensor()  # grad_final
        if version >= 3:
            s.read_int()  # sample expansion factor
    elif version >= 2:
        s.read_tensor()  # params_grad
