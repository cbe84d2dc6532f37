"""Re-embedding a collection whose blobs live in S3 (moto on loopback, started here): the kept
images are read back from the bucket, and the crops of the old model are purged from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from facesearch.gallery.collections import ensure_collection
from facesearch.ingest.reembed import Reembed
from facesearch.store.gallery import Face, SourceFile
from tests.conftest import faces_dir, ingest, new_deployment
from tests.s3 import s3_server


@pytest.mark.slow
@pytest.mark.shared_faces
def test_reembed_reads_images_from_the_bucket_and_purges_old_crops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama1.jpg", "obama3.jpg"):
        shutil.copy(faces_dir("small", "barack_obama") / name, folder / name)
    shutil.copy(faces_dir("small", "joe_biden") / "biden.jpg", folder / "biden.jpg")
    with s3_server(monkeypatch) as server:
        bucket = server.new_bucket()
        dep = new_deployment(tmp_path / "dep", **server.settings(bucket))
        try:
            cid = ensure_collection(dep, "mugshots", model="dlib")
            assert ingest(dep, cid, folder).faces >= 3
            with dep.db.session() as s:
                old_crops = set(s.scalars(select(Face.crop_blob)))
                images = set(s.scalars(select(SourceFile.image_blob)))
            assert old_crops and images and None not in images
            summary = Reembed(dep, cid, "sface", workers=1).run()
            assert summary.faces >= 3 and summary.unreadable == 0
            with dep.db.session() as s:
                new_crops = set(s.scalars(select(Face.crop_blob)))
            keys = set(server.objects(bucket))
            stored = {k.rsplit("/", 1)[-1] for k in keys}
            assert stored == images | new_crops
            purged = old_crops - new_crops  # dlib's crops differ from SFace's
            assert purged and not purged & stored
        finally:
            dep.close()
