// Settings kept in this browser: the ACL token (sent as X-Consul-Token), the partition the pages
// show, and after how long a quiet ACTIVE peering is flagged as stale.

import { DEFAULT_STALE_AFTER, events, prefs, request, serverInfo } from "../api.js";
import { announce, h, replaceContent } from "../dom.js";
import { errorBox } from "./common.js";

export function settingsView(main) {
  const token = h("input", { id: "acl-token", type: "password", autocomplete: "off", spellcheck: "false", "aria-describedby": "acl-token-hint" });
  const about = h("div", { id: "token-info", "aria-live": "polite" });
  const partition = h("input", { id: "partition", type: "text", autocomplete: "off", spellcheck: "false", "aria-describedby": "partition-hint" });
  const staleAfter = h("input", { id: "stale-after", type: "number", min: "1", step: "1", inputmode: "numeric", "aria-describedby": "stale-after-hint" });
  const saved = h("p", { class: "muted", role: "status", id: "display-saved" });
  token.value = prefs.token;
  partition.value = prefs.partition;
  staleAfter.value = String(prefs.staleAfter);

  const tokenForm = h("form", { novalidate: true, "aria-labelledby": "acl-title" },
    h("div", { class: "field" },
      h("label", { for: "acl-token" }, "ACL token (SecretID)"),
      h("p", { class: "hint", id: "acl-token-hint" }, "Kept in this browser's local storage and sent as the X-Consul-Token header with every request to this service, and nowhere else."),
      token),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "button primary" }, "Save token"),
      h("button", {
        type: "button", class: "button",
        onclick: () => {
          prefs.token = "";
          token.value = "";
          events.dispatchEvent(new Event("token"));
          announce("The ACL token was removed from this browser.");
          describe();
        },
      }, "Forget token")),
    about,
  );
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    prefs.token = token.value;
    events.dispatchEvent(new Event("token"));
    announce(prefs.token ? "The ACL token was saved in this browser." : "No ACL token is set.");
    describe();
  });

  const displayForm = h("form", { novalidate: true, "aria-labelledby": "display-title" },
    h("div", { class: "field" },
      h("label", { for: "partition" }, "Partition"),
      h("p", { class: "hint", id: "partition-hint" }, "The admin partition the pages show; empty means the server's default one."),
      partition),
    h("div", { class: "field" },
      h("label", { for: "stale-after" }, "Stale warning after (seconds)"),
      h("p", { class: "hint", id: "stale-after-hint" }, `An ACTIVE peering whose last heartbeat or receipt is older than this is flagged as stale (default ${DEFAULT_STALE_AFTER}). Set it above the clusters' heartbeat interval.`),
      staleAfter),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button primary" }, "Save settings")),
    saved,
  );
  displayForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const seconds = Number(staleAfter.value);
    if (!(Number.isFinite(seconds) && seconds > 0)) {
      saved.textContent = "The stale warning needs a number of seconds above 0.";
      staleAfter.setAttribute("aria-invalid", "true");
      staleAfter.focus();
      return;
    }
    staleAfter.removeAttribute("aria-invalid");
    prefs.staleAfter = seconds;
    prefs.partition = partition.value;
    saved.textContent = "Settings saved in this browser.";
  });

  main.append(
    h("h1", { tabindex: "-1" }, "Settings"),
    h("section", { class: "card", "aria-labelledby": "acl-title" }, h("h2", { id: "acl-title" }, "ACL token"), tokenForm),
    h("section", { class: "card", "aria-labelledby": "display-title" }, h("h2", { id: "display-title" }, "Display"), displayForm),
  );

  /** What the service says: whether ACLs are on (its header on any answer), then about the token in use. */
  async function describe() {
    try {
      await request("GET", "/v1/status/leader");
      if (serverInfo.aclDefaultPolicy === null) {
        replaceContent(about, h("p", { class: "notice" }, "ACLs are off on this cluster: every request is allowed and no token is needed."));
        return;
      }
      if (!prefs.token) {
        replaceContent(about, h("p", { class: "notice" },
          `ACLs are on (default policy: ${serverInfo.aclDefaultPolicy}) and no token is set: requests use the anonymous token.`));
        return;
      }
      const { data } = await request("GET", "/v1/acl/token/self");
      const policies = (data.Policies || []).map((p) => p.Name).join(", ") || "none";
      replaceContent(about, h("div", { class: "notice ok" },
        h("p", { class: "alert-title" }, `ACLs are on (default policy: ${serverInfo.aclDefaultPolicy}). The token in use is valid.`),
        h("dl", { class: "details" },
          item("AccessorID", h("code", {}, data.AccessorID)),
          item("Description", data.Description || h("span", { class: "muted" }, "None")),
          item("Policies", policies),
          data.ExpirationTime ? item("Expires", data.ExpirationTime) : null)));
    } catch (err) {
      replaceContent(about, errorBox(err, "reading the token in use"));
    }
  }
  describe();
  return { cleanup() {} };
}

function item(term, value) {
  return h("div", { class: "item" }, h("dt", {}, term), h("dd", {}, value));
}
