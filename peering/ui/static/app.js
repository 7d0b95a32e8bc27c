// The console's router: one page, addresses under /ui/, the history API, one view at a time (each
// view holds at most one blocking query and stops it when it is left).

import { events, prefs, serverInfo } from "./api.js";
import { h } from "./dom.js";
import { addView } from "./views/add.js";
import { refreshAges } from "./views/common.js";
import { exportsView } from "./views/exports.js";
import { peeringView } from "./views/peering.js";
import { peeringsView } from "./views/peerings.js";
import { serviceView } from "./views/service.js";
import { servicesView } from "./views/services.js";
import { settingsView } from "./views/settings.js";

// The main navigation: peerings (SPEC §16), the catalog's services (§13), exports (§14), settings.
const NAV = [
  { id: "peers", label: "Peers", href: "/ui/peerings" },
  { id: "services", label: "Services", href: "/ui/services" },
  { id: "exports", label: "Exports", href: "/ui/exports" },
  { id: "settings", label: "Settings", href: "/ui/settings" },
];

const ROUTES = [
  { pattern: /^\/ui\/?$/, redirect: "/ui/peerings" },
  { pattern: /^\/ui\/peerings\/?$/, nav: "peers", title: () => "Peers", view: peeringsView },
  { pattern: /^\/ui\/peerings\/([^/]+)\/?$/, nav: "peers", title: (m) => decodeURIComponent(m[1]), view: peeringView },
  { pattern: /^\/ui\/add-peer\/?$/, nav: "peers", title: () => "Add peer connection", view: addView },
  { pattern: /^\/ui\/services\/?$/, nav: "services", title: () => "Services", view: servicesView },
  { pattern: /^\/ui\/services\/([^/]+)\/?$/, nav: "services", title: (m) => decodeURIComponent(m[1]), view: serviceView },
  { pattern: /^\/ui\/exports\/?$/, nav: "exports", title: () => "Exports", view: exportsView },
  { pattern: /^\/ui\/settings\/?$/, nav: "settings", title: () => "Settings", view: settingsView },
];

const main = document.getElementById("main");
let current = null;

function notFound(root) {
  root.append(h("h1", { tabindex: "-1" }, "Page not found"),
    h("p", {}, "The console has no page at this address. ", h("a", { href: "/ui/peerings" }, "Go to the peers"), "."));
  return { cleanup() {} };
}

function render(moveFocus) {
  if (current) current.cleanup();
  current = null;
  const url = new URL(window.location.href);
  let route = null;
  let match = null;
  for (const candidate of ROUTES) {
    match = candidate.pattern.exec(url.pathname);
    if (match) { route = candidate; break; }
  }
  if (route && route.redirect) {
    window.history.replaceState(null, "", route.redirect);
    render(moveFocus);
    return;
  }
  main.replaceChildren();
  current = route ? route.view(main, match, url, navigate) : notFound(main);
  document.title = `${route ? route.title(match) : "Page not found"} · peering console`;
  for (const link of document.querySelectorAll("#nav a")) {
    if (route && link.dataset.nav === route.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (moveFocus) {
    const heading = main.querySelector("h1");
    (heading || main).focus();
  }
}

/** Go to a console address without reloading the page. */
export function navigate(path) {
  window.history.pushState(null, "", path);
  render(true);
}

function ownLink(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return null;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download") || link.getAttribute("href").startsWith("#")) return null;
  const url = new URL(link.href);
  if (url.origin !== window.location.origin || !url.pathname.startsWith("/ui/")) return null;
  return url;
}

function showAcl() {
  const chip = document.getElementById("acl-state");
  const policy = serverInfo.aclDefaultPolicy;
  if (policy === null) {
    chip.textContent = prefs.token ? "ACL token set" : "";
    return;
  }
  chip.textContent = `ACLs on (default ${policy}) · ${prefs.token ? "token set" : "no token"}`;
}

function start() {
  document.getElementById("nav").replaceChildren(...NAV.map((item) =>
    h("li", {}, h("a", { href: item.href, "data-nav": item.id }, item.label))));
  document.addEventListener("click", (event) => {
    const url = ownLink(event);
    if (!url) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", () => render(true));
  events.addEventListener("acl", showAcl);
  events.addEventListener("token", showAcl);
  setInterval(() => {
    refreshAges(main);
    if (current && current.tick) current.tick();
  }, 1000);
  showAcl();
  render(false);
}

start();
