// The audience-forwarder console: every read and write goes through the API that serves it.
// No framework, no build step. Everything shown is set as text, never parsed as HTML.
"use strict";

const TOKEN_KEY = "audience-forwarder-api-token";
const STATS_EVERY_MS = 2000;
const DEAD_LETTERS_EVERY_MS = 5000;
const CHART_WINDOW_MS = 5 * 60 * 1000;
const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

const state = {
  access: { writes_enabled: false, token_valid: false },
  partners: [],
  outputs: [],
  connections: [],
  openedAudiences: new Set(),
  // Per connection: [time ms, added, removed] samples of the last minutes.
  history: new Map(),
  timer: null,
  bannerTimer: null,
  editing: null,
};

// DOM helpers.

function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") element.className = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "checked" || name === "value" || name === "selected") element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function svg(tag, attributes) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

const byId = (id) => document.getElementById(id);

function chips(values) {
  return h("span", { class: "chips" }, values.map((value) => h("span", { class: "chip" }, value)));
}

function commaList(text) {
  return text.split(",").map((item) => item.trim()).filter((item) => item !== "");
}

// The API.

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const held = token();
  if (held) headers.Authorization = `Bearer ${held}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    return { status: 0, data: { detail: `the API did not answer (${error.message})` } };
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  return { status: response.status, data };
}

function problemText(result) {
  const detail = result.data && result.data.detail;
  if (Array.isArray(detail)) return detail.map((p) => `${p.field}: ${p.reason}`).join("; ");
  return detail || `HTTP ${result.status}`;
}

// A write the API refused: why, and what to do about it.
function refusal(result) {
  if (result.status === 401) {
    byId("token-input").focus();
    return `Refused: ${problemText(result)}. Enter the API token (FORWARDER_API_TOKEN) at the top.`;
  }
  if (result.status === 403) return `Refused: ${problemText(result)}.`;
  return `Failed (${result.status || "no answer"}): ${problemText(result)}`;
}

function showBanner(text, kind = "error") {
  byId("banner-text").textContent = text;
  byId("banner").className = `banner ${kind}`;
  byId("banner").hidden = false;
  clearTimeout(state.bannerTimer);
  // What went well needs no dismissing; a refusal stays until read.
  if (kind === "ok") state.bannerTimer = setTimeout(hideBanner, 4000);
}

function hideBanner() {
  byId("banner").hidden = true;
}

// Access: is the API writable, and does it take the token held?

async function refreshAccess() {
  const result = await api("GET", "/access");
  if (result.status === 200) state.access = result.data;
  const { writes_enabled: writable, token_valid: valid } = state.access;
  document.body.classList.toggle("read-only", !writable);
  const label = byId("access-state");
  byId("forget-token").hidden = !token();
  byId("token-form").hidden = !writable || valid;
  if (!writable) {
    label.textContent = "Read-only API: writes are disabled";
    label.className = "access-state muted";
  } else if (valid) {
    label.textContent = "Token accepted: writes enabled";
    label.className = "access-state ok";
  } else if (token()) {
    label.textContent = "Token refused by the API";
    label.className = "access-state bad";
  } else {
    label.textContent = "No token: writes will be refused";
    label.className = "access-state warn";
  }
}

function setupAccess() {
  byId("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = byId("token-input");
    const given = input.value.trim();
    input.value = "";
    if (!given) return;
    sessionStorage.setItem(TOKEN_KEY, given);
    await refreshAccess();
    if (state.access.token_valid) hideBanner();
    else showBanner("The API refused this token.");
  });
  byId("forget-token").addEventListener("click", async () => {
    sessionStorage.removeItem(TOKEN_KEY);
    await refreshAccess();
  });
  byId("banner-close").addEventListener("click", hideBanner);
}

// Loading what the pages show.

async function load(path) {
  const result = await api("GET", path);
  if (result.status !== 200) {
    showBanner(`Could not read ${path}: ${problemText(result)}`);
    return null;
  }
  return result.data;
}

async function loadConfig() {
  const [partners, outputs, connections] = await Promise.all([
    state.partners.length ? state.partners : load("/partners"),
    load("/outputs"),
    load("/connections"),
  ]);
  if (partners) state.partners = partners;
  if (outputs) state.outputs = outputs;
  if (connections) state.connections = connections;
}

const partnerNamed = (name) => state.partners.find((p) => p.name === name);
const outputNamed = (id) => state.outputs.find((o) => o.output_id === id);

// Directory.

function rateText(partner) {
  if (partner.rate_per_second >= 100000) return "no limit";
  return `${partner.rate_per_second} requests/s, burst ${partner.rate_burst}`;
}

function renderDirectory() {
  const cards = state.partners.map((partner) =>
    h(
      "article",
      { class: "card partner", "data-partner": partner.name },
      h("h3", {}, partner.name),
      h("p", { class: "description" }, partner.description),
      h(
        "dl",
        {},
        h("dt", {}, "Identity types"),
        h("dd", {}, partner.configurable ? "any, chosen per output" : chips(partner.accepted_identities)),
        h("dt", {}, "Attributes"),
        h("dd", {}, partner.supports_attributes ? "supported" : "not supported"),
        h("dt", {}, "Delivery"),
        h("dd", {}, partner.sink ? `built-in sink "${partner.sink}"` : "your consumer reads forward-<output id>"),
        h("dt", {}, "Batch limit"),
        h("dd", {}, partner.sink ? `${partner.batch_limit.toLocaleString("en")} records` : "—"),
        h("dt", {}, "Rate"),
        h("dd", {}, partner.sink ? rateText(partner) : "—"),
        h("dt", {}, "Required settings"),
        h("dd", {}, partner.required_settings.length ? chips(partner.required_settings) : "none"),
      ),
      h(
        "button",
        { type: "button", class: "primary writes-only", onclick: () => openOutputForm(partner, null) },
        "Set up output",
      ),
    ),
  );
  byId("partners").replaceChildren(...cards);
}

// The output form, generated from the partner's settings model.

function fieldRow(name, label, control, help) {
  const check = control.type === "checkbox";
  return h(
    "div",
    { class: check ? "field check" : "field", "data-field": name },
    check ? h("label", { class: "box" }, control, label) : [h("label", { for: `f-${name}` }, label), control],
    help ? h("p", { class: "help" }, help) : null,
    h("p", { class: "field-error", "data-error-for": name }),
  );
}

function settingControl(setting, current) {
  const id = `f-settings.${setting.name}`;
  const value = current !== undefined ? current : setting.default;
  if (setting.type === "boolean") {
    return h("input", { id, type: "checkbox", "data-setting": setting.name, checked: Boolean(value) });
  }
  const numeric = setting.type === "integer" || setting.type === "number";
  return h("input", {
    id,
    type: numeric ? "number" : "text",
    step: setting.type === "number" ? "any" : null,
    "data-setting": setting.name,
    "data-type": setting.type,
    placeholder: setting.secret
      ? "name of an environment variable, e.g. PARTNER_TOKEN"
      : setting.format === "uri"
        ? "https://…"
        : "",
    autocomplete: "off",
    spellcheck: "false",
    value: value === null || value === undefined ? "" : String(value),
  });
}

function settingRow(setting, current) {
  const label = setting.secret ? `${setting.name} (environment variable name)` : setting.name;
  const help = setting.secret
    ? `${setting.description || "Holds a secret."} The secret itself is never entered here: ` +
      "set it in the sink's environment and give the variable's name."
    : setting.description;
  return fieldRow(`settings.${setting.name}`, label, settingControl(setting, current), help);
}

function identityBoxes(partner, output) {
  const chosen = new Set(output ? output.accepted_identities : partner.configurable ? [] : partner.accepted_identities);
  return h(
    "div",
    { class: "boxes", id: "f-accepted_identities" },
    partner.accepted_identities.map((type) =>
      h(
        "label",
        { class: "box" },
        h("input", { type: "checkbox", name: "identity", value: type, checked: chosen.has(type) }),
        type,
      ),
    ),
  );
}

function openOutputForm(partner, output) {
  state.editing = { partner, output };
  byId("output-dialog-title").textContent = output
    ? `Edit output ${output.output_id}`
    : `New ${partner.name} output`;
  byId("output-partner-facts").textContent = partner.description;
  byId("output-save").textContent = output ? "Save output" : "Create output";
  const settings = (output && output.settings) || {};
  const required = partner.settings.filter((s) => s.required);
  const optional = partner.settings.filter((s) => !s.required);
  const rows = [
    fieldRow(
      "output_id",
      "Output id",
      h("input", {
        id: "f-output_id",
        value: output ? output.output_id : "",
        disabled: Boolean(output),
        placeholder: "partner-a",
        autocomplete: "off",
      }),
      "Lower-case letters, digits and dashes; the topic is forward-<output id>.",
    ),
    fieldRow("name", "Name", h("input", { id: "f-name", value: output ? output.name : "", placeholder: "Partner A" })),
    fieldRow(
      "accepted_identities",
      partner.configurable ? "Identity types it accepts" : "Identity types to send (all, or fewer)",
      identityBoxes(partner, output),
    ),
  ];
  if (partner.supports_attributes) {
    rows.push(
      fieldRow(
        "supports_attributes",
        "Takes user attributes",
        h("input", {
          id: "f-supports_attributes",
          type: "checkbox",
          checked: output ? output.supports_attributes : !partner.configurable,
        }),
      ),
    );
  }
  if (output && output.settings === null) {
    rows.push(h("p", { class: "note" }, "The settings on the topic fail the partner's check; enter them again."));
  }
  rows.push(...required.map((s) => settingRow(s, settings[s.name])));
  if (optional.length) {
    rows.push(
      h(
        "details",
        { class: "more" },
        h("summary", {}, `More settings (${optional.length}, with defaults)`),
        optional.map((s) => settingRow(s, settings[s.name])),
      ),
    );
  }
  if (!partner.settings.length) {
    rows.push(h("p", { class: "help" }, "This partner takes no settings: its records wait on the output's topic for your consumer."));
  }
  byId("output-fields").replaceChildren(...rows);
  clearFieldErrors(byId("output-form"));
  byId("output-dialog").showModal();
  byId(output ? "f-name" : "f-output_id").focus();
}

function settingValue(input) {
  if (input.type === "checkbox") return input.checked;
  const text = input.value.trim();
  if (text === "") return undefined;
  const type = input.dataset.type;
  if (type === "integer" || type === "number") {
    const number = Number(text);
    // Left as typed when it is no number: the API says why, beside the field.
    return Number.isFinite(number) ? number : text;
  }
  return text;
}

function outputBody(partner, output) {
  const form = byId("output-form");
  const settings = {};
  for (const input of form.querySelectorAll("[data-setting]")) {
    const spec = partner.settings.find((s) => s.name === input.dataset.setting);
    const value = settingValue(input);
    // A default left as it is stays out: the record holds only what was chosen.
    if (value === undefined || (!spec.required && value === spec.default)) continue;
    settings[input.dataset.setting] = value;
  }
  const body = {
    name: byId("f-name").value.trim(),
    accepted_identities: [...form.querySelectorAll("input[name=identity]:checked")].map((i) => i.value),
    settings,
  };
  const attributes = byId("f-supports_attributes");
  if (attributes) body.supports_attributes = attributes.checked;
  if (!output) {
    body.output_id = byId("f-output_id").value.trim();
    body.partner = partner.name;
  }
  return body;
}

function clearFieldErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
  for (const field of form.querySelectorAll(".field.invalid")) field.classList.remove("invalid");
}

// Each problem beside the field it names: the longest field name that is a prefix of it
// ("accepted_identities.0" goes beside "accepted_identities"), else at the form's foot.
function showFieldErrors(form, problems) {
  clearFieldErrors(form);
  const slots = [...form.querySelectorAll("[data-error-for]")];
  for (const problem of problems) {
    const slot =
      slots
        .filter((s) => {
          const name = s.dataset.errorFor;
          return problem.field === name || problem.field.startsWith(`${name}.`);
        })
        .sort((a, b) => b.dataset.errorFor.length - a.dataset.errorFor.length)[0] ||
      form.querySelector("[data-error-for=body]");
    const text = slot.dataset.errorFor === "body" ? `${problem.field}: ${problem.reason}` : problem.reason;
    slot.textContent = slot.textContent ? `${slot.textContent}; ${text}` : text;
    const field = slot.closest(".field");
    if (field) {
      field.classList.add("invalid");
      const more = field.closest("details");
      if (more) more.open = true;
    }
  }
}

async function submitOutput(event) {
  event.preventDefault();
  const { partner, output } = state.editing;
  const form = byId("output-form");
  const body = outputBody(partner, output);
  const result = output
    ? await api("PATCH", `/outputs/${encodeURIComponent(output.output_id)}`, body)
    : await api("POST", "/outputs", body);
  if (result.status === 422) {
    showFieldErrors(form, result.data.detail);
    return;
  }
  if (result.status !== 200 && result.status !== 201) {
    showFieldErrors(form, [{ field: "body", reason: refusal(result) }]);
    return;
  }
  byId("output-dialog").close();
  showBanner(`Output ${result.data.output_id} ${output ? "saved" : "created"}.`, "ok");
  await loadConfig();
  if (location.hash !== "#outputs") location.hash = "#outputs";
  else renderOutputs();
}

function setupOutputForm() {
  byId("output-form").addEventListener("submit", submitOutput);
  byId("output-cancel").addEventListener("click", () => byId("output-dialog").close());
}

// Outputs.

function renderOutputs() {
  const rows = state.outputs.map((output) => {
    const connected = state.connections.filter((c) => c.output_id === output.output_id);
    const partner = partnerNamed(output.partner);
    return h(
      "tr",
      { "data-output": output.output_id },
      h("td", {}, h("strong", {}, output.output_id), output.name ? h("div", { class: "muted" }, output.name) : null),
      h("td", {}, output.partner),
      h("td", {}, chips(output.accepted_identities)),
      h("td", {}, output.supports_attributes ? "yes" : "no"),
      h(
        "td",
        {},
        output.settings === null
          ? h("span", { class: "bad" }, "hidden: fail the partner's check")
          : h("code", {}, JSON.stringify(output.settings)),
      ),
      h("td", {}, connected.length ? connected.map((c) => `${c.audience_id} (${c.status})`).join(", ") : "none"),
      h(
        "td",
        { class: "row-actions writes-only" },
        h("button", { type: "button", onclick: () => openOutputForm(partner, output) }, "Edit"),
        h("button", { type: "button", class: "danger", onclick: () => deleteOutput(output) }, "Delete"),
      ),
    );
  });
  if (!rows.length) {
    rows.push(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No outputs yet: set one up from the Directory.")));
  }
  byId("outputs").tBodies[0].replaceChildren(...rows);
}

async function deleteOutput(output) {
  if (!confirm(`Delete output ${output.output_id}? Its topic stays; nothing more is sent to it.`)) return;
  await deleteThenRender(`/outputs/${encodeURIComponent(output.output_id)}`, `Output ${output.output_id} deleted.`, renderOutputs);
}

// A DELETE, its outcome in the banner, then the page drawn again from the API's config.
async function deleteThenRender(path, done, render) {
  const result = await api("DELETE", path);
  if (result.status !== 204) showBanner(refusal(result));
  else showBanner(done, "ok");
  await loadConfig();
  render();
}

// Audiences and their connections.

function connectionId(audience, output) {
  const id = `${audience}-${output}`.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^[^a-z0-9]+/, "");
  return id.slice(0, 63).replace(/-+$/, "");
}

function consentControls(prefix, consent) {
  return [
    fieldRow(
      `${prefix}consent.require_gdpr`,
      "GDPR purposes required",
      h("input", {
        id: `f-${prefix}consent.require_gdpr`,
        "data-role": "gdpr",
        value: consent ? consent.require_gdpr.join(", ") : "",
        placeholder: "none, or e.g. marketing",
      }),
    ),
    h(
      "label",
      { class: "box" },
      h("input", { type: "checkbox", "data-role": "ccpa", checked: Boolean(consent && consent.block_ccpa_opt_out) }),
      "Leave out CCPA data-sale opt-outs",
    ),
  ];
}

function connectionSettings(root) {
  const gdpr = commaList(root.querySelector("[data-role=gdpr]").value);
  const ccpa = root.querySelector("[data-role=ccpa]").checked;
  const attributes = root.querySelector("[data-role=attributes]");
  return {
    forwarded_attributes: attributes ? commaList(attributes.value) : [],
    on_disconnect: root.querySelector("[data-role=on_disconnect]").value,
    consent: gdpr.length || ccpa ? { require_gdpr: gdpr, block_ccpa_opt_out: ccpa } : null,
  };
}

function attributesControl(prefix, output, current) {
  if (!output || !output.supports_attributes) {
    return h("p", { class: "help", "data-field": `${prefix}forwarded_attributes` }, "This output takes no attributes.");
  }
  return fieldRow(
    `${prefix}forwarded_attributes`,
    "Forwarded attributes",
    h("input", {
      id: `f-${prefix}forwarded_attributes`,
      "data-role": "attributes",
      value: current.join(", "),
      placeholder: "none, or e.g. ltv, tier",
    }),
  );
}

function onDisconnectControl(value) {
  return h(
    "label",
    { class: "inline" },
    "On disconnect ",
    h(
      "select",
      { "data-role": "on_disconnect" },
      h("option", { value: "keep", selected: value === "keep" }, "keep what the partner holds"),
      h("option", { value: "remove", selected: value === "remove" }, "remove every member sent"),
    ),
  );
}

const STATUS_LABELS = { active: "Active", inactive: "Inactive", preview: "Preview (sends nothing)" };

function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}

function statusSwitch(connection) {
  const input = h("input", {
    type: "checkbox",
    role: "switch",
    class: "switch",
    "aria-label": `Status of ${connection.connection_id}`,
    checked: connection.status === "active",
    disabled: !state.access.writes_enabled,
  });
  input.addEventListener("change", async () => {
    const status = input.checked ? "active" : "inactive";
    const result = await api("PATCH", `/connections/${encodeURIComponent(connection.connection_id)}`, { status });
    if (result.status !== 200) {
      input.checked = !input.checked;
      showBanner(refusal(result));
      return;
    }
    connection.status = status;
    input.closest(".connection").querySelector(".status-label").textContent = statusLabel(status);
  });
  return h(
    "label",
    { class: "status" },
    input,
    h("span", { class: "status-label" }, statusLabel(connection.status)),
  );
}

function connectionRow(connection) {
  const output = outputNamed(connection.output_id);
  const prefix = `${connection.connection_id}.`;
  const root = h(
    "form",
    { class: "connection", "data-connection": connection.connection_id },
    h(
      "div",
      { class: "connection-head" },
      h("strong", {}, output && output.name ? `${output.name} (${connection.output_id})` : connection.output_id),
      h("span", { class: "muted" }, ` connection ${connection.connection_id}`),
      statusSwitch(connection),
    ),
    attributesControl(prefix, output, connection.forwarded_attributes),
    onDisconnectControl(connection.on_disconnect),
    consentControls(prefix, connection.consent),
    h("p", { class: "field-error", "data-error-for": "body" }),
    h(
      "div",
      { class: "actions writes-only" },
      h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", class: "danger", onclick: () => disconnect(connection) }, "Disconnect"),
    ),
  );
  root.addEventListener("submit", async (event) => {
    event.preventDefault();
    const path = `/connections/${encodeURIComponent(connection.connection_id)}`;
    const result = await api("PATCH", path, connectionSettings(root));
    await afterConnectionWrite(root, result, prefix, `Connection ${connection.connection_id} saved.`);
  });
  return root;
}

// The 422 problems name body fields; the form's fields carry the connection's prefix.
async function afterConnectionWrite(root, result, prefix, done) {
  if (result.status === 422) {
    showFieldErrors(root, result.data.detail.map((p) => ({ ...p, field: `${prefix}${p.field}` })));
    return;
  }
  if (result.status !== 200 && result.status !== 201) {
    showFieldErrors(root, [{ field: "body", reason: refusal(result) }]);
    return;
  }
  showBanner(done, "ok");
  await loadConfig();
  renderAudiences();
}

async function disconnect(connection) {
  const how = connection.on_disconnect === "remove" ? "a remove goes out for every member sent" : "the partner keeps what it holds";
  if (!confirm(`Disconnect ${connection.output_id} from ${connection.audience_id}? ${how}.`)) return;
  const path = `/connections/${encodeURIComponent(connection.connection_id)}`;
  await deleteThenRender(path, `Connection ${connection.connection_id} deleted.`, renderAudiences);
}

function connectForm(audience, connected) {
  const prefix = `new:${audience}.`;
  const free = state.outputs.filter((o) => !connected.has(o.output_id));
  if (!free.length) {
    return h("p", { class: "help writes-only" }, state.outputs.length ? "Every output is connected." : "No outputs yet: set one up from the Directory.");
  }
  const select = h(
    "select",
    { id: `f-${prefix}output_id`, "data-role": "output" },
    free.map((o) => h("option", { value: o.output_id }, o.name ? `${o.name} (${o.output_id})` : o.output_id)),
  );
  const idInput = h("input", { id: `f-${prefix}connection_id`, "data-role": "connection_id", autocomplete: "off" });
  const attributesSlot = h("div", {});
  const root = h(
    "form",
    { class: "connect writes-only", "data-connect": audience },
    h("h4", {}, "Connect Output"),
    fieldRow(`${prefix}output_id`, "Output", select),
    fieldRow(`${prefix}connection_id`, "Connection id", idInput),
    fieldRow(
      `${prefix}status`,
      "Status",
      h(
        "select",
        { id: `f-${prefix}status`, "data-role": "status" },
        h("option", { value: "inactive" }, "Inactive"),
        h("option", { value: "active" }, "Active"),
        h("option", { value: "preview" }, statusLabel("preview")),
      ),
    ),
    attributesSlot,
    onDisconnectControl("keep"),
    consentControls(prefix, null),
    h("p", { class: "field-error", "data-error-for": "body" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Add connection")),
  );
  const chosen = () => {
    idInput.value = connectionId(audience, select.value);
    attributesSlot.replaceChildren(attributesControl(prefix, outputNamed(select.value), []));
  };
  select.addEventListener("change", chosen);
  chosen();
  root.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      connection_id: idInput.value.trim(),
      audience_id: audience,
      output_id: select.value,
      status: root.querySelector("[data-role=status]").value,
      ...connectionSettings(root),
    };
    if (!ID_PATTERN.test(body.connection_id)) {
      showFieldErrors(root, [{ field: `${prefix}connection_id`, reason: "lower-case letters, digits and dashes, up to 63" }]);
      return;
    }
    const result = await api("POST", "/connections", body);
    await afterConnectionWrite(root, result, prefix, `Connected ${body.output_id} to ${audience}.`);
  });
  return root;
}

function renderAudiences() {
  const audiences = new Set([...state.connections.map((c) => c.audience_id), ...state.openedAudiences]);
  const cards = [...audiences].sort().map((audience) => {
    const connections = state.connections.filter((c) => c.audience_id === audience);
    return h(
      "article",
      { class: "card audience", "data-audience": audience },
      h("h3", {}, audience),
      connections.length
        ? h("p", { class: "muted" }, `${connections.length} connected output${connections.length > 1 ? "s" : ""}`)
        : h("p", { class: "muted" }, "No connected outputs yet."),
      connections.map(connectionRow),
      connectForm(audience, new Set(connections.map((c) => c.output_id))),
    );
  });
  if (!cards.length) cards.push(h("p", { class: "empty" }, "No audience has a connection yet: open one by its id above."));
  byId("audiences").replaceChildren(...cards);
}

function setupAudiences() {
  byId("audience-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = byId("audience-input");
    const audience = input.value.trim();
    if (!audience) return;
    state.openedAudiences.add(audience);
    input.value = "";
    renderAudiences();
  });
}

// Stats.

function ago(seconds) {
  const past = Math.max(0, Date.now() / 1000 - seconds);
  if (past < 90) return `${Math.round(past)} s ago`;
  if (past < 5400) return `${Math.round(past / 60)} min ago`;
  return `${Math.round(past / 3600)} h ago`;
}

function remember(stats) {
  const now = Date.now();
  const samples = state.history.get(stats.connection_id) || [];
  samples.push([now, stats.added, stats.removed]);
  while (samples.length && samples[0][0] < now - CHART_WINDOW_MS) samples.shift();
  state.history.set(stats.connection_id, samples);
  return samples;
}

// Records per poll interval over the window: adds and removes as two lines.
function chart(samples) {
  const width = 300;
  const height = 70;
  const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const now = Date.now();
  const deltas = samples.slice(1).map((s, i) => [s[0], s[1] - samples[i][1], s[2] - samples[i][2]]);
  const top = Math.max(1, ...deltas.map((d) => Math.max(d[1], d[2])));
  const x = (t) => (width * (t - (now - CHART_WINDOW_MS))) / CHART_WINDOW_MS;
  const y = (v) => height - 4 - ((height - 8) * v) / top;
  box.append(svg("line", { x1: 0, y1: height - 4, x2: width, y2: height - 4, class: "axis" }));
  for (const [index, name] of [[1, "adds"], [2, "removes"]]) {
    const points = deltas.map((d) => `${x(d[0]).toFixed(1)},${y(d[index]).toFixed(1)}`).join(" ");
    if (points) box.append(svg("polyline", { points, class: `line ${name}` }));
  }
  const label = svg("text", { x: 4, y: 12, class: "chart-label" });
  label.textContent = `max ${top} per ${STATS_EVERY_MS / 1000} s`;
  box.append(label);
  box.setAttribute("aria-label", `records added and removed in the last 5 minutes, at most ${top} per poll`);
  return box;
}

function syncText(sync) {
  if (!sync) return "none yet";
  if (sync.profiles === 0) return "done: the audience had no members then";
  const bar = h("progress", { max: sync.profiles, value: sync.done });
  if (sync.done >= sync.profiles) return [bar, ` done: ${sync.profiles} profiles checked`];
  return [bar, ` ${sync.done} of ${sync.profiles} profiles checked`];
}

function previewRows(preview) {
  if (!preview) return [];
  const byType = Object.entries(preview.members_by_identity_type).map(([kind, n]) => `${kind}: ${n}`);
  const wouldSend = Object.entries(preview.would_send).map(([action, n]) => `${action}: ${n}`);
  return [
    h("dt", {}, "Preview"),
    h(
      "dd",
      { "data-count": "preview" },
      `${preview.members} members (${byType.join(", ") || "no accepted identities"}); would send ${wouldSend.join(", ") || "nothing"}`,
    ),
  ];
}

function statsCard(connection, stats) {
  if (!stats) {
    return h("article", { class: "card stats" }, h("h3", {}, connection.connection_id), h("p", { class: "bad" }, "no stats"));
  }
  const samples = remember(stats);
  const dropped = Object.entries(stats.dropped);
  const sync = stats.sync;
  return h(
    "article",
    { class: "card stats", "data-stats": connection.connection_id },
    h("h3", {}, connection.connection_id),
    h(
      "p",
      { class: "muted" },
      `${connection.audience_id} → ${connection.output_id} · `,
      h("span", { class: connection.status === "active" ? "ok" : "muted" }, connection.status),
    ),
    h(
      "div",
      { class: "numbers" },
      h("div", {}, h("span", { class: "number", "data-count": "added" }, stats.added), h("span", {}, "added")),
      h("div", {}, h("span", { class: "number", "data-count": "removed" }, stats.removed), h("span", {}, "removed")),
      h("div", {}, h("span", { class: "number", "data-count": "attribute_updates" }, stats.attribute_updates), h("span", {}, "attribute updates")),
    ),
    h(
      "dl",
      {},
      h("dt", {}, "Dropped"),
      h("dd", { "data-count": "dropped" }, dropped.length ? dropped.map(([reason, n]) => `${reason}: ${n}`).join(", ") : "none"),
      h("dt", {}, "Last record"),
      h(
        "dd",
        { "data-count": "last_record" },
        stats.last_record_timestamp
          ? `${new Date(stats.last_record_timestamp * 1000).toLocaleTimeString()} (${ago(stats.last_record_timestamp)})`
          : "none yet",
      ),
      h("dt", {}, "Sync"),
      h(
        "dd",
        { "data-count": "sync" },
        syncText(sync),
      ),
      h("dt", {}, "Partner holds"),
      h("dd", { "data-count": "partner_profiles" }, `${stats.partner_profiles} profiles`),
      ...previewRows(stats.preview),
    ),
    chart(samples),
    h("p", { class: "legend" }, h("span", { class: "key adds" }, "adds"), h("span", { class: "key removes" }, "removes")),
  );
}

async function renderStats() {
  const connections = state.connections;
  const results = await Promise.all(
    connections.map((c) => api("GET", `/connections/${encodeURIComponent(c.connection_id)}/stats`)),
  );
  if (location.hash !== "#stats") return;
  const stats = results.map((r) => (r.status === 200 ? r.data : null));
  const scraped = stats.find((s) => s);
  const note = byId("stats-note");
  note.hidden = !(scraped && scraped.workers_scraped === 0 && scraped.workers_unreachable === 0);
  note.textContent = "The API scrapes no worker: set FORWARDER_WORKER_METRICS_URLS to the workers' /metrics URLs.";
  if (scraped && scraped.workers_unreachable) {
    note.hidden = false;
    note.textContent = `${scraped.workers_unreachable} worker(s) did not answer: the counts are partial.`;
  }
  const cards = connections.map((c, i) => statsCard(c, stats[i]));
  if (!cards.length) cards.push(h("p", { class: "empty" }, "No connections yet."));
  byId("stats").replaceChildren(...cards);
}

// Dead letters.

async function renderDeadLetters() {
  const letters = await load("/dead-letters?limit=50");
  if (letters === null || location.hash !== "#dead-letters") return;
  const rows = letters.map((letter) =>
    h(
      "tr",
      { "data-kind": letter.error.kind },
      h("td", {}, new Date(letter.timestamp_ms).toLocaleString()),
      h("td", {}, h("code", {}, `${letter.source.topic} [${letter.source.partition}] @${letter.source.offset}`)),
      h("td", {}, h("span", { class: "chip bad" }, letter.error.kind)),
      h("td", {}, letter.error.message),
      h("td", {}, letter.key === null ? "—" : h("code", {}, letter.key)),
      h(
        "td",
        { class: "value" },
        letter.value === null ? "—" : h("code", {}, letter.value),
        letter.value_encoding === "base64" ? h("div", { class: "muted" }, "base64") : null,
        letter.value_truncated ? h("div", { class: "muted" }, `first 1 KiB of ${letter.value_length} bytes`) : null,
      ),
    ),
  );
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No dead letters.")));
  byId("dead-letters").tBodies[0].replaceChildren(...rows);
}

// Pages.

const PAGES = {
  directory: { render: renderDirectory },
  outputs: { render: renderOutputs },
  audiences: { render: renderAudiences },
  stats: { render: renderStats, every: STATS_EVERY_MS },
  "dead-letters": { render: renderDeadLetters, every: DEAD_LETTERS_EVERY_MS },
};

async function show() {
  const name = location.hash.slice(1) in PAGES ? location.hash.slice(1) : "directory";
  clearInterval(state.timer);
  for (const page of Object.keys(PAGES)) {
    byId(`page-${page}`).hidden = page !== name;
    document.querySelector(`[data-nav="${page}"]`).classList.toggle("current", page === name);
  }
  await loadConfig();
  await PAGES[name].render();
  if (PAGES[name].every) {
    state.timer = setInterval(async () => {
      await loadConfig();
      await PAGES[name].render();
    }, PAGES[name].every);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  setupAccess();
  setupOutputForm();
  setupAudiences();
  await refreshAccess();
  window.addEventListener("hashchange", show);
  await show();
});
