"""dlib's face descriptor network without dlib: read the serialised `.dat`, write an equivalent
ONNX graph, cache it per user (keyed by the source file's SHA-256). See docs/decisions/0004."""

from facesearch.vision.dlib_onnx.cache import CONVERTER_VERSION, cache_dir, converted_model
from facesearch.vision.dlib_onnx.converter import INPUT_NAME, OUTPUT_NAME, build_onnx
from facesearch.vision.dlib_onnx.reader import DlibFormatError, DlibNetwork, read_network

__all__ = [
    "CONVERTER_VERSION",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "DlibFormatError",
    "DlibNetwork",
    "build_onnx",
    "cache_dir",
    "converted_model",
    "read_network",
]
