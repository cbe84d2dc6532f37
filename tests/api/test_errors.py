"""Messages to clients carry no server path, but keep the API's own routes."""

from __future__ import annotations

from facesearch.api.errors import scrub


def test_file_paths_are_scrubbed_and_api_routes_kept() -> None:
    assert scrub("cannot read /home/alice/photos/x.jpg: denied") == "cannot read <path>: denied"
    assert "/srv/faces" not in scrub("no folder /srv/faces/org1/drop below the root")
    kept = "second factor required: verify a code at /api/v1/auth/mfa/verify"
    assert scrub(kept) == kept
