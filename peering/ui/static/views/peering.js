// One peering: every field of the API's peering object, its stream status, imported and exported
// services (each linking to its page), and (on the dialer) the peer's addresses and CA with copy
// buttons. Kept live by one blocking query; a 404 keeps blocking, so the page shows the peering being
// removed (or coming back).

import { LivePoll } from "../api.js";
import { copyButton, exactTime, h, replaceContent, tabSet } from "../dom.js";
import {
  badge, deleteDialog, errorBox, pausedText, isDialer, peeringPath, regenerateDialog, retryingOnError, staleWarning, staleness,
  stateHelp, timeAgo,
} from "./common.js";
import { servicePath } from "./health.js";

export function peeringView(main, match, url) {
  const name = decodeURIComponent(match[1]);
  const view = { peering: undefined, fetchedAt: 0, error: null, retryIn: 0, tab: url.searchParams.get("tab") || "imported", stale: false };
  const content = h("div", { id: "peering-detail" });
  const live = h("p", { class: "live", id: "live-status" });
  main.append(
    h("nav", { "aria-label": "Breadcrumb", class: "breadcrumb" },
      h("ol", {}, h("li", {}, h("a", { href: "/ui/peerings" }, "All peers")), h("li", { "aria-current": "page" }, name))),
    content, live,
  );

  const poll = new LivePoll(peeringPath(name), {
    notFound: true,
    onData(data, index, fetchedAt) {
      Object.assign(view, { peering: data, fetchedAt, error: null });
      render();
    },
    onError: retryingOnError(view, live, render),
  });
  poll.start();

  function render() {
    live.textContent = view.error
      ? pausedText(view.retryIn)
      : view.peering === undefined ? "Loading…" : "Live: changes show as they happen.";
    const p = view.peering;
    if (p === undefined) {
      replaceContent(content, h("h1", { tabindex: "-1" }, name), view.error ? errorBox(view.error, "viewing a peering") : null);
      return;
    }
    const problem = view.error ? errorBox(view.error, "viewing a peering") : null;
    if (p === null) {
      replaceContent(content, h("h1", { tabindex: "-1" }, name), problem,
        h("div", { class: "empty", "data-missing": "true" },
          h("h2", {}, `Peering not found for "${name}"`),
          h("p", {}, "It does not exist in this partition, or it was deleted and removed. ", h("a", { href: "/ui/peerings" }, "Back to all peers"), ".")));
      return;
    }
    const stale = staleness(p, view.fetchedAt);
    view.stale = stale.stale;
    replaceContent(content,
      h("div", { class: "page-head" },
        h("h1", { tabindex: "-1" }, p.Name, " ", badge(p)),
        h("div", { class: "actions" }, actions(p))),
      stale.stale ? h("p", { class: "banner warning-banner" }, staleWarning(stale),
        " The state says ACTIVE, but the peer has not been heard from: the link may be down without the state showing it yet.") : null,
      problem,
      summary(p),
      details(p),
      tabs(p).root,
    );
  }

  function actions(p) {
    if (p.DeletedAt) return h("span", { class: "muted" }, "Being removed");
    return [
      isDialer(p) ? null : h("button", { type: "button", class: "button", "data-key": "regenerate", onclick: () => regenerateDialog(p) }, "Regenerate token"),
      h("button", { type: "button", class: "button danger", "data-key": "delete", onclick: () => deleteDialog(p) }, "Delete"),
    ];
  }

  function summary(p) {
    const s = p.StreamStatus || {};
    return h("section", { class: "card", "aria-labelledby": "summary-title" },
      h("h2", { id: "summary-title" }, "Status"),
      h("dl", { class: "summary" },
        item("Status", [badge(p), h("span", { class: "muted small" }, ` ${stateHelp(p)}`)]),
        item("Latest heartbeat", timeAgo(s.LastHeartbeat)),
        item("Latest receipt", timeAgo(s.LastReceive)),
        item("Latest send", timeAgo(s.LastSend)),
      ));
  }

  function details(p) {
    const remote = p.Remote || {};
    const meta = Object.entries(p.Meta || {});
    return h("section", { class: "card", "aria-labelledby": "details-title" },
      h("h2", { id: "details-title" }, "Details"),
      h("dl", { class: "details" },
        item("ID", h("code", {}, p.ID)),
        item("Partition", p.Partition),
        item("Role", isDialer(p) ? "Dialer: this cluster established the peering" : "Acceptor: this cluster generated the token"),
        item("Remote datacenter", remote.Datacenter || h("span", { class: "muted" }, "Not known yet")),
        item("Remote partition", remote.Partition || h("span", { class: "muted" }, "Not known yet")),
        p.PeerID ? item("Peer ID", h("code", {}, p.PeerID)) : null,
        p.PeerServerName ? item("Peer server name", h("code", {}, p.PeerServerName)) : null,
        p.DeletedAt ? item("Deleted at", h("time", { datetime: p.DeletedAt }, exactTime(p.DeletedAt))) : null,
        item("Create index", String(p.CreateIndex)),
        item("Modify index", String(p.ModifyIndex)),
        item("Meta", meta.length
          ? h("ul", { class: "plain" }, meta.map(([k, v]) => h("li", {}, h("code", {}, k), " = ", h("code", {}, v))))
          : h("span", { class: "muted" }, "None")),
      ));
  }

  function tabs(p) {
    const s = p.StreamStatus || {};
    const list = [
      { id: "imported", label: `Imported services (${p.ImportedServiceCount ?? 0})`, render: () => names(s.ImportedServices, p.Name, "No services are imported from this peer.") },
      { id: "exported", label: `Exported services (${p.ExportedServiceCount ?? 0})`, render: () => [
        names(s.ExportedServices, "", "No services are exported to this peer."),
        h("p", { class: "small" }, h("a", { href: "/ui/exports" }, "Manage exports"), " (the exported-services entry)."),
      ] },
    ];
    if (isDialer(p)) {
      list.push({ id: "addresses", label: "Addresses", render: () => addresses(p) });
      list.push({ id: "ca", label: "Peer CA", render: () => certificates(p) });
    }
    return tabSet("Peering details", list, view.tab, (id) => {
      view.tab = id;
      const next = new URL(window.location.href);
      next.searchParams.set("tab", id);
      if (next.href !== window.location.href) window.history.replaceState(null, "", next);
    });
  }

  /** Service names linking to their page (the imported copy, `?peer=`, for imports). */
  function names(values, peer, empty) {
    const found = Array.isArray(values) ? values : [];
    if (!found.length) return h("p", { class: "muted" }, empty);
    return h("ul", { class: "services", "data-services": peer ? "imported" : "exported" },
      found.map((n) => h("li", {}, h("a", { href: servicePath(n, peer) }, n))));
  }

  function addresses(p) {
    return h("div", {},
      h("p", {}, "The peer's server addresses, which this cluster dials:"),
      h("ul", { class: "addresses" }, p.PeerServerAddresses.map((a, i) => h("li", {}, h("code", {}, a), " ", copyButton(`address ${a}`, a, `copy-address-${i}`)))));
  }

  function certificates(p) {
    const pems = p.PeerCAPems || [];
    if (!pems.length) return h("p", { class: "muted" }, "None");
    return h("div", {}, pems.map((pem, i) => h("div", { class: "pem" },
      h("pre", { tabindex: "0", "aria-label": `Peer CA certificate ${i + 1}` }, pem),
      copyButton(`CA certificate ${i + 1}`, pem, `copy-ca-${i}`))));
  }

  let lastRecheck = 0;
  return {
    cleanup: () => poll.stop(),
    tick() {
      const p = view.peering;
      if (!p) return;
      const s = staleness(p, view.fetchedAt);
      if (s.recheck && Date.now() - lastRecheck > 1000) {
        lastRecheck = Date.now();
        poll.refresh();
      }
      poll.hurry(s.stale);
      if (s.stale !== view.stale) render();
    },
  };
}

function item(term, value) {
  return h("div", { class: "item" }, h("dt", {}, term), h("dd", {}, value));
}
