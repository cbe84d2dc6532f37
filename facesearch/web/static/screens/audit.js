// The auditor's screen: the chain's verification status, activity charts (searches per user per
// week; confirmations and rejections per month) drawn with the vendored uPlot, and the audit log
// with filters (user, action, case, time). Every read here is audited by the API.
import { api, query } from "../api.js";
import { badge, button, errorText, field, fill, form, formatTime, h, loading, notify, page, person, section, table } from "../ui.js";
import uPlot from "../vendor/uplot/uPlot.esm.js";

const ACTIONS = [
  "search.performed", "search.viewed", "case.viewed", "review.decided", "auth.signin", "auth.signin_failed",
  "mfa.verified", "mfa.failure", "mfa.enrolled", "mfa.enrolment_refused", "mfa.passkey_registered", "apikey.created", "apikey.revoked", "invitation.created", "invitation.used",
  "user.roles_changed", "user.disabled", "audit.exported", "audit.chain_verified", "audit.activity_viewed",
];
const COLOURS = ["#1f4e79", "#b5431b", "#2f7d32", "#7b3fa0", "#a06b00", "#00799e", "#c2185b", "#5d6d00"];
const PAGE = 50;

function stylesheet() {
  if (document.querySelector("link[data-vendor=uplot]")) return;
  document.head.append(h("link", { rel: "stylesheet", href: "/static/vendor/uplot/uPlot.min.css", "data-vendor": "uplot" }));
}

export async function render(ctx) {
  stylesheet();
  const chain = section("Audit chain", loading("Verifying the chain…"));
  const charts = section("Activity", loading());
  const log = section("Audit log", loading());
  page(ctx.main, "Audit", h("div", { class: "grid" }, chain), charts, log);
  const [status, activity] = await Promise.all([
    api.get("/api/v1/audit/chain").catch((e) => e),
    api.get("/api/v1/audit/activity").catch((e) => e),
  ]);
  showChain(chain, status);
  const people = activity instanceof Error ? [] : activity.people;
  if (activity instanceof Error) body(charts, h("p", { class: "form-error", role: "alert", text: errorText(activity) }));
  else showActivity(charts, activity);
  await showLog(ctx, log, people);
}

function body(sectionEl, ...content) {
  fill(sectionEl, sectionEl.querySelector("h2"), ...content);
}

// -- chain ----------------------------------------------------------------------------------------
function showChain(el, status) {
  if (status instanceof Error) { body(el, h("p", { class: "form-error", role: "alert", text: errorText(status) })); return; }
  body(el,
    h("p", { class: "status-line", "data-chain": status.ok ? "ok" : "broken" },
      status.ok ? badge("Verified", "ok") : badge("Broken", "bad"),
      h("span", { text: status.ok
        ? `All ${status.entries} entries link up and carry valid MACs; ${status.checkpoints} signed checkpoint(s) hold.`
        : status.problem || "The chain does not verify." })),
    h("p", { class: "hint", text: `Checked ${formatTime(status.checked_at)} (the check itself is recorded).` }),
    status.first_bad_id ? h("p", {}, `First bad entry: ${status.first_bad_id}`) : null);
}

// -- charts ---------------------------------------------------------------------------------------
function seconds(day) { return Date.parse(`${day}T00:00:00Z`) / 1000; }

function chart(title, description, xs, series, { bars = false } = {}) {
  const holder = h("div", { class: "chart", role: "img", "aria-label": `${title}: ${description}` });
  const legend = h("ul", { class: "chart-legend", "aria-hidden": "true" }, series.map((s) => {
    const swatch = h("span", { class: "swatch" });
    swatch.style.background = s.colour; // CSSOM: allowed by the CSP
    return h("li", {}, swatch, s.label);
  }));
  const data = [xs.map(seconds), ...series.map((s) => s.values)];
  const opts = {
    width: 600, height: 240, legend: { show: false },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(2, max + 1)] } },
    axes: [{ stroke: "#4a5563", grid: { stroke: "#e3e8ef" } }, { stroke: "#4a5563", grid: { stroke: "#e3e8ef" }, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }],
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: s.colour, width: 2, fill: bars ? `${s.colour}cc` : undefined,
      paths: bars ? uPlot.paths.bars({ size: [0.7 / series.length, 40], align: 0, gap: 1 }) : undefined,
      points: { show: !bars, size: 6 },
      idx: i,
    }))],
  };
  const wrap = h("figure", { class: "chart-figure" }, h("figcaption", { text: title }), legend, holder,
    h("details", {}, h("summary", { text: "The numbers as a table" }), table({
      caption: title, rows: xs.map((x, i) => ({ x, values: series.map((s) => s.values[i]) })),
      columns: [{ label: "Period", render: (r) => r.x }, ...series.map((s, j) => ({ label: s.label, render: (r) => String(r.values[j]) }))],
    })));
  requestAnimationFrame(() => {
    const plot = new uPlot({ ...opts, width: Math.max(280, holder.clientWidth || 600) }, data, holder);
    new ResizeObserver(() => plot.setSize({ width: Math.max(280, holder.clientWidth), height: 240 })).observe(holder);
  });
  return wrap;
}

function showActivity(el, activity) {
  const names = new Map(activity.people.map((p) => [String(p.user_id), p.display_name || p.email]));
  const perUser = activity.searches.length
    ? activity.searches.map((s, i) => ({ label: names.get(String(s.user_id)) || `user ${s.user_id}`, values: s.counts, colour: COLOURS[i % COLOURS.length] }))
    : [{ label: "No searches", values: activity.weeks.map(() => 0), colour: COLOURS[0] }];
  body(el, h("div", { class: "grid" },
    chart("Searches per user per week", `weeks starting ${activity.weeks[0]} to ${activity.weeks.at(-1)}`, activity.weeks, perUser),
    chart("Review decisions per month", `${activity.confirmations.reduce((a, b) => a + b, 0)} confirmations and ${activity.rejections.reduce((a, b) => a + b, 0)} rejections`,
      activity.months, [
        { label: "Confirmations", values: activity.confirmations, colour: "#2f7d32" },
        { label: "Rejections", values: activity.rejections, colour: "#b5431b" },
      ], { bars: true })));
}

// -- the log --------------------------------------------------------------------------------------
async function showLog(ctx, el, people) {
  // the organisation's own people (the API lists no one else): name, else email
  const names = new Map(people.map((p) => [String(p.user_id), p.display_name || p.email]));
  const who = (e) => {
    if (e.actor_user_id != null) return person(names.get(String(e.actor_user_id)), e.actor_user_id);
    if (e.actor_key_id != null) return h("span", { title: `API key id ${e.actor_key_id}`, text: "an API key" });
    return "system";
  };
  const target = (e) => {
    if (!e.target_type) return "—";
    if (e.target_type === "user" && names.has(String(e.target_id))) return h("span", {}, "user ", person(names.get(String(e.target_id)), e.target_id));
    return h("span", { title: `${e.target_type} id ${e.target_id}`, text: `${e.target_type} ${shortId(e.target_id)}` });
  };
  const results = h("div", {});
  let filters = {};
  let before = null;
  const datalistId = "audit-actions";
  const filter = form({
    label: "Filter the audit log",
    submit: "Apply filters",
    cls: "filters",
    fields: [
      field({ label: "User", name: "user", type: "select", options: [{ value: "", label: "Anyone" }, ...people.map((p) => ({ value: String(p.user_id), label: p.email }))] }),
      field({ label: "Action", name: "action", list: datalistId, maxlength: "80", placeholder: "e.g. search.performed" }),
      h("datalist", { id: datalistId }, ACTIONS.map((a) => h("option", { value: a }))),
      field({ label: "Case (number or id)", name: "case", maxlength: "80" }),
      field({ label: "From", name: "since", type: "datetime-local" }),
      field({ label: "Until", name: "until", type: "datetime-local" }),
    ],
    extra: [button("Clear", () => { filter.reset(); filters = {}; before = null; load(true); })],
    onSubmit: async (v) => {
      const person = people.find((p) => String(p.user_id) === v.user);
      filters = {
        user_id: person ? person.user_id : "", action: v.action.trim(), case: v.case.trim(),
        since: v.since ? new Date(v.since).toISOString() : "", until: v.until ? new Date(v.until).toISOString() : "",
      };
      before = null;
      await load(true);
    },
  });
  async function load(fresh) {
    const reply = await api.get(`/api/v1/audit/entries${query({ ...filters, newest_first: true, limit: PAGE, before_id: before })}`);
    const items = reply.items;
    const list = table({
      caption: `${reply.total} matching entr${reply.total === 1 ? "y" : "ies"}, newest first`, rows: items, empty: "No entries match.",
      columns: [
        { label: "Entry", render: (e) => h("span", { title: `entry id ${e.id}`, text: shortId(e.id) }) },
        { label: "Time", render: (e) => formatTime(e.ts) },
        { label: "Who", render: who },
        { label: "Action", render: (e) => h("code", { class: "mono", text: e.action }) },
        { label: "Target", render: target },
        { label: "Details", render: (e) => Object.keys(e.details || {}).length ? h("details", {}, h("summary", { text: summary(e.details) }), h("pre", { class: "entry-details", text: JSON.stringify(e.details, null, 2) })) : "—" },
      ],
    });
    const more = items.length === PAGE ? button("Older entries", async () => { before = items.at(-1).id; try { await load(false); } catch (e) { notify(errorText(e), "error"); } }, { kind: "secondary" }) : null;
    if (fresh) fill(results, list, more ? h("div", { class: "form-actions" }, more) : null);
    else {
      results.querySelector(".form-actions")?.remove();
      results.append(list);
      if (more) results.append(h("div", { class: "form-actions" }, more));
    }
  }
  body(el, filter, results);
  await load(true);
}

function summary(details) {
  const parts = [];
  for (const key of ["case_number", "purpose", "decision", "method", "email"]) {
    if (details[key] !== undefined && details[key] !== null) parts.push(`${key.replace("_", " ")}: ${details[key]}`);
  }
  return parts.length ? parts.join(" · ").slice(0, 120) : "details";
}

/** An opaque id, shortened for a table cell (its kind prefix and the first characters). */
function shortId(id) {
  if (id == null) return "";
  const text = String(id);
  return text.length > 16 ? `${text.slice(0, 14)}…` : text;
}
