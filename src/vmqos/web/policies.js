// Neutron-style QoS policies and their rules, through Neutron's own routes (/v2.0/qos/...): the same
// validation, messages and authorization as the openstack CLI. What a caller may not change the API
// refuses, and the page shows the API's message.
import { api, h } from "./util.js";

const RULES = {
  bandwidth_limit: ["max_kbps", "max_burst_kbps", "direction"],
  packet_rate_limit: ["max_kpps", "max_burst_kpps", "direction"],
  dscp_marking: ["dscp_mark"],
  minimum_bandwidth: ["min_kbps", "direction"],
  minimum_packet_rate: ["min_kpps", "direction"],
};

// A number typed is sent as a number, anything else as typed: the API, not the page, says what is wrong.
function valueOf(text) {
  const trimmed = text.trim();
  return /^-?\d+$/.test(trimmed) ? Number(trimmed) : trimmed;
}

function ruleForm(policy, rule, refresh) {
  const fields = RULES[rule.type] || [];
  const error = h("span", { class: "error rule-error" });
  const inputs = fields.map((f) => h("label", {}, `${f} `, h("input", {
    name: f, class: "small", value: rule[f] ?? "", dataset: { field: f } })));
  const form = h("form", { class: "inline rule", dataset: { rule: rule.id, type: rule.type } },
    h("strong", {}, rule.type), ...inputs, h("button", { type: "submit" }, "save"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const input of form.querySelectorAll("input")) {
      const before = rule[input.name] ?? "";
      if (String(before) !== input.value) body[input.name] = valueOf(input.value);
    }
    error.className = "error rule-error";
    try {
      await api("PUT", `/v2.0/qos/policies/${policy.id}/${rule.type}_rules/${rule.id}`, { [`${rule.type}_rule`]: body });
      error.className = "ok rule-error"; error.textContent = "saved";
      setTimeout(refresh, 500);
    } catch (e) { error.textContent = e.message; }
  });
  return form;
}

function addRule(policy, refresh) {
  const type = h("select", { name: "type" }, Object.keys(RULES).map((t) => h("option", { value: t }, t)));
  const params = h("input", { name: "params", placeholder: "max_kbps=3000 direction=egress", class: "wide" });
  const error = h("span", { class: "error" });
  const form = h("form", { class: "inline add-rule" }, "add a rule ", type, params, h("button", { type: "submit" }, "add"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const pair of params.value.split(/\s+/).filter(Boolean)) {
      const [k, ...v] = pair.split("=");
      body[k] = valueOf(v.join("="));
    }
    try {
      await api("POST", `/v2.0/qos/policies/${policy.id}/${type.value}_rules`, { [`${type.value}_rule`]: body });
      refresh();
    } catch (e) { error.textContent = e.message; }
  });
  return form;
}

export function mount(main, ctx) {
  const list = h("div", { id: "policies" });
  const error = h("p", { class: "error", id: "policies-error" });
  const name = h("input", { name: "name", placeholder: "name" });
  const create = h("form", { class: "inline", id: "create-policy" }, "new policy ", name,
                   h("button", { type: "submit" }, "create"));
  const createError = h("span", { class: "error" });
  create.append(createError);
  async function refresh() {
    try {
      const { policies } = await api("GET", "/v2.0/qos/policies");
      list.replaceChildren(...(policies.length ? policies.map((p) => h("div", { class: "card policy", dataset: { policy: p.id, name: p.name } },
        h("h2", {}, p.name, " ", h("span", { class: "muted hint" }, `${p.id}${p.shared ? " · shared" : ""}`)),
        p.description ? h("p", {}, p.description) : null,
        ...(p.rules.length ? p.rules.map((r) => ruleForm(p, r, refresh)) : [h("p", { class: "muted" }, "no rules: holds nothing")]),
        ctx.who.can_write ? addRule(p, refresh) : null)) : [h("p", { class: "muted" }, "No policy you may see.")]));
    } catch (e) { error.textContent = e.message; }
  }
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    try { await api("POST", "/v2.0/qos/policies", { policy: { name: name.value } }); name.value = ""; refresh(); }
    catch (e) { createError.textContent = ` ${e.message}`; }
  });
  main.replaceChildren(h("h1", {}, "QoS policies"), error, ctx.who.can_write ? create : null, list,
    h("p", { class: "muted hint" }, "Rates in kbit/s, packet rates in kpps, as Neutron's API takes them. " +
      "A change reaches every port of the policy on every host within about a second."));
  refresh();
  return { stop() {} };
}
