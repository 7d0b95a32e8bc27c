// Health as the catalog reports it (SPEC §13): an instance's status is the precedence summary of its
// node's and its own checks (maintenance > critical > warning > passing, as Consul), a service's is
// the worst of its instances'. Badges always say the status in words, not only in colour.

import { h } from "../dom.js";

export const NODE_MAINTENANCE = "_node_maintenance";
export const SERVICE_MAINTENANCE_PREFIX = "_service_maintenance:";
export const STATUSES = ["maintenance", "critical", "warning", "passing", "none"]; // worst first

const RANK = { none: 0, passing: 1, warning: 2, critical: 3, maintenance: 4 };
const WORDS = { maintenance: "maintenance", critical: "critical", warning: "warning", passing: "passing", none: "no checks" };
const MARKS = { maintenance: "◆", critical: "✕", warning: "!", passing: "✓", none: "○" };

export function isMaintenance(check) {
  const id = String(check.CheckID || "");
  return id === NODE_MAINTENANCE || id.startsWith(SERVICE_MAINTENANCE_PREFIX);
}

/** One check's status for the summary: maintenance checks count as maintenance, unknown words as critical. */
export function checkStatus(check) {
  if (isMaintenance(check)) return "maintenance";
  const status = String(check.Status || "");
  return ["passing", "warning", "critical"].includes(status) ? status : "critical";
}

/** The worst of `statuses` ("none" for an empty list). */
export function worst(statuses) {
  let found = "none";
  for (const status of statuses) if (RANK[status] > RANK[found]) found = status;
  return found;
}

/** An entry of /v1/health/service/{name}: the summary of all its checks (node-level ones included). */
export function instanceStatus(entry) {
  return worst((entry.Checks || []).map(checkStatus));
}

/** How many instances are in each status, and the service's overall status. */
export function summarize(entries) {
  const counts = { maintenance: 0, critical: 0, warning: 0, passing: 0, none: 0 };
  for (const entry of entries) counts[instanceStatus(entry)] += 1;
  return { total: entries.length, counts, overall: worst(STATUSES.filter((s) => counts[s] > 0)) };
}

/** A status badge ("✓ passing"); `count` makes it "✓ 2 passing". */
export function healthBadge(status, count = null) {
  const words = count === null ? WORDS[status] : `${count} ${WORDS[status]}`;
  return h("span", { class: `health health-${status}`, "data-health": status },
    h("span", { "aria-hidden": "true" }, `${MARKS[status]} `), words);
}

/** The instance counts per status as badges, worst first; "No instances" when there are none. */
export function healthCounts(summary) {
  if (summary.total === 0) return h("span", { class: "muted" }, "No instances");
  return h("span", { class: "health-counts" },
    STATUSES.filter((s) => summary.counts[s] > 0).map((s) => healthBadge(s, summary.counts[s])));
}

/** "Imported from east" as Consul labels imported services. */
export function importedLabel(peer) {
  return h("span", { class: "imported-label", "data-peer": peer }, "Imported from ", h("strong", {}, peer));
}

/** The console address of a service's page (its imported copy with `peer`). */
export function servicePath(name, peer) {
  const path = `/ui/services/${encodeURIComponent(name)}`;
  return peer ? `${path}?peer=${encodeURIComponent(peer)}` : path;
}

/** The health API address of a service (the console calls it with `?peer=` for imports). */
export function healthPath(name) {
  return `/v1/health/service/${encodeURIComponent(name)}`;
}
