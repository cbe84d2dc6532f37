// Cases: the organisation's cases; one case with its searches, their candidates and every review
// decision; its report as a PDF (from the API) and as this page printed (print CSS). Another
// organisation's case is "not found", like a missing one.
import { api } from "../api.js";
import { badge, button, errorText, formatTime, h, link, loading, page, person, section, table } from "../ui.js";
import { details, searchThreshold, similarityBar, statusBadge } from "./results.js";

export const LEADS_STATEMENT = "Candidates are leads, not identifications. A similarity score says how alike two faces look to the model; it never establishes who a person is. A candidate is confirmed only after two different reviewers confirm it, and a confirmed candidate is still a lead to verify by other means.";

export async function render(ctx) {
  const id = decodeURIComponent(ctx.rest.split("/")[0] || "");
  return id ? renderCase(ctx, id) : renderList(ctx);
}

async function renderList(ctx) {
  const { main, me } = ctx;
  page(main, "Cases", loading());
  if (!me.roles.includes("investigator")) {
    page(main, "Cases", h("p", { text: "Open a case from the review queue or the audit log; the list of cases is for investigators." }));
    return;
  }
  const cases = await api.get("/api/v1/cases?limit=500");
  page(main, "Cases",
    h("p", { class: "lead", text: "Every search belongs to a case. A case opens with its first search." }),
    h("div", { class: "toolbar" }, link("/search", "New search", { class: "button primary" })),
    table({
      caption: `${cases.total} case${cases.total === 1 ? "" : "s"} of your organisation`,
      columns: [
        { label: "Case number", render: (c) => link(`/cases/${encodeURIComponent(c.id)}`, c.number) },
        { label: "Opened", render: (c) => formatTime(c.created_at) },
        { label: "Opened by", render: (c) => c.created_by != null ? person(c.created_by_name, c.created_by) : "—" },
        { label: "Searches", key: "searches" },
      ],
      rows: cases.items,
      empty: "No case yet: a case opens with its first search.",
    }));
}

async function renderCase(ctx, id) {
  const { main, me } = ctx;
  page(main, "Case", loading());
  let detail;
  try {
    detail = await api.get(`/api/v1/cases/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404) {
      page(main, "Not found", h("p", { text: "There is no such case, or it is not your organisation's." }), h("p", {}, link("/cases", "Back to the cases")));
      return;
    }
    page(main, "Case", h("p", { class: "form-error", role: "alert", text: errorText(e) }));
    return;
  }
  const known = await api.get("/api/v1/collections").catch(() => ({ items: [] }));
  const names = new Map(known.items.map((c) => [String(c.id), c.name]));
  const results = detail.search_list.flatMap((s) => s.results);
  const tally = (status) => results.filter((r) => r.status === status).length;
  const searches = detail.search_list.map((s) => searchSection(s, me, names));
  page(main, `Case ${detail.number}`,
    h("p", { class: "banner notice-leads statement", role: "note", text: LEADS_STATEMENT }),
    h("div", { class: "toolbar no-print" },
      h("a", { href: `/api/v1/cases/${encodeURIComponent(detail.id)}/report.pdf`, download: `case-${detail.number.replaceAll("/", "-")}.pdf`, class: "button primary", "data-report": "pdf" }, "Download the report (PDF)"),
      button("Print this report", () => window.print(), { kind: "secondary" }),
      me.roles.includes("investigator") ? link(`/search?case=${encodeURIComponent(detail.number)}`, "Search for this case", { class: "button secondary" }) : null),
    h("dl", { class: "facts case-facts" },
      h("dt", { text: "Opened" }), h("dd", {}, formatTime(detail.created_at), detail.created_by != null ? [" by ", person(detail.created_by_name, detail.created_by)] : null),
      h("dt", { text: "Searches" }), h("dd", { text: String(detail.searches) }),
      h("dt", { text: "Candidates" }), h("dd", { text: `${results.length}: ${tally("confirmed")} confirmed, ${tally("rejected")} rejected, ${tally("lead")} awaiting review` })),
    searches.length ? searches : h("p", { class: "empty", text: "No search in this case yet." }));
}

function searchSection(s, me, names) {
  const items = s.results.map((r) => h("li", { class: "candidate card case-candidate", "data-result-id": String(r.id) },
    h("img", { src: r.crop_url, alt: `Face crop of candidate ${r.rank}`, class: "crop", width: "96", height: "96", loading: "lazy" }),
    h("div", { class: "candidate-body" },
      h("h3", { class: "candidate-title", text: `Face ${r.probe_face + 1}, candidate ${r.rank}` }),
      similarityBar(r.score, searchThreshold(s)),
      h("p", {}, statusBadge(r.status, r.independent)),
      r.reviews.length ? h("ul", { class: "decisions", "aria-label": `Decisions on candidate ${r.rank}` },
        r.reviews.map((d) => h("li", { "data-decision": d.decision },
          badge(d.decision === "confirm" ? "Confirmed" : "Rejected", d.decision === "confirm" ? "ok" : "bad"),
          " by ", person(d.user_name, d.user_id), `, ${formatTime(d.created_at)}`,
          d.note ? h("q", { class: "note", text: d.note }) : null)))
        : h("p", { class: "hint", text: "No decision yet." }),
      h("div", { class: "form-actions no-print" },
        button("Details", () => details({ face_id: r.face_id, crop_url: r.crop_url, rank: r.rank, score: r.score, threshold: searchThreshold(s) }), { kind: "secondary small", "aria-label": `Details of candidate ${r.rank}` })))));
  return section(`Search of ${formatTime(s.created_at)}`,
    h("dl", { class: "facts" },
      h("dt", { text: "By" }), h("dd", {}, s.user_id != null ? person(s.user_name, s.user_id) : "an API key",
        s.api_key_id != null ? h("span", { class: "hint", title: `API key id ${s.api_key_id}`, text: " (with an API key)" }) : null),
      h("dt", { text: "Purpose" }), h("dd", { text: s.purpose }),
      h("dt", { text: "Model" }), h("dd", { text: s.model_id }),
      h("dt", { text: "Collections" }), h("dd", { text: s.collections.map((c) => names.get(String(c)) || `collection ${c}`).join(", ") })),
    me.roles.includes("investigator") ? h("p", { class: "no-print" }, link(`/results/${encodeURIComponent(s.id)}`, "Open the candidates of this search")) : null,
    items.length ? h("ul", { class: "candidates compact", "aria-label": "Candidates of this search" }, items) : h("p", { class: "empty", text: "No candidate." }));
}
