// Small helpers shared by the dashboard's sections.

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
