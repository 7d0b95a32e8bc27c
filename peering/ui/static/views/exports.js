// Exports (SPEC §14), which Consul's UI cannot edit: the resolved exported services with their
// consumer peers, and the partition's `exported-services` entry, edited by read-modify-write with
// compare-and-set (`?cas=` the entry's ModifyIndex, or 0 while there is none). The form checks
// nothing itself: the server's own messages (400s) are shown as it sends them.

import { LivePoll, prefs, request } from "../api.js";
import { announce, h, openDialog, replaceContent } from "../dom.js";
import { errorBox, pausedText, retryingOnError } from "./common.js";
import { servicePath } from "./health.js";

const KIND = "exported-services";
const WILDCARD = "*";

function entryName() {
  return prefs.partition || "default"; // the entry's Name is the partition it exports from
}

function entryPath() {
  return `/v1/config/${KIND}/${encodeURIComponent(entryName())}`;
}

export function exportsView(main) {
  const view = { resolved: null, entry: undefined, error: null, retryIn: 0, generation: 0 };
  const live = h("p", { class: "live", id: "live-status" });
  const resolvedBox = h("div", { id: "exports-resolved" });
  const entryBox = h("div", { id: "exports-entry" });
  const result = h("div", { id: "export-result" });
  const serviceNames = h("datalist", { id: "export-service-names" });
  const peerNames = h("datalist", { id: "export-peer-names" });
  const service = h("input", { id: "export-service", type: "text", autocomplete: "off", spellcheck: "false", list: "export-service-names", "aria-describedby": "export-service-hint" });
  const peer = h("input", { id: "export-peer", type: "text", autocomplete: "off", spellcheck: "false", list: "export-peer-names", "aria-describedby": "export-peer-hint" });
  const submit = h("button", { type: "submit", class: "button primary" }, "Add export");
  const form = h("form", { novalidate: true, "aria-labelledby": "add-export-title" },
    h("div", { class: "filters" },
      h("div", { class: "field" }, h("label", { for: "export-service" }, "Service"),
        h("p", { class: "hint", id: "export-service-hint" }, "A service name, or * for every service with instances."), service),
      h("div", { class: "field" }, h("label", { for: "export-peer" }, "Consumer peer"),
        h("p", { class: "hint", id: "export-peer-hint" }, "This cluster's name for the peering."), peer),
      h("div", { class: "field" }, submit)),
    serviceNames, peerNames, result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    addExport(service.value.trim(), peer.value.trim());
  });

  main.append(
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Exports")),
    h("p", { class: "lede" }, "What partition ", h("code", {}, entryName()),
      " exports to its peers, as its exported-services config entry says. Changes reach an active peer within a second."),
    h("section", { class: "card", "aria-labelledby": "add-export-title" }, h("h2", { id: "add-export-title" }, "Export a service to a peer"), form),
    live,
    h("section", { class: "card", "aria-labelledby": "resolved-title" },
      h("h2", { id: "resolved-title" }, "Exported services"),
      h("p", { class: "hint" }, "Resolved by the service: * expanded to the services that have instances (never consul), peers merged."),
      resolvedBox),
    h("section", { class: "card", "aria-labelledby": "entry-title" },
      h("h2", { id: "entry-title" }, "The exported-services entry"),
      entryBox),
  );
  fillChoices(serviceNames, peerNames);

  // one blocking query: the resolved list's index moves with the entry and with the local catalog
  const poll = new LivePoll("/v1/exported-services", {
    onData(data) {
      Object.assign(view, { resolved: Array.isArray(data) ? data : [], error: null });
      readEntry();
    },
    onError: retryingOnError(view, live, render),
  });
  poll.start();

  async function readEntry() {
    view.generation += 1;
    const generation = view.generation;
    let entry = null;
    try {
      ({ data: entry } = await request("GET", entryPath()));
    } catch (err) {
      if (err.status !== 404) {
        if (generation === view.generation) Object.assign(view, { entry: undefined, entryError: err });
        render();
        return;
      }
    }
    if (generation !== view.generation) return;
    Object.assign(view, { entry, entryError: null });
    render();
  }

  function render() {
    live.textContent = view.error ? pausedText(view.retryIn) : view.resolved ? "Live: changes show as they happen." : "Loading…";
    const problem = view.error ? errorBox(view.error, "listing exported services") : null;
    replaceContent(resolvedBox, problem, view.resolved === null ? null : resolvedTable(view.resolved, view.entry));
    if (view.entryError) replaceContent(entryBox, errorBox(view.entryError, "reading the exported-services entry"));
    else if (view.entry !== undefined) replaceContent(entryBox, entryTable(view.entry, removeDialog));
  }

  /** The entry as this page read it, changed by `change(services)`, written back only if nobody changed it meanwhile. */
  async function write(change, doing) {
    const current = view.entry;
    const body = current ? { ...current } : { Kind: KIND, Name: entryName() };
    delete body.CreateIndex;
    delete body.ModifyIndex;
    body.Services = change((current && current.Services ? current.Services : []).map((s) => ({ ...s, Consumers: [...(s.Consumers || [])] })));
    const { data } = await request("PUT", "/v1/config", { query: { cas: current ? current.ModifyIndex : 0 }, body });
    poll.refresh();
    if (data === true) return true;
    replaceContent(result, h("div", { class: "alert", role: "alert" },
      h("p", { class: "alert-title" }, `Nothing was saved: ${doing} was refused by compare-and-set.`),
      h("p", {}, "The entry was changed (by someone else, the CLI or another page) since this page read it. The page now shows the current entry: check it and try again.")));
    return false;
  }

  async function addExport(name, consumer) {
    const entry = view.entry;
    const item = entry && (entry.Services || []).find((s) => s.Name === name);
    if (item && (item.Consumers || []).some((c) => c.Peer === consumer)) {
      replaceContent(result, h("p", { class: "notice", role: "status" }, `${name} is already exported to ${consumer}: nothing to change.`));
      return;
    }
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const done = await write((services) => {
        const found = services.find((s) => s.Name === name);
        if (found) found.Consumers.push({ Peer: consumer });
        else services.push({ Name: name, Consumers: [{ Peer: consumer }] });
        return services;
      }, "adding the export");
      if (done) {
        replaceContent(result, h("p", { class: "notice ok", role: "status" }, `${name === WILDCARD ? "Every service" : name} is now exported to ${consumer}.`));
        service.value = "";
        announce(`${name} exported to ${consumer}.`);
      }
    } catch (err) {
      replaceContent(result, errorBox(err, "adding an export"));
    } finally {
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  function removeDialog(name, consumer) {
    const what = name === WILDCARD ? "every service (*)" : name;
    openDialog(`Stop exporting ${what} to ${consumer}?`, (close) => {
      const message = h("div", {});
      const go = h("button", {
        type: "button", class: "button danger",
        onclick: async () => {
          go.disabled = true;
          try {
            const done = await write((services) => services
              .map((s) => (s.Name === name ? { ...s, Consumers: s.Consumers.filter((c) => c.Peer !== consumer) } : s))
              .filter((s) => s.Consumers.length > 0), "removing the export");
            close();
            if (done) {
              replaceContent(result, h("p", { class: "notice ok", role: "status" }, `${what} is no longer exported to ${consumer}.`));
              announce(`${what} is no longer exported to ${consumer}.`);
            }
          } catch (err) {
            go.disabled = false;
            message.replaceChildren(errorBox(err, "removing an export"));
          }
        },
      }, "Stop exporting");
      return h("div", {},
        h("p", {}, `The peer ${consumer} drops its imported copy of ${what}. A service left without consumers leaves the entry.`),
        message,
        h("div", { class: "actions" }, h("button", { type: "button", class: "button", autofocus: true, onclick: close }, "Cancel"), go));
    });
  }

  return { cleanup: () => { poll.stop(); view.generation += 1; } };
}

/** Whether `peer` receives `service` only through the entry's `*` item. */
function throughWildcard(entry, service, peer) {
  const items = (entry && entry.Services) || [];
  const named = (s) => (s.Consumers || []).some((c) => c.Peer === peer);
  return !items.some((s) => s.Name === service && named(s)) && items.some((s) => s.Name === WILDCARD && named(s));
}

function resolvedTable(resolved, entry) {
  if (!resolved.length) return h("p", { class: "muted", "data-empty": "true" }, "No service is exported to any peer.");
  return h("table", { class: "table" },
    h("caption", { class: "visually-hidden" }, "Exported services and the peers that receive them"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Service"), h("th", { scope: "col" }, "Consumer peers"))),
    h("tbody", {}, resolved.map((item) => {
      const peers = (item.Consumers && item.Consumers.Peers) || [];
      return h("tr", { "data-exported": item.Service },
        h("th", { scope: "row" }, h("a", { href: servicePath(item.Service, "") }, item.Service)),
        h("td", {}, h("ul", { class: "tags" }, peers.map((p) => h("li", { class: "tag", "data-peer": p },
          p, throughWildcard(entry, item.Service, p) ? h("span", { class: "muted" }, " (through *)") : null)))));
    })));
}

function entryTable(entry, remove) {
  if (!entry) {
    return h("p", { class: "muted", "data-entry": "none" }, "There is no exported-services entry for this partition yet: adding an export creates it.");
  }
  const services = entry.Services || [];
  return h("div", { "data-entry": String(entry.ModifyIndex) },
    h("p", { class: "small muted" }, `Name ${entry.Name}, modify index ${entry.ModifyIndex}.`),
    services.length ? h("table", { class: "table" },
      h("caption", { class: "visually-hidden" }, "The entry's services and their consumers"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Service"), h("th", { scope: "col" }, "Consumers"))),
      h("tbody", {}, services.map((s) => h("tr", { "data-item": s.Name },
        h("th", { scope: "row" }, s.Name === WILDCARD
          ? [h("code", {}, WILDCARD), h("span", { class: "muted" }, " every service with instances (wildcard)")]
          : s.Name),
        h("td", {}, h("ul", { class: "consumers" }, (s.Consumers || []).map((c) => h("li", {},
          c.Peer ? ["Peer ", h("strong", {}, c.Peer)] : h("code", {}, JSON.stringify(c)),
          c.Peer ? h("button", { type: "button", class: "button small danger", "data-key": `remove-${s.Name}-${c.Peer}`, onclick: () => remove(s.Name, c.Peer) },
            "Remove", h("span", { class: "visually-hidden" }, ` the export of ${s.Name === WILDCARD ? "every service" : s.Name} to ${c.Peer}`)) : null)))),
      )))) : h("p", { class: "muted" }, "The entry exports nothing."));
}

/** Suggestions for the form: the local services and the partition's peerings (a read this token may not do suggests nothing). */
async function fillChoices(serviceNames, peerNames) {
  try {
    const { data } = await request("GET", "/v1/catalog/services");
    serviceNames.replaceChildren(h("option", { value: WILDCARD }), ...Object.keys(data || {}).sort().map((n) => h("option", { value: n })));
  } catch { /* no suggestions */ }
  try {
    const { data } = await request("GET", "/v1/peerings");
    peerNames.replaceChildren(...(Array.isArray(data) ? data : []).map((p) => h("option", { value: p.Name })));
  } catch { /* no suggestions */ }
}
