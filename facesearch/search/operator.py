"""The host operator's searches: `facesearch search` at the command line, run in the CLI's own
process or in the running service through its private socket (ADR 0019).

They are not casework (the operator holds the master key and no account; no case, no purpose,
no leads), but they are on the record all the same: one `search.operator` audit entry per
search, committed before the result is handed back, with the channel it came through, the
keyed hash of the probe, the collections, the parameters and every candidate shown (face id and
score). The entry belongs to no organisation: the platform's audit log and export show it, an
organisation's own view does not (its collections' ids are in the entry).
"""

from __future__ import annotations

from typing import Literal

from facesearch.deployment import Deployment
from facesearch.search.engine import EngineResult, SearchEngine

#: the model queue's key of the operator's searches (organisations' keys are ints)
OPERATOR = "local-operator"

Channel = Literal["cli", "service socket"]


def operator_search(
    dep: Deployment,
    image: bytes,
    *,
    collection_ids: list[int],
    top_k: int,
    threshold: float | None,
    channel: Channel,
) -> EngineResult:
    """Search the collections (ids from `gallery.names.ids_by_name`) for every face of the
    probe, in the model queue's turn, and record it before returning."""
    with dep.model_queue.slot(OPERATOR):
        found = SearchEngine(dep).search(
            image, collection_ids=collection_ids, top_k=top_k, threshold=threshold
        )
    from facesearch.security import audit  # after the search: a CLI search imports it late
    from facesearch.security.actor import SystemActor

    with dep.db.session() as s:
        audit.record_for(
            s,
            SystemActor(ip=channel),
            "search.operator",
            org_id=None,
            target_type="probe",
            details={
                "channel": channel,
                "probe_hash": dep.keys.content_hash(image),
                "collections": collection_ids,
                "top_k": top_k,
                "threshold": threshold,
                "models": [m.model_id for m in found.models],
                "probe_faces": len(found.faces),
                "results": [
                    {"face_id": c.face_id, "score": float(c.score), "probe_face": f.index}
                    for f in found.faces
                    for c in f.candidates
                ],
            },
        )
        s.commit()  # on the record before anything is shown
    return found
