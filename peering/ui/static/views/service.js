// One service: its instances (node, address:port, tags) and each instance's checks with status and
// output, from /v1/health/service/{name} (with `?peer=` for an imported copy). Kept live by one
// blocking query; an unknown service is an empty list, as the API answers.

import { LivePoll } from "../api.js";
import { h, replaceContent } from "../dom.js";
import { errorBox, pausedText, retryingOnError } from "./common.js";
import { checkStatus, healthBadge, healthCounts, healthPath, importedLabel, instanceStatus, summarize } from "./health.js";
import { hiddenNotice, tagList } from "./services.js";

const ORDER = { maintenance: 0, critical: 1, warning: 2, passing: 3 };

export function serviceView(main, match, url) {
  const name = decodeURIComponent(match[1]);
  const peer = url.searchParams.get("peer") || "";
  const view = { entries: null, error: null, retryIn: 0 };
  const content = h("div", { id: "service-detail" });
  const live = h("p", { class: "live", id: "live-status" });
  const back = peer ? `/ui/services?peer=${encodeURIComponent(peer)}` : "/ui/services";
  main.append(
    h("nav", { "aria-label": "Breadcrumb", class: "breadcrumb" },
      h("ol", {}, h("li", {}, h("a", { href: back }, peer ? `Services imported from ${peer}` : "All services")),
        h("li", { "aria-current": "page" }, name))),
    content, live,
  );

  const poll = new LivePoll(healthPath(name), {
    query: peer ? { peer } : {},
    onData(data, index, fetchedAt, filtered) {
      Object.assign(view, { entries: Array.isArray(data) ? data : [], error: null, filtered });
      render();
    },
    onError: retryingOnError(view, live, render),
  });
  poll.start();

  function render() {
    live.textContent = view.error ? pausedText(view.retryIn) : view.entries ? "Live: changes show as they happen." : "Loading…";
    const problem = [view.error ? errorBox(view.error, "reading a service's health") : null, hiddenNotice("instances", view.filtered)];
    if (view.entries === null) {
      replaceContent(content, h("h1", { tabindex: "-1" }, name), problem);
      return;
    }
    const summary = summarize(view.entries);
    replaceContent(content,
      h("div", { class: "page-head" },
        h("h1", { tabindex: "-1" }, name, " ", summary.total ? healthBadge(summary.overall) : null),
        peer ? importedLabel(peer) : null),
      problem,
      overview(summary),
      summary.total
        ? h("section", { "aria-labelledby": "instances-title" },
          h("h2", { id: "instances-title" }, `Instances (${summary.total})`),
          view.entries.map(instance))
        : h("div", { class: "empty", "data-empty": "true" },
          h("h2", {}, `No instances of "${name}"${peer ? ` imported from ${peer}` : ""}.`),
          h("p", {}, "The service has no instances in this catalog (or no such service exists). Registrations show here at once.")),
    );
  }

  function overview(summary) {
    const tags = [...new Set(view.entries.flatMap((e) => (e.Service && e.Service.Tags) || []))].sort();
    const datacenters = [...new Set(view.entries.map((e) => e.Node && e.Node.Datacenter).filter(Boolean))].sort();
    return h("section", { class: "card", "aria-labelledby": "overview-title" },
      h("h2", { id: "overview-title" }, "Overview"),
      h("dl", { class: "summary" },
        item("Source", peer ? `Imported from peer ${peer}` : "This cluster"),
        item("Instances", String(summary.total)),
        item("Health", healthCounts(summary)),
        item("Tags", tagList(tags)),
        datacenters.length ? item("Datacenter", datacenters.join(", ")) : null,
      ));
  }

  function instance(entry, i) {
    const service = entry.Service || {};
    const node = entry.Node || {};
    const checks = [...(entry.Checks || [])].sort((a, b) =>
      ORDER[checkStatus(a)] - ORDER[checkStatus(b)] || String(a.Name).localeCompare(String(b.Name)));
    const address = service.Address || node.Address || "";
    const titleId = `instance-${i}`;
    const meta = Object.entries(service.Meta || {});
    return h("section", { class: "card instance", "aria-labelledby": titleId, "data-instance": service.ID, "data-health": instanceStatus(entry) },
      h("h3", { id: titleId }, h("code", {}, service.ID), " ", healthBadge(instanceStatus(entry))),
      h("dl", { class: "details" },
        item("Node", [h("span", { "data-node": "true" }, node.Node), node.Address ? h("span", { class: "muted" }, ` (${node.Address})`) : null]),
        item("Address", h("code", { "data-address": "true" }, service.Port ? `${address}:${service.Port}` : address || "—")),
        item("Tags", tagList(service.Tags || [])),
        meta.length ? item("Meta", h("ul", { class: "plain" }, meta.map(([k, v]) => h("li", {}, h("code", {}, k), " = ", h("code", {}, v))))) : null,
      ),
      checks.length ? checkTable(service.ID, checks) : h("p", { class: "muted" }, "This instance has no health checks."));
  }

  return { cleanup: () => poll.stop() };
}

function checkTable(id, checks) {
  return h("table", { class: "table checks" },
    h("caption", {}, `Checks of ${id} (${checks.length})`),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Check"), h("th", { scope: "col" }, "Applies to"),
      h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Output"))),
    h("tbody", {}, checks.map((check) => h("tr", { "data-check": check.CheckID, "data-status": checkStatus(check) },
      h("th", { scope: "row" }, check.Name || check.CheckID, h("br"), h("code", { class: "small muted" }, check.CheckID)),
      h("td", {}, check.ServiceID ? "This instance" : "The whole node"),
      h("td", {}, healthBadge(checkStatus(check))),
      h("td", {},
        check.Output ? h("pre", { class: "output" }, check.Output) : h("span", { class: "muted" }, "No output"),
        check.Notes ? h("p", { class: "small muted" }, check.Notes) : null),
    ))));
}

function item(term, value) {
  return h("div", { class: "item" }, h("dt", {}, term), h("dd", {}, value));
}
