// Add a peer connection, as Consul's two tabs: generate a token here (shown once), or check and
// establish with a token from the other cluster. The forms check nothing themselves: the API's own
// messages are shown next to the form, so the console and the API cannot disagree.

import { request } from "../api.js";
import { announce, h, replaceContent, tabSet } from "../dom.js";
import { consolePath, errorBox, tokenPanel } from "./common.js";

export function addView(main, match, url, navigate) {
  main.append(
    h("nav", { "aria-label": "Breadcrumb", class: "breadcrumb" },
      h("ol", {}, h("li", {}, h("a", { href: "/ui/peerings" }, "All peers")), h("li", { "aria-current": "page" }, "Add peer connection"))),
    h("h1", { tabindex: "-1" }, "Add peer connection"),
    h("p", { class: "lede" }, "One cluster generates a token; the other establishes the peering with it."),
  );
  const tabs = tabSet("Add peer connection", [
    { id: "generate", label: "Generate token", render: generateForm },
    { id: "establish", label: "Establish peering", render: () => establishForm(navigate) },
  ], url.searchParams.get("tab") || "generate", (id) => {
    const next = new URL(window.location.href);
    next.searchParams.set("tab", id);
    if (next.href !== window.location.href) window.history.replaceState(null, "", next);
  });
  main.append(tabs.root);
  return { cleanup() {} };
}

function field(id, label, control, hint) {
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), hint ? h("p", { class: "hint", id: hintId }, hint) : null, control);
}

/** `key=value` lines (or comma-separated) into Meta; a line without `=` is reported, not guessed. */
function parseMeta(text) {
  const meta = {};
  for (const line of text.split(/\n/).map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf("=");
    if (at < 0) throw new Error(`Metadata must be key=value, one a line: "${line}"`);
    meta[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return Object.keys(meta).length ? meta : undefined;
}

function inputError(message) {
  return h("div", { class: "alert", role: "alert" }, h("p", {}, message));
}

function generateForm() {
  const name = h("input", { type: "text", autocomplete: "off", spellcheck: "false", "aria-required": "true" });
  const addresses = h("textarea", { rows: "2", spellcheck: "false" });
  const meta = h("textarea", { rows: "2", spellcheck: "false" });
  const result = h("div", { id: "generate-result" });
  const submit = h("button", { type: "submit", class: "button primary" }, "Generate token");
  const form = h("form", { novalidate: true, "aria-labelledby": "tab-generate" },
    field("generate-name", "Name of peer", name, "The name this cluster will know the other cluster by: a DNS label (lower case letters, digits and '-')."),
    field("generate-addresses", "Server external addresses (optional)", addresses, "host:port, one a line or comma-separated; they replace this cluster's advertised address in the token."),
    field("generate-meta", "Metadata (optional)", meta, "key=value, one a line."),
    h("div", { class: "actions" }, submit),
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { PeerName: name.value.trim() };
    const list = addresses.value.split(/[\s,]+/).filter(Boolean);
    if (list.length) body.ServerExternalAddresses = list;
    try {
      body.Meta = parseMeta(meta.value);
    } catch (err) {
      replaceContent(result, inputError(err.message));
      return;
    }
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const { data } = await request("POST", "/v1/peering/token", { body });
      replaceContent(result, tokenPanel(body.PeerName, data.PeeringToken),
        h("p", {}, "The peering is now waiting to be established: ", h("a", { href: consolePath(body.PeerName) }, `view ${body.PeerName}`), "."));
      announce(`Token for ${body.PeerName} generated. Copy it now: it is shown only once.`);
      result.querySelector("textarea").focus();
    } catch (err) {
      replaceContent(result, errorBox(err, "generating a token"));
    } finally {
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
  return form;
}

function establishForm(navigate) {
  const name = h("input", { type: "text", autocomplete: "off", spellcheck: "false", "aria-required": "true" });
  const token = h("textarea", { rows: "5", spellcheck: "false", "aria-required": "true" });
  const meta = h("textarea", { rows: "2", spellcheck: "false" });
  const result = h("div", { id: "establish-result" });
  const check = h("button", { type: "button", class: "button" }, "Check token");
  const submit = h("button", { type: "submit", class: "button primary" }, "Establish peering");
  const form = h("form", { novalidate: true, "aria-labelledby": "tab-establish" },
    field("establish-name", "Name of peer", name, "The name this cluster will know the other cluster by (it need not match the name there)."),
    field("establish-token", "Peering token", token, "The token the other cluster generated for this one."),
    field("establish-meta", "Metadata (optional)", meta, "key=value, one a line."),
    h("div", { class: "actions" }, check, submit),
    result,
  );

  function body() {
    return { PeerName: name.value.trim(), PeeringToken: token.value.trim(), Meta: parseMeta(meta.value) };
  }

  async function busy(work) {
    check.disabled = true;
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      await work();
    } finally {
      check.disabled = false;
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  check.addEventListener("click", () => busy(async () => {
    let payload;
    try { payload = body(); } catch (err) { replaceContent(result, inputError(err.message)); return; }
    replaceContent(result, h("p", { class: "muted", role: "status" }, "Checking the token with the other cluster…"));
    try {
      const { data } = await request("POST", "/v1/peering/check", { body: payload });
      replaceContent(result, data.IsValid
        ? h("div", { class: "notice ok", role: "status" },
          h("p", { class: "alert-title" }, "The token is valid."),
          h("p", {}, `Remote datacenter ${data.RemoteDatacenter}, server ${data.RemoteServerName}, version ${data.RemoteServerVersion}. Nothing was changed on either cluster.`))
        : h("div", { class: "alert", role: "alert" },
          h("p", { class: "alert-title" }, "The token would be refused."), h("p", {}, data.ErrorMessage || "")));
    } catch (err) {
      replaceContent(result, errorBox(err, "checking a token"));
    }
  }));

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(async () => {
      let payload;
      try { payload = body(); } catch (err) { replaceContent(result, inputError(err.message)); return; }
      replaceContent(result, h("p", { class: "muted", role: "status" }, "Establishing the peering…"));
      try {
        await request("POST", "/v1/peering/establish", { body: payload });
        announce(`Peering with ${payload.PeerName} established.`);
        navigate(consolePath(payload.PeerName));
      } catch (err) {
        replaceContent(result, errorBox(err, "establishing a peering"));
      }
    });
  });
  return form;
}
