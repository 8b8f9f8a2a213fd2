// Small helpers shared by the dashboard's sections.

import { icons } from "./icons.js";

/** Escape text for interpolation into HTML markup (element content and quoted attributes). */
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** A short, polite status message at the bottom of the screen. */
export function toast(message, { tone = "" } = {}) {
  for (const old of document.querySelectorAll(".toast")) old.remove();
  const el = document.createElement("div");
  el.className = tone ? `toast toast-${tone}` : "toast";
  el.setAttribute("role", "status");
  el.textContent = message;
  document.body.appendChild(el);
  setTimeout(() => el.remove(), 4000);
}

const UNITS = [
  ["year", 31536000],
  ["month", 2592000],
  ["week", 604800],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
];

let rtf = null;

/** "5 minutes ago", "in 2 hours", "just now" for an epoch-seconds time (or null → ""). */
export function relativeTime(epochSeconds, now = Date.now()) {
  if (epochSeconds === null || epochSeconds === undefined || Number.isNaN(Number(epochSeconds))) return "";
  const seconds = Math.round(Number(epochSeconds) - now / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return seconds <= 0 ? "just now" : "in a few seconds";
  if (!rtf) rtf = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
  for (const [unit, size] of UNITS) {
    if (abs >= size * 0.95 || unit === "minute") {
      return rtf.format(Math.round(seconds / size), unit);
    }
  }
  return "";
}

/** An absolute, locale-formatted date and time for a tooltip. */
export function absoluteTime(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "";
  const date = new Date(Number(epochSeconds) * 1000);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Seconds → "mm:ss" (never negative). */
export function mmss(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** A user's avatar (GitHub image, or their initial when there is none or it fails to load). */
export function avatarMarkup(user, { size = "", testid = "user-avatar" } = {}) {
  const login = (user && user.github_login) || "";
  const cls = size ? ` ${size}` : "";
  const tid = testid ? ` data-testid="${testid}"` : "";
  if (!user || !user.avatar_url) {
    return `<span class="avatar avatar-fallback${cls}"${tid} role="img" aria-label="${esc(login)}">${esc(login.charAt(0).toUpperCase() || "?")}</span>`;
  }
  return `<img class="avatar${cls}"${tid} src="${esc(user.avatar_url)}" alt="${esc(login)}" width="32" height="32" referrerpolicy="no-referrer">`;
}

/** Swap every avatar image under `scope` that fails to load for the initial-letter fallback. */
export function wireAvatarFallbacks(scope) {
  for (const img of scope.querySelectorAll("img.avatar")) {
    img.addEventListener(
      "error",
      () => {
        const span = document.createElement("span");
        span.className = img.className.replace("avatar", "avatar avatar-fallback");
        span.setAttribute("role", "img");
        span.setAttribute("aria-label", img.alt);
        if (img.dataset.testid) span.dataset.testid = img.dataset.testid;
        span.textContent = (img.alt || "?").charAt(0).toUpperCase();
        img.replaceWith(span);
      },
      { once: true },
    );
  }
}

/** Copy text to the clipboard; resolves true when it worked. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the legacy path
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** Epoch seconds from the API's time forms: epoch seconds, epoch milliseconds or an ISO 8601 string. */
export function toEpochSeconds(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value > 1e12 ? value / 1000 : value;
  if (/^\d+(\.\d+)?$/.test(String(value))) return toEpochSeconds(Number(value));
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : ms / 1000;
}

/** A short date ("Mar 3, 2025") for an API time. */
export function shortDate(value) {
  const s = toEpochSeconds(value);
  if (s === null) return "—";
  return new Date(s * 1000).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

// ---------------------------------------------------------------------------
// DOM building (server data only ever lands in textContent and attributes)
// ---------------------------------------------------------------------------

/**
 * Build an element: el("p", { class: "x", "data-testid": "y" }, "text", node, [more]).
 * Strings become text nodes (never parsed as HTML); null/false/undefined children and attributes are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** One of icons.js's static SVGs as a node (trusted markup, never server data). */
export function icon(name) {
  const template = document.createElement("template");
  template.innerHTML = icons[name] || "";
  return template.content.firstElementChild || document.createTextNode("");
}

/** A copy button's click: copy `text`, say "Copied" (or "Press Ctrl+C" after `onFail()`), reset after 2 s. */
export async function copyFromButton(button, text, { onFail } = {}) {
  const ok = await copyText(text);
  if (!ok && onFail) onFail();
  button.classList.toggle("is-copied", ok);
  button.replaceChildren(icon(ok ? "check" : "copy"), el("span", {}, ok ? "Copied" : "Press Ctrl+C"));
  clearTimeout(button._copyTimer);
  button._copyTimer = setTimeout(() => {
    if (!button.isConnected) return;
    button.classList.remove("is-copied");
    button.replaceChildren(icon("copy"), el("span", {}, "Copy"));
  }, 2000);
  return ok;
}

/**
 * A modal that confirms a destructive action (unlink a machine, disconnect a provider).
 * - `testid`: "unlink" → data-testid unlink-dialog, unlink-cancel, unlink-confirm;
 * - `description`: children of the paragraph that describes the dialog; `extra`: an optional node after it;
 * - `action()`: does the work. Resolving with nothing closes the dialog; resolving with a string keeps it
 *   open and shows the string as the error (an exception shows a generic one);
 * - focus returns to `trigger`, or to `fallbackFocus()` when the trigger is gone.
 */
export function confirmDialog({ id, testid, iconName = "unlink", title, description, extra = null, cancelLabel,
  confirmLabel, trigger = null, fallbackFocus = null, action }) {
  const old = document.getElementById(id);
  if (old) old.remove();
  const cancel = el("button", { type: "submit", value: "cancel", class: "btn", "data-testid": `${testid}-cancel` }, cancelLabel);
  const confirm = el("button", { type: "button", class: "btn btn-danger", "data-testid": `${testid}-confirm` },
    icon(iconName), el("span", {}, confirmLabel));
  const errorEl = el("p", { class: "pv-dialog-error", role: "alert", hidden: true });
  const dialog = el("dialog", { class: "modal", id, "data-testid": `${testid}-dialog`,
    "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-desc` },
    el("form", { method: "dialog", class: "modal-body" },
      el("div", { class: "modal-icon modal-icon-danger" }, icon(iconName)),
      el("h2", { id: `${id}-title` }, title),
      el("p", { id: `${id}-desc` }, description),
      extra,
      errorEl,
      el("div", { class: "modal-actions" }, cancel, confirm)));
  document.body.appendChild(dialog);
  let busy = false;
  dialog.addEventListener("cancel", (event) => {
    if (busy) event.preventDefault();
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    const next = trigger && trigger.isConnected ? trigger : fallbackFocus && fallbackFocus();
    if (next) next.focus({ preventScroll: true });
  });
  confirm.addEventListener("click", async () => {
    busy = true;
    confirm.disabled = true;
    confirm.setAttribute("aria-busy", "true");
    errorEl.hidden = true;
    let problem;
    try {
      problem = await action();
    } catch {
      problem = "Something went wrong. Please try again.";
    }
    busy = false;
    confirm.disabled = false;
    confirm.removeAttribute("aria-busy");
    if (problem) {
      errorEl.textContent = problem;
      errorEl.hidden = false;
    } else if (dialog.open) {
      dialog.close();
    } else {
      dialog.remove();
    }
  });
  if (typeof dialog.showModal === "function") dialog.showModal();
  else dialog.setAttribute("open", "");
  cancel.focus();
  return dialog;
}
