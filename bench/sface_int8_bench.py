"""Does INT8 quantisation of SFace pay? Static quantisation (ONNX Runtime), calibrated on
DevTrain faces, against the float32 graph: speed, and agreement of the descriptors.

    python bench/sface_int8_bench.py [--calibration 240] [--format qdq|qoperator]

The SFace graph (batch made dynamic, opset raised to 13 for per-channel scales) is quantised
with `quantize_static` from chips of every 40th DevTrain image (YuNet + ArcFace alignment, as
in ingest). Printed: faces/s of both graphs (batch 8, the configured threads), and the cosine
between float32 and INT8 descriptors of held-out faces (1.0 = identical). A descriptor that moves
by more than a few thousandths of cosine changes which candidates clear the threshold, so the
full DevTrain evaluation is only worth running when the agreement is above 0.99.

    python bench/sface_int8_bench.py --reduce-range --ops Conv,Gemm --calibrate percentile --eval

`--eval` then runs that evaluation: every DevTrain image of `eval identify` and `eval pairs`
detected and aligned once (YuNet, the face nearest the centre as the commands choose by default,
the centred box when none), embedded by
both graphs, and scored as the two commands score (rank-1 and TPIR@FPIR=0.01 on the identify
split, 10-fold accuracy and TAR@FAR=1e-3 on pairsDevTrain.txt), with the issue's adoption rule:
INT8 only if TPIR drops by less than 0.005 and TAR by less than 0.003.
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

from facesearch.eval.embedding import choose_face
from facesearch.eval.identify import person_images, score_split, split_people
from facesearch.eval.pairs import read_pairs, referenced_images, score_pairs
from facesearch.similarity import paired_scores
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


def every_chip(files: list[Path], model: SFaceModel) -> list[np.ndarray]:
    """One chip per file, as the evaluation commands take it."""
    out = []
    for i, f in enumerate(files):
        pixels = decode_image(f.read_bytes()).pixels
        found = model.detect(pixels)
        h, w = pixels.shape[:2]
        box = choose_face(found, h, w, "central") if found else model.centred_detection(pixels)
        out.append(model.align(pixels, box))
        if i % 1000 == 999:
            print(f"  aligned {i + 1} of {len(files)}", flush=True)
    return out


def evaluate(graphs: dict[str, Path], model: SFaceModel) -> dict[str, dict[str, float]]:
    split = split_people(person_images(DEVTRAIN))
    parsed = read_pairs(DEVTRAIN / "pairsDevTrain.txt")
    pair_paths = referenced_images(parsed.pairs, DEVTRAIN)
    paths = list(dict.fromkeys([*split.all_paths(), *pair_paths]))
    row = {p: i for i, p in enumerate(paths)}
    data = every_chip(paths, model)
    n_g, n_m = len(split.gallery), len(split.mated)
    n_id = n_g + n_m + len(split.nonmated)
    left = np.array([row[p.paths(DEVTRAIN)[0]] for p in parsed.pairs])
    right = np.array([row[p.paths(DEVTRAIN)[1]] for p in parsed.pairs])
    out = {}
    for name, path in graphs.items():
        v = embed(path, data).astype(np.float32)
        rank1, _rank10, tpir = score_split(split, v[:n_g], v[n_g : n_g + n_m], v[n_g + n_m : n_id])
        kfold, tar, _ = score_pairs(parsed, paired_scores(v[left], v[right]).astype(np.float64))
        out[name] = {
            "rank1": rank1,
            "tpir": tpir.rate,
            "accuracy": kfold.accuracy,
            "tar": tar.rate,
        }
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
    parser.add_argument(
        "--eval", action="store_true", help="the full DevTrain evaluation of both graphs"
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
        scores = evaluate({"float32": fp32, "int8": int8}, model) if args.eval else None
    print(
        f"calibration chips {len(calibration)}, held-out faces {len(held_out)}, "
        f"quantised in {took:.0f} s ({args.format}, reduce_range={args.reduce_range}, "
        f"ops={args.ops or 'all'}, calibration {args.calibrate})"
    )
    print("| graph | faces/s (batch 8) | cosine to float32: mean | min |")
    print("|---|---|---|---|")
    print(f"| float32 | {speed['fp32']:.1f} | 1 | 1 |")
    print(f"| int8 | {speed['int8']:.1f} | {agreement.mean():.4f} | {agreement.min():.4f} |")
    if scores is None:
        return
    f, q = scores["float32"], scores["int8"]
    print("\n| DevTrain | float32 | int8 | change |")
    print("|---|---|---|---|")
    for key, label in (
        ("rank1", "identify rank-1"),
        ("tpir", "identify TPIR@FPIR=0.01"),
        ("accuracy", "pairs accuracy (10-fold)"),
        ("tar", "pairs TAR@FAR=1e-3"),
    ):
        print(f"| {label} | {f[key]:.4f} | {q[key]:.4f} | {q[key] - f[key]:+.4f} |")
    adopt = f["tpir"] - q["tpir"] < 0.005 and f["tar"] - q["tar"] < 0.003
    print(
        f"\nadoption rule (TPIR drop < 0.005 and TAR drop < 0.003): "
        f"{'met: INT8 may be adopted' if adopt else 'not met: INT8 is not adopted'}"
    )


if __name__ == "__main__":
    main()
