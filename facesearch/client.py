"""A typed Python client for a facesearch server, authenticated with an API key.

    from facesearch.client import FacesearchClient

    with FacesearchClient("https://faces.example.org", api_key) as fs:
        result = fs.search("probe.jpg", case="2024/0042", purpose="Robbery at ...")
        for face in result["faces"]:
            for cand in face["candidates"]:
                jpeg = fs.crop(cand["face_id"])

Every refusal raises a subclass of `ApiError` carrying the HTTP status and the server's reason:
`Unauthorized` (401), `Forbidden` (403), `NotFound` (404, also for other organisations' objects),
`Conflict` (409), `PayloadTooLarge` (413), `InvalidRequest` (400/422), `RateLimited` (429, with
`retry_after` seconds), `ServerError` (5xx).

Ids are opaque strings (`col_...`, `face_...`, `case_...`): take them from the server's answers
and hand them back unchanged; they reveal neither order nor count (docs/decisions/0011).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

API = "/api/v1"
ProbeLike = bytes | str | Path
UploadLike = Path | str | tuple[str, bytes]


class ApiError(Exception):
    status: int = 0

    def __init__(self, status: int, detail: str, body: Any = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body


class Unauthorized(ApiError):
    """401: missing, invalid, expired or revoked API key."""


class Forbidden(ApiError):
    """403: the key lacks the scope (or the user the role) for this call."""


class NotFound(ApiError):
    """404: no such object, or it belongs to another organisation."""


class Conflict(ApiError):
    """409: the object's state does not allow the call."""


class PayloadTooLarge(ApiError):
    """413: the request body is over the server's limit."""


class InvalidRequest(ApiError):
    """400/422: a field is missing or malformed, or the image was rejected."""


class RateLimited(ApiError):
    """429: too many requests; wait `retry_after` seconds."""

    def __init__(
        self, status: int, detail: str, body: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(status, detail, body)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
}


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        detail = body.get("detail", body)
        if isinstance(detail, list):  # FastAPI validation errors
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                    parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
                else:
                    parts.append(str(item))
            return "; ".join(parts)
        return str(detail)
    return str(body)


def raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:500]
    detail = _detail(body) or response.reason_phrase
    status = response.status_code
    if status == 429:
        raw = response.headers.get("Retry-After")
        try:
            retry = float(raw) if raw is not None else None
        except ValueError:
            retry = None
        raise RateLimited(status, detail, body, retry)
    if status >= 500:
        raise ServerError(status, detail, body)
    raise _BY_STATUS.get(status, ApiError)(status, detail, body)


#: What an opaque id of the API looks like: `<kind>_<base32>`.
_OPAQUE_ID = re.compile(r"^[a-z]+_[a-z2-7]{26}$")


def _seg(object_id: str) -> str:
    """An id as one path segment (quoted: an id never changes which route is called)."""
    return quote(str(object_id), safe="")


def _read_probe(probe: ProbeLike) -> tuple[str, bytes]:
    if isinstance(probe, bytes):
        return "probe.jpg", probe
    path = Path(probe)
    return path.name, path.read_bytes()


class FacesearchClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        verify: bool | str = True,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("an API key is required (fsk_...)")
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            verify=verify,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "facesearch-client"},
            follow_redirects=False,
        )

    # -- plumbing ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FacesearchClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, f"{API}{path}", **kwargs)
        raise_for(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        data = self._request(method, path, **kwargs).json()
        if not isinstance(data, dict):
            raise ServerError(0, "unexpected answer from the server", data)
        return data

    # -- searches, cases, reviews -----------------------------------------------------------------
    def search(
        self,
        probe: ProbeLike,
        case: str,
        purpose: str,
        collections: Iterable[str] | None = None,
        top_k: int = 10,
        threshold: float | None = None,
    ) -> dict[str, Any]:
        """Search a probe image; the server records the search before it answers."""
        name, data = _read_probe(probe)
        form: dict[str, Any] = {"case_number": case, "purpose": purpose, "top_k": str(top_k)}
        if collections:
            form["collections"] = ",".join(str(c) for c in collections)
        if threshold is not None:
            form["threshold"] = str(threshold)
        return self._json(
            "POST",
            "/searches",
            data=form,
            files={"probe": (name, data, "application/octet-stream")},
        )

    def cases(self) -> dict[str, Any]:
        return self._json("GET", "/cases")

    def get_case(self, case_id: str) -> dict[str, Any]:
        return self._json("GET", f"/cases/{_seg(case_id)}")

    def get_search(self, search_id: str) -> dict[str, Any]:
        return self._json("GET", f"/searches/{_seg(search_id)}")

    def review(self, result_id: str, decision: str, note: str = "") -> dict[str, Any]:
        """Confirm or reject a result ("confirm" | "reject")."""
        return self._json(
            "POST", f"/results/{_seg(result_id)}/reviews", json={"decision": decision, "note": note}
        )

    def review_queue(self) -> dict[str, Any]:
        return self._json("GET", "/reviews/queue")

    def crop(self, face_id: str) -> bytes:
        """The JPEG crop of a candidate face (viewing it is audited)."""
        return self._request("GET", f"/faces/{_seg(face_id)}/crop").content

    # -- collections and ingest -------------------------------------------------------------------
    def collections(self) -> list[dict[str, Any]]:
        items = self._json("GET", "/collections").get("items", [])
        return list(items)

    def collection_id(self, name_or_id: str) -> str:
        """Resolve a collection name (own first, then shared) or id (`col_...`)."""
        text = str(name_or_id)
        if _OPAQUE_ID.match(text) and text.startswith("col_"):
            return text
        found = [c for c in self.collections() if c["name"] == text]
        found.sort(key=lambda c: not c.get("owned", False))
        if not found:
            raise NotFound(404, f"no collection named {text!r}")
        return str(found[0]["id"])

    def create_collection(
        self, name: str, legal_basis: str, retention_days: int, description: str = ""
    ) -> dict[str, Any]:
        return self._json(
            "POST",
            "/collections",
            json={
                "name": name,
                "legal_basis": legal_basis,
                "retention_days": retention_days,
                "description": description,
            },
        )

    def share_collection(self, collection_id: str, code: str) -> dict[str, Any]:
        """Offer a collection to the organisation that handed out the one-time share `code`."""
        return self._json("POST", f"/collections/{_seg(collection_id)}/shares", json={"code": code})

    def delete_collection(self, collection_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/collections/{_seg(collection_id)}")

    def upload(self, collection_id: str, files: Iterable[UploadLike]) -> dict[str, Any]:
        """Upload images into a collection; returns the background job (see `job`)."""
        parts: list[tuple[str, tuple[str, bytes, str]]] = []
        for item in files:
            if isinstance(item, tuple):
                name, data = item
            else:
                path = Path(item)
                name, data = path.name, path.read_bytes()
            parts.append(("files", (name, data, "application/octet-stream")))
        return self._json("POST", f"/collections/{_seg(collection_id)}/uploads", files=parts)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{_seg(job_id)}")

    def wait_job(self, job_id: str, timeout: float = 600.0, poll: float = 0.5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in ("done", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(poll)

    # -- audit ------------------------------------------------------------------------------------
    def audit_entries(self, after_id: str | None = None, limit: int = 100) -> dict[str, Any]:
        """Entries oldest first; page on with `after_id` = the last entry's id."""
        params: dict[str, Any] = {"limit": limit}
        if after_id is not None:
            params["after_id"] = after_id
        return self._json("GET", "/audit/entries", params=params)

    def search_history(self, limit: int = 100) -> dict[str, Any]:
        return self._json("GET", "/audit/searches", params={"limit": limit})

    def audit_export(self) -> bytes:
        """The organisation's signed audit export (JSON Lines)."""
        return self._request("GET", "/audit/export").content
