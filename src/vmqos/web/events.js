// Events and quarantines; an admin lifts a quarantine from here (the host's agent lifts it at its next report).
import { api, h, ago, link, portHref } from "./util.js";

export function eventTable(events) {
  if (!events.length) return h("p", { class: "muted" }, "No events.");
  return h("table", { class: "events" },
    h("thead", {}, h("tr", {}, ["when", "host", "port", "kind", "message"].map((c) => h("th", {}, c)))),
    h("tbody", {}, events.map((e) => h("tr", { dataset: { kind: e.kind } },
      h("td", { title: e.at }, ago(e.at)), h("td", {}, e.host), h("td", {}, link(portHref(e.host, e.device), e.device)),
      h("td", {}, e.kind), h("td", {}, e.message)))));
}

export function quarantineTable(quarantines, who, onChange) {
  if (!quarantines.length) return h("p", { class: "muted", id: "no-quarantines" }, "No quarantine in force.");
  return h("table", { id: "quarantines" },
    h("thead", {}, h("tr", {}, ["port", "host", "since", "reason", ""].map((c) => h("th", {}, c)))),
    h("tbody", {}, quarantines.map((q) => {
      const said = h("span", { class: "error" });
      const button = who.admin ? h("button", {
        class: "lift", dataset: { host: q.host, device: q.device },
        onclick: async () => {
          button.disabled = true;
          try {
            await api("POST", `/dashboard/api/quarantines/${encodeURIComponent(q.host)}/${encodeURIComponent(q.device)}/lift`);
            said.className = "ok"; said.textContent = " lift asked: the agent lifts it at its next report";
            if (onChange) onChange();
          } catch (e) { said.textContent = ` ${e.message}`; button.disabled = false; }
        } }, "lift") : h("span", { class: "muted" }, "an admin lifts it");
      return h("tr", { dataset: { device: q.device } }, h("td", {}, link(portHref(q.host, q.device), q.device)),
        h("td", {}, q.host), h("td", { title: q.since }, new Date(q.since).toLocaleTimeString()), h("td", {}, q.reason), h("td", {}, button, said));
    })));
}

export function mount(main, ctx) {
  const held = h("div"), recent = h("div");
  main.replaceChildren(h("h1", {}, "Events & quarantines"), h("h2", {}, "Quarantines in force"), held,
                       h("h2", {}, "Events (newest first)"), recent);
  let lastHeld = "";
  return {
    update(frame) {
      const key = JSON.stringify(frame.quarantines);
      if (key !== lastHeld) { lastHeld = key; held.replaceChildren(quarantineTable(frame.quarantines, frame.who)); }
      recent.replaceChildren(eventTable(frame.events));
    },
  };
}
