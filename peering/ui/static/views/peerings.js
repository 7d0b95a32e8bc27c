// The peerings list: badges, last heartbeat and its age, the stale warning, imported and exported
// counts, search, a status filter, sorting, and each row's actions. Kept live by one blocking query.

import { LivePoll, prefs } from "../api.js";
import { h, replaceContent } from "../dom.js";
import {
  STATES, badge, consolePath, deleteDialog, errorBox, isDialer, lastContact, pausedText, regenerateDialog, retryingOnError,
  staleWarning, staleness, timeAgo,
} from "./common.js";

const COLUMNS = [
  { key: "name", label: "Peer name", sort: (a, b) => a.Name.localeCompare(b.Name) },
  { key: "state", label: "Status", sort: (a, b) => STATES.indexOf(a.State) - STATES.indexOf(b.State) },
  { key: "heartbeat", label: "Last heartbeat", sort: (a, b) => (lastContact(a) ?? -1) - (lastContact(b) ?? -1) },
  { key: "imported", label: "Imported services", title: "Services this cluster imports from the peer" },
  { key: "exported", label: "Exported services", title: "Services this cluster exports to the peer" },
  { key: "actions", label: "Actions" },
];

export function peeringsView(main) {
  const view = { peerings: null, fetchedAt: 0, error: null, retryIn: 0, sort: "name", ascending: true, staleKey: "" };
  const search = h("input", { id: "peer-search", type: "search", autocomplete: "off", spellcheck: "false", "data-key": "search" });
  const status = h("select", { id: "peer-status", "data-key": "status" },
    h("option", { value: "" }, "All"), STATES.map((s) => h("option", { value: s }, s)));
  const count = h("p", { class: "muted", id: "peer-count", "aria-live": "polite" });
  const live = h("p", { class: "live", id: "live-status" });
  const results = h("div", { id: "peerings-results" });
  search.addEventListener("input", render);
  status.addEventListener("change", render);

  main.append(
    h("div", { class: "page-head" },
      h("h1", { tabindex: "-1" }, "Peers"),
      h("a", { class: "button primary", href: "/ui/add-peer" }, "Add peer connection"),
    ),
    h("p", { class: "lede" }, "Cluster peerings of partition ", h("code", {}, prefs.partition || "default"), "."),
    h("div", { class: "filters", role: "search", "aria-label": "Filter peers" },
      h("div", { class: "field" }, h("label", { for: "peer-search" }, "Search by name"), search),
      h("div", { class: "field" }, h("label", { for: "peer-status" }, "Status"), status),
    ),
    count, live, results,
  );

  const poll = new LivePoll("/v1/peerings", {
    onData(data, index, fetchedAt) {
      Object.assign(view, { peerings: Array.isArray(data) ? data : [], fetchedAt, error: null });
      render();
    },
    onError: retryingOnError(view, live, render),
  });
  poll.start();

  function shown() {
    const text = search.value.trim().toLowerCase();
    const rows = view.peerings.filter((p) => (!text || p.Name.toLowerCase().includes(text)) && (!status.value || p.State === status.value));
    const column = COLUMNS.find((c) => c.key === view.sort);
    rows.sort((a, b) => (column.sort(a, b) || a.Name.localeCompare(b.Name)) * (view.ascending ? 1 : -1));
    return rows;
  }

  function render() {
    if (view.error) {
      live.textContent = pausedText(view.retryIn);
    } else {
      live.textContent = view.peerings ? "Live: changes show as they happen." : "Loading…";
    }
    if (view.peerings === null) {
      replaceContent(results, view.error ? errorBox(view.error, "listing peerings") : null);
      return;
    }
    const problem = view.error ? errorBox(view.error, "listing peerings") : null;
    if (view.peerings.length === 0) {
      count.textContent = "";
      replaceContent(results, problem, h("div", { class: "empty" },
        h("h2", {}, "There are no peering connections."),
        h("p", {}, "Peer this cluster with another: generate a token here and establish the peering there. ",
          h("a", { href: "/ui/add-peer" }, "Add a peer connection"), " or read the ", h("a", { href: "/docs" }, "API docs"), "."),
      ));
      view.staleKey = "";
      return;
    }
    const rows = shown();
    count.textContent = rows.length === view.peerings.length
      ? `${rows.length} peering${rows.length === 1 ? "" : "s"}`
      : `${rows.length} of ${view.peerings.length} peerings shown`;
    const states = rows.map((p) => staleness(p, view.fetchedAt));
    view.staleKey = staleKey(view.peerings, view.fetchedAt);
    replaceContent(results, problem, rows.length ? table(rows, states) : h("p", { class: "empty" }, "No peering matches the filter."));
  }

  function table(rows, states) {
    return h("table", { class: "table" },
      h("caption", { class: "visually-hidden" }, "Peerings, with their status, last heartbeat, service counts and actions"),
      h("thead", {}, h("tr", {}, COLUMNS.map(header))),
      h("tbody", {}, rows.map((p, i) => row(p, states[i]))),
    );
  }

  function header(column) {
    if (!column.sort) return h("th", { scope: "col", title: column.title }, column.label);
    const active = view.sort === column.key;
    return h("th", { scope: "col", "aria-sort": active ? (view.ascending ? "ascending" : "descending") : null },
      h("button", {
        type: "button", class: "sort", "data-key": `sort-${column.key}`,
        onclick: () => {
          view.ascending = active ? !view.ascending : true;
          view.sort = column.key;
          render();
        },
      }, column.label, h("span", { "aria-hidden": "true", class: "sort-mark" }, active ? (view.ascending ? " ▲" : " ▼") : "")));
  }

  function row(p, stale) {
    const deleting = Boolean(p.DeletedAt);
    const actions = [];
    if (!deleting) {
      if (!isDialer(p)) {
        actions.push(h("button", { type: "button", class: "button small", "data-key": `regenerate-${p.Name}`, onclick: () => regenerateDialog(p) },
          "Regenerate token", h("span", { class: "visually-hidden" }, ` for ${p.Name}`)));
      }
      actions.push(h("button", { type: "button", class: "button small danger", "data-key": `delete-${p.Name}`, onclick: () => deleteDialog(p) },
        "Delete", h("span", { class: "visually-hidden" }, ` ${p.Name}`)));
    }
    return h("tr", { "data-peer": p.Name, "data-state": p.State },
      h("th", { scope: "row" }, h("a", { href: consolePath(p.Name), "data-key": `view-${p.Name}` }, p.Name),
        p.Remote && p.Remote.Datacenter ? h("span", { class: "muted small" }, ` ${p.Remote.Datacenter}`) : null),
      h("td", {}, badge(p), deleting ? h("span", { class: "muted small" }, " being removed") : null),
      h("td", {}, timeAgo(p.StreamStatus && p.StreamStatus.LastHeartbeat), stale.stale ? [h("br"), staleWarning(stale)] : null),
      h("td", { class: "num" }, String(p.ImportedServiceCount ?? 0)),
      h("td", { class: "num" }, String(p.ExportedServiceCount ?? 0)),
      h("td", {}, actions.length ? h("div", { class: "row-actions" }, actions) : h("span", { class: "muted", title: "Being removed" }, "—")),
    );
  }

  let lastRecheck = 0;
  return {
    cleanup: () => poll.stop(),
    tick() {
      if (!view.peerings) return;
      const now = Date.now();
      const states = view.peerings.map((p) => staleness(p, view.fetchedAt));
      if (states.some((s) => s.recheck) && now - lastRecheck > 1000) {
        lastRecheck = now;
        poll.refresh(); // confirm with a fresh read before warning
      }
      poll.hurry(states.some((s) => s.stale));
      if (staleKey(view.peerings, view.fetchedAt) !== view.staleKey) render();
    },
  };
}

function staleKey(peerings, fetchedAt) {
  return peerings.map((p) => (staleness(p, fetchedAt).stale ? "1" : "0")).join("");
}
