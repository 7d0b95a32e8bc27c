// Pieces the peering screens share: state badges, ages and the stale warning, error alerts, the
// one-time token panel, and the regenerate and delete dialogs.

import { prefs, request, serverNow } from "../api.js";
import { announce, copyButton, exactTime, formatAge, h, openDialog } from "../dom.js";

export const STATES = ["INITIAL", "ACTIVE", "FAILING", "TERMINATED"];

const STATE_HELP = {
  INITIAL: "A token was generated; the peer has not used it yet.",
  ACTIVE: "The peering is established and heartbeats go through.",
  FAILING: "Heartbeats have failed for longer than the heartbeat timeout; the dialer keeps retrying.",
  TERMINATED: "Someone in the other peer may have deleted this peering connection.",
};

export function stateHelp(peering) {
  if (peering.DeletedAt) return "Deleted here: it is removed once the peer has been told (or after a grace period).";
  return STATE_HELP[peering.State] || "";
}

export function badge(peering) {
  const state = String(peering.State || "UNKNOWN");
  return h("span", { class: `badge badge-${state.toLowerCase()}`, title: stateHelp(peering) }, state);
}

/** The dialer (the side that established) knows the peer's addresses; the acceptor generated the token. */
export function isDialer(peering) {
  return Array.isArray(peering.PeerServerAddresses) && peering.PeerServerAddresses.length > 0;
}

export function peeringPath(name) {
  return `/v1/peering/${encodeURIComponent(name)}`;
}

export function consolePath(name) {
  return `/ui/peerings/${encodeURIComponent(name)}`;
}

/** An RFC 3339 time as its age ("12 s ago", kept current by `refreshAges`) with the exact time as a tooltip. */
export function timeAgo(text) {
  if (!text) return h("span", { class: "muted" }, "None yet");
  const at = Date.parse(text);
  if (Number.isNaN(at)) return String(text);
  return h("time", { datetime: text, title: exactTime(text), "data-time": text }, formatAge(serverNow() - at));
}

/** Bring every age on the page up to date (once a second). */
export function refreshAges(root) {
  const now = serverNow();
  for (const el of root.querySelectorAll("time[data-time]")) {
    el.textContent = formatAge(now - Date.parse(el.getAttribute("data-time")));
  }
}

/** The newest time the peer was heard from (heartbeat or any message), in ms, or null. */
export function lastContact(peering) {
  const status = peering.StreamStatus || {};
  const times = [status.LastHeartbeat, status.LastReceive].filter(Boolean).map(Date.parse).filter((t) => !Number.isNaN(t));
  return times.length ? Math.max(...times) : null;
}

/**
 * Whether an ACTIVE peering has gone quiet: its last heartbeat or receipt is older than the threshold
 * of the Settings page, or there is none. Heartbeats do not change a peering's index, so a blocking
 * query does not bring them: when the copy we have would turn stale, `recheck` asks for a fresh read
 * and the warning shows only once a read made after the threshold confirms it.
 */
export function staleness(peering, fetchedAt, now = serverNow()) {
  if (peering.State !== "ACTIVE") return { stale: false, recheck: false };
  const limit = prefs.staleAfter * 1000;
  const last = lastContact(peering);
  if (last === null) return { stale: true, recheck: false, text: "Nothing heard from the peer yet" };
  if (now - last <= limit) return { stale: false, recheck: false };
  if (fetchedAt - last > limit) return { stale: true, recheck: false, text: `Nothing heard for more than ${prefs.staleAfter} s` };
  return { stale: false, recheck: true };
}

export function staleWarning(state) {
  return h("span", { class: "warning", "data-stale": "true" }, h("span", { "aria-hidden": "true" }, "⚠ "), `Stale: ${state.text}`);
}

export function pausedText(delay) {
  return `Live updates paused: trying again in ${Math.max(1, Math.round(delay / 1000))} s.`;
}

/** A LivePoll `onError` for a view holding `error` and `retryIn`: the same failure again (a retry) only
 * updates the status line `live`, so the alert is not re-announced; a new one re-renders. */
export function retryingOnError(view, live, render) {
  return (err, delay) => {
    const again = view.error && view.error.status === err.status && view.error.message === err.message;
    Object.assign(view, { error: err, retryIn: delay });
    if (again) live.textContent = pausedText(delay); else render();
  };
}

/** An alert for a failed call; a denied one names the permission that is missing. */
export function errorBox(err, doing) {
  const parts = [];
  if (err.permission) {
    const [resource, level] = err.permission.split(":");
    const rule = ruleFor(resource, level, err);
    const scope = err.anyService ? " on any service" : err.resourceName === null ? "" : [" on ", h("code", {}, err.resourceName)];
    parts.push(
      h("p", { class: "alert-title" }, `Permission denied: ${doing} needs `, h("code", {}, err.permission), scope, "."),
      h("p", {}, prefs.token ? "The ACL token in use lacks it." : "No ACL token is set, and the anonymous token lacks it.",
        " Use a token whose policy grants it (for example ", h("code", {}, rule), ") on the ",
        h("a", { href: "/ui/settings" }, "Settings page"), "."),
      h("p", { class: "muted" }, err.message),
    );
  } else if (err.unknownToken) {
    parts.push(
      h("p", { class: "alert-title" }, "The ACL token is not known (ACL not found)."),
      h("p", {}, "It may have expired or been deleted. Enter a valid one on the ", h("a", { href: "/ui/settings" }, "Settings page"), "."),
    );
  } else if (err.status === 0) {
    parts.push(h("p", { class: "alert-title" }, "The service cannot be reached."), h("p", {}, "It may be restarting."));
  } else {
    parts.push(h("p", { class: "alert-title" }, `${doing[0].toUpperCase()}${doing.slice(1)} failed (${err.status}):`), h("p", {}, err.message));
  }
  return h("div", { class: "alert", role: "alert" }, parts);
}

/** A policy rule that grants what a 403 says is missing, as Consul's policies write it. */
function ruleFor(resource, level, err) {
  // imported rows (?peer=): service:write on any service, or read on every service and node (SPEC §14)
  if (err.anyService) return 'service_prefix "" { policy = "read" } with node_prefix "" { policy = "read" }';
  if (err.resourceName !== null) return `${resource} "${err.resourceName}" { policy = "${level}" }`;
  if (resource === "service" || resource === "node") return `${resource}_prefix "" { policy = "${level}" }`;
  return `${resource} = "${level}"`;
}

/** The token, shown once, with a copy button and what to do next; `heading` fits where it is shown. */
export function tokenPanel(name, token, heading = "h2") {
  return h("section", { class: "token-panel", "aria-labelledby": "token-title" },
    h(heading, { id: "token-title" }, `Token for peer "${name}"`),
    h("label", { for: "token-output" }, "Peering token"),
    h("textarea", { id: "token-output", readonly: true, rows: "5", spellcheck: "false", "data-token": "true" }, token),
    h("div", { class: "actions" }, copyButton("peering token", token, "copy-token")),
    h("ol", { class: "steps" },
      h("li", {}, h("strong", {}, "Copy the token now."), " It is shown only this once and cannot be viewed again."),
      h("li", {}, "Switch to the console (or the CLI) of the cluster you are peering with."),
      h("li", {}, "There, choose ", h("strong", {}, "Add peer connection → Establish peering"),
        ", name this cluster and paste the token (CLI: ", h("code", {}, "peering establish -name <this cluster> -peering-token <token>"), ")."),
    ),
  );
}

/** Confirm, then issue a new token for an acceptor peering; the previous unused token stops working. */
export function regenerateDialog(peering) {
  openDialog(`Regenerate token for ${peering.Name}`, (close) => {
    const body = h("div", {});
    const message = h("div", {});
    const go = h("button", {
      type: "button", class: "button primary",
      onclick: async () => {
        go.disabled = true;
        try {
          const { data } = await request("POST", "/v1/peering/token", { body: { PeerName: peering.Name } });
          body.replaceChildren(tokenPanel(peering.Name, data.PeeringToken, "h3"),
            h("div", { class: "actions" }, h("button", { type: "button", class: "button", onclick: close }, "Done")));
          announce(`A new token for ${peering.Name} was generated.`);
          body.querySelector("textarea").focus();
        } catch (err) {
          go.disabled = false;
          message.replaceChildren(errorBox(err, "regenerating a token"));
        }
      },
    }, "Regenerate token");
    body.append(
      h("p", {}, "A new one-time token replaces the previous one: a token not used yet stops working. An established link is not disturbed."),
      message,
      h("div", { class: "actions" }, h("button", { type: "button", class: "button", autofocus: true, onclick: close }, "Cancel"), go),
    );
    return body;
  });
}

/** Confirm, then delete; `done()` runs after the service accepted it. */
export function deleteDialog(peering, done) {
  openDialog(`Delete peering ${peering.Name}?`, (close) => {
    const message = h("div", {});
    const go = h("button", {
      type: "button", class: "button danger",
      onclick: async () => {
        go.disabled = true;
        try {
          await request("DELETE", peeringPath(peering.Name));
          close();
          announce(`Peering ${peering.Name} deleted; the peer is being told.`);
          if (done) done();
        } catch (err) {
          go.disabled = false;
          message.replaceChildren(errorBox(err, "deleting a peering"));
        }
      },
    }, "Delete");
    return h("div", {},
      h("p", {}, `The peering turns TERMINATED, the other cluster is told (its side turns TERMINATED too), and it is removed. This cannot be undone.`),
      message,
      h("div", { class: "actions" }, h("button", { type: "button", class: "button", autofocus: true, onclick: close }, "Cancel"), go),
    );
  });
}
