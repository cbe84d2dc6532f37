// Search: a probe photo (file picker, drag and drop, paste, or the phone's camera), its faces
// boxed so the person picks one (or all), the case number and purpose (required: every search is
// on the record), the collections the organisation may search. The answer opens the results.
import { api, postForm } from "../api.js";
import { checkboxes, errorText, field, form, h, loading, notify, page, section } from "../ui.js";
import { remember } from "./results.js";

const CASE_HINT = "3 to 64 characters: letters, digits and . _ / - (for example 2026/0142).";
const PURPOSE_HINT = "Why this search is needed, in 10 to 500 characters. It is recorded with the search.";

export async function render(ctx) {
  const { main } = ctx;
  page(main, "Search", loading());
  const collections = (await api.get("/api/v1/collections")).items;
  const state = { file: null, url: null, faces: null, examined: null };

  const photoStatus = h("p", { class: "hint", role: "status", "data-probe-status": "" });
  const preview = h("div", { class: "probe", hidden: true, "data-probe": "" });
  const facePicker = h("fieldset", { class: "checks face-picker", hidden: true, "data-face-picker": "" });

  const pickerField = field({ label: "Choose a photo", name: "probe_file", type: "file", accept: "image/*", "data-probe-input": "" });
  const cameraField = field({ label: "Or take one with the camera", name: "probe_camera", type: "file", accept: "image/*", capture: "environment" });
  const picker = pickerField.querySelector("input");
  const camera = cameraField.querySelector("input");
  const drop = h("div", { class: "dropzone", "data-dropzone": "" },
    h("p", { class: "dropzone-text", text: "Drop a photo here or paste one (Ctrl+V), or:" }),
    h("div", { class: "dropzone-inputs" }, pickerField, cameraField),
    photoStatus);

  function selectedCollections() {
    return [...main.querySelectorAll("input[name=collections]:checked")].map((c) => c.value);
  }

  async function choose(file) {
    if (!file) return;
    if (!file.type.startsWith("image/") && file.type !== "") {
      notify(`${file.name || "That file"} is not an image.`, "error");
      return;
    }
    if (state.url) URL.revokeObjectURL(state.url);
    state.file = file;
    state.url = URL.createObjectURL(file);
    state.faces = null;
    photoStatus.textContent = `Looking for faces in ${file.name || "the pasted photo"}…`;
    preview.hidden = true;
    facePicker.hidden = true;
    const body = new FormData();
    body.append("probe", file, file.name || "probe.jpg");
    for (const id of selectedCollections()) body.append("collections", id);
    try {
      const found = await postForm("/api/v1/searches/probe-faces", body);
      state.faces = found.faces;
      state.examined = found;
      showFaces(found);
    } catch (e) {
      photoStatus.textContent = errorText(e);
    }
  }

  function showFaces(found) {
    const img = h("img", { src: state.url, alt: "The probe photo", class: "probe-image" });
    const boxes = found.faces.map((f) => {
      const box = h("span", { class: "face-box", "data-face-index": String(f.index), "aria-hidden": "true" },
        h("span", { class: "face-box-label", text: String(f.index + 1) }));
      box.addEventListener("click", () => { // a pointer may pick a face on the photo itself
        const radio = facePicker.querySelector(`input[value="${f.index}"]`);
        if (radio) { radio.checked = true; highlight(String(f.index)); }
      });
      place(box, f.box, found.width, found.height);
      return box;
    });
    preview.replaceChildren(h("div", { class: "probe-frame" }, img, ...boxes));
    preview.hidden = false;
    const n = found.faces.length;
    photoStatus.textContent = n === 0 ? "No face was found in this photo: choose another one."
      : n === 1 ? "One face found." : `${n} faces found: choose the one to search.`;
    const options = found.faces.map((f) => ({ value: String(f.index), label: `Face ${f.index + 1}` }));
    if (n > 1) options.push({ value: "all", label: "All faces" });
    facePicker.replaceChildren(h("legend", { text: "Face to search" }),
      ...options.map((o, i) => {
        const id = `face-choice-${o.value}`;
        const input = h("input", { type: "radio", id, name: "face", value: o.value, checked: i === 0 });
        input.addEventListener("change", () => highlight(o.value));
        return h("div", { class: "field-check" }, input, h("label", { for: id, text: o.label }));
      }));
    facePicker.hidden = n < 2;
    highlight(options.length ? options[0].value : "all");
  }

  function highlight(value) {
    for (const box of preview.querySelectorAll(".face-box")) {
      box.classList.toggle("chosen", value === "all" || box.dataset.faceIndex === value);
    }
  }

  picker.addEventListener("change", () => choose(picker.files[0]));
  camera.addEventListener("change", () => choose(camera.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("dragging");
    choose(e.dataTransfer.files[0]);
  });
  const onPaste = (e) => {
    if (!main.contains(drop)) { document.removeEventListener("paste", onPaste); return; }
    const item = [...(e.clipboardData?.items || [])].find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (item) { e.preventDefault(); choose(item.getAsFile()); }
  };
  document.addEventListener("paste", onPaste);

  const collectionField = collections.length
    ? checkboxes({
      legend: "Collections to search",
      name: "collections",
      hint: "Only the collections your organisation may search. None ticked: all of them.",
      options: collections.map((c) => ({ value: String(c.id), label: `${c.name} (${c.faces} faces${c.owned ? "" : ", shared"})`, checked: true })),
    })
    : h("p", { class: "form-error", text: "Your organisation has no collection to search yet." });

  const searchForm = form({
    label: "Search a photo",
    cls: "search-form",
    fields: [
      field({ label: "Case number", name: "case_number", required: true, hint: CASE_HINT, autocomplete: "off", minlength: "3", maxlength: "64", pattern: "[A-Za-z0-9][A-Za-z0-9._/\\-]{2,63}", value: ctx.params.get("case") || "" }),
      field({ label: "Purpose", name: "purpose", type: "textarea", required: true, hint: PURPOSE_HINT, minlength: "10", maxlength: "500" }),
      collectionField,
      drop,
      preview,
      facePicker,
      field({ label: "Candidates per face", name: "top_k", type: "number", min: "1", max: "100", value: "10" }),
    ],
    submit: "Search",
    onSubmit: async (v) => {
      if (!state.file) throw new Error("Choose a photo first.");
      if (state.faces && state.faces.length === 0) throw new Error("No face was found in this photo: choose another one.");
      const body = new FormData();
      body.append("probe", state.file, state.file.name || "probe.jpg");
      body.append("case_number", v.case_number.trim());
      body.append("purpose", v.purpose.trim());
      body.append("top_k", v.top_k || "10");
      for (const id of v.collections || []) body.append("collections", id);
      const face = main.querySelector("input[name=face]:checked");
      if (face && face.value !== "all") body.append("face", face.value);
      else if (!face && state.faces && state.faces.length === 1) body.append("face", String(state.faces[0].index));
      const outcome = await postForm("/api/v1/searches", body);
      remember(outcome, state.url);
      state.url = null; // the results screen owns the preview now
      await ctx.navigate(`/results/${encodeURIComponent(outcome.search_id)}`);
    },
  });

  page(main, "Search",
    h("p", { class: "lead", text: "Every search belongs to a case and is recorded. What it returns are candidates: leads to check, never an identification." }),
    section("A photo to search", searchForm));
}

/** Place a box (x1, y1, x2, y2 on an image of width x height) over the image, in percent. */
export function place(el, box, width, height) {
  const [x1, y1, x2, y2] = box;
  el.style.setProperty("left", `${(100 * x1) / width}%`);
  el.style.setProperty("top", `${(100 * y1) / height}%`);
  el.style.setProperty("width", `${(100 * (x2 - x1)) / width}%`);
  el.style.setProperty("height", `${(100 * (y2 - y1)) / height}%`);
}
