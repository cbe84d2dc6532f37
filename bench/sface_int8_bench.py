"""Does INT8 quantisation of SFace pay? Static quantisation (ONNX Runtime), calibrated on
DevTrain faces, against the float32 graph: speed, and agreement of the descriptors.

    python bench/sface_int8_bench.py [--calibration 240] [--format qdq|qoperator]

The SFace graph (batch made dynamic, opset raised to 13 for per-channel scales) is quantised
with `quantize_static` from chips of every 40th DevTrain image (YuNet + ArcFace alignment, as
in ingest). Printed: faces/s of both graphs (batch 8, the configured threads), and the cosine
between float32 and INT8 descriptors of held-out faces (1.0 = identical). A descriptor that moves
by more than a few thousandths of cosine changes which candidates clear the threshold, so the
full DevTrain evaluation is only worth running when the agreement is above 0.99.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from facesearch.vision.decode import decode_image
from facesearch.vision.model_files import SFACE, verified_bytes
from facesearch.vision.sface import SFaceModel, batched_graph, to_blob

DEVTRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "lfw-devtrain"


def chips(files: list[Path], model: SFaceModel) -> list[np.ndarray]:
    out = []
    for f in files:
        pixels = decode_image(f.read_bytes()).pixels
        found = model.detect(pixels)
        if found:
            out.append(model.align(pixels, found[0]))
    return out


def faces_per_second(path: Path, batch: np.ndarray, threads: int, seconds: float = 8.0) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    session.run(None, {"data": batch})
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        session.run(None, {"data": batch})
        n += len(batch)
    return n / (time.perf_counter() - start)


def embed(path: Path, data: list[np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = np.concatenate(
        [session.run(None, {"data": to_blob(data[i : i + 8])})[0] for i in range(0, len(data), 8)]
    )
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", type=int, default=240)
    parser.add_argument("--format", choices=("qdq", "qoperator"), default="qdq")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--reduce-range",
        action="store_true",
        help="7-bit weights (x86 without VNNI: avoids saturation of the u8 x s8 products)",
    )
    parser.add_argument(
        "--ops", default="", help="comma list of op types to quantise (default: all it can)"
    )
    parser.add_argument(
        "--calibrate", choices=("minmax", "entropy", "percentile"), default="minmax"
    )
    args = parser.parse_args()
    files = sorted(DEVTRAIN.glob("*/*.jpg"))
    model = SFaceModel(threads=args.threads)
    calibration = chips(files[:: max(1, len(files) // args.calibration)], model)
    held_out = chips(files[7::97], model)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        graph, _ = batched_graph(verified_bytes(SFACE))
        onnx.save(version_converter.convert_version(onnx.load_from_string(graph), 13), fp32)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter(
                    [to_blob(calibration[i : i + 8]) for i in range(0, len(calibration) - 7, 8)]
                )

            def get_next(self) -> dict[str, np.ndarray] | None:
                batch = next(self.batches, None)
                return None if batch is None else {"data": batch}

        started = time.perf_counter()
        quantize_static(
            str(fp32),
            str(int8),
            Reader(),
            quant_format=QuantFormat.QDQ if args.format == "qdq" else QuantFormat.QOperator,
            per_channel=args.format == "qdq",
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=args.reduce_range,
            op_types_to_quantize=[o for o in args.ops.split(",") if o] or None,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[args.calibrate],
        )
        took = time.perf_counter() - started
        batch = to_blob(held_out[:8])
        speed = {p.stem: faces_per_second(p, batch, args.threads) for p in (fp32, int8)}
        agreement = (embed(fp32, held_out) * embed(int8, held_out)).sum(axis=1)
    print(
        f"calibration chips {len(calibration)}, held-out faces {len(held_out)}, "
        f"quantised in {took:.0f} s ({args.format}, reduce_range={args.reduce_range}, "
        f"ops={args.ops or 'all'}, calibration {args.calibrate})"
    )
    print("| graph | faces/s (batch 8) | cosine to float32: mean | min |")
    print("|---|---|---|---|")
    print(f"| float32 | {speed['fp32']:.1f} | 1 | 1 |")
    print(f"| int8 | {speed['int8']:.1f} | {agreement.mean():.4f} | {agreement.min():.4f} |")


if __name__ == "__main__":
    main()
