// Ingest jobs: the organisation's uploads, server folders and re-embeddings, newest first; one
// job opened (/ingest/<id>) follows its live progress by server-sent events.
import { api } from "../api.js";
import { badge, errorText, formatTime, h, link, loading, page, section, table } from "../ui.js";
import { follow } from "./collections.js";

const STATUS_KIND = { done: "ok", failed: "bad", running: "warn", queued: "" };

export async function render(ctx) {
  const id = decodeURIComponent(ctx.rest.split("/")[0] || "");
  return id ? renderJob(ctx, id) : renderList(ctx);
}

async function renderList(ctx) {
  const { main } = ctx;
  page(main, "Ingest jobs", loading());
  const [jobs, collections] = await Promise.all([
    api.get("/api/v1/jobs?limit=100"),
    api.get("/api/v1/collections").catch(() => ({ items: [] })),
  ]);
  const names = new Map(collections.items.map((c) => [String(c.id), c.name]));
  page(main, "Ingest jobs",
    h("p", { class: "lead" }, "Uploads and server folders of your organisation. Add images from a ", link("/collections", "collection"), "."),
    table({
      caption: `${jobs.total} job${jobs.total === 1 ? "" : "s"}`,
      columns: [
        { label: "Job", render: (j) => link(`/ingest/${encodeURIComponent(j.id)}`, `Job ${j.id}`) },
        { label: "Kind", key: "kind" },
        { label: "Collection", render: (j) => (j.collection_id != null ? names.get(String(j.collection_id)) || `collection ${j.collection_id}` : "—") },
        { label: "Status", render: (j) => badge(j.status, STATUS_KIND[j.status] || "") },
        { label: "Files", render: (j) => `${j.files_done} of ${j.files_total}` },
        { label: "Faces", key: "faces" },
        { label: "Rejected", render: (j) => String((j.summary.rejected_files || []).length) },
        { label: "Started", render: (j) => formatTime(j.created_at) },
      ],
      rows: jobs.items,
      empty: "No job yet.",
    }));
}

async function renderJob(ctx, id) {
  const { main } = ctx;
  page(main, "Ingest job", loading());
  let job;
  try {
    job = await api.get(`/api/v1/jobs/${encodeURIComponent(id)}`);
  } catch (e) {
    page(main, e.status === 404 ? "Not found" : "Ingest job", h("p", { class: "form-error", role: "alert", text: errorText(e) }), h("p", {}, link("/ingest", "Back to the jobs")));
    return;
  }
  const el = h("div", { class: "job", "aria-live": "polite", "data-job": "" });
  page(main, `Ingest job ${job.id}`, section("Progress", el), h("p", {}, link("/ingest", "All jobs")));
  follow(job, el); // the stream ends with the job, or at the next event once the screen is left
}
