"""Response models shared by more than one router (casework: searches, cases, results)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from facesearch.api.ids import (
    ApiKeyIdOut,
    CaseIdOut,
    CollectionIdOut,
    CropUrl,
    FaceIdOut,
    ResultIdOut,
    SearchIdOut,
    UserIdOut,
)

#: How a person appears on the organisation's screens: display name, else email; only for users
#: of the caller's own organisation (None for anyone else).
PERSON_NAME = "display name or email of the person (a user of your organisation), else null"


class ReviewOut(BaseModel):
    user_id: UserIdOut
    user_name: str | None = Field(default=None, description=PERSON_NAME)
    decision: str = Field(description="confirm or reject")
    note: str
    created_at: str


class ResultOut(BaseModel):
    """A candidate a search returned, stored as a lead with its review status."""

    id: ResultIdOut
    search_id: SearchIdOut
    probe_face: int
    rank: int
    face_id: FaceIdOut
    score: float
    status: str = Field(description="lead, confirmed (two reviewers) or rejected")
    independent: bool | None = Field(
        default=None,
        description="confirmed results: false when the confirmations are not independent "
        "(a reviewer invited by the searcher or by the other reviewer, or all three invited by "
        "one person around the case's time)",
    )
    crop_url: CropUrl
    reviews: list[ReviewOut]


class SearchRecordOut(BaseModel):
    """A search as recorded: who, for which case and purpose, over which collections."""

    id: SearchIdOut
    case_id: CaseIdOut
    case_number: str | None
    user_id: UserIdOut | None
    user_name: str | None = Field(default=None, description=PERSON_NAME)
    api_key_id: ApiKeyIdOut | None
    purpose: str
    probe_hash: str
    collections: list[CollectionIdOut]
    top_k: int
    threshold: float | None
    model_id: str
    created_at: str


class SearchWithResults(SearchRecordOut):
    results: list[ResultOut]


class Page(BaseModel):
    total: int
