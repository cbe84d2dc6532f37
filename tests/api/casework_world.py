"""A small two-organisation world for the casework API tests: each organisation has an
administrator, an investigator, two reviewers, an auditor and an ingestor, and one collection
holding a few ingested faces."""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from facesearch.deployment import Deployment
from tests.api.conftest import MakeUser, SignedIn, db_id, key_client
from tests.conftest import faces_dir, ingest

PURPOSE = "Identify the suspect of robbery 2024/17 from a CCTV still"
LEGAL = "Police Act s.64A: custody images of arrested persons"


@dataclass
class Org:
    name: str
    admin: SignedIn
    investigator: SignedIn
    reviewer1: SignedIn
    reviewer2: SignedIn
    auditor: SignedIn
    ingestor: SignedIn
    collection_id: str  # as the API shows it (opaque)
    collection_db_id: int  # the same collection in the database
    keys: dict[str, TestClient] = field(default_factory=dict)


def gallery(tmp: Path) -> Path:
    obama = faces_dir("small", "barack_obama")
    biden = faces_dir("small", "joe_biden")
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(obama / "obama1.jpg", tmp / "obama1.jpg")
    shutil.copy(biden / "biden.jpg", tmp / "biden.jpg")
    return tmp


def probe_bytes() -> bytes:
    return (faces_dir("small", "barack_obama") / "obama2.jpg").read_bytes()


def blank_png(size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (180, 180, 180)).save(buf, "PNG")
    return buf.getvalue()


def make_org(dep: Deployment, app: FastAPI, make_user: MakeUser, name: str, images: Path) -> Org:
    admin = make_user(name, ["org_admin"])
    reply = admin.client.post(
        "/api/v1/collections",
        json={"name": "mugshots", "legal_basis": LEGAL, "retention_days": 365},
    )
    assert reply.status_code == 201, reply.text
    collection_id = str(reply.json()["id"])
    collection_db_id = db_id(dep, "collection", collection_id)
    assert admin.org_id is not None
    ingest(dep, collection_db_id, images)
    org = Org(
        name=name,
        admin=admin,
        investigator=make_user(name, ["investigator"]),
        reviewer1=make_user(name, ["reviewer"]),
        reviewer2=make_user(name, ["reviewer"]),
        auditor=make_user(name, ["auditor"]),
        ingestor=make_user(name, ["ingestor"]),
        collection_id=collection_id,
        collection_db_id=collection_db_id,
    )
    org.keys["search"] = key_client(app, org.investigator.api_key(["search"]))
    org.keys["ingest"] = key_client(app, org.ingestor.api_key(["ingest"]))
    org.keys["audit"] = key_client(app, org.auditor.api_key(["audit"]))
    org.keys["review1"] = key_client(app, org.reviewer1.api_key(["review"]))
    org.keys["review2"] = key_client(app, org.reviewer2.api_key(["review"]))
    org.keys["admin"] = key_client(app, org.admin.api_key(["admin"]))
    return org


def search(
    client: TestClient,
    probe: bytes,
    *,
    case: str = "2024/17",
    purpose: str = PURPOSE,
    collections: str | None = None,
    top_k: int = 5,
) -> tuple[int, dict]:  # type: ignore[type-arg]
    data = {"case_number": case, "purpose": purpose, "top_k": str(top_k)}
    if collections is not None:
        data["collections"] = collections
    reply = client.post(
        "/api/v1/searches", data=data, files={"probe": ("probe.jpg", probe, "image/jpeg")}
    )
    return reply.status_code, reply.json()


def side_by_side(*paths: Path, height: int = 480) -> bytes:
    """One JPEG holding the given photos side by side, left to right, each scaled to `height`
    (a multi-face probe whose faces' people are known by where they lie)."""
    images = []
    for path in paths:
        with Image.open(path) as img:
            img = img.convert("RGB")
            images.append(img.resize((round(img.width * height / img.height), height)))
    canvas = Image.new("RGB", (sum(i.width for i in images), height), (255, 255, 255))
    x = 0
    for img in images:
        canvas.paste(img, (x, 0))
        x += img.width
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def people_gallery(tmp: Path) -> Path:
    """`gallery` and two more people (Kit Harington, Rose Leslie), one photo each."""
    gallery(tmp)
    shutil.copy(faces_dir("small", "kit_harington") / "john1.jpeg", tmp / "kit1.jpg")
    shutil.copy(faces_dir("small", "rose_leslie") / "img1.jpg", tmp / "rose1.jpg")
    return tmp


def two_people_probe() -> tuple[bytes, list[str]]:
    """A probe with Obama on the left and Rose Leslie on the right (photos that are not in
    `people_gallery`), and the gallery file each one's top candidate is, left to right."""
    probe = side_by_side(
        faces_dir("small", "barack_obama") / "obama2.jpg",
        faces_dir("small", "rose_leslie") / "img2.jpg",
    )
    return probe, ["obama1.jpg", "rose1.jpg"]
