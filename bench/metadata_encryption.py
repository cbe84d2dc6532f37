"""Cost of encrypting metadata at rest: plain SQLite, SQLCipher (whole database), field-level
AES-256-GCM with HMAC blind indexes. WAL mode, synchronous=NORMAL, as facesearch runs SQLite.

Usage: python bench/metadata_encryption.py [rows]   (needs sqlcipher3-binary for the middle row)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY = os.urandom(32)


def connect(path: Path, cipher: bool) -> Any:
    if cipher:
        import sqlcipher3

        conn = sqlcipher3.connect(str(path))
        conn.execute(f"PRAGMA key = \"x'{KEY.hex()}'\"")
    else:
        conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def seal(aead: AESGCM, value: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + aead.encrypt(nonce, value.encode(), None)


def run(kind: str, rows: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp())
    conn = connect(tmp / "t.db", kind == "sqlcipher")
    field = kind == "field"
    aead = AESGCM(KEY)
    conn.execute(
        "CREATE TABLE searches (id INTEGER PRIMARY KEY, case_number BLOB, case_index BLOB,"
        " purpose BLOB, note BLOB)"
    )
    conn.execute("CREATE INDEX ix ON searches (case_index)")
    out: dict[str, float] = {}
    t = time.perf_counter()
    for i in range(rows):  # one transaction per search, like the service
        case, purpose = f"2024/{i % 500}", f"Identify the suspect of robbery {i} from CCTV"
        if field:
            values: tuple[Any, ...] = (
                seal(aead, case),
                hmac.new(KEY, case.encode(), hashlib.sha256).digest()[:16],
                seal(aead, purpose),
                seal(aead, "reviewer note"),
            )
        else:
            values = (case, case, purpose, "reviewer note")
        conn.execute(
            "INSERT INTO searches (case_number, case_index, purpose, note) VALUES (?,?,?,?)",
            values,
        )
        conn.commit()
    out["insert_us"] = (time.perf_counter() - t) / rows * 1e6
    t = time.perf_counter()
    for i in range(rows):
        case = f"2024/{i % 500}"
        key = hmac.new(KEY, case.encode(), hashlib.sha256).digest()[:16] if field else case
        found = conn.execute(
            "SELECT case_number, purpose FROM searches WHERE case_index = ? LIMIT 5", (key,)
        ).fetchall()
        if field:
            for c, p in found:
                aead.decrypt(c[:12], c[12:], None)
                aead.decrypt(p[:12], p[12:], None)
    out["lookup_us"] = (time.perf_counter() - t) / rows * 1e6
    t = time.perf_counter()
    for _ in range(5):
        for c, p in conn.execute("SELECT case_number, purpose FROM searches"):
            if field:
                aead.decrypt(c[:12], c[12:], None)
                aead.decrypt(p[:12], p[12:], None)
    out["scan_ms"] = (time.perf_counter() - t) / 5 * 1e3
    conn.close()
    t = time.perf_counter()
    conn = connect(tmp / "t.db", kind == "sqlcipher")
    conn.execute("SELECT count(*) FROM searches").fetchone()
    out["open_ms"] = (time.perf_counter() - t) * 1e3
    out["size_kb"] = sum(p.stat().st_size for p in tmp.iterdir()) / 1024
    return out


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    for kind in ("plain", "sqlcipher", "field"):
        try:
            r = run(kind, rows)
        except ImportError:
            print(f"{kind:10} (sqlcipher3 not installed)")
            continue
        print(
            f"{kind:10} insert+commit {r['insert_us']:7.1f} us  indexed lookup "
            f"{r['lookup_us']:6.1f} us  scan {r['scan_ms']:6.1f} ms  open {r['open_ms']:5.1f} ms"
            f"  size {r['size_kb']:7.0f} KB"
        )


if __name__ == "__main__":
    main()
