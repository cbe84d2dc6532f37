"""The case report: a case with its searches, candidates and review decisions, as a PDF.

Written with fpdf2 (pure Python, installs from PyPI wheels; no system packages). The report holds
no face images, only what the record holds (case, searches with their purpose, candidates with
their similarity and status, every decision with its reviewer and note), and it opens with the
statement that candidates are leads, not identifications. Exporting it is an audited read
(`case.report_exported`) committed before the bytes leave.

Names and notes are in any script: the text is set in DejaVu Sans (Debian's `fonts-dejavu-core`:
Latin, Greek, Cyrillic and more) with Droid Sans Fallback (`fonts-droid-fallback`: Chinese,
Japanese, Korean) for what it lacks, both read from the system (`.ci/apt-packages`; no font file
is shipped). Without them the report falls back to the standard Helvetica (Latin-1); a character
no available font can draw is printed as "?" and the report says so (the record itself keeps
every character).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import TTFFont
from sqlalchemy import select
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.search.casework import case_detail
from facesearch.security import audit
from facesearch.security.actor import Actor
from facesearch.security.tenancy import display_name, org_of
from facesearch.store.gallery import Collection

STATEMENT = (
    "Candidates are leads, not identifications. A similarity score says how alike two faces "
    "look to the model; it never establishes who a person is. A candidate is confirmed only "
    "after two different reviewers confirm it, and a confirmed candidate is still a lead for "
    "the investigation to verify by other means."
)


#: Unicode TrueType fonts from Debian packages, tried in order (regular, bold, italic).
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
BODY_FONTS = {
    "": DEJAVU / "DejaVuSans.ttf",
    "B": DEJAVU / "DejaVuSans-Bold.ttf",
    "I": DEJAVU / "DejaVuSans-Oblique.ttf",
}
#: For the scripts DejaVu lacks (CJK).
FALLBACK_FONTS = (Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),)
REPLACED_NOTE = (
    "Some characters could not be drawn with the fonts of this server and are shown as '?'; "
    "the case record keeps them (install fonts-dejavu-core and fonts-droid-fallback)."
)


@dataclass(frozen=True)
class Fonts:
    """What the report can draw: the body font family, and the code points it covers (None:
    the standard Helvetica, Latin-1 only)."""

    family: str
    covered: frozenset[int] | None


def _code_points(pdf: FPDF, name: str) -> set[int]:
    font = pdf.fonts[name]
    return set(font.cmap) if isinstance(font, TTFFont) else set()


def _load_fonts(pdf: FPDF) -> Fonts:
    regular = BODY_FONTS[""]
    if not regular.is_file():
        return Fonts("Helvetica", None)
    for style, path in BODY_FONTS.items():
        pdf.add_font("body", style, str(path if path.is_file() else regular))
    covered = _code_points(pdf, "body")
    fallbacks = []
    for n, path in enumerate(p for p in FALLBACK_FONTS if p.is_file()):
        name = f"fallback{n}"
        pdf.add_font(name, "", str(path))
        covered |= _code_points(pdf, name)
        fallbacks.append(name)
    if fallbacks:
        pdf.set_fallback_fonts(fallbacks, exact_match=False)
    return Fonts("body", frozenset(covered))


def _collections(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.scalars(select(Collection).where(Collection.id.in_(ids)))
    return {c.id: display_name(c) for c in rows}


class _Report(FPDF):
    def __init__(self, number: str) -> None:
        super().__init__(format="A4")
        self.number = number
        self.typeface = _load_fonts(self)
        self.replaced = False  # a character no font covers was printed as "?"
        self.set_auto_page_break(auto=True, margin=15)
        self.set_title(f"Case {number}")
        self.set_creator("facesearch")

    def text_of(self, value: object) -> str:
        """`value` as the fonts can draw it ("?" for anything else, noted)."""
        text = str(value)
        covered = self.typeface.covered
        if covered is None:
            safe = text.encode("latin-1", "replace").decode("latin-1")
        else:
            safe = "".join(c if ord(c) in covered or c in "\n\t" else "?" for c in text)
        self.replaced = self.replaced or safe != text
        return safe

    def use_font(self, size: float, style: str = "") -> None:
        self.set_font(self.typeface.family, style=style, size=size)

    def footer(self) -> None:
        self.set_y(-12)
        self.use_font(8)
        page = f"Case {self.number} - page {self.page_no()}/{{nb}}"
        self.cell(0, 6, self.text_of(page), align="C")

    def line_text(self, text: str, size: float = 10, style: str = "") -> None:
        self.use_font(size, style)
        self.multi_cell(0, size * 0.5, self.text_of(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def render(detail: dict[str, Any], collections: dict[int, str]) -> bytes:
    """The PDF of a case detail (as `casework.case_detail` gives it, its people named as the
    organisation names them: `user_name`, `created_by_name`)."""
    pdf = _Report(detail["number"])
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.line_text(f"Case {detail['number']}", size=18, style="B")
    opened_by = f" by {detail['created_by_name']}" if detail.get("created_by_name") else ""
    pdf.line_text(
        f"Opened {detail['created_at']}{opened_by}; {detail['searches']} search(es). "
        f"Report generated {clock.now().isoformat(timespec='seconds')}.",
        size=9,
    )
    pdf.ln(2)
    pdf.set_fill_color(255, 243, 205)
    pdf.use_font(10, "B")
    pdf.multi_cell(
        0, 5, pdf.text_of(STATEMENT), border=1, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )

    def who(item: dict[str, Any]) -> str:
        if item.get("user_name"):
            return str(item["user_name"])
        if item.get("user_id") is None:
            return "an API key"
        return "an account outside the organisation"  # never another organisation's names

    for number, search in enumerate(detail["search_list"], start=1):
        pdf.ln(4)
        pdf.line_text(f"Search {number} - {search['created_at']}", size=13, style="B")
        names = ", ".join(collections.get(c, "a collection") for c in search["collections"])
        key = " (with an API key)" if search.get("api_key_id") is not None else ""
        pdf.line_text(f"By {who(search)}{key}; model {search['model_id']}; over {names}.")
        pdf.line_text(f"Purpose: {search['purpose']}")
        results = search["results"]
        if not results:
            pdf.line_text("No candidates.", style="I")
        for result in results:
            pdf.ln(1)
            independent = ""
            if result["status"] == "confirmed" and result.get("independent") is False:
                independent = " (confirmations not independent)"
            pdf.line_text(
                f"Probe face {result['probe_face'] + 1}, candidate {result['rank']}: "
                f"similarity {result['score']:.3f}; status {result['status']}{independent}",
                style="B",
            )
            for review in result["reviews"]:
                note = f": {review['note']}" if review["note"] else ""
                pdf.line_text(
                    f"    {review['decision']} by {who(review)} at {review['created_at']}{note}",
                    size=9,
                )
    if pdf.replaced:
        pdf.ln(4)
        pdf.line_text(REPLACED_NOTE, size=9, style="I")
    return bytes(pdf.output())


def case_report_pdf(session: Session, actor: Actor, case_id: int) -> bytes:
    """The report of one of the organisation's cases (NotFound for anyone else's)."""
    org_id = org_of(actor)
    detail = case_detail(session, org_id, case_id)
    collection_ids: set[int] = set()
    for search in detail["search_list"]:
        collection_ids.update(search["collections"])
    data = render(detail, _collections(session, collection_ids))
    audit.record_for(
        session,
        actor,
        "case.report_exported",
        target_type="case",
        target_id=case_id,
        details={"case_number": detail["number"], "format": "pdf", "bytes": len(data)},
    )
    session.commit()
    return data
