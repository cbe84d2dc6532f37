"""Opaque ids at the API boundary (docs/decisions/0015-opaque-ids.md): the one place where an
integer id becomes a string and back.

Inside facesearch ids are integers (layers pass ids). Every id the API answers with is an opaque
string `<prefix>_<26 base32 characters>` (`crypto.IdCodec`, keyed by the deployment's master key),
and every id it is given is decoded here, by type:

- in a route's signature, a parameter typed `CollectionId`, `FaceId`, ... (a path parameter when
  the path names it, a query parameter otherwise) arrives as the integer;
- in a response model, a field typed `CollectionIdOut`, `FaceIdOut`, ... holds the integer the
  service returned and is written as the opaque string.

A string that is not an id of the expected kind made with this deployment's key (malformed,
tampered, of another kind, of another deployment) decodes to `UNKNOWN`, an id no row has, so the
service answers exactly as it does for an unknown id: same status, same body, same audit of the
denial. No router converts ids by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from facesearch.crypto import IdCodec, KeyRing

#: kind -> prefix of its ids. The kind is also bound inside the ciphertext, so changing the
#: prefix of an id does not make it an id of another kind.
KINDS: dict[str, str] = {
    "organisation": "org",
    "user": "user",
    "collection": "col",
    "share": "share",
    "share_code": "sharecode",
    "face": "face",
    "file": "file",
    "case": "case",
    "search": "search",
    "result": "result",
    "job": "job",
    "run": "run",
    "session": "session",
    "api_key": "key",
    "passkey": "passkey",
    "invitation": "inv",
    "audit_entry": "audit",
    "notice": "notice",
}

#: What a string that does not decode becomes: no table has a row with id 0.
UNKNOWN = 0
#: The largest integer id (a 32-bit key: no value reaches the database as an overflow).
MAX_ID = 2_147_483_647

_CODEC: ContextVar[IdCodec | None] = ContextVar("facesearch_id_codec", default=None)


def codec_for(keys: KeyRing) -> IdCodec:
    return IdCodec(keys.id_key, KINDS)


@contextmanager
def using(codec: IdCodec) -> Iterator[None]:
    """Ids of this deployment for the duration (the app's request guard wraps every request)."""
    token = _CODEC.set(codec)
    try:
        yield
    finally:
        _CODEC.reset(token)


def _codec() -> IdCodec:
    codec = _CODEC.get()
    if codec is None:  # pragma: no cover - a programming error, not a request's
        raise RuntimeError("opaque ids used outside a request of the API")
    return codec


def encode(kind: str, value: int) -> str:
    return _codec().encode(kind, int(value))


def decode(kind: str, text: object) -> int:
    """The integer behind an id of `kind`; `UNKNOWN` for anything else."""
    value = _codec().decode(kind, text)
    return UNKNOWN if value is None or value > MAX_ID else value


def pattern(kind: str) -> str:
    return f"^{KINDS[kind]}_[a-z2-7]{{{IdCodec.BODY_CHARS}}}$"


def _schema(kind: str) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": pattern(kind),
        "description": f"an opaque {kind.replace('_', ' ')} id",
    }


def _decoder(kind: str) -> BeforeValidator:
    return BeforeValidator(lambda value: decode(kind, value))


def _encoder(kind: str) -> PlainSerializer:
    return PlainSerializer(lambda value: encode(kind, value), return_type=str)


# -- ids the API is given (route parameters, request bodies) ---------------------------------------
OrganisationId = Annotated[int, _decoder("organisation"), WithJsonSchema(_schema("organisation"))]
UserId = Annotated[int, _decoder("user"), WithJsonSchema(_schema("user"))]
CollectionId = Annotated[int, _decoder("collection"), WithJsonSchema(_schema("collection"))]
ShareId = Annotated[int, _decoder("share"), WithJsonSchema(_schema("share"))]
FaceId = Annotated[int, _decoder("face"), WithJsonSchema(_schema("face"))]
CaseId = Annotated[int, _decoder("case"), WithJsonSchema(_schema("case"))]
SearchId = Annotated[int, _decoder("search"), WithJsonSchema(_schema("search"))]
ResultId = Annotated[int, _decoder("result"), WithJsonSchema(_schema("result"))]
JobId = Annotated[int, _decoder("job"), WithJsonSchema(_schema("job"))]
SessionId = Annotated[int, _decoder("session"), WithJsonSchema(_schema("session"))]
ApiKeyId = Annotated[int, _decoder("api_key"), WithJsonSchema(_schema("api_key"))]
PasskeyId = Annotated[int, _decoder("passkey"), WithJsonSchema(_schema("passkey"))]
InvitationId = Annotated[int, _decoder("invitation"), WithJsonSchema(_schema("invitation"))]
AuditEntryId = Annotated[int, _decoder("audit_entry"), WithJsonSchema(_schema("audit_entry"))]


def _cursor(kind: str) -> BeforeValidator:
    def check(value: object) -> int:
        decoded = _codec().decode(kind, value)
        if decoded is None:
            raise ValueError(f"not a {kind.replace('_', ' ')} id this API gave out")
        return decoded

    return BeforeValidator(check)


#: Paging cursors (`after_id`, `before_id`): the id of an item of a previous page. One that does
#: not decode is a 422 (a cursor names no object to be found or not).
AuditCursor = Annotated[int, _cursor("audit_entry"), WithJsonSchema(_schema("audit_entry"))]
SearchCursor = Annotated[int, _cursor("search"), WithJsonSchema(_schema("search"))]


# -- ids the API answers with (response models) ----------------------------------------------------
OrganisationIdOut = Annotated[
    int, _encoder("organisation"), WithJsonSchema(_schema("organisation"))
]
UserIdOut = Annotated[int, _encoder("user"), WithJsonSchema(_schema("user"))]
CollectionIdOut = Annotated[int, _encoder("collection"), WithJsonSchema(_schema("collection"))]
ShareIdOut = Annotated[int, _encoder("share"), WithJsonSchema(_schema("share"))]
ShareCodeIdOut = Annotated[int, _encoder("share_code"), WithJsonSchema(_schema("share_code"))]
FaceIdOut = Annotated[int, _encoder("face"), WithJsonSchema(_schema("face"))]
CaseIdOut = Annotated[int, _encoder("case"), WithJsonSchema(_schema("case"))]
SearchIdOut = Annotated[int, _encoder("search"), WithJsonSchema(_schema("search"))]
ResultIdOut = Annotated[int, _encoder("result"), WithJsonSchema(_schema("result"))]
JobIdOut = Annotated[int, _encoder("job"), WithJsonSchema(_schema("job"))]
SessionIdOut = Annotated[int, _encoder("session"), WithJsonSchema(_schema("session"))]
ApiKeyIdOut = Annotated[int, _encoder("api_key"), WithJsonSchema(_schema("api_key"))]
PasskeyIdOut = Annotated[int, _encoder("passkey"), WithJsonSchema(_schema("passkey"))]
InvitationIdOut = Annotated[int, _encoder("invitation"), WithJsonSchema(_schema("invitation"))]
AuditEntryIdOut = Annotated[int, _encoder("audit_entry"), WithJsonSchema(_schema("audit_entry"))]
NoticeIdOut = Annotated[int, _encoder("notice"), WithJsonSchema(_schema("notice"))]


# -- ids inside other values ---------------------------------------------------------------------
_LIST = re.compile(r"^\s*[a-z]+_[a-z2-7]+(\s*,\s*[a-z]+_[a-z2-7]+)*\s*$")


def case_reference(text: str | None) -> str | None:
    """A case filter given as a case id (opaque) or as a case number: the integer id as text
    when it is an id of a case, else the text itself (a case number)."""
    if not text:
        return text
    decoded = _codec().decode("case", text)
    return str(decoded) if decoded is not None else text


def decode_list(kind: str, raw: list[str] | None) -> list[int]:
    """Ids given as repeated form fields and/or comma-separated lists (empty: none given). Each
    token decodes like a single id: one that does not is `UNKNOWN`."""
    out: list[int] = []
    for part in raw or []:
        if not part.strip():
            continue
        tokens = part.split(",") if _LIST.match(part) else [part]
        out.extend(decode(kind, token.strip()) for token in tokens)
    return out


_CROP = re.compile(r"^/api/v1/faces/(\d+)/crop$")


def _crop_url(url: str) -> str:
    match = _CROP.match(url)
    if match is None:  # pragma: no cover - gallery.faces.crop_url builds every crop URL
        raise ValueError("not a crop URL")
    return f"/api/v1/faces/{encode('face', int(match.group(1)))}/crop"


#: A face's crop URL (`gallery.faces.crop_url`), written with the face's opaque id.
CropUrl = Annotated[str, PlainSerializer(_crop_url, return_type=str)]

_IMAGE = re.compile(r"^/api/v1/faces/(\d+)/image$")


def _image_url(url: str | None) -> str | None:
    if url is None:
        return None
    match = _IMAGE.match(url)
    if match is None:  # pragma: no cover - gallery.faces.image_url builds every image URL
        raise ValueError("not a face image URL")
    return f"/api/v1/faces/{encode('face', int(match.group(1)))}/image"


#: The URL of the source image a face was found in (`gallery.faces.image_url`), opaque id.
ImageUrl = Annotated[str | None, PlainSerializer(_image_url, return_type=str | None)]

_UPLOAD_SOURCE = re.compile(r"^upload:(\d+)/")


def encode_source(source: str | None) -> str | None:
    """A file's provenance: a staged upload is named `upload:<job>/<file name>`, written here
    with the job's opaque id."""
    if source is None:
        return None
    match = _UPLOAD_SOURCE.match(source)
    if match is None:
        return source
    return f"upload:{encode('job', int(match.group(1)))}/{source[match.end() :]}"


#: Provenance (`upload:<job>/...` with the job's opaque id; folder sources as they are).
Source = Annotated[str, PlainSerializer(encode_source, return_type=str)]

#: Keys of audit details, job summaries and notices that hold ids, and their kinds.
DETAIL_KEYS: dict[str, str] = {
    "collection_id": "collection",
    "collections": "collection",
    "collection_ids": "collection",
    "face_id": "face",
    "case_id": "case",
    "search_id": "search",
    "result_id": "result",
    "lead_id": "result",
    "share_id": "share",
    "share_code_id": "share_code",
    "user_id": "user",
    "searcher_user_id": "user",
    "owner_user_id": "user",
    "actor_user_id": "user",
    "invited_by": "user",
    "confirmed_by": "user",
    "created_by": "user",
    "org_id": "organisation",
    "with_org_id": "organisation",
    "invited_org_id": "organisation",
    "job_id": "job",
    "run_id": "run",
    "session_id": "session",
    "api_key_id": "api_key",
    "actor_key_id": "api_key",
    "key_id": "api_key",
    "passkey_id": "passkey",
    "passkey": "passkey",
    "invitation_id": "invitation",
    "audit_entry_id": "audit_entry",
    "file_id": "file",
}

#: Audit target types whose target ids are object ids, and their kinds.
TARGET_KINDS: dict[str, str] = {
    "organisation": "organisation",
    "user": "user",
    "collection": "collection",
    "share": "share",
    "share_code": "share_code",
    "face": "face",
    "case": "case",
    "search": "search",
    "result": "result",
    "job": "job",
    "session": "session",
    "api_key": "api_key",
    "passkey": "passkey",
    "invitation": "invitation",
}


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: Keys of details and summaries that hold provenance (`encode_source`).
SOURCE_KEYS = frozenset({"path", "source", "file"})


def encode_details(value: Any, keys: dict[str, str] = DETAIL_KEYS) -> Any:
    """A JSON value (audit details, a job summary, a notice's details) with every integer held
    under one of `keys`, or in a list under one, written as an opaque id of its kind (and
    provenance under `SOURCE_KEYS` as `encode_source` writes it)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            kind = keys.get(key)
            if key in SOURCE_KEYS and isinstance(item, str):
                out[key] = encode_source(item)
            elif kind is not None and _is_id(item):
                out[key] = encode(kind, item)
            elif kind is not None and isinstance(item, list) and all(_is_id(i) for i in item):
                out[key] = [encode(kind, i) for i in item]
            elif kind is not None and isinstance(item, dict) and all(k.isdigit() for k in item):
                # {id: id or None} (who invited whom): both sides of the kind
                out[key] = {
                    encode(kind, int(k)): encode(kind, v) if _is_id(v) else v
                    for k, v in item.items()
                }
            else:
                out[key] = encode_details(item, keys)
        return out
    if isinstance(value, list):
        return [encode_details(item, keys) for item in value]
    return value


def encode_target(target_type: str | None, target_id: str | None) -> str | None:
    """An audit entry's target id: opaque when it names an object of a known kind."""
    kind = TARGET_KINDS.get(target_type or "")
    if kind is None or target_id is None or not target_id.isdigit():
        return target_id
    return encode(kind, int(target_id))


#: Details of any JSON shape, ids encoded (see `encode_details`).
Details = Annotated[dict[str, Any], PlainSerializer(encode_details, return_type=dict[str, Any])]
#: An ingest job's summary: its `job_id` is the engine's ingest run (kind `run`).
RunSummary = Annotated[
    dict[str, Any],
    PlainSerializer(
        lambda value: encode_details(value, {**DETAIL_KEYS, "job_id": "run"}),
        return_type=dict[str, Any],
    ),
]
