// The dashboard's shell: log-in, the hash router, and the page's ONE live stream (server-sent events).
// Each view is a module exporting mount(main, ctx) -> {update(frame), stop()}; the stream's frames go to
// the mounted view. Nothing here polls: the server pushes a frame whenever an agent's report moved.
import { api, h, ApiError } from "./util.js";
import * as fleet from "./fleet.js";
import * as host from "./host.js";
import * as port from "./port.js";
import * as policies from "./policies.js";
import * as events from "./events.js";

const main = document.getElementById("main");
const live = document.getElementById("live");
const state = { who: null, stream: null, view: null, frames: 0 };
window.vmqos = state; // the browser tests and the bench read the page's state here

function stopStream() {
  if (state.stream) { state.stream.close(); state.stream = null; }
  if (state.view && state.view.stop) state.view.stop();
  live.textContent = "";
  state.view = null;
}

function openStream(params, view) {
  const query = new URLSearchParams(params).toString();
  const source = new EventSource(`/dashboard/stream?${query}`);
  state.stream = source;
  source.addEventListener("view", (message) => {
    const frame = JSON.parse(message.data);
    state.frames += 1;
    const started = performance.now();
    view.update(frame);
    state.lastFrameMs = performance.now() - started;
    live.textContent = `live: ${state.frames} updates pushed by the server, last at ${new Date().toLocaleTimeString()}`;
  });
  source.addEventListener("failed", (message) => {
    const { message: text, status } = JSON.parse(message.data);
    source.close();
    if (status === 401) { showLogin("Your session ended: log in again."); return; }
    main.replaceChildren(h("p", { class: "error", id: "stream-error" }, text));
  });
  source.onerror = async () => {
    if (source.readyState !== EventSource.CLOSED) { live.textContent = "live: reconnecting…"; return; }
    // refused (an EventSource hides the answer): the same view as JSON says why, in the server's words
    const path = params.view === "host" ? `/dashboard/api/hosts/${encodeURIComponent(params.host)}`
      : params.view === "port" ? `/dashboard/api/hosts/${encodeURIComponent(params.host)}/ports/${encodeURIComponent(params.device)}`
      : `/dashboard/api/${params.view}`;
    try { await api("GET", path); live.textContent = "live: the stream closed; reload the page"; }
    catch (e) {
      if (e.status === 401) { showLogin("Your session ended: log in again."); return; }
      main.replaceChildren(h("p", { class: "error", id: "stream-error" }, e.message));
    }
  };
}

function showLogin(message) {
  stopStream();
  state.who = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("whoami").textContent = "";
  const error = h("p", { class: "error", id: "login-error" }, message || "");
  const form = h("form", { class: "login", id: "login" },
    h("label", {}, "user ", h("input", { name: "username", autocomplete: "username", required: true })),
    h("label", {}, "password ", h("input", { name: "password", type: "password", autocomplete: "current-password" })),
    h("label", {}, "project ", h("input", { name: "project", required: true })),
    h("label", {}, "domain ", h("input", { name: "domain", value: "Default" })),
    h("button", { type: "submit" }, "log in"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    try {
      state.who = await api("POST", "/dashboard/session", data);
      signedIn();
      if (!location.hash || location.hash === "#/login") location.hash = "#/fleet"; else route();
    } catch (e) {
      error.textContent = e.message;
    }
  });
  main.replaceChildren(h("h1", {}, "Log in to vmqos"), form);
}

function signedIn() {
  const who = state.who;
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  document.getElementById("whoami").textContent =
    `${who.user} · ${who.project || "no project"}${who.admin ? " · admin" : ""}`;
}

const views = { fleet, host, port, events };

function route() {
  if (!state.who) return;
  stopStream();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const [name, a, b] = parts;
  const ctx = { who: state.who, refresh: route };
  if (name === "policies") { state.view = policies.mount(main, ctx); return; }
  const params = name === "host" ? { view: "host", host: a } : name === "port" ? { view: "port", host: a, device: b }
    : name === "events" ? { view: "events" } : { view: "fleet" };
  const view = views[params.view].mount(main, { ...ctx, params });
  state.view = view;
  openStream(params, view);
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("DELETE", "/dashboard/session"); } catch (e) { /* the cookie is gone either way */ }
  showLogin("Logged out.");
});
window.addEventListener("hashchange", route);

(async () => {
  if (!window.uPlot) {  // the vendored library is installed by `make web`, not committed
    document.getElementById("live").textContent =
      "The dashboard's chart library is missing on the server (src/vmqos/web/vendor): run `make web` there.";
  }
  try {
    state.who = await api("GET", "/dashboard/session");
    signedIn();
    route();
  } catch (e) {
    showLogin(e instanceof ApiError && e.status === 401 ? "" : e.message);
  }
})();
