// Collections and ingest: the organisation's collections; a new one (legal basis and retention
// are required); an upload of many images with each file's progress (XHR upload progress), then
// the server-side job's live progress by server-sent events: files done of total, files/s,
// faces/s, the rejected files with their reasons, the final status.
import { api, jobEvents, upload } from "../api.js";
import { badge, errorText, field, form, formatTime, h, link, loading, notify, page, section, table } from "../ui.js";

export async function render(ctx) {
  const id = decodeURIComponent(ctx.rest.split("/")[0] || "");
  return id ? renderCollection(ctx, id) : renderList(ctx);
}

const canManage = (me) => me.roles.includes("org_admin");
const canIngest = (me) => me.roles.includes("org_admin") || me.roles.includes("ingestor");

async function renderList(ctx) {
  const { main, me } = ctx;
  page(main, "Collections", loading());
  const collections = await api.get("/api/v1/collections");
  const list = table({
    caption: "Your organisation's collections (and those shared with it)",
    columns: [
      { label: "Name", render: (c) => link(`/collections/${encodeURIComponent(c.id)}`, c.name) },
      { label: "Access", render: (c) => badge(c.owned ? "managed" : "shared, read-only", c.owned ? "ok" : "") },
      { label: "Faces", key: "faces" },
      { label: "Files", key: "files" },
      { label: "Retention", render: (c) => (c.retention_days ? `${c.retention_days} days` : "—") },
      { label: "Legal basis", render: (c) => c.legal_basis || "—" },
    ],
    rows: collections.items,
    empty: "No collection yet.",
  });
  const create = canManage(me) ? section("New collection", form({
    label: "New collection",
    fields: [
      field({ label: "Name", name: "name", required: true, maxlength: "200", autocomplete: "off" }),
      field({ label: "Legal basis", name: "legal_basis", type: "textarea", required: true, minlength: "10", maxlength: "2000", hint: "Why your organisation may hold these images (the law, the decision, the register)." }),
      field({ label: "Retention (days)", name: "retention_days", type: "number", required: true, min: "1", max: "36500", value: "365", hint: "Faces older than this are purged." }),
      field({ label: "Description", name: "description", type: "textarea", maxlength: "2000" }),
    ],
    submit: "Create the collection",
    onSubmit: async (v) => {
      const made = await api.post("/api/v1/collections", {
        name: v.name.trim(), legal_basis: v.legal_basis.trim(), retention_days: Number(v.retention_days), description: v.description.trim(),
      });
      notify(`Collection ${made.name} created.`, "success");
      await ctx.navigate(`/collections/${encodeURIComponent(made.id)}`);
    },
  })) : null;
  page(main, "Collections", list, create);
}

async function renderCollection(ctx, id) {
  const { main, me } = ctx;
  page(main, "Collection", loading());
  let c;
  try {
    c = await api.get(`/api/v1/collections/${encodeURIComponent(id)}`);
  } catch (e) {
    page(main, e.status === 404 ? "Not found" : "Collection", h("p", { class: "form-error", role: "alert", text: errorText(e) }), h("p", {}, link("/collections", "Back to the collections")));
    return;
  }
  const facts = h("dl", { class: "facts" },
    h("dt", { text: "Faces" }), h("dd", { text: String(c.faces), "data-faces": "" }),
    h("dt", { text: "Files" }), h("dd", { text: String(c.files), "data-files": "" }),
    h("dt", { text: "Model" }), h("dd", { text: c.model_id || "set by the first ingest", "data-model": "" }),
    h("dt", { text: "Legal basis" }), h("dd", { text: c.legal_basis || "—" }),
    h("dt", { text: "Retention" }), h("dd", { text: c.retention_days ? `${c.retention_days} days` : "—" }),
    h("dt", { text: "Created" }), h("dd", { text: formatTime(c.created_at) }));
  const refresh = async () => {
    const now = await api.get(`/api/v1/collections/${encodeURIComponent(c.id)}`);
    facts.querySelector("[data-faces]").textContent = String(now.faces);
    facts.querySelector("[data-files]").textContent = String(now.files);
    facts.querySelector("[data-model]").textContent = now.model_id || "set by the first ingest";
  };
  const ingest = c.owned && canIngest(me) ? uploadSection(c, refresh) : h("p", { class: "hint", text: c.owned ? "Ingestors and administrators add images." : "A shared collection is read-only." });
  page(main, `Collection ${c.name}`, section("About", facts), ingest);
}

function uploadSection(collection, onEnd) {
  const filesField = field({ label: "Images to add", name: "files", type: "file", accept: "image/*", multiple: true, hint: "Choose or drop many images; each one is checked on the server and rejected with a reason when it cannot be used." });
  const input = filesField.querySelector("input");
  const drop = h("div", { class: "dropzone", "data-dropzone": "" }, h("p", { class: "dropzone-text", text: "Drop images here, or:" }), filesField);
  const fileList = h("ul", { class: "upload-files", "aria-label": "Files being uploaded", tabindex: "0" });
  const job = h("div", { class: "job", "aria-live": "polite", "data-job": "" });
  let chosen = [];

  function pick(files) {
    chosen = [...files];
    fileList.replaceChildren(...chosen.map((f, i) => {
      const bar = h("progress", { max: "100", value: "0", "aria-label": `Upload of ${f.name}` });
      return h("li", { "data-file": String(i) }, h("span", { class: "upload-name", text: f.name }), bar, h("span", { class: "upload-state", text: "waiting" }));
    }));
  }
  input.addEventListener("change", () => pick(input.files));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("dragging"); pick(e.dataTransfer.files); });

  const uploadForm = form({
    label: "Upload images",
    fields: [drop, fileList],
    submit: "Upload",
    onSubmit: async () => {
      if (!chosen.length) throw new Error("Choose at least one image.");
      const body = new FormData();
      for (const f of chosen) body.append("files", f, f.name);
      // the files travel in order: the bytes sent so far say how far each file is
      const ends = [];
      let total = 0;
      for (const f of chosen) { total += f.size; ends.push(total); }
      const rows = [...fileList.children];
      const started = await upload(`/api/v1/collections/${encodeURIComponent(collection.id)}/uploads`, body, (loaded, size) => {
        const sent = (loaded / Math.max(size, 1)) * total;
        rows.forEach((row, i) => {
          const begin = i ? ends[i - 1] : 0;
          const share = chosen[i].size ? Math.max(0, Math.min(1, (sent - begin) / chosen[i].size)) : (sent >= begin ? 1 : 0);
          row.querySelector("progress").value = Math.round(share * 100);
          row.querySelector(".upload-state").textContent = share >= 1 ? "sent" : share > 0 ? `${Math.round(share * 100)} %` : "waiting";
        });
      });
      for (const row of rows) { row.querySelector("progress").value = 100; row.querySelector(".upload-state").textContent = "sent"; }
      follow(started, job, onEnd);
    },
  });
  return section("Add images", uploadForm, job);
}

/** Follow a job by server-sent events until its end. */
export function follow(started, el, onEnd) {
  const bar = h("progress", { max: String(Math.max(started.files_total, 1)), value: "0", "aria-label": "Files processed on the server" });
  const counts = h("p", { class: "job-counts", "data-job-counts": "" });
  const rates = h("p", { class: "hint", "data-job-rates": "" });
  const statusEl = h("p", { class: "job-status", role: "status", "data-job-status": "" });
  const rejected = h("ul", { class: "rejected", "aria-label": "Rejected files" });
  const rejectedBox = h("div", { class: "rejected-box", hidden: true }, h("h3", { text: "Rejected files" }), rejected);
  el.replaceChildren(h("h3", { text: `Job ${started.id}` }), statusEl, bar, counts, rates, rejectedBox);
  const show = (j) => {
    bar.max = Math.max(j.files_total, 1);
    bar.value = j.files_done;
    counts.textContent = `${j.files_done} of ${j.files_total} files processed · ${j.faces} faces`;
    rates.textContent = j.files_per_s != null ? `${j.files_per_s} files/s · ${j.faces_per_s} faces/s` : "";
    statusEl.textContent = { queued: "Queued", running: "Running", done: "Done", failed: "Failed" }[j.status] || j.status;
    statusEl.dataset.status = j.status;
    if (j.error) statusEl.textContent += `: ${j.error}`;
    rejected.replaceChildren(...(j.rejected_files || []).map((r) => h("li", {},
      h("span", { class: "mono", text: r.path.replace(/^upload:[^/]*\//, "") }), " — ", h("span", { text: r.reason }))));
    rejectedBox.hidden = !(j.rejected_files || []).length;
  };
  const summary = started.summary || {};
  show({ ...started, files_per_s: summary.files_per_s ?? null, faces_per_s: summary.faces_per_s ?? null, rejected_files: summary.rejected_files || [] });
  const source = jobEvents(started.id, {
    // a screen left behind stops listening at the next event
    progress: (j) => { if (!el.isConnected) { source.close(); return; } show(j); },
    end: (j) => {
      if (!el.isConnected) { source.close(); return; }
      show(j);
      source.close();
      if (onEnd) onEnd(j).catch(() => { /* the counts stay as they were */ });
      notify(j.status === "done" ? `Job ${j.id} done: ${j.files_done} files, ${j.faces} faces, ${(j.rejected_files || []).length} rejected.` : `Job ${j.id} failed.`, j.status === "done" ? "success" : "error");
    },
  });
  return source;
}
