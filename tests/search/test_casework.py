"""Accountable searches at the service level: validation, tenancy, and the audit record committed
before any result is returned."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from facesearch.deployment import Deployment
from facesearch.errors import Conflict, ImageRejected, InvalidRequest, NoOrganisation, NotFound
from facesearch.gallery import collections as coll_service
from facesearch.search import casework
from facesearch.search.casework import run_search
from facesearch.security import audit
from facesearch.store.accounts import Organisation, User
from facesearch.store.audit import AuditEntry
from facesearch.store.casework import Case, Lead, Search
from tests.conftest import faces_dir, ingest, new_deployment

PURPOSE = "Identify the suspect of robbery 2024/17 from CCTV still"


@dataclass(frozen=True)
class Who:
    user_id: int
    org_id: int | None
    api_key_id: int | None = None
    ip: str | None = "127.0.0.1"


@dataclass
class World:
    dep: Deployment
    alice: Who  # org A investigator
    bob: Who  # org B investigator
    admin: Who  # platform administrator (no org)
    coll_a: int
    coll_b: int
    probe: bytes


def _user(dep: Deployment, org: str | None, email: str) -> Who:
    with dep.db.session() as s:
        org_id = None
        if org:
            row = s.scalar(select(Organisation).where(Organisation.name == org))
            if row is None:
                row = Organisation(name=org)
                s.add(row)
                s.flush()
            org_id = row.id
        user = User(org_id=org_id, email=email, password_hash="x", roles=["investigator"])
        s.add(user)
        s.flush()
        return Who(user.id, org_id)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    obama = faces_dir("small", "barack_obama")
    biden = faces_dir("small", "joe_biden")
    dep = new_deployment(tmp_path_factory.mktemp("casework"))
    alice = _user(dep, "Org A", "alice@a.test")
    bob = _user(dep, "Org B", "bob@b.test")
    admin = _user(dep, None, "root@platform.test")
    gallery = tmp_path_factory.mktemp("gallery")
    shutil.copy(obama / "obama1.jpg", gallery / "obama1.jpg")
    shutil.copy(biden / "biden.jpg", gallery / "biden.jpg")
    ids = []
    for who, name in ((alice, "mugshots"), (bob, "b-private")):
        with dep.db.session() as s:
            ids.append(
                coll_service.create_collection(
                    dep,
                    s,
                    who,
                    name=name,
                    legal_basis="Police Act s.64A custody images",
                    retention_days=365,
                )["id"]
            )
        assert who.org_id is not None
        ingest(dep, ids[-1], gallery)
    yield World(dep, alice, bob, admin, ids[0], ids[1], (obama / "obama2.jpg").read_bytes())
    dep.close()


def _count(dep: Deployment, model: type) -> int:
    with dep.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("case_number", ["", "ab", "-abc", "a b c", "x" * 65, "ok\n123"])
def test_case_number_is_validated(world: World, case_number: str) -> None:
    before = _count(world.dep, AuditEntry)
    with world.dep.db.session() as s, pytest.raises(InvalidRequest) as err:
        run_search(world.dep, s, world.alice, world.probe, case_number=case_number, purpose=PURPOSE)
    assert err.value.field == "case_number"
    assert _count(world.dep, AuditEntry) == before


@pytest.mark.parametrize("purpose", ["", "   short  ", "x" * 501, "bad\x00control chars"])
def test_purpose_is_validated(world: World, purpose: str) -> None:
    with world.dep.db.session() as s, pytest.raises(InvalidRequest) as err:
        run_search(world.dep, s, world.alice, world.probe, case_number="2024/17", purpose=purpose)
    assert err.value.field == "purpose"


def test_other_organisations_collection_is_not_found(world: World) -> None:
    with world.dep.db.session() as s, pytest.raises(NotFound):
        run_search(
            world.dep,
            s,
            world.alice,
            world.probe,
            case_number="2024/17",
            purpose=PURPOSE,
            collection_ids=[world.coll_b],
        )
    with world.dep.db.session() as s, pytest.raises(NoOrganisation):
        run_search(world.dep, s, world.admin, world.probe, case_number="2024/17", purpose=PURPOSE)


def test_bad_probe_is_rejected_without_a_record(world: World) -> None:
    searches = _count(world.dep, Search)
    with world.dep.db.session() as s, pytest.raises(ImageRejected):
        run_search(
            world.dep,
            s,
            world.alice,
            b"not an image at all",
            case_number="2024/17",
            purpose=PURPOSE,
        )
    assert _count(world.dep, Search) == searches


def test_search_writes_search_results_and_audit_record(world: World) -> None:
    with world.dep.db.session() as s:
        out = run_search(
            world.dep, s, world.alice, world.probe, case_number="2024/17", purpose=PURPOSE, top_k=5
        )
    cands = [c for f in out.faces for c in f.candidates]
    assert cands, "the probe (another photo of Obama) finds candidates"
    assert {c.collection_id for c in cands} == {world.coll_a}, "only org A's collection"
    assert all(
        c.status == "lead" and c.crop_url == f"/api/v1/faces/{c.face_id}/crop" for c in cands
    )
    with world.dep.db.session() as s:
        search = s.get(Search, out.search_id)
        assert search is not None and search.org_id == world.alice.org_id
        assert search.probe_hash == world.dep.keys.content_hash(world.probe)
        case = s.get(Case, search.case_id)
        assert case is not None and case.number == "2024/17"
        rows = list(s.scalars(select(Lead).where(Lead.search_id == search.id)))
        assert sorted(r.id for r in rows) == sorted(c.result_id for c in cands)
        entry = s.get(AuditEntry, out.audit_entry_id)
        assert entry is not None and entry.action == "search.performed"
        d = entry.details
        assert entry.actor_user_id == world.alice.user_id
        assert entry.org_id == world.alice.org_id
        assert d["case_number"] == "2024/17" and d["purpose"] == PURPOSE
        assert d["probe_hash"] == search.probe_hash and d["collections"] == [world.coll_a]
        assert [(r["face_id"], r["score"]) for r in d["results"]] == [
            (r.face_id, r.score) for r in sorted(rows, key=lambda r: r.id)
        ]
        assert audit.verify_chain(s).ok
    # A second search of the same case reuses it.
    with world.dep.db.session() as s:
        again = run_search(
            world.dep, s, world.alice, world.probe, case_number="2024/17", purpose=PURPOSE, top_k=1
        )
    assert again.case_id == out.case_id


def test_record_is_committed_before_results_are_returned(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make building the answer fail after the record: the record must already be durable."""

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("serialisation failed")

    monkeypatch.setattr(casework, "_build_outcome", boom)
    searches, entries = _count(world.dep, Search), _count(world.dep, AuditEntry)
    with pytest.raises(RuntimeError), world.dep.db.session() as s:
        run_search(world.dep, s, world.alice, world.probe, case_number="CASE-9", purpose=PURPOSE)
    # the surrounding unit of work rolled back, yet the record stayed
    assert _count(world.dep, Search) == searches + 1
    assert _count(world.dep, AuditEntry) == entries + 1
    with world.dep.db.session() as s:
        last = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()
        assert last.action == "search.performed" and last.details["case_number"] == "CASE-9"


def test_shared_collection_is_searchable_read_only(world: World) -> None:
    with world.dep.db.session() as s:
        code = coll_service.new_share_code(s, world.bob)["code"]  # B hands out a code
    with world.dep.db.session() as s, pytest.raises(NotFound):
        coll_service.share_collection(s, world.bob, world.coll_a, code)  # not B's to share
    with world.dep.db.session() as s:
        share = coll_service.share_collection(s, world.alice, world.coll_a, code)
    with world.dep.db.session() as s:
        coll_service.accept_share(s, world.bob, share["id"])  # B accepts the offer
    with world.dep.db.session() as s:
        out = run_search(
            world.dep,
            s,
            world.bob,
            world.probe,
            case_number="B-1",
            purpose=PURPOSE,
            collection_ids=[world.coll_a],
            top_k=1,
        )
    assert out.collections == [{"id": world.coll_a, "name": "mugshots"}]
    with world.dep.db.session() as s, pytest.raises(NotFound):
        coll_service.delete_collection(world.dep, s, world.bob, world.coll_a)
    with world.dep.db.session() as s:
        listed = coll_service.list_collections(s, world.bob)["items"]
    assert {(c["id"], c["access"]) for c in listed} == {
        (world.coll_b, "manage"),
        (world.coll_a, "read-only"),
    }


def test_no_face_probe_records_an_empty_search(world: World) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 200, 200)).save(buf, "PNG")
    with world.dep.db.session() as s:
        out = run_search(
            world.dep, s, world.alice, buf.getvalue(), case_number="2024/17", purpose=PURPOSE
        )
    assert out.faces == []
    with world.dep.db.session() as s:
        assert s.get(Search, out.search_id) is not None


def test_collection_validation(world: World, tmp_path: Path) -> None:
    bad = [
        {"name": "", "legal_basis": "Police Act s.64A", "retention_days": 10},
        {"name": "x", "legal_basis": "short", "retention_days": 10},
        {"name": "x", "legal_basis": "Police Act s.64A", "retention_days": 0},
        {"name": "x", "legal_basis": "Police Act s.64A", "retention_days": 36501},
    ]
    for body in bad:
        with world.dep.db.session() as s, pytest.raises(InvalidRequest):
            coll_service.create_collection(world.dep, s, world.alice, **body)  # type: ignore[arg-type]
    with world.dep.db.session() as s, pytest.raises(Conflict):
        coll_service.create_collection(
            world.dep,
            s,
            world.alice,
            name="mugshots",
            legal_basis="Police Act s.64A",
            retention_days=3,
        )
    # the same name in another organisation is fine (names are per organisation)
    with world.dep.db.session() as s:
        coll_service.create_collection(
            world.dep,
            s,
            world.bob,
            name="mugshots",
            legal_basis="Police Act s.64A",
            retention_days=3,
        )
