"""Blob store throughput: the local data directory against an S3-compatible server on loopback
(moto's server mode, started here on 127.0.0.1), with 100 KB payloads sealed as images are
(AES-256-GCM, keyed-hash ids). One thread, sequential put then get; prints a Markdown table.

    python bench/blob_bench.py                 # 200 blobs of 100 KB, about 20 s
    python bench/blob_bench.py --count 500 --size 200000

moto is a Python server in the same process: its figures are a floor for the client side of a
real server (MinIO on the LAN, AWS S3), not a prediction of one.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facesearch.crypto import KeyRing
from facesearch.store.blobs import BlobStore, LocalBlobStore, S3BlobStore, s3_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(store: BlobStore, payloads: list[bytes]) -> dict[str, float]:
    puts = [_timed(lambda p=p: store.put(p)) for p in payloads]  # type: ignore[misc]
    ids = store.ids()
    gets = [_timed(lambda i=i: store.get(i)) for i in ids]  # type: ignore[misc]
    total_mb = sum(len(p) for p in payloads) / 1e6
    return {
        "put_s": len(puts) / sum(puts),
        "put_mb": total_mb / sum(puts),
        "put_p50": statistics.median(puts) * 1e3,
        "get_s": len(gets) / sum(gets),
        "get_mb": total_mb / sum(gets),
        "get_p50": statistics.median(gets) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
    )
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    payloads = [os.urandom(args.size) for _ in range(args.count)]
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        keys = KeyRing.create(Path(tmp) / "k.key")
        local = LocalBlobStore(Path(tmp) / "b", keys)
        rows.append(("local (tmp dir, fsync)", measure(local, payloads)))
        port = _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            client = s3_client(endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1")
            client.create_bucket(Bucket="fs-bench")
            store = S3BlobStore(client, "fs-bench", keys, prefix="bench/")
            rows.append(("S3 (moto on loopback)", measure(store, payloads)))
        finally:
            server.stop()
    print(f"{args.count} blobs of {args.size / 1000:.0f} KB, sequential, one thread\n")
    print("| store | put/s | put MB/s | put p50 ms | get/s | get MB/s | get p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['put_s']:.0f} | {r['put_mb']:.1f} | {r['put_p50']:.2f} "
            f"| {r['get_s']:.0f} | {r['get_mb']:.1f} | {r['get_p50']:.2f} |"
        )


if __name__ == "__main__":
    main()
