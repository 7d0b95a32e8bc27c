// DOM helpers: elements built from data (text is always set as text, never parsed as HTML),
// announcements for screen readers, copying, ages and exact times, modal dialogs, tabs.

/** h("a", {href: "/ui/"}, "text", child…): an element; `on…` attributes become listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "class") {
      el.className = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the content of `el`, keeping keyboard focus on the element with the same `data-key`. */
export function replaceContent(el, ...children) {
  const active = document.activeElement;
  const inside = Boolean(active && active !== el && el.contains(active));
  const key = inside ? active.getAttribute("data-key") : null;
  el.replaceChildren();
  append(el, children);
  if (!inside) return;
  const again = key ? el.querySelector(`[data-key="${CSS.escape(key)}"]`) : null;
  // the focused control went away (e.g. the Delete button of a peering now being removed): the heading
  const fallback = document.querySelector("main h1");
  if (again) again.focus(); else if (fallback) fallback.focus();
}

/** Say `message` to screen readers (and show it briefly in the status bar). */
export function announce(message) {
  const region = document.getElementById("status");
  if (!region) return;
  region.textContent = "";
  // a fresh text node a moment later makes repeated messages be read again
  setTimeout(() => { region.textContent = message; }, 50);
}

/** Copy `text`: the async clipboard where it exists (secure contexts), else a selected textarea. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = h("textarea", { class: "offscreen", "aria-hidden": "true", readonly: true });
  area.value = text;
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy refused");
}

/** A button that copies `text()` and says so. */
export function copyButton(label, text, key) {
  return h("button", {
    type: "button", class: "button small", "data-key": key,
    onclick: async () => {
      try {
        await copyText(typeof text === "function" ? text() : text);
        announce(`${label}: copied to the clipboard.`);
      } catch {
        announce("Copying was refused by the browser: select the text and copy it by hand.");
      }
    },
  }, "Copy", h("span", { class: "visually-hidden" }, ` ${label}`));
}

/** "12 s ago", "3 min ago"…; `ms` is an age in milliseconds. */
export function formatAge(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 1) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

/** "2026-12-02 03:26:11 UTC" for an RFC 3339 time. */
export function exactTime(text) {
  const t = new Date(text);
  if (Number.isNaN(t.getTime())) return String(text);
  return t.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
}

/**
 * A modal dialog: focus moves into it (the element with `autofocus`, else the first control), Tab
 * stays inside (showModal makes the page behind inert), Escape or a Cancel button closes it, and
 * focus goes back to what opened it. `build(close)` returns the body.
 */
export function openDialog(title, build) {
  const opener = document.activeElement;
  const openerKey = opener ? opener.getAttribute("data-key") : null; // a live update may replace the opener
  const id = `dialog-${Math.random().toString(36).slice(2)}`;
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": `${id}-title` });
  const close = () => dialog.close();
  dialog.append(h("h2", { id: `${id}-title` }, title), build(close));
  dialog.addEventListener("close", () => {
    dialog.remove();
    const again = openerKey ? document.querySelector(`[data-key="${CSS.escape(openerKey)}"]`) : null;
    const back = (opener && opener.isConnected ? opener : again) || document.querySelector("main h1");
    if (back) back.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  const first = dialog.querySelector("[autofocus]") || dialog.querySelector("button, input, textarea, select");
  if (first) first.focus();
  return dialog;
}

/**
 * Tabs as WAI-ARIA describes them: arrow keys, Home and End move between tabs, Tab goes into the panel.
 * `tabs` is [{id, label, render()}]; `onSelect(id)` is told when the user picks one (to keep it in the address).
 */
export function tabSet(name, tabs, selected, onSelect) {
  const list = h("div", { role: "tablist", "aria-label": name, class: "tabs" });
  const panel = h("div", { role: "tabpanel", class: "tabpanel", tabindex: "0", "data-key": "tabpanel" });
  const buttons = tabs.map((tab, i) => h("button", {
    type: "button", role: "tab", id: `tab-${tab.id}`, "aria-controls": "tabpanel", "data-key": `tab-${tab.id}`,
    onclick: () => choose(i, false, true),
    onkeydown: (event) => {
      const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      choose((moves[event.key] + tabs.length) % tabs.length, true, true);
    },
  }, tab.label));
  panel.id = "tabpanel";
  let current = Math.max(0, tabs.findIndex((tab) => tab.id === selected));
  function choose(i, focus, chosen) {
    current = i;
    buttons.forEach((button, j) => {
      button.setAttribute("aria-selected", String(j === i));
      button.tabIndex = j === i ? 0 : -1;
    });
    panel.setAttribute("aria-labelledby", `tab-${tabs[i].id}`);
    replaceContent(panel, tabs[i].render());
    if (focus) buttons[i].focus();
    if (chosen && onSelect) onSelect(tabs[i].id);
  }
  list.append(...buttons);
  const root = h("div", { class: "tabset" }, list, panel);
  choose(current, false, false);
  return { root, refresh: () => replaceContent(panel, tabs[current].render()) };
}
