// Results of one search: a grid of candidate face crops, each with its similarity (a bar with the
// model's threshold marked), collection, source, time, frame time for video, quality and review
// status; filters by similarity and collection; a detail view with the source image and the face
// boxed, when the collection kept images. Candidates are leads, never identifications.
import { api } from "../api.js";
import { badge, button, dialog, errorText, field, formatTime, h, link, loading, page, section } from "../ui.js";
import { place } from "./search.js";

// The answer of the search just run (it holds every candidate's provenance), kept in memory for
// the results screen it opens; never in storage.
const recent = new Map();

export function remember(outcome, previewUrl) {
  recent.clear();
  recent.set(String(outcome.search_id), { outcome, previewUrl });
}

export const STATUS_LABELS = {
  lead: "Awaiting review",
  confirmed: "Confirmed by two reviewers",
  rejected: "Rejected",
};

export function statusBadge(status, independent) {
  const kind = status === "confirmed" ? "ok" : status === "rejected" ? "bad" : "warn";
  const label = STATUS_LABELS[status] || status;
  return h("span", { class: "status-badges" }, badge(label, kind),
    status === "confirmed" && independent === false ? badge("Confirmations not independent", "warn") : null);
}

/** A similarity bar: the score as a filled share, the threshold as a mark. */
export function similarityBar(score, threshold) {
  const fill = h("span", { class: "sim-fill" });
  fill.style.setProperty("width", `${Math.max(0, Math.min(1, score)) * 100}%`);
  const parts = [fill];
  if (threshold !== null && threshold !== undefined) {
    const mark = h("span", { class: "sim-threshold", title: `the model's threshold ${threshold.toFixed(3)}` });
    mark.style.setProperty("left", `${threshold * 100}%`);
    parts.push(mark);
  }
  const above = threshold !== null && threshold !== undefined && score >= threshold;
  return h("div", { class: "sim" },
    h("div", { class: "sim-head" },
      h("span", { class: "sim-label" }, "Similarity ", h("strong", { text: score.toFixed(3) })),
      threshold !== null && threshold !== undefined
        ? h("span", { class: ["sim-note", above ? "above" : "below"], text: above ? `above the threshold ${threshold.toFixed(3)}` : `below the threshold ${threshold.toFixed(3)}` })
        : null),
    h("div", {
      class: ["sim-bar", above && "above"], role: "img",
      "aria-label": `Similarity ${score.toFixed(3)}${threshold != null ? ` of 1; the model's threshold is ${threshold.toFixed(3)}` : " of 1"}`,
    }, ...parts));
}

/** The threshold to mark for a stored search's candidates: the one asked for, else its model's
 * (null when the search used several models: each candidate's model is not known here). */
export function searchThreshold(search) {
  if (search.threshold !== null && search.threshold !== undefined) return search.threshold;
  const values = Object.values(search.model_thresholds || {});
  return values.length === 1 ? values[0] : null;
}

function isUrl(value) { return typeof value === "string" && /^https?:\/\//i.test(value); }

export function sourceLine(c) {
  const items = [];
  if (isUrl(c.source)) items.push(h("a", { href: c.source, rel: "noreferrer noopener", target: "_blank", "data-external": "" }, c.source));
  else items.push(h("span", { class: "mono", text: c.source || "—" }));
  if (isUrl(c.media_url) && c.media_url !== c.source) {
    items.push(" (", h("a", { href: c.media_url, rel: "noreferrer noopener", target: "_blank", "data-external": "" }, "image"), ")");
  }
  return h("span", { class: "source" }, items);
}

function frameTime(seconds) {
  if (seconds === null || seconds === undefined) return null;
  const m = Math.floor(seconds / 60);
  const s = (seconds - m * 60).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

/** Candidates as the screen shows them, from the search just run or, on a reload, from the
 * stored search and each face's provenance. */
async function load(searchId) {
  const kept = recent.get(searchId);
  if (kept) {
    const { outcome } = kept;
    const thresholds = Object.fromEntries(outcome.models.map((m) => [m.model_id, m.threshold]));
    const candidates = outcome.faces.flatMap((f) => f.candidates.map((c) => ({
      ...c, probe_face: f.index, threshold: thresholds[c.model_id] ?? outcome.threshold,
    })));
    return {
      caseId: outcome.case_id, caseNumber: outcome.case_number, purpose: outcome.purpose,
      createdAt: outcome.created_at, faces: outcome.faces.map((f) => f.index), candidates,
      notice: outcome.notice, previewUrl: kept.previewUrl, probeFaces: outcome.faces,
    };
  }
  const search = await api.get(`/api/v1/searches/${encodeURIComponent(searchId)}`);
  const thresholds = search.model_thresholds || {};
  const faces = await Promise.all(search.results.map((r) => api.get(`/api/v1/faces/${encodeURIComponent(r.face_id)}`).catch(() => null)));
  const candidates = search.results.map((r, i) => {
    const f = faces[i] || {};
    return {
      rank: r.rank, face_id: r.face_id, score: r.score, result_id: r.id, status: r.status,
      independent: r.independent, crop_url: r.crop_url, probe_face: r.probe_face,
      collection_id: f.collection_id, collection: f.collection || "—", source: f.source,
      source_kind: f.source_kind, media_url: f.media_url, frame_time: f.frame_time,
      quality: f.quality, low_quality: f.low_quality, ingested_at: f.ingested_at, model_id: f.model_id,
      threshold: search.threshold ?? thresholds[f.model_id] ?? null,
    };
  });
  return {
    caseId: search.case_id, caseNumber: search.case_number, purpose: search.purpose,
    createdAt: search.created_at, faces: [...new Set(search.results.map((r) => r.probe_face))],
    candidates, notice: null, previewUrl: null, probeFaces: null,
  };
}

export async function render(ctx) {
  const { main } = ctx;
  const searchId = decodeURIComponent(ctx.rest.split("/")[0] || "");
  page(main, "Candidates", loading());
  if (!searchId) { page(main, "Candidates", h("p", {}, "Run a ", link("/search", "search"), " first.")); return; }
  let data;
  try {
    data = await load(searchId);
  } catch (e) {
    page(main, e.status === 404 ? "Not found" : "Candidates", h("p", { class: "form-error", role: "alert", text: errorText(e) }));
    return;
  }
  const collections = [...new Map(data.candidates.map((c) => [String(c.collection_id), c.collection])).entries()];
  const minField = field({ label: "Lowest similarity shown", name: "min_similarity", type: "range", min: "0", max: "1", step: "0.01", value: "0" });
  const minInput = minField.querySelector("input");
  const minValue = h("output", { class: "range-value", for: minInput.id, text: "0.00" });
  minField.append(minValue);
  const collectionField = field({
    label: "Collection", name: "collection", type: "select",
    options: [{ value: "", label: "All collections" }, ...collections.map(([id, name]) => ({ value: id, label: name }))],
  });
  const faceField = data.faces.length > 1 ? field({
    label: "Probe face", name: "probe_face", type: "select",
    options: [{ value: "", label: "All faces" }, ...data.faces.map((i) => ({ value: String(i), label: `Face ${i + 1}` }))],
  }) : null;
  const count = h("p", { class: "hint", role: "status", "aria-live": "polite" });
  const grid = h("ul", { class: "candidates", "aria-label": "Candidates" });

  function draw() {
    const min = Number(minInput.value);
    minValue.textContent = min.toFixed(2);
    const coll = collectionField.querySelector("select").value;
    const face = faceField ? faceField.querySelector("select").value : "";
    const shown = data.candidates.filter((c) => c.score >= min && (!coll || String(c.collection_id) === coll) && (!face || String(c.probe_face) === face));
    count.textContent = `${shown.length} of ${data.candidates.length} candidate${data.candidates.length === 1 ? "" : "s"} shown.`;
    grid.replaceChildren(...shown.map((c) => card(c, data.faces.length > 1)));
    if (!shown.length) grid.append(h("li", { class: "empty", text: data.candidates.length ? "No candidate passes these filters." : "This search returned no candidate." }));
  }
  for (const el of [minInput, collectionField.querySelector("select"), faceField && faceField.querySelector("select")]) {
    if (el) el.addEventListener("input", draw);
  }
  page(main, `Candidates for case ${data.caseNumber || ""}`.trim(),
    h("p", { class: "banner notice-leads", role: "note", text: data.notice || "Candidates are leads, not identifications. A candidate is confirmed only after two different reviewers confirm it." }),
    h("p", { class: "lead" }, "Purpose: ", data.purpose, " · ", formatTime(data.createdAt), " · ",
      data.caseId ? link(`/cases/${encodeURIComponent(data.caseId)}`, "Open the case") : null),
    data.previewUrl && data.probeFaces ? probeSummary(data) : null,
    section("Filters", h("div", { class: "filters" }, minField, collectionField, faceField)),
    count, grid);
  draw();
}

function probeSummary(data) {
  const img = h("img", { src: data.previewUrl, alt: "The probe photo", class: "probe-image" });
  const frame = h("div", { class: "probe-frame small" }, img);
  img.addEventListener("load", () => {
    for (const f of data.probeFaces) {
      const box = h("span", { class: "face-box chosen", "aria-hidden": "true" }, h("span", { class: "face-box-label", text: String(f.index + 1) }));
      place(box, f.box, img.naturalWidth, img.naturalHeight);
      frame.append(box);
    }
  });
  return h("div", { class: "probe-summary" }, frame,
    h("p", { class: "hint", text: data.probeFaces.length === 1 ? `Searched face ${data.probeFaces[0].index + 1} of the probe.` : `Searched ${data.probeFaces.length} faces of the probe.` }));
}

function card(c, manyFaces) {
  const quality = c.quality === null || c.quality === undefined ? "—" : Number(c.quality).toFixed(2);
  const frame = frameTime(c.frame_time);
  return h("li", { class: "candidate card", "data-result-id": String(c.result_id), "data-face-id": String(c.face_id) },
    h("img", { src: c.crop_url, alt: `Face crop of candidate ${c.rank}`, class: "crop", loading: "lazy", width: "112", height: "112" }),
    h("div", { class: "candidate-body" },
      h("h3", { class: "candidate-title", text: `Candidate ${c.rank}${manyFaces ? ` · face ${c.probe_face + 1}` : ""}` }),
      similarityBar(c.score, c.threshold),
      h("dl", { class: "facts" },
        h("dt", { text: "Collection" }), h("dd", { text: c.collection || "—" }),
        h("dt", { text: "Source" }), h("dd", {}, sourceLine(c)),
        h("dt", { text: "Ingested" }), h("dd", { text: formatTime(c.ingested_at) }),
        frame ? h("dt", { text: "Frame time" }) : null, frame ? h("dd", { text: frame }) : null,
        h("dt", { text: "Quality" }), h("dd", {}, quality, c.low_quality ? [" ", badge("low quality", "warn")] : null),
        h("dt", { text: "Status" }), h("dd", {}, statusBadge(c.status, c.independent))),
      h("div", { class: "form-actions" },
        button("Details", () => details(c), { kind: "secondary small", "aria-label": `Details of candidate ${c.rank}` }))));
}

/** The source image with the face boxed, when its collection kept images. */
export async function details(c) {
  let face;
  try {
    face = await api.get(`/api/v1/faces/${encodeURIComponent(c.face_id)}`);
  } catch (e) {
    face = { error: errorText(e) };
  }
  await dialog(`Candidate ${c.rank ?? ""}`.trim(), (close) => {
    let picture;
    if (face.error) picture = h("p", { class: "form-error", text: face.error });
    else if (!face.image_url) picture = h("p", { class: "hint", text: "This collection does not keep source images: only the face crop is shown." }, );
    else {
      const img = h("img", { src: face.image_url, alt: `Source image of candidate ${c.rank ?? ""}, the face boxed`, class: "source-image" });
      const box = h("span", { class: "face-box chosen", "aria-hidden": "true" });
      const frame = h("div", { class: "probe-frame" }, img, box);
      img.addEventListener("load", () => place(box, face.box, img.naturalWidth, img.naturalHeight));
      picture = frame;
    }
    return h("div", { class: "detail" },
      picture,
      c.score !== undefined ? similarityBar(c.score, c.threshold ?? null) : null,
      h("div", { class: "detail-meta" },
      h("img", { src: c.crop_url, alt: "Face crop", class: "crop", width: "112", height: "112" }),
      face.error ? null : h("dl", { class: "facts" },
        h("dt", { text: "Collection" }), h("dd", { text: face.collection || "—" }),
        h("dt", { text: "Source" }), h("dd", {}, sourceLine(face)),
        h("dt", { text: "Ingested" }), h("dd", { text: formatTime(face.ingested_at) }),
        face.frame_time != null ? h("dt", { text: "Frame time" }) : null,
        face.frame_time != null ? h("dd", { text: frameTime(face.frame_time) }) : null,
        h("dt", { text: "Quality" }), h("dd", { text: Number(face.quality).toFixed(2) }),
        h("dt", { text: "Model" }), h("dd", { text: face.model_id }))),
      h("div", { class: "form-actions" }, button("Close", () => close(), { kind: "primary" })));
  }, { cls: "dialog-wide" });
}
