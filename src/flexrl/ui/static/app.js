// The control room's page: polls /api/state, posts instructions and controls, browses runs. No build step.
"use strict";
const $ = (id) => document.getElementById(id);
let since = 0, paused = false, picked = [];
const frameTimes = [];  // (time, frame counter) over the last ~2 s of polls: the frames/s shown

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}
function text(id, value) { $(id).textContent = value === null || value === undefined || value === "" ? "-" : value; }
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

// ------------------------------------------------------------------ live
function showDecision(d) {
  text("d-instruction", d.instruction);
  text("d-call", d.call);
  $("d-extra").textContent = `${d.latency_ms} ms · ${d.planner}` + (d.fallback ? ` · FALLBACK: ${d.fallback}` : "")
    + (d.rationale ? ` · ${d.rationale}` : "");
  text("decision-meta", `step ${d.step}`);
  $("d-observation").textContent = d.observation + (d.progress.length ? `\ndone: ${d.progress.join("; ")}` : "");
  const chart = $("chart");
  chart.replaceChildren();
  const entries = Object.entries(d.scores);
  const known = entries.filter(([, s]) => s !== null && s !== undefined);
  const best = known.length ? Math.max(...known.map(([, s]) => s)) : 0;
  if (!known.length) chart.append(el("div", {}, `${entries.length} candidates; this planner gives no scores`));
  // An LLM's scores are log-likelihoods: bars show exp(score - best). Other planners' are marks: their pick is 1.
  const likelihoods = d.planner === "llm";
  if (known.length && !likelihoods) chart.append(el("div", { class: "note" }, `${d.planner}: no likelihoods, its pick marked`));
  for (const [call, score] of entries) {
    const share = score === null || score === undefined ? 0 : likelihoods ? Math.exp(score - best) : (score === best ? 1 : 0);
    const row = el("div", { class: "row candidate" + (call === d.call ? " chosen" : ""), "data-call": call },
      el("span", {}, call), el("div", { class: "bar", style: `width:${(100 * share).toFixed(1)}%` }),
      el("span", { class: "score" }, score === null || score === undefined ? "-" : score.toFixed(2)));
    chart.append(row);
  }
}

async function poll() {
  try {
    const s = await api(`/api/state?since=${since}`);
    text("status", s.status + (s.error ? `: ${s.error}` : ""));
    $("status").classList.toggle("error", s.status === "error");
    text("step", s.step); text("max-steps", s.max_steps); text("rate", s.steps_per_s); text("seed", s.seed);
    frameTimes.push([performance.now(), s.frame]);
    while (frameTimes.length > 9) frameTimes.shift();
    const [t0, f0] = frameTimes[0], [t1, f1] = frameTimes[frameTimes.length - 1];
    if (t1 > t0) text("fps", ((f1 - f0) * 1000 / (t1 - t0)).toFixed(0));
    $("view").dataset.frame = s.frame;
    text("now-instruction", s.instruction); text("now-skill", s.skill); text("now-criterion", s.criterion);
    text("now-standing", s.standing); text("now-progress", (s.progress || []).join("; "));
    paused = s.status === "paused";
    $("btn-pause").textContent = paused ? "Resume" : "Pause";
    const list = $("decisions");
    for (const d of s.decisions) {
      since = Math.max(since, d.n);
      const item = el("li", { class: d.fallback ? "fallback" : "" }, `step ${d.step}: ${d.call} (${d.latency_ms} ms) ← ${d.instruction || "-"}`);
      item.addEventListener("click", () => showDecision(d));
      list.prepend(item);
      showDecision(d);
    }
    if (s.step === 0 && s.decisions.length === 0 && list.children.length && s.status === "running") { /* new episode */ }
  } catch (err) {
    text("status", `disconnected (${err.message})`);
  }
}

async function send(textValue, intent) {
  const body = { text: textValue };
  if (intent) body.intent = intent;
  try {
    const reply = await api("/instruction", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    $("reply").textContent = `sent: ${reply.text}` + (reply.intent ? ` => ${reply.intent}` : "") + (reply.note ? ` (${reply.note})` : "");
    $("reply").classList.remove("error");
  } catch (err) {
    $("reply").textContent = err.message; $("reply").classList.add("error");
  }
}

async function control(action, withSettings) {
  const body = { action };
  if (withSettings) {
    for (const g of ["planner", "llm", "robot", "env"]) body[g] = $(`opt-${g}`).value;
    const seed = $("opt-seed").value;
    if (seed !== "") body.seed = Number(seed);
  }
  try {
    await api("/api/control", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    $("control-note").textContent = `${action} sent`; $("control-note").classList.remove("error");
    if (action === "reset" || action === "reseed") { since = 0; $("decisions").replaceChildren(); }
  } catch (err) {
    $("control-note").textContent = err.message; $("control-note").classList.add("error");
  }
}

async function loadOptions() {
  const o = await api("/api/options");
  for (const [group, names] of Object.entries(o.groups)) {
    const select = $(`opt-${group}`);
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (o.choices && o.choices[group]) select.value = o.choices[group];
  }
  if (o.seed !== null) $("opt-seed").value = o.seed;
  if (!o.controls) {
    for (const node of $("controls").querySelectorAll("select, input, button")) node.disabled = true;
    $("control-note").textContent = "a command-line run: instructions only";
  }
}

// ------------------------------------------------------------------ runs
function curveSvg(curve) {
  const points = [];
  for (const row of curve) {
    const values = row.success || {};
    const v = typeof values === "number" ? values : Object.values(values).reduce((a, b) => a + b, 0) / Math.max(1, Object.keys(values).length);
    points.push([row.steps, v]);
  }
  if (!points.length) return el("div", {}, "no curve");
  const maxX = Math.max(...points.map((p) => p[0])) || 1;
  const path = points.map(([x, y], i) => `${i ? "L" : "M"}${(10 + 380 * x / maxX).toFixed(1)},${(150 - 140 * y).toFixed(1)}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", "400"); svg.setAttribute("height", "160"); svg.setAttribute("class", "curve");
  svg.innerHTML = `<path d="${path}" stroke="#66bb6a" fill="none" stroke-width="2"/><text x="12" y="14" fill="#aaa" font-size="11">mean success vs steps (max ${maxX})</text>`;
  return svg;
}

async function showRun(path) {
  const r = await api(`/api/run?path=${encodeURIComponent(path)}`);
  const box = $("run-detail");
  box.replaceChildren(el("h2", {}, `${r.meta.experiment} / ${r.meta.id} (${r.meta.status})`));
  const file = (name) => `/api/run/file?path=${encodeURIComponent(path)}&name=${encodeURIComponent(name)}`;
  for (const name of r.files.filter((f) => f.endsWith(".mp4"))) {
    box.append(el("video", { src: file(name), controls: "", width: "480", class: "run-video" }));
  }
  for (const name of r.files.filter((f) => f.endsWith(".png"))) box.append(el("img", { src: file(name), width: "480", class: "run-image" }));
  if (r.curve) box.append(el("h2", {}, "Learning curve"), curveSvg(r.curve));
  if (r.report_md) box.append(el("h2", {}, "Benchmark report"), el("pre", {}, r.report_md));
  if (r.metrics) box.append(el("h2", {}, "Metrics"), el("pre", {}, JSON.stringify(r.metrics, null, 1)));
  box.append(el("h2", {}, "Meta"), el("pre", {}, JSON.stringify(r.meta, null, 1)));
  if (r.config) box.append(el("h2", {}, "Config"), el("pre", {}, r.config));
  if (r.events.length) {
    const rows = r.events.map((e) => { const { type, step, ...rest } = e; return `${step}\t${type}\t${JSON.stringify(rest).slice(0, 200)}`; });
    box.append(el("h2", {}, `Events (last ${r.events.length})`), el("pre", { class: "events" }, rows.join("\n")));
  }
}

function flatten(value, prefix = "", out = {}) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else out[prefix] = Array.isArray(value) ? JSON.stringify(value).slice(0, 80) : value;
  return out;
}

async function compare() {
  if (picked.length !== 2) { $("run-detail").replaceChildren(el("p", {}, "Tick two runs to compare.")); return; }
  const [a, b] = await Promise.all(picked.map((p) => api(`/api/run?path=${encodeURIComponent(p)}`)));
  const fa = flatten({ metrics: a.metrics, report: a.report, seed: a.meta.seed, planner: a.meta.planner });
  const fb = flatten({ metrics: b.metrics, report: b.report, seed: b.meta.seed, planner: b.meta.planner });
  const keys = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].sort();
  const table = el("table", { id: "compare-table" }, el("tr", {}, el("th", {}, "field"), el("th", {}, a.meta.id), el("th", {}, b.meta.id)));
  for (const k of keys) {
    const row = el("tr", {}, el("td", {}, k), el("td", {}, String(fa[k] ?? "-")), el("td", {}, String(fb[k] ?? "-")));
    if (String(fa[k]) !== String(fb[k])) row.classList.add("picked");
    table.append(row);
  }
  $("run-detail").replaceChildren(el("h2", {}, "Compare"), table);
}

async function loadRuns() {
  const runs = await api("/api/runs");
  const body = $("runs-table").querySelector("tbody");
  body.replaceChildren();
  for (const r of runs) {
    const box = el("input", { type: "checkbox" });
    box.addEventListener("click", (event) => {
      event.stopPropagation();
      picked = box.checked ? [...picked, r.path].slice(-2) : picked.filter((p) => p !== r.path);
    });
    const started = r.start ? new Date(r.start * 1000).toLocaleString() : "-";
    const row = el("tr", { "data-path": r.path }, el("td", {}, box), el("td", {}, r.path), el("td", {}, r.kind),
      el("td", {}, r.status), el("td", {}, r.planner || "-"), el("td", {}, started));
    row.addEventListener("click", () => showRun(r.path));
    body.append(row);
  }
}

function tab(name) {
  $("live").hidden = name !== "live"; $("runs").hidden = name !== "runs";
  $("tab-live").classList.toggle("active", name === "live"); $("tab-runs").classList.toggle("active", name === "runs");
  if (name === "runs") loadRuns();
}

$("instruct").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("instruction").value.trim();
  if (value) send(value, $("intent").value.trim());
});
for (const b of $("examples").querySelectorAll("button")) b.addEventListener("click", () => send(b.dataset.text, b.dataset.intent));
$("btn-reset").addEventListener("click", () => control("reset", true));
$("btn-pause").addEventListener("click", () => control(paused ? "resume" : "pause", false));
$("btn-reseed").addEventListener("click", () => control("reseed", false));
$("tab-live").addEventListener("click", () => tab("live"));
$("tab-runs").addEventListener("click", () => tab("runs"));
$("btn-refresh").addEventListener("click", loadRuns);
$("btn-compare").addEventListener("click", compare);
loadOptions().catch((err) => { $("control-note").textContent = err.message; });
setInterval(poll, 250);
poll();
