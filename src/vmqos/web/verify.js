// The port page's verify runs: what `vmqos verify --server` kept of each run (newest first: when, which way,
// the verdict, what was achieved against the limit) and the plot of the chosen one, an <img> of the server's
// /v1/.../verify-runs/ID/plot.png (the session cookie authorizes it, as every other read of the page).
import { h, rate, pps } from "./util.js";

function measure(run, value) {
  if (value === null || value === undefined) return "—";
  return run.metric === "packet/s" ? pps(value) : rate(value);
}

export function verifySection(host, device) {
  const root = h("div", { id: "verify-runs" });
  let chosen = null, lastKey = "";
  const plotSrc = (id) => `/v1/hosts/${encodeURIComponent(host)}/ports/${encodeURIComponent(device)}` +
    `/verify-runs/${id}/plot.png`;

  function draw(runs, note) {
    if (!runs.length) { root.replaceChildren(h("p", { class: "muted", id: "verify-note" }, note)); return; }
    if (!runs.some((r) => r.id === chosen && r.has_plot)) chosen = (runs.find((r) => r.has_plot) || {}).id ?? null;
    const rows = runs.map((r) => h("tr", { dataset: { run: r.id }, class: r.id === chosen ? "chosen" : "" },
      h("td", {}, new Date(r.at).toLocaleString()),
      h("td", {}, `${r.direction} ${r.traffic}`),
      h("td", {}, h("span", { class: `badge ${r.ok ? "in_sync" : "error"}`, title: r.reasons.join("\n") }, r.verdict)),
      h("td", { class: "num" }, measure(r, r.achieved)),
      h("td", { class: "num" }, measure(r, r.judged_limit)),
      h("td", { class: "num" }, r.error === null ? "—" : `${r.error >= 0 ? "+" : ""}${(100 * r.error).toFixed(1)} %`),
      h("td", {}, r.has_plot ? h("button", { class: "show-plot", onclick: () => { chosen = r.id; draw(runs, note); } },
                                  "plot") : "no plot")));
    const picked = runs.find((r) => r.id === chosen);
    root.replaceChildren(
      h("p", { class: "muted hint", id: "verify-note" }, note),
      h("table", { id: "verify-table" },
        h("thead", {}, h("tr", {}, ["when", "run", "verdict", "achieved", "limit", "error", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, rows)),
      picked ? h("figure", {},
        h("img", { id: "verify-plot", src: plotSrc(picked.id), alt: `verify plot of run ${picked.id}`,
                   style: "max-width: 100%" }),
        h("figcaption", { class: "muted" }, `${picked.direction} ${picked.traffic}, ${new Date(picked.at).toLocaleString()}: ` +
          picked.reasons.join(" · "))) : null);
  }

  return {
    root,
    update(runs, note) {  // redrawn only when the runs change: the stream sends the page every second
      const key = JSON.stringify(runs.map((r) => r.id)) + note;
      if (key === lastKey) return;
      lastKey = key;
      draw(runs, note);
    },
  };
}
