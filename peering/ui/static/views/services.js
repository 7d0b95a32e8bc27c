// The services of the catalog (SPEC §13): this cluster's own, one peering's imports, or every import
// with its source peer; each row with its instance count and health summary. One blocking query per
// page (the list of names; the catalog's index moves on any change of instances or checks in that
// scope), then each shown service's health is read once per change, a few at a time.

import { LivePoll, eachLimited, prefs, request, serverInfo } from "../api.js";
import { h, replaceContent } from "../dom.js";
import { errorBox, pausedText, retryingOnError } from "./common.js";
import { STATUSES, healthCounts, healthPath, importedLabel, servicePath, summarize } from "./health.js";

const SHOWN = 200; // rows (and health reads per change) at most; the search narrows the rest
const PARALLEL = 4;

/** What the Source menu offers: `?peer=NAME` = imported from that peering, `?imported` = every import. */
function sourceOf(url) {
  if (url.searchParams.has("peer")) return { kind: "peer", peer: url.searchParams.get("peer") };
  if (url.searchParams.has("imported")) return { kind: "imported", peer: "" };
  return { kind: "local", peer: "" };
}

function sourceValue(source) {
  return source.kind === "peer" ? `peer:${source.peer}` : source.kind;
}

export function servicesView(main, match, url) {
  let source = sourceOf(url);
  let poll = null;
  const view = { rows: null, health: new Map(), error: null, retryIn: 0, generation: 0 };
  const search = h("input", { id: "service-search", type: "search", autocomplete: "off", spellcheck: "false", "data-key": "search" });
  const health = h("select", { id: "service-health", "data-key": "health" },
    h("option", { value: "" }, "All"), STATUSES.map((s) => h("option", { value: s }, s === "none" ? "no checks" : s)));
  const picker = h("select", { id: "service-source", "data-key": "source" },
    h("option", { value: "local" }, "This cluster (local services)"),
    h("option", { value: "imported" }, "Imported from every peer"));
  const count = h("p", { class: "muted", id: "service-count", "aria-live": "polite" });
  const live = h("p", { class: "live", id: "live-status" });
  const results = h("div", { id: "services-results" });
  search.addEventListener("input", () => { render(); loadHealth(); });
  health.addEventListener("change", render);
  picker.addEventListener("change", () => {
    const value = picker.value;
    const next = value.startsWith("peer:") ? { kind: "peer", peer: value.slice(5) } : { kind: value, peer: "" };
    const query = next.kind === "peer" ? `?peer=${encodeURIComponent(next.peer)}` : next.kind === "imported" ? "?imported" : "";
    window.history.replaceState(null, "", `/ui/services${query}`);
    watch(next);
  });
  picker.value = sourceValue(source);
  addPeerOptions(picker, source);

  main.append(
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Services"), h("a", { class: "button", href: "/ui/exports" }, "Manage exports")),
    h("p", { class: "lede" }, "Services in the catalog of partition ", h("code", {}, prefs.partition || "default"),
      ": this cluster's own, and those imported from its peers."),
    h("div", { class: "filters", role: "search", "aria-label": "Filter services" },
      h("div", { class: "field" }, h("label", { for: "service-source" }, "Source"), picker),
      h("div", { class: "field" }, h("label", { for: "service-search" }, "Search by name"), search),
      h("div", { class: "field" }, h("label", { for: "service-health" }, "Health"), health),
    ),
    count, live, results,
  );

  /** Follow one source: a blocking query on its list of names. */
  function watch(next) {
    if (poll) poll.stop();
    source = next;
    Object.assign(view, { rows: null, health: new Map(), error: null });
    view.generation += 1;
    render();
    const path = source.kind === "imported" ? "/v1/imported-services" : "/v1/catalog/services";
    poll = new LivePoll(path, {
      query: source.kind === "peer" ? { peer: source.peer } : {},
      onData(data, index, fetchedAt, filtered) {
        Object.assign(view, { rows: rowsOf(data, source), error: null, filtered });
        render();
        loadHealth();
      },
      onError: retryingOnError(view, live, render),
    });
    poll.start();
  }
  watch(source);

  function matching() {
    const text = search.value.trim().toLowerCase();
    return view.rows.filter((r) => !text || r.name.toLowerCase().includes(text));
  }

  /** Read the health of the rows shown; an older round's answers are dropped. */
  async function loadHealth() {
    if (!view.rows) return;
    view.generation += 1;
    const generation = view.generation;
    const rows = matching().slice(0, SHOWN);
    const found = await eachLimited(rows, PARALLEL, async (row) => {
      const { data } = await request("GET", healthPath(row.name), { query: row.peer ? { peer: row.peer } : {} });
      return Array.isArray(data) ? data : [];
    });
    if (generation !== view.generation) return;
    rows.forEach((row, i) => view.health.set(row.key, found[i]));
    render();
  }

  function render() {
    live.textContent = view.error ? pausedText(view.retryIn) : view.rows ? "Live: changes show as they happen." : "Loading…";
    const problem = [view.error ? errorBox(view.error, "listing services") : null, hiddenNotice("services", view.filtered)];
    if (view.rows === null) {
      count.textContent = "";
      replaceContent(results, problem);
      return;
    }
    if (view.rows.length === 0) {
      count.textContent = "";
      replaceContent(results, problem, problem[1] ? null : emptyState(source));
      return;
    }
    let rows = matching();
    if (health.value) rows = rows.filter((r) => overall(r) === health.value);
    const shown = rows.slice(0, SHOWN);
    count.textContent = shownText(shown.length, rows.length, view.rows.length);
    replaceContent(results, problem, shown.length ? table(shown) : h("p", { class: "empty" }, "No service matches the filter."));
  }

  function overall(row) {
    const found = view.health.get(row.key);
    return found && found.value ? summarize(found.value).overall : null;
  }

  function table(rows) {
    const imported = source.kind !== "local";
    return h("table", { class: "table" },
      h("caption", { class: "visually-hidden" }, "Services, with their tags, instance count and health"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Service"),
        imported ? h("th", { scope: "col" }, "Source") : null,
        h("th", { scope: "col" }, "Tags"),
        h("th", { scope: "col" }, "Instances"),
        h("th", { scope: "col" }, "Health"))),
      h("tbody", {}, rows.map((row) => serviceRow(row, imported))));
  }

  function serviceRow(row, imported) {
    const found = view.health.get(row.key);
    const entries = found && found.value ? found.value : null;
    const summary = entries ? summarize(entries) : null;
    const tags = row.tags || (entries ? [...new Set(entries.flatMap((e) => (e.Service && e.Service.Tags) || []))].sort() : []);
    const label = row.peer ? `view ${row.name} from ${row.peer}` : `view ${row.name}`;
    return h("tr", { "data-service": row.name, "data-peer": row.peer || null, "data-health": summary ? summary.overall : null },
      h("th", { scope: "row" }, h("a", { href: servicePath(row.name, row.peer), "aria-label": label, "data-key": `view-${row.key}` }, row.name)),
      imported ? h("td", {}, importedLabel(row.peer)) : null,
      h("td", {}, tagList(tags)),
      h("td", { class: "num" }, summary ? String(summary.total) : "…"),
      h("td", {}, found && found.error ? h("span", { class: "muted", title: found.error.message }, "Unknown (the health read failed)")
        : summary ? healthCounts(summary) : h("span", { class: "muted" }, "Loading…")),
    );
  }

  return { cleanup: () => { poll.stop(); view.generation += 1; } };
}

function rowsOf(data, source) {
  if (source.kind === "imported") {
    return (Array.isArray(data) ? data : []).map((item) => ({
      name: item.Service, peer: item.SourcePeer, tags: null, key: `${item.SourcePeer}/${item.Service}`,
    }));
  }
  return Object.entries(data || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, tags]) => ({
    name, peer: source.peer, tags: Array.isArray(tags) ? [...tags].sort() : [], key: `${source.peer}/${name}`,
  }));
}

/**
 * ACLs removed rows from an answer (the server says so to a token, never to the anonymous caller, as
 * Consul): say so, so a short or empty list is not taken for the whole catalog. `filtered` is the
 * answer's X-Consul-Results-Filtered-By-ACLs.
 */
export function hiddenNotice(what, filtered) {
  const needs = "service:read on them, and node:read on their nodes";
  if (filtered) {
    return h("p", { class: "notice", "data-filtered": "token" },
      `Some ${what} are not shown: the ACL token in use may not read them (it needs ${needs}). `,
      h("a", { href: "/ui/settings" }, "Change the token"), ".");
  }
  if (serverInfo.aclDefaultPolicy !== "deny" || prefs.token) return null;
  return h("p", { class: "notice", "data-filtered": "anonymous" },
    `ACLs are on (default deny) and no token is set: the anonymous token may not see every one of the ${what} (reading them needs ${needs}). `,
    h("a", { href: "/ui/settings" }, "Enter a token"), ".");
}

export function tagList(tags) {
  if (!tags.length) return h("span", { class: "muted" }, "None");
  return h("ul", { class: "tags" }, tags.map((t) => h("li", { class: "tag" }, t)));
}

function shownText(shown, matching, total) {
  const word = total === 1 ? "service" : "services";
  if (shown < matching) return `${shown} of ${matching} matching services shown: narrow the search to see the others`;
  return shown === total ? `${total} ${word}` : `${shown} of ${total} services shown`;
}

function emptyState(source) {
  if (source.kind === "local") {
    return h("div", { class: "empty" }, h("h2", {}, "There are no services in this cluster's catalog."),
      h("p", {}, "Register one through the API (", h("code", {}, "PUT /v1/catalog/register"), " or ",
        h("code", {}, "PUT /v1/agent/service/register"), "): it shows here at once."));
  }
  const from = source.kind === "peer" ? `from peer "${source.peer}"` : "from any peer";
  return h("div", { class: "empty" }, h("h2", {}, `No services are imported ${from}.`),
    h("p", {}, "A peer's services arrive here once it exports them to this cluster (its exported-services entry names this cluster's peering)."));
}

/** One "Imported from <peer>" choice per peering of the partition (a listing this token may not do leaves only the others). */
async function addPeerOptions(picker, source) {
  let names = [];
  try {
    const { data } = await request("GET", "/v1/peerings");
    names = (Array.isArray(data) ? data : []).map((p) => p.Name);
  } catch { /* without peering:read the menu offers the local and all-imported lists */ }
  if (source.kind === "peer" && !names.includes(source.peer)) names.push(source.peer);
  const chosen = picker.value; // the operator may have picked another source meanwhile
  picker.append(...names.sort().map((name) => h("option", { value: `peer:${name}` }, `Imported from ${name}`)));
  picker.value = chosen || sourceValue(source);
}
