// Review: the candidates this reviewer may still decide on (not their own searches, not decided
// by them yet), oldest first. Confirm or reject, with a note. The service decides the status: a
// candidate is "confirmed" only after two different reviewers confirm it; one rejection is final.
import { api } from "../api.js";
import { button, errorText, field, h, link, loading, notify, page, person } from "../ui.js";
import { details, searchThreshold, similarityBar, statusBadge } from "./results.js";

export async function render(ctx) {
  const { main } = ctx;
  page(main, "Review", loading());
  const queue = await api.get("/api/v1/reviews/queue");
  const list = h("ul", { class: "candidates", "aria-label": "Candidates awaiting your review" });
  const count = h("p", { class: "hint", role: "status" });

  function recount() {
    const n = list.querySelectorAll("li.candidate").length;
    count.textContent = n ? `${n} candidate${n === 1 ? "" : "s"} awaiting your review.` : "Nothing awaits your review.";
  }

  for (const item of queue.items) list.append(reviewCard(item, recount));
  page(main, "Review",
    h("p", { class: "banner notice-leads", role: "note", text: "Candidates are leads, not identifications. Yours is one of the two independent reviews a confirmation needs; a rejection is final." }),
    count, list);
  recount();
}

function reviewCard(item, recount) {
  const noteField = field({ label: "Note", name: "note", type: "textarea", maxlength: "2000", hint: "What you compared and why you decide so (kept with the decision)." });
  const note = noteField.querySelector("textarea");
  const outcome = h("p", { class: "review-outcome", role: "status" });
  const el = h("li", { class: "candidate card", "data-result-id": String(item.result_id) });
  async function decide(decision) {
    for (const b of el.querySelectorAll("button")) b.disabled = true;
    try {
      const result = await api.post(`/api/v1/results/${encodeURIComponent(item.result_id)}/reviews`, { decision, note: note.value.trim() });
      const confirmations = result.reviews.filter((r) => r.decision === "confirm").length;
      const message = result.status === "confirmed"
        ? "Confirmed: two different reviewers have confirmed this candidate."
        : result.status === "rejected" ? "Rejected: the decision is final."
          : `Your confirmation is recorded (${confirmations} of 2). A second, different reviewer must confirm it.`;
      notify(message, "success");
      el.remove();
      recount();
    } catch (e) {
      outcome.textContent = errorText(e);
      for (const b of el.querySelectorAll("button")) b.disabled = false;
    }
  }
  el.append(
    h("img", { src: item.crop_url, alt: `Face crop of the candidate (rank ${item.rank})`, class: "crop", width: "112", height: "112" }),
    h("div", { class: "candidate-body" },
      h("h2", { class: "candidate-title" }, `Candidate ${item.rank} · `,
        link(`/cases/${encodeURIComponent(item.case_id)}`, `case ${item.case_number}`)),
      h("p", { class: "hint" }, "Searched by ", person(item.searched_by_name, item.searched_by, { fallback: "an API key" })),
      similarityBar(item.score, searchThreshold(item)),
      h("p", {}, statusBadge(item.status)),
      noteField,
      h("div", { class: "form-actions" },
        button("Confirm", () => decide("confirm"), { kind: "primary", "data-decision": "confirm" }),
        button("Reject", () => decide("reject"), { kind: "danger", "data-decision": "reject" }),
        button("Details", () => details({ face_id: item.face_id, crop_url: item.crop_url, rank: item.rank, score: item.score, threshold: searchThreshold(item) }), { kind: "secondary" })),
      outcome));
  return el;
}
