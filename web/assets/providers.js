// The Providers section (/dashboard/providers, SPEC C2 and C13): one card per provider with its
// connection health, and the three ways to connect, each on the provider's own terms:
// - api_key: validated by the cloud with a non-billable call, then kept in the encrypted vault;
// - device_flow (RFC 8628): a one-time code + QR, approved in the browser, polled until decided;
// - workspace_login: the provider's own CLI login on a linked machine (the cloud never sees the token).
// Every API call goes through api.js (CSRF header, session-expired modal).

import { api } from "./api.js";
import { icons } from "./icons.js";
import { fetchDaemons, PRESENCE, presenceOf } from "./machines.js";
import { absoluteTime, confirmDialog, copyFromButton, el, esc, icon, mmss, relativeTime, toast, toEpochSeconds } from "./ui.js";
import qrcode from "./vendor/qrcode-generator.js";

export const AI_PROVIDER_IDS = ["anthropic", "openai", "google"];
const USABLE = new Set(["valid", "expiring"]);
const WORKSPACE_LOGIN = "workspace_login";

/** GET /api/providers → the list (throws ApiError). */
export async function fetchProviders(options = {}) {
  const data = await api("/api/providers", options);
  return (data && Array.isArray(data.providers) ? data.providers : []).filter((p) => p && p.id);
}

/** True when the provider's connection can be used right now (valid, or valid but expiring soon). */
export function isUsable(provider) {
  return Boolean(provider && USABLE.has(provider.health));
}

// ---------------------------------------------------------------------------
// presentation
// ---------------------------------------------------------------------------

const HEALTH = {
  valid: { label: "Valid", tone: "ok", icon: icons.checkCircle },
  expiring: { label: "Expiring soon", tone: "warn", icon: icons.clock },
  refresh_failed: { label: "Refresh failed", tone: "bad", icon: icons.alert },
  revoked: { label: "Revoked", tone: "bad", icon: icons.xCircle },
  not_connected: { label: "Not connected", tone: "off", icon: icons.minus },
};

const LOGOS = {
  anthropic:
    '<svg viewBox="0 0 24 24" fill="currentColor" aria-hidden="true" focusable="false"><path d="M12 2.5l1.6 6.1 5.9-2.3-4.1 4.9 5.6 3-6.3.3 1 6.2L12 16l-3.7 4.7 1-6.2-6.3-.3 5.6-3-4.1-4.9 5.9 2.3z"/></svg>',
  openai:
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false"><path d="m4 17 6-6-6-6M12 19h8"/></svg>',
  google:
    '<svg viewBox="0 0 24 24" fill="currentColor" aria-hidden="true" focusable="false"><path d="M12 2c.6 5.3 4.7 9.4 10 10-5.3.6-9.4 4.7-10 10-.6-5.3-4.7-9.4-10-10 5.3-.6 9.4-4.7 10-10z"/></svg>',
  github: icons.github,
};

// Where to create a key, and what one looks like (a hint only: the server validates).
const KEY_HELP = {
  anthropic: { placeholder: "sk-ant-api03-…", url: "https://console.anthropic.com/settings/keys", where: "Anthropic Console" },
  openai: { placeholder: "sk-proj-…", url: "https://platform.openai.com/api-keys", where: "OpenAI Platform" },
  google: { placeholder: "AIza…", url: "https://aistudio.google.com/apikey", where: "Google AI Studio" },
};

// The provider CLI a workspace_login runs on the machine: its login command, and how to install it there.
const CLI = {
  anthropic: { name: "Claude Code", login: "claude setup-token", install: "npm install -g @anthropic-ai/claude-code" },
  openai: { name: "Codex", login: "codex login --device-auth", install: "npm install -g @openai/codex" },
  google: { name: "Gemini CLI", login: "gemini", install: "npm install -g @google/gemini-cli" },
};

const METHOD_LABEL = { api_key: "API key", device_flow: "Device login", workspace_login: "Log in on my machine" };

function shortName(provider) {
  // "Claude (Anthropic)" → "Claude" in running text; custom names stay whole.
  return String(provider.display_name || provider.id).replace(/\s*\(.*\)\s*$/, "") || provider.id;
}

function upstreamName(provider) {
  const m = /\(([^)]+)\)/.exec(provider.display_name || "");
  return m ? m[1] : provider.display_name || provider.id;
}

function safeColor(value) {
  return /^#[0-9a-f]{3}([0-9a-f]{3})?$/i.test(String(value || "")) ? value : null;
}

/** Only https links from a machine's prompt are ever rendered as links. */
function safeHttpsUrl(value) {
  try {
    const url = new URL(String(value));
    return url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function selectText(node) {
  if (!node) return;
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

function safeHttpUrl(value) {
  try {
    const url = new URL(String(value), window.location.href);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

function displayUrl(href) {
  return href.replace(/^https?:\/\//, "").replace(/\/$/, "");
}

function logoMarkup(provider) {
  const glyph = LOGOS[provider.id];
  if (glyph) return glyph;
  const letter = esc(String(provider.display_name || provider.id).trim().charAt(0).toUpperCase() || "?");
  return `<span class="pv-logo-letter">${letter}</span>`;
}

function healthBadge(provider) {
  const h = HEALTH[provider.health] || HEALTH.not_connected;
  return `<span class="pv-badge pv-${h.tone}" data-testid="provider-health-${esc(provider.id)}" data-health="${esc(provider.health)}">${h.icon}<span>${esc(h.label)}</span></span>`;
}

function metaItems(provider) {
  const c = provider.connection;
  if (!c) return "";
  const items = [];
  if (c.account) items.push(`<li>${icons.user}<span>Connected as <b>${esc(c.account)}</b></span></li>`);
  if (c.method !== WORKSPACE_LOGIN) {
    items.push(`<li>${c.method === "device_flow" ? icons.link : icons.key}<span>${esc(METHOD_LABEL[c.method] || c.method)}</span></li>`);
  }
  const refreshed = c.last_refreshed_at ?? c.connected_at;
  if (refreshed) {
    const label = c.last_refreshed_at ? "Last refreshed" : "Connected";
    items.push(
      `<li title="${esc(absoluteTime(refreshed))}">${icons.refresh}<span data-rel="${esc(refreshed)}" data-rel-prefix="${label}">${label} ${esc(relativeTime(refreshed))}</span></li>`,
    );
  }
  if (c.expires_at && provider.health !== "revoked") {
    const past = c.expires_at * 1000 <= Date.now();
    const label = past ? "Expired" : "Expires";
    items.push(
      `<li title="${esc(absoluteTime(c.expires_at))}" class="${provider.health === "expiring" ? "is-warn" : ""}">${icons.clock}<span data-rel="${esc(c.expires_at)}" data-rel-prefix="${label}">${label} ${esc(relativeTime(c.expires_at))}</span></li>`,
    );
  }
  return `<ul class="pv-meta">${items.join("")}</ul>`;
}

function problemLine(provider) {
  const name = esc(shortName(provider));
  if (provider.health === "refresh_failed") {
    const reason = provider.connection && provider.connection.failure_reason;
    return `<p class="pv-problem pv-problem-bad" data-testid="provider-reason-${esc(provider.id)}">${icons.alert}<span>We couldn't refresh the ${name} token${
      reason ? `: <code>${esc(reason)}</code>.` : "."
    } Agents can't use ${name} until you reconnect.</span></p>`;
  }
  if (provider.health === "revoked") {
    return `<p class="pv-problem pv-problem-bad">${icons.xCircle}<span>Access to ${name} was revoked at the provider. Reconnect to give your agents access again.</span></p>`;
  }
  if (provider.health === "expiring") {
    return `<p class="pv-problem pv-problem-warn">${icons.clock}<span>This connection expires soon. Reconnect now so your agents keep running without interruption.</span></p>`;
  }
  return "";
}

function actionButtons(provider, open) {
  const id = esc(provider.id);
  const name = esc(provider.display_name);
  const connected = Boolean(provider.connection);
  const needsAttention = ["refresh_failed", "revoked", "expiring"].includes(provider.health);
  const parts = [];
  if (needsAttention) {
    parts.push(
      `<button type="button" class="btn btn-primary btn-sm" data-action="reconnect" data-testid="reconnect-${id}" aria-label="Reconnect ${name}">${icons.refresh}<span>Reconnect</span></button>`,
    );
  } else if (!connected) {
    parts.push(
      `<button type="button" class="btn btn-primary btn-sm" data-action="connect" data-testid="connect-${id}" aria-expanded="${open ? "true" : "false"}" aria-controls="pv-panel-${id}" aria-label="Connect ${name}">${icons.plug}<span>Connect</span></button>`,
    );
  }
  if (connected) {
    parts.push(
      `<button type="button" class="btn btn-ghost btn-sm pv-danger-ghost" data-action="disconnect" data-testid="disconnect-${id}" aria-label="Disconnect ${name}">${icons.unlink}<span>Disconnect</span></button>`,
    );
  }
  return parts.join("");
}

function cardMain(provider, open) {
  const methods = (provider.methods || []).map((m) => `<span class="pv-chip">${esc(METHOD_LABEL[m] || m)}</span>`).join("");
  return `
    <div class="pv-logo" aria-hidden="true">${logoMarkup(provider)}</div>
    <div class="pv-info">
      <div class="pv-title">
        <h2 id="pv-title-${esc(provider.id)}">${esc(provider.display_name || provider.id)}</h2>
        ${healthBadge(provider)}
      </div>
      <p class="pv-desc">${esc(provider.description || "")}</p>
      ${provider.connection ? metaItems(provider) : `<div class="pv-chips" aria-label="Ways to connect">${methods}</div>`}
      ${problemLine(provider)}
    </div>
    <div class="pv-actions">${actionButtons(provider, open)}</div>`;
}

function skeleton() {
  const card = `
    <li class="pv-card pv-skeleton" aria-hidden="true"><div class="pv-main">
      <div class="pv-logo"></div>
      <div class="pv-info"><div class="skeleton-line w-30"></div><div class="skeleton-line w-90"></div><div class="skeleton-line w-60"></div></div>
    </div></li>`;
  return `<ul class="pv-list" aria-busy="true">${card.repeat(4)}</ul>`;
}

function qrSvg(text) {
  let qr = null;
  for (const level of ["M", "L"]) {
    try {
      qr = qrcode(0, level);
      qr.addData(text);
      qr.make();
      break;
    } catch {
      qr = null;
    }
  }
  if (!qr) return "";
  const n = qr.getModuleCount();
  const quiet = 2;
  let d = "";
  for (let r = 0; r < n; r += 1) {
    for (let c = 0; c < n; c += 1) {
      if (qr.isDark(r, c)) d += `M${c + quiet} ${r + quiet}h1v1h-1z`;
    }
  }
  const size = n + quiet * 2;
  return `<svg viewBox="0 0 ${size} ${size}" shape-rendering="crispEdges" aria-hidden="true" focusable="false"><rect width="${size}" height="${size}" fill="#fff"/><path d="${d}" fill="#0b1220"/></svg>`;
}

function errorMessage(err, provider) {
  const code = err && err.code;
  if (code === "INVALID_CREDENTIAL") {
    return "The provider rejected this key. Check that you copied all of it and that it hasn't been revoked.";
  }
  if (code === "UPSTREAM_UNAVAILABLE" || (err && err.status === 503)) {
    return `Couldn't reach ${upstreamName(provider)}, nothing was saved — try again.`;
  }
  if (code === "VALIDATION_FAILED") return (err && err.message) || "That doesn't look right. Check it and try again.";
  if (code === "NETWORK_ERROR") return "We couldn't reach Agent Relay Cloud. Check your connection; nothing was saved.";
  if (err && err.status === 429) return (err && err.body && err.body.error) || "Too many attempts. Wait a minute and try again.";
  return (err && err.body && err.body.error) || "Something went wrong and nothing was saved. Please try again.";
}

// ---------------------------------------------------------------------------
// the page
// ---------------------------------------------------------------------------

/**
 * Render the Providers section into `main`. Returns a cleanup function that stops every timer and
 * poll and aborts requests in flight (called when the user leaves the section).
 */
export function mountProviders(main, { onChange } = {}) {
  const page = new ProvidersPage(main, onChange);
  page.start();
  return () => page.destroy();
}

class ProvidersPage {
  constructor(main, onChange) {
    this.main = main;
    this.onChange = onChange || (() => {});
    this.providers = [];
    this.daemons = null; // GET /api/daemons, once a workspace_login connection needs a machine's name
    this.panels = new Map(); // provider id → panel controller
    this.abort = new AbortController();
    this.destroyed = false;
    this.tick = null;
    this.onClick = (event) => this.handleClick(event);
    this.onSubmit = (event) => this.handleSubmit(event);
  }

  start() {
    this.main.innerHTML = `
      <div class="page-head">
        <div>
          <h1>Providers</h1>
          <p>Give your agents access to Claude, Codex, Gemini and GitHub — each on the provider's own terms.</p>
        </div>
        <div class="pv-summary" data-testid="providers-summary" aria-live="polite"></div>
      </div>
      <div class="pv-body">${skeleton()}</div>
      <section class="pv-trust" aria-labelledby="pv-trust-title">
        <h2 id="pv-trust-title">${icons.shield}<span>How your credentials are handled</span></h2>
        <ul>
          <li>${icons.lock}<span><b>API keys</b> are checked with a non-billable call, then encrypted with a per-user key in your vault. We never show them again.</span></li>
          <li>${icons.machine}<span><b>Subscription logins</b> run the provider's own CLI on your machine. The token stays there and never reaches the cloud.</span></li>
          <li>${icons.unlink}<span><b>Disconnecting</b> revokes the token at the provider where it supports it, then deletes it from the vault.</span></li>
        </ul>
      </section>`;
    this.main.addEventListener("click", this.onClick);
    this.main.addEventListener("submit", this.onSubmit);
    this.load();
    // Keep "5 minutes ago" honest while the page stays open.
    this.tick = setInterval(() => this.refreshRelativeTimes(), 30_000);
  }

  destroy() {
    this.destroyed = true;
    this.abort.abort();
    clearInterval(this.tick);
    for (const panel of this.panels.values()) panel.destroy();
    this.panels.clear();
    this.main.removeEventListener("click", this.onClick);
    this.main.removeEventListener("submit", this.onSubmit);
    const dialog = document.getElementById("pv-disconnect-dialog");
    if (dialog) dialog.remove();
  }

  async load({ quiet = false } = {}) {
    const body = this.main.querySelector(".pv-body");
    let providers;
    try {
      providers = await fetchProviders({ signal: this.abort.signal });
    } catch (err) {
      if (this.destroyed || (err && err.name === "AbortError")) return;
      if (quiet && this.providers.length) return;
      const expired = err && err.code === "SESSION_EXPIRED";
      body.innerHTML = `
        <div class="notice notice-error" role="alert" data-testid="providers-error">
          ${icons.alert}
          <span>${expired ? "Your session expired. Sign in again to manage your providers." : "We couldn't load your providers."}</span>
          ${expired ? "" : `<button type="button" class="btn btn-sm" data-action="reload">${icons.refresh}<span>Retry</span></button>`}
        </div>`;
      return;
    }
    if (this.destroyed) return;
    this.providers = providers;
    this.renderList();
    this.onChange(providers);
    this.loadDaemons();
  }

  renderList() {
    const body = this.main.querySelector(".pv-body");
    const list = body.querySelector("ul.pv-list:not([aria-busy])");
    if (!list) {
      body.innerHTML = this.providers.length
        ? '<ul class="pv-list" aria-label="Providers"></ul>'
        : `<div class="empty pv-empty"><div class="empty-icon">${icons.key}</div><h2>No providers are configured</h2><p class="muted">Ask an administrator to enable a provider for this installation.</p></div>`;
    }
    const ul = body.querySelector("ul.pv-list");
    if (!ul) return;
    const seen = new Set();
    for (const provider of this.providers) {
      seen.add(provider.id);
      let card = ul.querySelector(`[data-provider="${CSS.escape(provider.id)}"]`);
      if (!card) {
        card = document.createElement("li");
        card.className = "pv-card";
        card.dataset.provider = provider.id;
        card.dataset.testid = `provider-card-${provider.id}`;
        card.setAttribute("aria-labelledby", `pv-title-${provider.id}`);
        card.innerHTML = `<div class="pv-main"></div><div class="pv-panel-slot" id="pv-panel-${esc(provider.id)}"></div>`;
        const color = safeColor(provider.color);
        // CSSOM, not a style attribute: allowed under style-src 'self'.
        if (color) card.style.setProperty("--pv-color", color);
        ul.appendChild(card);
      }
      this.renderCard(provider, card);
    }
    for (const card of ul.querySelectorAll("[data-provider]")) {
      if (!seen.has(card.dataset.provider)) card.remove();
    }
    this.renderSummary();
  }

  renderCard(provider, card = this.cardFor(provider.id)) {
    if (!card) return;
    card.dataset.health = provider.health || "not_connected";
    card.querySelector(".pv-main").innerHTML = cardMain(provider, this.panels.has(provider.id));
    const c = provider.connection;
    const meta = card.querySelector(".pv-meta");
    if (c && c.method === WORKSPACE_LOGIN && meta) {
      // Built with DOM APIs: the machine's name is whatever its owner called it.
      const daemon = c.daemon_id && this.daemons ? this.daemons.find((d) => d.daemon_id === c.daemon_id) : null;
      const machine = (daemon && daemon.name) || (c.daemon_id && this.daemons ? "a machine that is no longer linked" : "your machine");
      meta.prepend(
        el("li", { "data-testid": `provider-machine-${provider.id}` }, icon("machine"), el("span", {}, "On ", el("b", {}, machine))),
        el("li", {}, icon("lock"), el("span", {}, "Token stays on your machine")),
      );
    }
  }

  /** The machines behind workspace_login connections, for their names (best effort). */
  async loadDaemons() {
    if (!this.providers.some((p) => p.connection && p.connection.method === WORKSPACE_LOGIN)) return;
    try {
      this.daemons = await fetchDaemons({ signal: this.abort.signal });
    } catch {
      return;
    }
    if (this.destroyed) return;
    for (const provider of this.providers) {
      if (provider.connection && provider.connection.method === WORKSPACE_LOGIN) this.renderCard(provider);
    }
  }

  renderSummary() {
    const el = this.main.querySelector(".pv-summary");
    if (!el) return;
    const usable = this.providers.filter(isUsable).length;
    const attention = this.providers.filter((p) => ["refresh_failed", "revoked", "expiring"].includes(p.health)).length;
    el.innerHTML = `
      <span class="pv-stat"><b>${usable}</b> of ${this.providers.length} connected</span>
      ${attention ? `<span class="pv-stat pv-stat-warn">${icons.alert}<b>${attention}</b> need${attention === 1 ? "s" : ""} attention</span>` : ""}`;
  }

  refreshRelativeTimes() {
    for (const el of this.main.querySelectorAll("[data-rel]")) {
      el.textContent = `${el.dataset.relPrefix} ${relativeTime(Number(el.dataset.rel))}`;
    }
  }

  cardFor(id) {
    return this.main.querySelector(`.pv-card[data-provider="${CSS.escape(id)}"]`);
  }

  provider(id) {
    return this.providers.find((p) => p.id === id);
  }

  /** The server answered with a fresh entry for one provider. */
  replaceProvider(entry) {
    if (!entry || !entry.id) return;
    const i = this.providers.findIndex((p) => p.id === entry.id);
    if (i >= 0) this.providers[i] = entry;
    else this.providers.push(entry);
    this.renderCard(entry);
    this.renderSummary();
    this.onChange(this.providers);
  }

  // --- events --------------------------------------------------------------

  handleClick(event) {
    const button = event.target.closest("[data-action]");
    if (!button || !this.main.contains(button)) return;
    const action = button.dataset.action;
    if (action === "reload") {
      this.main.querySelector(".pv-body").innerHTML = skeleton();
      this.load();
      return;
    }
    const card = button.closest(".pv-card");
    const provider = card && this.provider(card.dataset.provider);
    if (!provider) return;

    if (action === "connect") {
      if (this.panels.has(provider.id)) this.closePanel(provider.id);
      else this.openMethods(provider);
    } else if (action === "reconnect") {
      this.reconnect(provider);
    } else if (action === "disconnect") {
      this.confirmDisconnect(provider, button);
    }
  }

  handleSubmit(event) {
    const form = event.target.closest("form[data-provider-form]");
    if (!form) return;
    event.preventDefault();
    const panel = this.panels.get(form.dataset.providerForm);
    if (panel && panel.submit) panel.submit();
  }

  // --- panels ----------------------------------------------------------------

  setPanel(provider, panel) {
    const old = this.panels.get(provider.id);
    if (old) old.destroy();
    this.panels.set(provider.id, panel);
    const card = this.cardFor(provider.id);
    card.classList.add("is-open");
    const toggle = card.querySelector('[data-action="connect"]');
    if (toggle) toggle.setAttribute("aria-expanded", "true");
    panel.mount(card.querySelector(".pv-panel-slot"));
  }

  closePanel(id, { focus = true } = {}) {
    const panel = this.panels.get(id);
    if (panel) panel.destroy();
    this.panels.delete(id);
    const card = this.cardFor(id);
    if (!card) return;
    card.classList.remove("is-open");
    card.querySelector(".pv-panel-slot").innerHTML = "";
    const toggle = card.querySelector('[data-action="connect"], [data-action="reconnect"]');
    if (toggle) {
      toggle.setAttribute("aria-expanded", "false");
      if (focus) toggle.focus();
    }
  }

  openMethods(provider) {
    this.setPanel(provider, new MethodsPanel(this, provider));
  }

  openMethod(provider, method) {
    if (method === "api_key") this.setPanel(provider, new ApiKeyPanel(this, provider));
    else if (method === "device_flow") this.setPanel(provider, new DevicePanel(this, provider));
    else if (method === WORKSPACE_LOGIN) this.setPanel(provider, new WorkspaceLoginPanel(this, provider));
  }

  reconnect(provider) {
    // One click: start the same method again (an API key needs the new key, so its form opens).
    const method = provider.connection && provider.connection.method;
    if (method && (provider.methods || []).includes(method)) this.openMethod(provider, method);
    else this.openMethods(provider);
  }

  /** A connection finished (key saved or device flow approved). */
  connected(entry, { message } = {}) {
    if (entry) this.replaceProvider(entry);
    if (message) toast(message);
    // The list is the source of truth for health; refresh it in the background.
    this.load({ quiet: true });
  }

  // --- disconnect ----------------------------------------------------------

  confirmDisconnect(provider, trigger) {
    const name = provider.display_name || provider.id;
    const onMachine = provider.connection && provider.connection.method === WORKSPACE_LOGIN;
    confirmDialog({
      id: "pv-disconnect-dialog",
      testid: "disconnect",
      title: `Disconnect ${name}?`,
      description: onMachine
        ? `Your agents lose access to ${shortName(provider)} through Agent Relay right away. The login itself stays on your machine; sign out with ${shortName(provider)}'s own CLI there to remove it.`
        : `Your agents lose access to ${shortName(provider)} right away. Where ${upstreamName(provider)} supports it we revoke the token there too, then delete it from your vault.`,
      cancelLabel: "Keep connected",
      confirmLabel: "Disconnect",
      trigger,
      fallbackFocus: () => {
        const card = this.cardFor(provider.id);
        return card && card.querySelector('[data-action="connect"], [data-action="reconnect"]');
      },
      action: async () => {
        try {
          await api(`/api/providers/${encodeURIComponent(provider.id)}`, { method: "DELETE" });
        } catch (err) {
          if (err && err.code === "SESSION_EXPIRED") return null;
          if (err && err.status === 404) {
            // Already gone (another tab, or never stored): show the truth.
            this.load({ quiet: true });
            return null;
          }
          return err && (err.code === "UPSTREAM_UNAVAILABLE" || err.status === 503)
            ? `Couldn't reach ${upstreamName(provider)} to revoke the token. Nothing changed — try again.`
            : (err && err.body && err.body.error) || "We couldn't disconnect it. Please try again.";
        }
        this.closePanel(provider.id, { focus: false });
        this.replaceProvider({ ...provider, health: "not_connected", connection: null });
        toast(`${name} disconnected`);
        this.load({ quiet: true });
        return null;
      },
    });
  }
}

// ---------------------------------------------------------------------------
// panels: choose a method, API key, device flow
// ---------------------------------------------------------------------------

function panelHead(title, provider, { back = false, status = "" } = {}) {
  return `
    <div class="pv-panel-head">
      ${
        back
          ? `<button type="button" class="btn btn-ghost btn-sm pv-back" data-panel-action="back" aria-label="All methods">${icons.arrowLeft}<span>All methods</span></button>`
          : ""
      }
      <h3>${esc(title)}</h3>
      ${status}
      <button type="button" class="icon-btn pv-close" data-panel-action="close" aria-label="Close ${esc(provider.display_name)} connection panel">${icons.x}</button>
    </div>`;
}

class Panel {
  constructor(page, provider) {
    this.page = page;
    this.provider = provider;
    this.el = null;
    this.onClick = (event) => {
      const target = event.target.closest("[data-panel-action]");
      if (!target || !this.el || !this.el.contains(target)) return;
      this.action(target.dataset.panelAction, target, event);
    };
  }

  mount(slot) {
    slot.innerHTML = "";
    this.el = document.createElement("div");
    this.el.className = "pv-panel";
    this.el.addEventListener("click", this.onClick);
    slot.appendChild(this.el);
    this.render();
  }

  action(name) {
    if (name === "close") this.page.closePanel(this.provider.id);
    else if (name === "back") this.page.openMethods(this.provider);
  }

  get hasChoice() {
    return (this.provider.methods || []).length > 1;
  }

  destroy() {
    if (this.el) this.el.removeEventListener("click", this.onClick);
  }
}

// A panel that follows a flow on the server (device sign-in, login on a machine): its polls, countdown
// and pending requests end with it, and once connected it closes itself after a moment.
class PollingPanel extends Panel {
  constructor(page, provider, { className, testid }) {
    super(page, provider);
    this.className = className;
    this.testid = testid;
    this.pollTimer = null;
    this.countdownTimer = null;
    this.closeTimer = null;
    this.controller = new AbortController();
    this.stopped = false;
  }

  mount(slot) {
    super.mount(slot);
    this.el.classList.add(this.className);
    this.el.dataset.testid = this.testid;
  }

  get signal() {
    return this.controller.signal;
  }

  /** GET the followed flow: `{ view }`; `{ gone: true }` when the server no longer has it (404);
   * `{ retry: true }` when the poll failed for now (network, 5xx, throttled); null when polling should
   * just stop (the panel closed, the request was aborted, the session expired). */
  async fetchFlow(id) {
    try {
      return { view: await api(`/api/providers/flows/${encodeURIComponent(id)}`, { signal: this.signal }) };
    } catch (err) {
      if (this.stopped || (err && err.name === "AbortError")) return null;
      if (err && err.code === "SESSION_EXPIRED") {
        this.stopTimers();
        return null;
      }
      return err && err.status === 404 ? { gone: true } : { retry: true };
    }
  }

  schedulePoll(delayMs) {
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => this.poll(), delayMs);
  }

  startCountdown() {
    if (!this.countdownTimer) this.countdownTimer = setInterval(() => this.updateCountdown(), 1000);
  }

  stopTimers() {
    clearTimeout(this.pollTimer);
    clearInterval(this.countdownTimer);
    this.pollTimer = null;
    this.countdownTimer = null;
  }

  closeSoon() {
    this.closeTimer = setTimeout(() => {
      if (!this.stopped) this.page.closePanel(this.provider.id, { focus: false });
    }, 2500);
  }

  destroy() {
    this.stopped = true;
    this.stopTimers();
    clearTimeout(this.closeTimer);
    this.controller.abort();
    super.destroy();
  }
}

class MethodsPanel extends Panel {
  render() {
    const p = this.provider;
    const name = shortName(p);
    const options = (p.methods || []).map((method) => {
      if (method === "api_key") {
        return `
          <button type="button" class="pv-method" data-panel-action="method" data-method="api_key" data-testid="method-api_key">
            <span class="pv-method-icon">${icons.key}</span>
            <span class="pv-method-text"><strong>API key</strong>
              <span>Paste a key from ${esc((KEY_HELP[p.id] && KEY_HELP[p.id].where) || `your ${esc(upstreamName(p))} account`)}. We check it, then keep it encrypted in your vault.</span></span>
            ${icons.chevronRight}
          </button>`;
      }
      if (method === "device_flow") {
        return `
          <button type="button" class="pv-method" data-panel-action="method" data-method="device_flow" data-testid="method-device_flow">
            <span class="pv-method-icon">${icons.smartphone}</span>
            <span class="pv-method-text"><strong>Sign in with ${esc(name)}</strong>
              <span>Approve access in your browser with a one-time code. Tokens are stored in your vault and refreshed for you.</span></span>
            ${icons.chevronRight}
          </button>`;
      }
      if (method === WORKSPACE_LOGIN) {
        const cli = CLI[p.id] && CLI[p.id].login;
        return `
          <button type="button" class="pv-method" data-panel-action="method" data-method="workspace_login" data-testid="method-workspace_login">
            <span class="pv-method-icon">${icons.machine}</span>
            <span class="pv-method-text"><strong>Log in on my machine</strong>
              <span>Uses your ${esc(name)} subscription: ${cli ? `<code>${esc(cli)}</code>` : `${esc(name)}'s own CLI login`} runs on a machine you've linked, and the token never leaves that machine — it never reaches the cloud.</span></span>
            ${icons.chevronRight}
          </button>`;
      }
      return "";
    });
    this.el.innerHTML = `
      ${panelHead(`How do you want to connect ${name}?`, p)}
      <div class="pv-methods">${options.join("")}</div>`;
    const first = this.el.querySelector("button.pv-method");
    if (first) first.focus({ preventScroll: true });
  }

  action(name, target) {
    if (name === "method") this.page.openMethod(this.provider, target.dataset.method);
    else super.action(name);
  }
}

class ApiKeyPanel extends Panel {
  render() {
    const p = this.provider;
    const id = esc(p.id);
    const help = KEY_HELP[p.id] || {};
    this.el.innerHTML = `
      ${panelHead(`Connect ${shortName(p)} with an API key`, p, { back: this.hasChoice })}
      <form class="pv-form" data-provider-form="${id}" novalidate autocomplete="off">
        <label class="pv-label" for="pv-key-${id}">${esc(upstreamName(p))} API key</label>
        <div class="pv-secret">
          <input id="pv-key-${id}" name="api_key" type="password" class="pv-input" data-testid="api-key-input"
            placeholder="${esc(help.placeholder || "Paste your key")}" autocomplete="off" autocapitalize="off" autocorrect="off"
            spellcheck="false" required aria-describedby="pv-key-hint-${id} pv-key-error-${id}">
          <button type="button" class="pv-reveal" data-panel-action="reveal" aria-pressed="false" aria-label="Show key">${icons.eye}</button>
        </div>
        <p class="pv-error" id="pv-key-error-${id}" data-testid="api-key-error" role="alert" hidden></p>
        <p class="pv-hint" id="pv-key-hint-${id}">${icons.lock}<span>We check it with a free, non-billable call, then encrypt it in your vault. It is never shown again.${
          help.url ? ` <a href="${esc(help.url)}" target="_blank" rel="noopener noreferrer">Get a key from ${esc(help.where)}</a>` : ""
        }</span></p>
        <div class="pv-form-actions">
          <button type="submit" class="btn btn-primary" data-testid="api-key-submit">${icons.shield}<span>Validate &amp; save</span></button>
          <button type="button" class="btn btn-ghost" data-panel-action="close">Cancel</button>
        </div>
      </form>`;
    this.input = this.el.querySelector("input");
    this.errorEl = this.el.querySelector(".pv-error");
    this.submitBtn = this.el.querySelector('[data-testid="api-key-submit"]');
    this.input.addEventListener("input", () => this.showError(""));
    this.input.focus({ preventScroll: false });
  }

  action(name, target) {
    if (name === "reveal") {
      const show = this.input.type === "password";
      this.input.type = show ? "text" : "password";
      target.setAttribute("aria-pressed", String(show));
      target.setAttribute("aria-label", show ? "Hide key" : "Show key");
      target.innerHTML = show ? icons.eyeOff : icons.eye;
    } else super.action(name);
  }

  showError(message) {
    this.errorEl.textContent = message;
    this.errorEl.hidden = !message;
    this.input.setAttribute("aria-invalid", message ? "true" : "false");
  }

  async submit() {
    if (this.busy) return;
    const key = this.input.value.trim();
    if (!key) {
      this.showError("Paste your API key first.");
      this.input.focus();
      return;
    }
    // The key leaves the DOM as soon as it is sent: nothing echoes it back.
    this.input.value = "";
    this.input.type = "password";
    const reveal = this.el.querySelector(".pv-reveal");
    reveal.setAttribute("aria-pressed", "false");
    reveal.setAttribute("aria-label", "Show key");
    reveal.innerHTML = icons.eye;
    this.busy = true;
    this.showError("");
    this.submitBtn.disabled = true;
    this.submitBtn.setAttribute("aria-busy", "true");
    this.submitBtn.querySelector("span").textContent = "Validating…";
    this.input.disabled = true;
    let result = null;
    let failure = null;
    try {
      result = await api(`/api/providers/${encodeURIComponent(this.provider.id)}/connect`, {
        method: "POST",
        body: { method: "api_key", api_key: key },
        signal: this.page.abort.signal,
      });
    } catch (err) {
      failure = err;
    }
    if (this.page.destroyed || !this.el.isConnected) return;
    this.busy = false;
    this.submitBtn.disabled = false;
    this.submitBtn.removeAttribute("aria-busy");
    this.submitBtn.querySelector("span").textContent = "Validate & save";
    this.input.disabled = false;
    if (failure) {
      if (failure.name === "AbortError" || failure.code === "SESSION_EXPIRED") return;
      this.showError(errorMessage(failure, this.provider));
      this.input.focus();
      return;
    }
    const entry = result && result.provider;
    this.page.closePanel(this.provider.id, { focus: false });
    this.page.connected(entry, { message: `${this.provider.display_name} connected — key validated and saved` });
    const card = this.page.cardFor(this.provider.id);
    if (card) {
      card.classList.add("is-fresh");
      const next = card.querySelector('[data-action="disconnect"]');
      if (next) next.focus({ preventScroll: true });
    }
  }
}

const DEVICE_STATES = {
  starting: { text: "Requesting a code…", tone: "wait" },
  pending: { text: "Waiting for you to approve…", tone: "wait" },
  connected: { text: "Connected", tone: "ok" },
  expired: { text: "Code expired", tone: "warn" },
  denied: { text: "Access denied", tone: "bad" },
  error: { text: "Something went wrong", tone: "bad" },
  cancelled: { text: "Cancelled", tone: "off" },
};

class DevicePanel extends PollingPanel {
  constructor(page, provider) {
    super(page, provider, { className: "pv-device", testid: "device-panel" });
    this.flow = null;
    this.status = "starting";
    this.message = "";
  }

  mount(slot) {
    super.mount(slot);
    this.start();
  }

  async start() {
    this.stopTimers();
    this.flow = null;
    this.status = "starting";
    this.message = "";
    this.render();
    let flow;
    try {
      flow = await api(`/api/providers/${encodeURIComponent(this.provider.id)}/connect`, {
        method: "POST",
        body: { method: "device_flow" },
        signal: this.signal,
      });
    } catch (err) {
      if (this.stopped || (err && err.name === "AbortError")) return;
      if (err && err.code === "SESSION_EXPIRED") return;
      this.finish("error", err && err.code === "UPSTREAM_UNAVAILABLE"
        ? `Couldn't reach ${upstreamName(this.provider)} to start the sign-in. Nothing was saved — try again.`
        : (err && err.body && err.body.error) || "We couldn't start the sign-in. Please try again.");
      return;
    }
    if (this.stopped) return;
    if (!flow || !flow.flow_id || !flow.user_code) {
      this.finish("error", "The sign-in couldn't be started. Please try again.");
      return;
    }
    const expiresIn = Number(flow.expires_in) > 0 ? Number(flow.expires_in) : 900;
    this.flow = {
      id: flow.flow_id,
      userCode: String(flow.user_code),
      uri: safeHttpUrl(flow.verification_uri),
      complete: safeHttpUrl(flow.verification_uri_complete) || safeHttpUrl(flow.verification_uri),
      expiresAt: Date.now() + expiresIn * 1000,
      interval: Math.max(1, Number(flow.interval) || 5),
    };
    this.el.dataset.flowId = this.flow.id;
    this.status = "pending";
    this.render();
    this.startCountdown();
    this.schedulePoll(this.flow.interval * 1000);
  }

  async poll() {
    if (this.stopped || !this.flow || this.status !== "pending") return;
    const polled = await this.fetchFlow(this.flow.id);
    if (!polled) return;
    if (polled.gone) {
      this.finish("error", "This sign-in request no longer exists. Start a new one.");
      return;
    }
    if (polled.retry) {
      this.schedulePoll(Math.min(30, this.flow.interval * 2) * 1000); // keep waiting, a little more slowly
      return;
    }
    if (this.stopped || this.status !== "pending") return;
    const data = polled.view;
    if (data && Number(data.interval) > 0) this.flow.interval = Math.max(1, Number(data.interval));
    const status = data && data.status;
    if (!status || status === "pending") {
      this.schedulePoll(this.flow.interval * 1000);
      return;
    }
    if (status === "connected") {
      this.finish("connected", "", data);
      return;
    }
    if (status === "error") {
      this.finish("error", (data && data.error) || "The provider reported an error.");
      return;
    }
    this.finish(DEVICE_STATES[status] ? status : "error", status in DEVICE_STATES ? "" : (data && data.error) || "");
  }

  finish(status, message = "", data = null) {
    this.stopTimers();
    this.status = status;
    this.message = message;
    this.render();
    if (status === "connected") {
      const account = data && data.provider && data.provider.connection && data.provider.connection.account;
      this.page.connected(data && data.provider && data.provider.id ? data.provider : null, {
        message: `${this.provider.display_name} connected${account ? ` as ${account}` : ""}`,
      });
      this.closeSoon();
    }
  }

  updateCountdown() {
    if (!this.flow || this.status !== "pending") return;
    const left = Math.max(0, Math.round((this.flow.expiresAt - Date.now()) / 1000));
    const el = this.el.querySelector('[data-testid="device-countdown"]');
    if (el) {
      el.textContent = mmss(left);
      el.closest(".pv-countdown").classList.toggle("is-low", left <= 60);
    }
    if (left <= 0) {
      // One last look: the user may have approved in the final second.
      clearInterval(this.countdownTimer);
      this.countdownTimer = null;
      clearTimeout(this.pollTimer);
      this.poll().then(() => {
        if (!this.stopped && this.status === "pending") this.finish("expired");
      });
    }
  }

  async cancel(button) {
    const flow = this.flow;
    this.stopTimers();
    this.stopped = true;
    this.controller.abort();
    if (!flow) {
      this.page.closePanel(this.provider.id);
      return;
    }
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await api(`/api/providers/flows/${encodeURIComponent(flow.id)}`, { method: "DELETE" });
    } catch (err) {
      if (err && err.code === "SESSION_EXPIRED") return;
      if (!(err && err.status === 404)) toast("We couldn't cancel that sign-in on the server; it will expire by itself.");
    }
    this.page.closePanel(this.provider.id);
  }

  action(name, target) {
    if (name === "cancel") this.cancel(target);
    else if (name === "retry") {
      this.controller = new AbortController();
      this.stopped = false;
      this.start();
    } else if (name === "copy") this.copy(target);
    else if (name === "close" && this.status === "pending") this.cancel(target);
    else super.action(name);
  }

  copy(button) {
    copyFromButton(button, this.flow ? this.flow.userCode : "", {
      // Select the code so a long-press / Ctrl+C works.
      onFail: () => selectText(this.el.querySelector('[data-testid="device-user-code"]')),
    });
  }

  statusMarkup() {
    const s = DEVICE_STATES[this.status] || DEVICE_STATES.error;
    const spinner = s.tone === "wait" ? '<span class="pv-spin" aria-hidden="true"></span>' : "";
    return `<p class="pv-status pv-status-${s.tone}" data-testid="device-status" data-status="${esc(this.status)}" role="status" aria-live="polite">${spinner}<span>${esc(s.text)}</span></p>`;
  }

  render() {
    if (!this.el) return;
    const p = this.provider;
    const name = shortName(p);
    const title = `Sign in with ${name}`;
    if (this.status === "starting") {
      this.el.innerHTML = `
        ${panelHead(title, p, { back: this.hasChoice, status: this.statusMarkup() })}
        <div class="pv-device-loading" aria-hidden="true"><div class="skeleton-line w-40"></div><div class="skeleton-line w-70"></div><div class="skeleton-line w-50"></div></div>`;
      return;
    }
    if (this.status !== "pending") {
      this.renderOutcome(title);
      return;
    }
    const f = this.flow;
    const left = Math.max(0, Math.round((f.expiresAt - Date.now()) / 1000));
    const qr = f.complete ? qrSvg(f.complete) : "";
    this.el.innerHTML = `
      ${panelHead(title, p, { back: false, status: this.statusMarkup() })}
      <div class="pv-device-grid">
        <ol class="pv-steps">
          <li>
            <span class="pv-step-num" aria-hidden="true">1</span>
            <div class="pv-step-body">
              <strong>Copy your one-time code</strong>
              <div class="pv-code-row">
                <code class="pv-code" data-testid="device-user-code" aria-label="One-time code">${esc(f.userCode)}</code>
                <button type="button" class="btn btn-sm pv-copy" data-panel-action="copy" data-testid="device-copy">${icons.copy}<span>Copy</span></button>
              </div>
            </div>
          </li>
          <li>
            <span class="pv-step-num" aria-hidden="true">2</span>
            <div class="pv-step-body">
              <strong>Enter it on ${esc(upstreamName(p))}</strong>
              ${
                f.uri
                  ? `<a class="btn btn-primary pv-open" href="${esc(f.uri)}" target="_blank" rel="noopener" data-testid="device-open"><span>Open <span class="pv-open-url">${esc(displayUrl(f.uri))}</span></span>${icons.external}</a>`
                  : ""
              }
            </div>
          </li>
          <li>
            <span class="pv-step-num" aria-hidden="true">3</span>
            <div class="pv-step-body">
              <strong>Approve access</strong>
              <span class="pv-step-note">This page updates by itself as soon as you approve.</span>
            </div>
          </li>
        </ol>
        ${
          qr
            ? `<figure class="pv-qr">
                 <div class="pv-qr-code" data-testid="device-qr" role="img" aria-label="QR code that opens the ${esc(upstreamName(p))} approval page with your code filled in">${qr}</div>
                 <figcaption>${icons.smartphone}<span>Or scan on your phone — the code is filled in for you.</span></figcaption>
               </figure>`
            : ""
        }
      </div>
      <div class="pv-device-foot">
        <span class="pv-countdown${left <= 60 ? " is-low" : ""}">${icons.clock}<span>Code expires in <b data-testid="device-countdown" class="mono">${mmss(left)}</b></span></span>
        <button type="button" class="btn btn-ghost btn-sm" data-panel-action="cancel" data-testid="device-cancel">${icons.x}<span>Cancel</span></button>
      </div>`;
  }

  renderOutcome(title) {
    const p = this.provider;
    const name = esc(shortName(p));
    const upstream = esc(upstreamName(p));
    const outcomes = {
      connected: { icon: icons.checkCircle, tone: "ok", head: `${name} is connected`, body: "Your agents can use it now. The token is encrypted in your vault and refreshed automatically." },
      expired: { icon: icons.clock, tone: "warn", head: "The code expired", body: "Codes are only valid for a few minutes. Start again to get a fresh one." },
      denied: { icon: icons.xCircle, tone: "bad", head: "Access was denied", body: `The request was declined on ${upstream}. If that wasn't you, or you changed your mind, try again.` },
      error: { icon: icons.alert, tone: "bad", head: "The sign-in didn't complete", body: "" },
      cancelled: { icon: icons.minus, tone: "off", head: "Sign-in cancelled", body: "Nothing was saved. You can start again whenever you like." },
    };
    const o = outcomes[this.status] || outcomes.error;
    const detail = this.message ? `<p class="pv-outcome-detail" data-testid="device-error">${esc(this.message)}</p>` : "";
    this.el.innerHTML = `
      ${panelHead(title, p, { back: this.status !== "connected" && this.hasChoice, status: this.statusMarkup() })}
      <div class="pv-outcome pv-outcome-${o.tone}">
        <span class="pv-outcome-icon">${o.icon}</span>
        <div>
          <h4>${o.head}</h4>
          ${o.body ? `<p>${o.body}</p>` : ""}
          ${detail}
          ${
            this.status === "connected"
              ? ""
              : `<div class="pv-form-actions">
                   <button type="button" class="btn btn-primary" data-panel-action="retry" data-testid="device-retry">${icons.refresh}<span>Try again</span></button>
                   <button type="button" class="btn btn-ghost" data-panel-action="close">Close</button>
                 </div>`
          }
        </div>
      </div>`;
    const retry = this.el.querySelector('[data-testid="device-retry"]');
    if (retry) retry.focus({ preventScroll: true });
  }
}

// ---------------------------------------------------------------------------
// panel: log in on my machine (workspace_login, docs/design/daemon-messaging.md)
// ---------------------------------------------------------------------------
// The provider's own CLI login runs on a linked machine; this panel relays its prompt (a URL, maybe a
// code to type there, maybe a code to paste back) and never sees a token. Built with DOM APIs only:
// the prompt comes from the machine.

const LOGIN_POLL_MS = 2000;
const FINAL_LOGIN = new Set(["connected", "expired", "error", "cancelled"]);

function panelHeadNode(title, provider, { back = false, status = null } = {}) {
  return el("div", { class: "pv-panel-head" },
    back
      ? el("button", { type: "button", class: "btn btn-ghost btn-sm pv-back", "data-panel-action": "back", "aria-label": "All methods" },
        icon("arrowLeft"), el("span", {}, "All methods"))
      : null,
    el("h3", {}, title),
    status,
    el("button", { type: "button", class: "icon-btn pv-close", "data-panel-action": "close",
      "aria-label": `Close ${provider.display_name || provider.id} connection panel` }, icon("x")));
}

function presenceBadge(daemon) {
  const presence = presenceOf(daemon);
  const p = PRESENCE[presence];
  return el("span", { class: `mc-presence mc-presence-${p.tone}`, "data-presence": presence }, el("i", { "aria-hidden": "true" }), p.label);
}

class WorkspaceLoginPanel extends PollingPanel {
  constructor(page, provider) {
    super(page, provider, { className: "pv-wl", testid: "workspace-login-panel" });
    this.daemons = null; // null while loading
    this.machinesError = "";
    this.selected = null;
    this.starting = false;
    this.startError = "";
    this.login = null; // the login view, once started
    this.shown = "";
    this.sendingCode = false;
    this.failures = 0;
  }

  mount(slot) {
    super.mount(slot);
    this.loadMachines();
  }

  get cli() {
    return CLI[this.provider.id] || { name: `${shortName(this.provider)}'s CLI`, login: null, install: null };
  }

  machineName(daemonId) {
    const daemon = (this.daemons || []).find((d) => d.daemon_id === daemonId);
    return (daemon && daemon.name) || "your machine";
  }

  // --- choosing the machine --------------------------------------------------------------------

  async loadMachines() {
    this.machinesError = "";
    let daemons;
    try {
      daemons = await fetchDaemons({ signal: this.signal });
    } catch (err) {
      if (this.stopped || (err && err.name === "AbortError") || (err && err.code === "SESSION_EXPIRED")) return;
      this.machinesError = "We couldn't load your machines.";
      if (!this.login) this.render();
      return;
    }
    if (this.stopped) return;
    this.daemons = daemons;
    if (!daemons.some((d) => d.daemon_id === this.selected)) this.selected = null;
    if (daemons.length === 1) this.selected = daemons[0].daemon_id;
    if (!this.login) this.render();
  }

  renderChooser() {
    const p = this.provider;
    const name = shortName(p);
    const cli = this.cli;
    const parts = [
      panelHeadNode(`Log in to ${name} on my machine`, p, { back: this.hasChoice }),
      el("p", { class: "pv-wl-intro" },
        cli.login ? el("code", {}, cli.login) : `${cli.name}'s login`,
        " runs on the machine you choose. You finish the login here, in your browser; the token stays on that machine and never reaches the cloud."),
    ];
    if (this.machinesError) {
      parts.push(el("div", { class: "pv-error", role: "alert", "data-testid": "wl-machines-error" },
        el("span", {}, this.machinesError),
        el("button", { type: "button", class: "btn btn-sm", "data-panel-action": "machines-retry" }, icon("refresh"), el("span", {}, "Retry"))));
    } else if (this.daemons === null) {
      parts.push(el("div", { class: "pv-device-loading", "aria-hidden": "true" },
        el("div", { class: "skeleton-line w-60" }), el("div", { class: "skeleton-line w-40" })));
    } else if (!this.daemons.length) {
      parts.push(el("div", { class: "pv-wl-empty", "data-testid": "wl-no-machine" },
        el("span", { class: "pv-method-icon" }, icon("machine")),
        el("div", {},
          el("h4", {}, "Link a machine first"),
          el("p", {}, `This login runs ${cli.name} on one of your own computers, so it needs a machine linked with `,
            el("code", {}, "relay-cloud link"), ". It takes a minute."),
          el("a", { class: "btn btn-primary btn-sm", href: "/dashboard/machines", "data-section-link": "/dashboard/machines",
            "data-testid": "wl-link-machine" }, icon("link"), el("span", {}, "Link a machine")))));
    } else {
      const group = `pv-wl-machine-${p.id}`;
      const options = this.daemons.map((d) => {
        const input = el("input", { type: "radio", name: group, value: d.daemon_id, checked: d.daemon_id === this.selected });
        input.addEventListener("change", () => {
          this.selected = d.daemon_id;
          this.showStartError("");
        });
        return el("label", { class: "pv-wl-machine", "data-testid": `wl-machine-${d.daemon_id}` },
          input,
          el("span", { class: "pv-wl-machine-name" }, d.name || d.machine_id || "Machine"),
          presenceBadge(d));
      });
      parts.push(
        el("fieldset", { class: "pv-wl-machines" }, el("legend", {}, "Log in on"), options),
        el("p", { class: "pv-error", role: "alert", "data-testid": "wl-start-error", hidden: !this.startError }, this.startError),
        el("div", { class: "pv-form-actions" },
          el("button", { type: "button", class: "btn btn-primary", "data-panel-action": "start", "data-testid": "wl-connect",
            disabled: this.starting, "aria-busy": this.starting ? "true" : null },
          icon("machine"), el("span", {}, this.starting ? "Starting…" : "Connect")),
          el("button", { type: "button", class: "btn btn-ghost", "data-panel-action": "close" }, "Cancel")));
    }
    this.el.replaceChildren(...parts);
  }

  showStartError(message) {
    this.startError = message;
    const node = this.el && this.el.querySelector('[data-testid="wl-start-error"]');
    if (!node) return;
    node.textContent = message;
    node.hidden = !message;
  }

  async start() {
    if (this.starting || this.login) return;
    if (!this.selected) {
      this.showStartError("Choose the machine to log in on.");
      return;
    }
    this.starting = true;
    this.startError = "";
    this.render();
    let view;
    try {
      view = await api(`/api/providers/${encodeURIComponent(this.provider.id)}/connect`, {
        method: "POST",
        body: { method: WORKSPACE_LOGIN, daemon_id: this.selected },
        signal: this.signal,
      });
    } catch (err) {
      if (this.stopped || (err && err.name === "AbortError")) return;
      this.starting = false;
      if (err && err.code === "SESSION_EXPIRED") {
        this.render();
        return;
      }
      this.startError = this.startErrorMessage(err);
      this.render();
      if (err && (err.code === "NO_MACHINE_LINKED" || err.code === "DAEMON_NOT_FOUND")) this.loadMachines();
      return;
    }
    if (this.stopped) return;
    this.starting = false;
    this.show(view);
  }

  startErrorMessage(err) {
    const code = err && err.code;
    if (code === "NO_MACHINE_LINKED" || code === "DAEMON_NOT_FOUND") return "That machine is no longer linked. Choose another one, or link it again.";
    if (code === "COMMAND_QUEUE_FULL") return `${this.machineName(this.selected)} has too many requests waiting. Make sure it is running, then try again in a minute.`;
    if (code === "NETWORK_ERROR") return "We couldn't reach Agent Relay Cloud. Check your connection and try again.";
    if (err && err.status === 429) return (err.body && err.body.error) || "Too many attempts. Wait a minute and try again.";
    return (err && err.body && err.body.error) || "We couldn't start the login. Please try again.";
  }

  // --- the login ---------------------------------------------------------------------------------

  /** Show a login view from the server (start, poll, code sent) and keep polling until it is final. */
  show(view) {
    if (!view || !view.login_id) {
      this.login = { status: "error", error: { message: "The login couldn't be started. Please try again." } };
    } else {
      this.login = view;
      this.el.dataset.loginId = view.login_id;
    }
    this.render();
    if (FINAL_LOGIN.has(this.login.status)) {
      this.finish();
      return;
    }
    this.startCountdown();
    this.schedulePoll(LOGIN_POLL_MS);
  }

  async poll() {
    if (this.stopped || !this.login || FINAL_LOGIN.has(this.login.status)) return;
    const polled = await this.fetchFlow(this.login.login_id);
    if (!polled) return;
    if (polled.gone) {
      this.show({ ...this.login, status: "error", error: { code: "LOGIN_NOT_FOUND", message: "This login no longer exists. Start a new one." } });
      return;
    }
    if (polled.retry) {
      this.failures += 1; // keep waiting, a little more slowly
      this.schedulePoll(Math.min(15_000, LOGIN_POLL_MS * 2 ** this.failures));
      return;
    }
    if (this.stopped) return;
    this.failures = 0;
    this.show(polled.view);
  }

  finish() {
    this.stopTimers();
    if (this.login.status !== "connected") return;
    const machine = this.machineName(this.login.daemon_id);
    this.page.connected(null, { message: `${this.provider.display_name} connected on ${machine}` });
    this.closeSoon();
  }

  updateCountdown() {
    const node = this.el && this.el.querySelector('[data-testid="wl-countdown"]');
    const expires = this.login && toEpochSeconds(this.login.expires_at);
    if (!node || expires === null) return;
    node.textContent = mmss(expires - Date.now() / 1000);
  }

  async submit() {
    if (this.sendingCode || !this.login) return;
    const input = this.el.querySelector('[data-testid="wl-code-input"]');
    const button = this.el.querySelector('[data-testid="wl-code-submit"]');
    if (!input) return;
    const code = input.value.trim();
    if (!code) {
      this.showCodeError("Paste the code first.");
      input.focus();
      return;
    }
    // The code leaves the DOM as soon as it is sent; the server never echoes it back.
    input.value = "";
    this.sendingCode = true;
    this.showCodeError("");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    let view;
    try {
      view = await api(`/api/providers/logins/${encodeURIComponent(this.login.login_id)}/code`, {
        method: "POST",
        body: { code },
        signal: this.signal,
      });
    } catch (err) {
      this.sendingCode = false;
      if (this.stopped || (err && err.name === "AbortError") || (err && err.code === "SESSION_EXPIRED")) return;
      if (button.isConnected) {
        button.disabled = false;
        button.removeAttribute("aria-busy");
      }
      this.showCodeError(err && err.code === "LOGIN_NOT_AWAITING_CODE"
        ? "The machine isn't waiting for a code any more. Follow the status above."
        : err && err.code === "VALIDATION_FAILED"
          ? "That doesn't look like a code. Copy it again and paste it here."
          : (err && err.body && err.body.error) || "We couldn't send the code. Please try again.");
      return;
    }
    this.sendingCode = false;
    if (this.stopped) return;
    this.show(view);
  }

  showCodeError(message) {
    const node = this.el.querySelector('[data-testid="wl-code-error"]');
    if (!node) return;
    node.textContent = message;
    node.hidden = !message;
  }

  async cancel(button, { close = false } = {}) {
    const login = this.login;
    this.stopTimers();
    if (!login || !login.login_id || FINAL_LOGIN.has(login.status)) {
      this.page.closePanel(this.provider.id);
      return;
    }
    this.controller.abort(); // a poll in flight must not bring the pending view back
    this.controller = new AbortController();
    if (button) {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
    }
    try {
      await api(`/api/providers/flows/${encodeURIComponent(login.login_id)}`, { method: "DELETE", signal: this.signal });
    } catch (err) {
      if (this.stopped || (err && (err.name === "AbortError" || err.code === "SESSION_EXPIRED"))) return;
      if (!(err && err.status === 404)) toast("We couldn't cancel that login on the server; it will expire by itself.");
    }
    if (this.stopped) return;
    if (close) {
      this.page.closePanel(this.provider.id);
      return;
    }
    this.login = { ...login, status: "cancelled", stage: null, prompt: null };
    this.render();
  }

  retry() {
    clearTimeout(this.closeTimer);
    this.stopTimers();
    this.login = null;
    this.shown = "";
    this.startError = "";
    delete this.el.dataset.loginId;
    this.render();
    this.loadMachines();
  }

  action(name, target) {
    if (name === "start") this.start();
    else if (name === "machines-retry") {
      this.daemons = null;
      this.render();
      this.loadMachines();
    } else if (name === "cancel") this.cancel(target);
    else if (name === "retry") this.retry();
    else if (name === "copy") {
      copyFromButton(target, (this.login && this.login.prompt && this.login.prompt.user_code) || "", {
        onFail: () => selectText(this.el.querySelector('[data-testid="wl-user-code"]')),
      });
    } else if (name === "copy-install") copyFromButton(target, this.cli.install || "");
    else if (name === "close" && this.login && !FINAL_LOGIN.has(this.login.status)) this.cancel(target, { close: true });
    else super.action(name);
  }

  // --- rendering ---------------------------------------------------------------------------------

  render() {
    if (!this.el) return;
    if (!this.login) {
      this.renderChooser();
      return;
    }
    const v = this.login;
    // Polls repeat the same view every 2 s: rebuild only when it changed, so a half-typed code survives.
    const signature = JSON.stringify([v.status, v.stage, v.prompt, v.error, v.daemon_id]);
    if (signature === this.shown) return;
    this.shown = signature;
    const machine = this.machineName(v.daemon_id);
    const title = `Log in to ${shortName(this.provider)} on ${machine}`;
    const parts = [panelHeadNode(title, this.provider, { status: this.statusNode(v, machine) })];
    if (!FINAL_LOGIN.has(v.status)) {
      if (v.stage === "awaiting_user" && v.prompt) parts.push(this.promptNode(v.prompt, machine));
      else if (v.stage === "verifying") parts.push(this.waitNode(`Checking the login on ${machine}…`, "It only takes a moment."));
      else parts.push(this.waitingForMachineNode(v, machine));
      parts.push(this.footNode(machine));
    } else {
      parts.push(this.outcomeNode(v, machine));
    }
    const focused = document.activeElement && this.el.contains(document.activeElement);
    this.el.replaceChildren(...parts);
    const input = this.el.querySelector('[data-testid="wl-code-input"]');
    const retry = this.el.querySelector('[data-testid="wl-retry"]');
    if (input && focused) input.focus({ preventScroll: true });
    else if (retry) retry.focus({ preventScroll: true });
    this.updateCountdown();
  }

  statusNode(v, machine) {
    const states = {
      waiting_for_machine: { text: `Waiting for ${machine}`, tone: "wait" },
      awaiting_user: { text: "Waiting for you", tone: "wait" },
      verifying: { text: "Verifying", tone: "wait" },
      connected: { text: "Connected", tone: "ok" },
      expired: { text: "Expired", tone: "warn" },
      error: { text: "Login failed", tone: "bad" },
      cancelled: { text: "Cancelled", tone: "off" },
    };
    const key = v.status === "pending" ? v.stage || "waiting_for_machine" : v.status;
    const s = states[key] || states.error;
    return el("p", { class: `pv-status pv-status-${s.tone}`, "data-testid": "wl-status", "data-status": v.status || "",
      "data-stage": v.status === "pending" ? key : "", role: "status", "aria-live": "polite" },
    s.tone === "wait" ? el("span", { class: "pv-spin", "aria-hidden": "true" }) : null,
    el("span", {}, s.text));
  }

  waitNode(headline, note, extra = null) {
    return el("div", { class: "pv-wl-wait", "data-testid": "wl-wait" },
      el("span", { class: "pv-spin", "aria-hidden": "true" }),
      el("div", {}, el("strong", {}, headline), el("p", {}, note), extra));
  }

  waitingForMachineNode(v, machine) {
    const daemon = (this.daemons || []).find((d) => d.daemon_id === v.daemon_id);
    const away = daemon && presenceOf(daemon) !== "online";
    return this.waitNode(
      `Asking ${machine} to start the login…`,
      [this.cli.login ? ["It runs ", el("code", {}, this.cli.login), " there"] : `It runs ${this.cli.name}'s login there`,
        " and sends back what you need to finish it. This usually takes a few seconds."],
      away
        ? el("p", { class: "pv-wl-warn", "data-testid": "wl-machine-away" }, icon("alert"),
          el("span", {}, `${machine} looks ${presenceOf(daemon)}. Start `, el("code", {}, "relay-cloud daemon"),
            " on it: the login begins as soon as it checks in."))
        : null,
    );
  }

  promptNode(prompt, machine) {
    const upstream = upstreamName(this.provider);
    const href = safeHttpsUrl(prompt.url);
    const steps = [];
    const step = (title, ...body) => el("li", {},
      el("span", { class: "pv-step-num", "aria-hidden": "true" }, String(steps.length + 1)),
      el("div", { class: "pv-step-body" }, el("strong", {}, title), body));
    if (href) {
      steps.push(step(`Open the ${upstream} sign-in page`,
        el("a", { class: "btn btn-primary pv-open", href, target: "_blank", rel: "noopener noreferrer", "data-testid": "wl-open" },
          el("span", {}, "Open ", el("span", { class: "pv-open-url" }, displayUrl(href))), icon("external"))));
    } else if (prompt.url) {
      // Defence in depth (the server only relays https): never a link, just the text to judge.
      steps.push(step(`Open the ${upstream} sign-in page`,
        el("p", { class: "pv-wl-warn", "data-testid": "wl-unsafe-url" }, icon("alert"),
          el("span", {}, `${machine} sent an address that isn't https, so it isn't a link here: `,
            el("code", {}, String(prompt.url).slice(0, 300))))));
    }
    if (prompt.user_code) {
      steps.push(step("Enter this code there",
        el("div", { class: "pv-code-row" },
          el("code", { class: "pv-code", "data-testid": "wl-user-code", "aria-label": "One-time code" }, String(prompt.user_code)),
          el("button", { type: "button", class: "btn btn-sm pv-copy", "data-panel-action": "copy", "data-testid": "wl-copy" },
            icon("copy"), el("span", {}, "Copy")))));
    }
    if (prompt.needs_code) {
      const id = `pv-wl-code-${this.provider.id}`;
      steps.push(step(`Paste the code ${upstream} shows you`,
        el("form", { class: "pv-form pv-wl-code", "data-provider-form": this.provider.id, "data-testid": "wl-code-form",
          novalidate: true, autocomplete: "off" },
        el("label", { class: "sr-only", for: id }, `Code from ${upstream}`),
        el("input", { id, name: "code", type: "text", class: "pv-input", "data-testid": "wl-code-input", placeholder: "Paste the code",
          autocomplete: "off", autocapitalize: "off", autocorrect: "off", spellcheck: "false", maxlength: "2048", required: true,
          "aria-describedby": `${id}-hint ${id}-error` }),
        el("p", { class: "pv-error", id: `${id}-error`, "data-testid": "wl-code-error", role: "alert", hidden: true }),
        el("p", { class: "pv-hint", id: `${id}-hint` }, icon("lock"),
          el("span", {}, `It is encrypted for ${machine} alone and handed to ${this.cli.name} there. We never keep it.`)),
        el("div", { class: "pv-form-actions" },
          el("button", { type: "submit", class: "btn btn-primary", "data-testid": "wl-code-submit" }, icon("shield"),
            el("span", {}, `Send to ${machine}`))))));
    } else {
      steps.push(step("Approve access", el("span", { class: "pv-step-note" }, "This page updates by itself once the login finishes.")));
    }
    return el("ol", { class: "pv-steps pv-wl-steps", "data-testid": "wl-prompt" }, steps);
  }

  footNode(machine) {
    return el("div", { class: "pv-device-foot" },
      el("span", { class: "pv-countdown" }, icon("clock"),
        el("span", {}, "Expires in ", el("b", { class: "mono", "data-testid": "wl-countdown" }, "--:--"))),
      el("span", { class: "pv-wl-note" }, icon("lock"), el("span", {}, `The token stays on ${machine}`)),
      el("button", { type: "button", class: "btn btn-ghost btn-sm", "data-panel-action": "cancel", "data-testid": "wl-cancel" },
        icon("x"), el("span", {}, "Cancel")));
  }

  outcomeNode(v, machine) {
    const name = shortName(this.provider);
    const error = v.error || {};
    const cli = this.cli;
    let o;
    let install = null;
    if (v.status === "connected") {
      o = { icon: "checkCircle", tone: "ok", head: `${name} is connected on ${machine}`,
        body: `Your agents on ${machine} can use it now. The token stays on that machine; it never reaches the cloud.` };
    } else if (v.status === "expired") {
      o = { icon: "clock", tone: "warn", head: "The login expired", body: "A login on your machine has 15 minutes to finish. Start again when you're ready." };
    } else if (v.status === "cancelled") {
      o = { icon: "minus", tone: "off", head: "Login cancelled", body: `Nothing was saved, and ${machine} stops the login.` };
    } else if (error.code === "CLI_NOT_INSTALLED") {
      o = { icon: "alert", tone: "bad", head: `${cli.name} isn't installed on ${machine}`,
        body: `Install the ${cli.name} CLI on ${machine}, then try again.` };
      if (cli.install) {
        install = el("div", { class: "pv-code-row pv-wl-install" },
          el("code", { class: "pv-wl-command", "data-testid": "wl-install-command" }, cli.install),
          el("button", { type: "button", class: "btn btn-sm pv-copy", "data-panel-action": "copy-install" }, icon("copy"), el("span", {}, "Copy")));
      }
    } else if (error.code === "LOGIN_TIMEOUT") {
      o = { icon: "clock", tone: "bad", head: "The login timed out", body: `${cli.name} on ${machine} stopped waiting for the login to be finished. Start again when you're ready.` };
    } else if (error.code === "LOGIN_FAILED") {
      o = { icon: "alert", tone: "bad", head: "The login didn't complete", body: `${cli.name} on ${machine} reported that the login failed. Check that you approved it with the right account, then try again.` };
    } else {
      o = { icon: "alert", tone: "bad", head: "The login didn't complete", body: "" };
    }
    // What the machine said, under our explanation (the install command already says it for CLI_NOT_INSTALLED).
    const detail = v.status === "error" && error.message && error.code !== "CLI_NOT_INSTALLED" ? String(error.message) : "";
    return el("div", { class: `pv-outcome pv-outcome-${o.tone}`, "data-testid": "wl-outcome", "data-code": error.code || v.status },
      el("span", { class: "pv-outcome-icon" }, icon(o.icon)),
      el("div", {},
        el("h4", {}, o.head),
        o.body ? el("p", { "data-testid": "wl-error" }, o.body) : null,
        install,
        detail ? el("p", { class: "pv-outcome-detail", "data-testid": "wl-error-detail" }, detail) : null,
        v.status === "connected"
          ? null
          : el("div", { class: "pv-form-actions" },
            el("button", { type: "button", class: "btn btn-primary", "data-panel-action": "retry", "data-testid": "wl-retry" },
              icon("refresh"), el("span", {}, "Try again")),
            el("button", { type: "button", class: "btn btn-ghost", "data-panel-action": "close" }, "Close"))));
  }
}
