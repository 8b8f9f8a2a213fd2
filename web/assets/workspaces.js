// The Workspaces section (SPEC C6 and C8, docs/design/workspaces.md):
// - /dashboard/workspaces: the user's workspaces with their status and the plan's usage, and the create
//   dialog (name, repositories from GET /api/repos, connected providers, size) → POST /api/workspaces;
// - /dashboard/workspaces/<id>: one workspace — live provisioning progress from …/events (polled every
//   2 s while the status is transitional, stopped on a final one), start/stop/restart/delete (delete
//   behind a typed-name confirmation), the error with the step that failed, and its custom domain (claim
//   → the exact DNS records to create → verify → certificate status).
// Polls pause while the tab is hidden. Server data only ever lands in textContent and attributes (ui.js
// el()); every API call goes through api.js (CSRF header, session-expired modal).

import { api } from "./api.js";
import { fetchProviders, isUsable } from "./providers.js";
import { absoluteTime, confirmDialog, copyFromButton, el, icon, relativeTime, shortDate, toEpochSeconds, toast } from "./ui.js";

const BASE = "/dashboard/workspaces";
const PROGRESS_MS = 2_000; // while a workspace is on its way somewhere
const LIST_REFRESH_MS = 15_000; // the list, when nothing is moving
const DOMAIN_RECHECK_MS = 10_000; // re-verify while the certificate is being issued
const DOMAIN_RECHECKS = 30;

export const STATUS = {
  provisioning: { label: "Provisioning", tone: "wait" },
  running: { label: "Running", tone: "ok" },
  stopping: { label: "Stopping", tone: "wait" },
  stopped: { label: "Stopped", tone: "off" },
  starting: { label: "Starting", tone: "wait" },
  restarting: { label: "Restarting", tone: "wait" },
  error: { label: "Error", tone: "bad" },
  deleting: { label: "Deleting", tone: "wait" },
};

/** Statuses that move on their own: the page polls while a workspace is in one of them. */
export const TRANSITIONAL = new Set(["provisioning", "stopping", "starting", "restarting", "deleting"]);

// What each lifecycle button may do from which status (the server answers 409 WORKSPACE_STATE otherwise).
const ACTIONS = {
  start: { label: "Start", from: ["stopped"], icon: "play", busy: "Starting…" },
  stop: { label: "Stop", from: ["running"], icon: "stop", busy: "Stopping…" },
  restart: { label: "Restart", from: ["running"], icon: "refresh", busy: "Restarting…" },
};

const SIZES = [
  { id: "small", label: "Small", spec: "1 shared CPU · 1 GB memory · 10 GB disk" },
  { id: "medium", label: "Medium", spec: "2 shared CPUs · 2 GB memory · 20 GB disk" },
  { id: "large", label: "Large", spec: "2 performance CPUs · 4 GB memory · 40 GB disk" },
];

// The provisioning workflow's steps, in order (workflows/provision_workspace.asl.json).
const PROVISION_STEPS = [
  ["app", "Create the app"],
  ["ips", "Allocate IP addresses"],
  ["volume", "Create the data volume"],
  ["secrets", "Mint the workspace key and set secrets"],
  ["machine", "Create the machine"],
  ["wait", "Wait for the machine to start"],
  ["health", "Health check"],
  ["finish", "Ready"],
];
const STEP_LABELS = Object.fromEntries(PROVISION_STEPS);

const EVENT_STATES = {
  pending: { label: "Pending", tone: "pending" },
  started: { label: "In progress", tone: "active" },
  succeeded: { label: "Done", tone: "done" },
  failed: { label: "Failed", tone: "failed" },
  compensating: { label: "Undoing", tone: "active" },
  compensated: { label: "Undone", tone: "undone" },
};

const DOMAIN_STATUS = {
  pending: { label: "Waiting for DNS", tone: "wait" },
  verified: { label: "Verified", tone: "wait" },
  issuing: { label: "Issuing certificate", tone: "wait" },
  active: { label: "Active", tone: "ok" },
  failed: { label: "Failed", tone: "bad" },
};

const PROVIDER_LABELS = { anthropic: "Claude", openai: "Codex", google: "Gemini", github: "GitHub" };
const COMPUTE_LABELS = { fly: "Fly.io", railway: "Railway" };

// Icons this section needs that icons.js doesn't have, built with DOM APIs (no markup parsing).
const EXTRA_ICONS = {
  play: [["path", { d: "M7 4v16l13-8z" }]],
  stop: [["rect", { x: "6", y: "6", width: "12", height: "12", rx: "1.5" }]],
  trash: [["path", { d: "M3 6h18M8 6V4h8v2M19 6l-1 14H6L5 6M10 11v6M14 11v6" }]],
  globe: [["circle", { cx: "12", cy: "12", r: "10" }], ["path", { d: "M2 12h20M12 2a15 15 0 0 1 0 20M12 2a15 15 0 0 0 0 20" }]],
  plus: [["path", { d: "M12 5v14M5 12h14" }]],
};

function svgIcon(name) {
  if (!EXTRA_ICONS[name]) return icon(name);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [k, v] of Object.entries({ viewBox: "0 0 24 24", fill: "none", stroke: "currentColor", "stroke-width": "2",
    "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true", focusable: "false" })) svg.setAttribute(k, v);
  for (const [tag, attrs] of EXTRA_ICONS[name]) {
    const shape = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) shape.setAttribute(k, v);
    svg.append(shape);
  }
  return svg;
}

// ---------------------------------------------------------------------------
// small helpers
// ---------------------------------------------------------------------------

function detailHref(id) {
  return `${BASE}/${encodeURIComponent(id)}`;
}

/** The workspace id of /dashboard/workspaces/<id>, or null on the list. */
function workspaceIdFromPath(pathname) {
  const rest = pathname.startsWith(`${BASE}/`) ? pathname.slice(BASE.length + 1) : "";
  const id = decodeURIComponent(rest.split("/")[0] || "");
  return id || null;
}

/** Go to another dashboard path the way the sidebar does (dashboard.js routes on popstate). */
function navigate(href) {
  window.history.pushState({}, "", href);
  window.dispatchEvent(new PopStateEvent("popstate", { state: {} }));
}

/** replaceChildren that skips null/false children the way el() does (the DOM would print "null"). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function sectionLink(href, children, attrs = {}) {
  return el("a", { href, "data-section-link": href, ...attrs }, children);
}

function planLabel(tier) {
  const t = String(tier || "free");
  return t.charAt(0).toUpperCase() + t.slice(1);
}

function providerLabel(id) {
  return PROVIDER_LABELS[id] || String(id);
}

function sizeOf(id) {
  return SIZES.find((s) => s.id === id) || { id, label: planLabel(id), spec: "" };
}

/** The pricing link of a 402: the server's upgrade_url when it is this site, else /pricing. */
function upgradeHref(body) {
  try {
    const url = new URL(body && body.upgrade_url, window.location.origin);
    if (url.origin === window.location.origin) return url.pathname + url.search;
  } catch {
    // fall through
  }
  return "/pricing";
}

function errorMessage(err, fallback) {
  return (err && err.body && err.body.error) || fallback;
}

/** 3725 → "1 h 2 min"; 42 → "42 s". */
function duration(totalSeconds) {
  const s = Math.max(0, Math.floor(Number(totalSeconds) || 0));
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min`;
}

function statusBadge(status, testid) {
  const info = STATUS[status] || { label: status ? String(status) : "Unknown", tone: "off" };
  return el("span", { class: `ws-status ws-tone-${info.tone}`, "data-testid": testid, "data-status": status || "" },
    el("i", { "aria-hidden": "true" }), info.label);
}

function limitNotice(body, testid) {
  const limit = body && body.limit;
  const used = body && body.used;
  const plan = planLabel(body && body.plan);
  const text = Number.isFinite(limit)
    ? `Your ${plan} plan includes ${limit} workspace${limit === 1 ? "" : "s"}${Number.isFinite(used) ? ` and ${used} ${used === 1 ? "is" : "are"} in use` : ""}. Upgrade to create more, or delete one first.`
    : `Your ${plan} plan's workspace limit is reached. Upgrade to create more.`;
  return el("div", { class: "notice ws-upgrade", role: "alert", "data-testid": testid },
    svgIcon("sparkles"),
    el("span", {}, text),
    el("a", { class: "btn btn-sm btn-primary", href: upgradeHref(body), "data-testid": `${testid}-link` }, "See plans"));
}

/**
 * Runs `tick` now, then again after `nextDelay()` ms (null = stop) — never while the tab is hidden; a
 * visible-again tab ticks at once. `poke()` ticks now (after the one in flight, if any).
 */
class Poller {
  constructor(tick, nextDelay) {
    this.tick = tick;
    this.nextDelay = nextDelay;
    this.timer = null;
    this.busy = false;
    this.again = false;
    this.stopped = false;
    this.onVisibility = () => {
      if (document.visibilityState === "hidden") this.clear();
      else this.poke();
    };
  }

  start() {
    document.addEventListener("visibilitychange", this.onVisibility);
    this.poke({ evenIfHidden: true });
  }

  stop() {
    this.stopped = true;
    this.clear();
    document.removeEventListener("visibilitychange", this.onVisibility);
  }

  clear() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  async poke({ evenIfHidden = false } = {}) {
    this.clear();
    if (this.stopped) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    if (!evenIfHidden && document.visibilityState === "hidden") return;
    this.busy = true;
    try {
      await this.tick();
    } catch {
      // tick reports its own problems
    }
    this.busy = false;
    if (this.again) {
      this.again = false;
      this.poke();
      return;
    }
    this.schedule();
  }

  schedule() {
    this.clear();
    if (this.stopped || document.visibilityState === "hidden") return;
    const delay = this.nextDelay();
    if (delay) this.timer = setTimeout(() => this.poke(), delay);
  }
}

// ---------------------------------------------------------------------------
// mount
// ---------------------------------------------------------------------------

/** Render the section into `main`; returns the cleanup (stop polls, abort requests, close dialogs). */
export function mountWorkspaces(main) {
  const id = workspaceIdFromPath(window.location.pathname);
  const page = id ? new WorkspaceDetail(main, id) : new WorkspaceList(main);
  page.start();
  return () => page.destroy();
}

function removeDialogs() {
  for (const id of ["ws-create-dialog", "ws-delete-dialog", "ws-domain-remove-dialog"]) {
    const dialog = document.getElementById(id);
    if (dialog) dialog.remove();
  }
}

// ---------------------------------------------------------------------------
// the list
// ---------------------------------------------------------------------------

class WorkspaceList {
  constructor(main) {
    this.main = main;
    this.workspaces = null;
    this.usage = null;
    this.signature = "";
    this.abort = new AbortController();
    this.destroyed = false;
    this.poller = new Poller(() => this.load(), () => this.delay());
  }

  start() {
    this.usageEl = el("div", { class: "ws-usage", "data-testid": "workspaces-usage", "aria-live": "polite" });
    this.newButton = el("button", { type: "button", class: "btn btn-primary btn-sm", "data-testid": "workspace-new" },
      svgIcon("plus"), el("span", {}, "New workspace"));
    this.newButton.addEventListener("click", () => this.openCreate());
    this.noticeEl = el("div", { class: "ws-notices", "data-testid": "workspaces-notices" });
    this.bodyEl = el("div", { class: "ws-body", "aria-busy": "true" }, skeletonList());
    this.main.replaceChildren(
      el("div", { class: "page-head" },
        el("div", {},
          el("h1", {}, "Workspaces"),
          el("p", {}, "Cloud machines with your repositories checked out and your agent team running. Stop one to pause it without losing its disk.")),
        el("div", { class: "ws-head-actions" }, this.usageEl, this.newButton)),
      this.noticeEl,
      this.bodyEl,
    );
    this.poller.start();
  }

  destroy() {
    this.destroyed = true;
    this.poller.stop();
    this.abort.abort();
    removeDialogs();
  }

  delay() {
    if (!this.workspaces) return null;
    return this.workspaces.some((w) => TRANSITIONAL.has(w.status)) ? PROGRESS_MS : LIST_REFRESH_MS;
  }

  async load() {
    let data;
    try {
      data = await api("/api/workspaces", { signal: this.abort.signal });
    } catch (err) {
      if (this.destroyed || (err && err.name === "AbortError")) return;
      if (this.workspaces) return; // keep the last good list; the next refresh may work
      const expired = err && err.code === "SESSION_EXPIRED";
      const retry = el("button", { type: "button", class: "btn btn-sm" }, icon("refresh"), el("span", {}, "Retry"));
      retry.addEventListener("click", () => {
        this.bodyEl.replaceChildren(skeletonList());
        this.poller.poke();
      });
      this.bodyEl.replaceChildren(el("div", { class: "notice notice-error", role: "alert", "data-testid": "workspaces-error" },
        icon("alert"), el("span", {}, expired ? "Your session expired. Sign in again to see your workspaces." : "We couldn't load your workspaces."),
        expired ? null : retry));
      return;
    }
    if (this.destroyed) return;
    this.workspaces = (data && Array.isArray(data.workspaces) ? data.workspaces : []).filter((w) => w && w.id);
    this.usage = (data && data.usage) || null;
    this.render();
  }

  atLimit() {
    const u = this.usage;
    return Boolean(u && Number.isFinite(u.limit) && u.used >= u.limit);
  }

  render() {
    this.bodyEl.setAttribute("aria-busy", "false");
    const u = this.usage;
    if (u) {
      const limited = Number.isFinite(u.limit);
      this.usageEl.replaceChildren(el("b", {}, String(u.used ?? 0)),
        limited ? ` of ${u.limit} workspace${u.limit === 1 ? "" : "s"} · ${planLabel(u.plan)}` : ` workspaces · ${planLabel(u.plan)}, unlimited`);
    }
    if (this.atLimit() && !this.noticeEl.querySelector('[data-testid="workspaces-plan-limit"]')) {
      this.noticeEl.replaceChildren(limitNotice({ ...u, upgrade_url: "/pricing" }, "workspaces-plan-limit"));
    } else if (!this.atLimit()) {
      this.noticeEl.replaceChildren();
    }
    const signature = JSON.stringify(this.workspaces);
    if (signature === this.signature && this.bodyEl.querySelector(".ws-list, .ws-empty")) return;
    this.signature = signature;
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("[data-workspace-id]");
    if (!this.workspaces.length) {
      const create = el("button", { type: "button", class: "btn btn-primary" }, svgIcon("plus"), el("span", {}, "Create a workspace"));
      create.addEventListener("click", () => this.openCreate(create));
      this.bodyEl.replaceChildren(el("section", { class: "empty ws-empty", "data-testid": "workspaces-empty", "aria-labelledby": "ws-empty-title" },
        el("div", { class: "empty-icon" }, icon("cloud")),
        el("h2", { id: "ws-empty-title" }, "Create your first workspace"),
        el("p", {}, "Pick a name, the repositories to check out and the providers its agents may use. It's ready in about a minute."),
        el("div", { class: "empty-actions" }, create)));
      return;
    }
    this.bodyEl.replaceChildren(el("ul", { class: "ws-list", "data-testid": "workspaces-list" }, this.workspaces.map((w) => workspaceCard(w))));
    if (focused) {
      const again = this.bodyEl.querySelector(`[data-workspace-id="${CSS.escape(focused.dataset.workspaceId)}"] a`);
      if (again) again.focus({ preventScroll: true });
    }
  }

  openCreate(trigger = this.newButton) {
    openCreateDialog({
      trigger,
      onCreated: (workspace) => {
        toast(`Creating ${workspace.name}…`);
        navigate(detailHref(workspace.id));
      },
      onLimit: () => this.poller.poke(),
    });
  }
}

function skeletonList() {
  const row = () => el("li", { class: "ws-card ws-skeleton", "aria-hidden": "true" },
    el("div", { class: "skeleton-line w-40" }), el("div", { class: "skeleton-line w-60" }));
  return el("ul", { class: "ws-list" }, row(), row());
}

function workspaceCard(w) {
  const size = sizeOf(w.size);
  const repos = Array.isArray(w.repo_ids) ? w.repo_ids.length : 0;
  const error = w.status === "error" && w.error;
  return el("li", { class: `ws-card ws-is-${w.status}`, "data-testid": `workspace-card-${w.id}`, "data-workspace-id": w.id },
    el("div", { class: "ws-card-main" },
      el("div", { class: "ws-card-icon", "aria-hidden": "true" }, icon("cloud")),
      el("div", { class: "ws-card-info" },
        el("h2", { class: "ws-card-name" }, sectionLink(detailHref(w.id), w.name || w.id, { "data-testid": `workspace-link-${w.id}` })),
        el("ul", { class: "ws-meta" },
          el("li", {}, `${size.label}${w.region ? ` · ${w.region}` : ""}`),
          el("li", {}, `${repos} repo${repos === 1 ? "" : "s"}`),
          w.host ? el("li", { class: "mono ws-host" }, w.host) : null,
          el("li", { title: absoluteTime(toEpochSeconds(w.created_at)) }, `Created ${shortDate(w.created_at)}`))),
      statusBadge(w.status, `workspace-status-${w.id}`)),
    error ? el("p", { class: "ws-card-error", "data-testid": `workspace-card-error-${w.id}` }, icon("alert"),
      el("span", {}, error.message || error.code || "Provisioning failed"), error.step ? el("span", { class: "ws-muted" }, ` (step: ${error.step})`) : null) : null);
}

// ---------------------------------------------------------------------------
// the create dialog
// ---------------------------------------------------------------------------

function openCreateDialog({ trigger, onCreated, onLimit }) {
  removeDialogs();
  const abort = new AbortController();
  const name = el("input", { class: "ws-input", id: "ws-create-name", name: "name", type: "text", required: true, maxlength: "64",
    autocomplete: "off", spellcheck: "false", placeholder: "e.g. backend-agents", "data-testid": "workspace-name-input" });
  const reposBox = el("div", { class: "ws-choices", "data-testid": "workspace-repos", "aria-busy": "true" }, el("div", { class: "skeleton-line w-60" }));
  const providersBox = el("div", { class: "ws-choices", "data-testid": "workspace-providers", "aria-busy": "true" }, el("div", { class: "skeleton-line w-40" }));
  const size = el("select", { class: "ws-input", id: "ws-create-size", name: "size", "data-testid": "workspace-size" },
    SIZES.map((s) => el("option", { value: s.id }, `${s.label} — ${s.spec}`)));
  const errorEl = el("div", { class: "ws-form-error", "data-testid": "workspace-create-error", role: "alert", hidden: true });
  const cancel = el("button", { type: "button", class: "btn", "data-testid": "workspace-create-cancel" }, "Cancel");
  const submit = el("button", { type: "submit", class: "btn btn-primary", "data-testid": "workspace-create-submit" },
    icon("cloud"), el("span", {}, "Create workspace"));
  const form = el("form", { class: "modal-body ws-form", novalidate: true },
    el("div", { class: "modal-icon" }, icon("cloud")),
    el("h2", { id: "ws-create-title" }, "New workspace"),
    el("p", { id: "ws-create-desc" }, "A cloud machine running the agent host, with your repositories checked out."),
    el("div", { class: "ws-field" }, el("label", { for: "ws-create-name" }, "Name"), name),
    el("fieldset", { class: "ws-field" }, el("legend", {}, "Repositories"), reposBox),
    el("fieldset", { class: "ws-field" }, el("legend", {}, "Providers its agents may use"), providersBox),
    el("div", { class: "ws-field" }, el("label", { for: "ws-create-size" }, "Size"), size),
    errorEl,
    el("div", { class: "modal-actions" }, cancel, submit));
  const dialog = el("dialog", { class: "modal ws-modal", id: "ws-create-dialog", "data-testid": "workspace-create-dialog",
    "aria-labelledby": "ws-create-title", "aria-describedby": "ws-create-desc" }, form);
  document.body.appendChild(dialog);

  let busy = false;
  const close = () => {
    if (dialog.open) dialog.close();
    else dialog.remove();
  };
  dialog.addEventListener("cancel", (event) => {
    if (busy) event.preventDefault();
  });
  dialog.addEventListener("close", () => {
    abort.abort();
    dialog.remove();
    if (trigger && trigger.isConnected) trigger.focus({ preventScroll: true });
  });
  cancel.addEventListener("click", close);
  // A link inside (to Repositories or Providers) leaves the section: close the dialog on the way out.
  dialog.addEventListener("click", (event) => {
    if (event.target.closest("a[data-section-link]")) close();
  });

  const showError = (content) => {
    errorEl.replaceChildren(...(Array.isArray(content) ? content : [content]));
    errorEl.hidden = false;
    errorEl.scrollIntoView({ block: "nearest" });
  };

  loadRepoChoices(reposBox, abort.signal);
  loadProviderChoices(providersBox, abort.signal);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    errorEl.hidden = true;
    const value = name.value.trim();
    if (!value || value.length > 64) {
      name.setAttribute("aria-invalid", "true");
      showError(el("p", {}, "Give the workspace a name (up to 64 characters)."));
      name.focus();
      return;
    }
    name.removeAttribute("aria-invalid");
    const body = {
      name: value,
      repo_ids: [...reposBox.querySelectorAll("input:checked")].map((i) => i.value),
      providers: [...providersBox.querySelectorAll("input:checked")].map((i) => i.value),
      size: size.value,
    };
    busy = true;
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    let workspace;
    try {
      workspace = await api("/api/workspaces", { method: "POST", body, signal: abort.signal });
    } catch (err) {
      busy = false;
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
      if (err && err.name === "AbortError") return;
      if (err && err.code === "SESSION_EXPIRED") return;
      if (err && err.code === "PLAN_LIMIT_EXCEEDED") {
        showError(limitNotice(err.body, "workspace-plan-limit"));
        if (onLimit) onLimit();
        return;
      }
      if (err && (err.code === "REPO_IN_USE" || err.code === "REPO_NOT_FOUND")) {
        showError(el("p", {}, errorMessage(err, "One of those repositories can't be attached."), " The list below is up to date again."));
        loadRepoChoices(reposBox, abort.signal);
        return;
      }
      showError(el("p", {}, errorMessage(err, "We couldn't create the workspace. Please try again.")));
      return;
    }
    busy = false;
    close();
    onCreated(workspace);
  });

  if (typeof dialog.showModal === "function") dialog.showModal();
  else dialog.setAttribute("open", "");
  name.focus();
  return dialog;
}

async function loadRepoChoices(box, signal) {
  box.setAttribute("aria-busy", "true");
  let repos;
  try {
    const data = await api("/api/repos", { signal });
    repos = (data && Array.isArray(data.repositories) ? data.repositories : []).filter((r) => r && r.id);
  } catch (err) {
    if (err && err.name === "AbortError") return;
    box.setAttribute("aria-busy", "false");
    box.replaceChildren(el("p", { class: "ws-choices-note" }, "We couldn't load your repositories. You can attach them later."));
    return;
  }
  box.setAttribute("aria-busy", "false");
  if (!repos.length) {
    box.replaceChildren(el("p", { class: "ws-choices-note", "data-testid": "workspace-repos-empty" },
      "You haven't added any repositories yet. ",
      sectionLink("/dashboard/repositories", "Add repositories", { "data-testid": "workspace-repos-link" }),
      " first, or create the workspace without any."));
    return;
  }
  box.replaceChildren(el("ul", { class: "ws-choice-list" }, repos.map((repo) => {
    const inUse = Boolean(repo.attached_workspace_id);
    const id = `ws-repo-${repo.id}`;
    return el("li", { class: inUse ? "ws-choice is-disabled" : "ws-choice" },
      el("input", { type: "checkbox", id, value: repo.id, disabled: inUse, "data-testid": `workspace-repo-${repo.id}` }),
      el("label", { for: id }, el("span", { class: "ws-choice-name" }, repo.full_name || repo.id),
        inUse ? el("span", { class: "ws-choice-note" }, "In another workspace") : null));
  })));
}

async function loadProviderChoices(box, signal) {
  box.setAttribute("aria-busy", "true");
  let providers;
  try {
    providers = (await fetchProviders({ signal })).filter(isUsable);
  } catch (err) {
    if (err && err.name === "AbortError") return;
    box.setAttribute("aria-busy", "false");
    box.replaceChildren(el("p", { class: "ws-choices-note" }, "We couldn't load your providers."));
    return;
  }
  box.setAttribute("aria-busy", "false");
  if (!providers.length) {
    box.replaceChildren(el("p", { class: "ws-choices-note", "data-testid": "workspace-providers-empty" },
      "No provider is connected yet. ",
      sectionLink("/dashboard/providers", "Connect one", { "data-testid": "workspace-providers-link" }),
      " so its agents can work."));
    return;
  }
  box.replaceChildren(el("ul", { class: "ws-choice-list" }, providers.map((p) => {
    const id = `ws-provider-${p.id}`;
    return el("li", { class: "ws-choice" },
      el("input", { type: "checkbox", id, value: p.id, "data-testid": `workspace-provider-${p.id}` }),
      el("label", { for: id }, el("span", { class: "ws-choice-name" }, p.display_name || providerLabel(p.id))));
  })));
}

// ---------------------------------------------------------------------------
// one workspace
// ---------------------------------------------------------------------------

class WorkspaceDetail {
  constructor(main, id) {
    this.main = main;
    this.id = id;
    this.ws = null;
    this.events = [];
    this.cursor = null;
    this.repoNames = new Map();
    this.domainView = null; // the last claim/verify answer (records, checks)
    this.domainRechecks = 0;
    this.domainTimer = null;
    this.sig = {};
    this.abort = new AbortController();
    this.destroyed = false;
    this.built = false;
    this.gone = false;
    this.poller = new Poller(() => this.refresh(), () => this.delay());
  }

  start() {
    this.main.replaceChildren(
      backLink(),
      el("div", { class: "page-head" }, el("div", {}, el("h1", {}, "Workspace"), el("p", {}, "Loading…"))),
      el("div", { class: "ws-body", "aria-busy": "true" }, skeletonList()));
    this.poller.start();
    this.loadRepoNames();
  }

  destroy() {
    this.destroyed = true;
    this.poller.stop();
    clearTimeout(this.domainTimer);
    this.abort.abort();
    removeDialogs();
  }

  delay() {
    if (!this.ws || this.gone) return null;
    return TRANSITIONAL.has(this.ws.status) ? PROGRESS_MS : null;
  }

  async loadRepoNames() {
    try {
      const data = await api("/api/repos", { signal: this.abort.signal });
      for (const r of (data && data.repositories) || []) if (r && r.id) this.repoNames.set(r.id, r.full_name);
    } catch {
      return; // the ids are shown instead
    }
    if (this.built && !this.destroyed) this.renderDetails(true);
  }

  async refresh() {
    let ws;
    try {
      ws = await api(`/api/workspaces/${encodeURIComponent(this.id)}`, { signal: this.abort.signal });
    } catch (err) {
      if (this.destroyed || (err && err.name === "AbortError")) return;
      if (err && err.status === 404) {
        this.gone = true;
        if (this.ws && this.ws.status === "deleting") {
          toast(`Deleted ${this.ws.name}`);
          navigate(BASE);
        } else {
          this.renderNotFound();
        }
        return;
      }
      if (this.ws) return; // keep what is shown; the next poll may work
      this.renderLoadError(err);
      return;
    }
    if (this.destroyed) return;
    this.ws = ws;
    await this.loadEvents();
    if (this.destroyed) return;
    this.render();
  }

  async loadEvents() {
    // A few pages at most per tick; the next tick continues from the cursor.
    for (let page = 0; page < 5; page += 1) {
      const query = this.cursor ? `?after=${encodeURIComponent(this.cursor)}` : "";
      let data;
      try {
        data = await api(`/api/workspaces/${encodeURIComponent(this.id)}/events${query}`, { signal: this.abort.signal });
      } catch {
        return;
      }
      const events = (data && Array.isArray(data.events) ? data.events : []).filter((e) => e && e.step);
      this.events.push(...events);
      const advanced = data && data.cursor && data.cursor !== this.cursor;
      if (data && data.cursor) this.cursor = data.cursor;
      if (!events.length || !advanced) return;
    }
  }

  renderNotFound() {
    this.main.replaceChildren(
      backLink(),
      el("section", { class: "empty", "data-testid": "workspace-not-found", "aria-labelledby": "ws-nf-title" },
        el("div", { class: "empty-icon" }, icon("inbox")),
        el("h1", { id: "ws-nf-title" }, "This workspace doesn't exist"),
        el("p", { class: "muted" }, "It may have been deleted, or it belongs to another account."),
        el("div", { class: "empty-actions" }, sectionLink(BASE, "All workspaces", { class: "btn btn-primary" }))));
  }

  renderLoadError(err) {
    const expired = err && err.code === "SESSION_EXPIRED";
    const retry = el("button", { type: "button", class: "btn btn-sm" }, icon("refresh"), el("span", {}, "Retry"));
    retry.addEventListener("click", () => this.poller.poke());
    const body = this.main.querySelector(".ws-body");
    if (body) {
      body.replaceChildren(el("div", { class: "notice notice-error", role: "alert", "data-testid": "workspace-load-error" },
        icon("alert"), el("span", {}, expired ? "Your session expired." : "We couldn't load this workspace."), expired ? null : retry));
    }
  }

  // -- layout (built once, then updated in place so focus and typing survive the polls) ----------

  build() {
    this.built = true;
    this.titleEl = el("h1", { "data-testid": "workspace-title" });
    this.statusEl = el("span", { class: "ws-title-status" });
    this.ledeEl = el("p", { class: "ws-lede" });
    this.buttons = {};
    for (const [action, spec] of Object.entries(ACTIONS)) {
      const button = el("button", { type: "button", class: "btn btn-sm", "data-testid": `workspace-${action}` },
        svgIcon(spec.icon), el("span", {}, spec.label));
      button.addEventListener("click", () => this.lifecycle(action, button));
      this.buttons[action] = button;
    }
    this.buttons.delete = el("button", { type: "button", class: "btn btn-sm pv-danger-ghost", "data-testid": "workspace-delete" },
      svgIcon("trash"), el("span", {}, "Delete"));
    this.buttons.delete.addEventListener("click", () => this.confirmDelete(this.buttons.delete));
    this.actionError = el("p", { class: "ws-form-error", role: "alert", "data-testid": "workspace-action-error", hidden: true });
    this.errorEl = el("div", { class: "ws-error-box" });
    this.eventsEl = el("ol", { class: "ws-steps", "data-testid": "workspace-events", "aria-live": "polite" });
    this.progressNote = el("p", { class: "ws-muted ws-progress-note" });
    this.detailsEl = el("dl", { class: "ws-details", "data-testid": "workspace-details" });
    this.domainEl = el("div", { class: "card-body ws-domain-body" });
    this.main.replaceChildren(
      backLink(),
      el("div", { class: "page-head ws-detail-head", "data-testid": "workspace-detail" },
        el("div", { class: "ws-title-block" }, el("div", { class: "ws-title-row" }, this.titleEl, this.statusEl), this.ledeEl),
        el("div", { class: "ws-actions", role: "group", "aria-label": "Workspace actions" },
          this.buttons.start, this.buttons.stop, this.buttons.restart, this.buttons.delete)),
      this.actionError,
      this.errorEl,
      el("div", { class: "ws-grid" },
        el("section", { class: "card", "aria-labelledby": "ws-progress-title" },
          el("div", { class: "card-head" }, el("h2", { id: "ws-progress-title" }, "Progress")),
          el("div", { class: "card-body" }, this.progressNote, this.eventsEl)),
        el("section", { class: "card", "aria-labelledby": "ws-details-title" },
          el("div", { class: "card-head" }, el("h2", { id: "ws-details-title" }, "Details")),
          el("div", { class: "card-body" }, this.detailsEl))),
      el("section", { class: "card ws-domain", "data-testid": "domain-card", "aria-labelledby": "ws-domain-title" },
        el("div", { class: "card-head" }, el("h2", { id: "ws-domain-title" }, svgIcon("globe"), el("span", {}, "Custom domain"))),
        this.domainEl),
    );
  }

  render() {
    if (!this.built) this.build();
    const ws = this.ws;
    document.title = `${ws.name || "Workspace"} · Workspaces · Agent Relay Cloud`;
    if (this.titleEl.textContent !== ws.name) this.titleEl.textContent = ws.name || ws.id;
    this.statusEl.replaceChildren(statusBadge(ws.status, "workspace-status"));
    this.ledeEl.textContent = lede(ws);
    for (const [action, spec] of Object.entries(ACTIONS)) {
      const button = this.buttons[action];
      if (button.getAttribute("aria-busy") === "true") continue;
      button.disabled = !spec.from.includes(ws.status);
    }
    this.buttons.delete.disabled = ws.status === "deleting";
    this.renderError();
    this.renderEvents();
    this.renderDetails();
    this.renderDomain();
  }

  renderError() {
    const ws = this.ws;
    const error = ws.status === "error" && ws.error ? ws.error : null;
    const sig = JSON.stringify(error);
    if (sig === this.sig.error) return;
    this.sig.error = sig;
    if (!error) {
      this.errorEl.replaceChildren();
      return;
    }
    const step = error.step ? STEP_LABELS[error.step] || error.step : null;
    this.errorEl.replaceChildren(el("div", { class: "notice notice-error ws-error", role: "alert", "data-testid": "workspace-error" },
      icon("alert"),
      el("div", {},
        el("strong", {}, step ? `Failed at “${step}”` : "Provisioning failed"),
        el("p", { "data-testid": "workspace-error-message" }, error.message || "Something went wrong."),
        error.code || error.step
          ? el("p", { class: "ws-muted ws-error-ids" },
            error.code ? ["Code ", el("span", { class: "mono", "data-testid": "workspace-error-code" }, error.code)] : null,
            error.code && error.step ? " · " : null,
            error.step ? ["step ", el("span", { class: "mono", "data-testid": "workspace-error-step" }, error.step)] : null)
          : null,
        el("p", { class: "ws-muted" }, "What it had created was removed and your plan slot is free again. Delete it, or create a new one."))));
  }

  renderEvents() {
    const ws = this.ws;
    const latest = new Map(); // step → its latest event, in order of first appearance
    for (const event of this.events) {
      if (latest.has(event.step)) latest.delete(event.step);
      latest.set(event.step, event);
    }
    const firstSeen = [];
    for (const event of this.events) if (!firstSeen.includes(event.step)) firstSeen.push(event.step);
    const provisioningSeen = PROVISION_STEPS.some(([step]) => latest.has(step));
    const steps = [];
    if (provisioningSeen || ws.status === "provisioning") {
      for (const [step] of PROVISION_STEPS) steps.push(step);
    }
    for (const step of firstSeen) if (!steps.includes(step)) steps.push(step);
    const failed = new Set(this.events.filter((e) => e.state === "failed").map((e) => e.step));
    const items = steps.map((step) => {
      const event = latest.get(step);
      const state = event ? event.state : "pending";
      // A failed step that compensation undid still shows that it failed, and why.
      const undone = state === "compensating" || state === "compensated";
      const failure = undone && failed.has(step) ? [...this.events].reverse().find((e) => e.step === step && e.state === "failed") : null;
      return { step, state, failed: Boolean(failure), message: (failure && failure.message) || (event && event.message), at: event && event.at };
    });
    const sig = JSON.stringify(items);
    if (sig !== this.sig.events) {
      this.sig.events = sig;
      this.eventsEl.replaceChildren(...items.map((item) => stepItem(item)));
      if (!items.length) this.eventsEl.replaceChildren(el("li", { class: "ws-step ws-step-none" }, "No activity yet."));
    }
    const done = items.filter((i) => PROVISION_STEPS.some(([s]) => s === i.step) && i.state === "succeeded").length;
    this.progressNote.textContent = ws.status === "provisioning"
      ? `Setting up: ${done} of ${PROVISION_STEPS.length} steps done. This page updates by itself.`
      : TRANSITIONAL.has(ws.status) ? `${STATUS[ws.status].label}… this page updates by itself.` : "";
    this.progressNote.hidden = !this.progressNote.textContent;
  }

  renderDetails(force = false) {
    const ws = this.ws;
    const sig = JSON.stringify([ws, this.repoNames.size]);
    if (!force && sig === this.sig.details) return;
    this.sig.details = sig;
    const running = toEpochSeconds(ws.running_since);
    const compute = Number(ws.compute_seconds || 0) + (running ? Math.max(0, Date.now() / 1000 - running) : 0);
    const repos = Array.isArray(ws.repo_ids) ? ws.repo_ids : [];
    const providers = Array.isArray(ws.providers) ? ws.providers : [];
    const size = sizeOf(ws.size);
    const row = (label, value, testid) => el("div", {}, el("dt", {}, label), el("dd", { "data-testid": testid }, value));
    this.detailsEl.replaceChildren(
      row("Size", [size.label, size.spec ? el("span", { class: "ws-muted" }, ` · ${size.spec}`) : null], "workspace-size-detail"),
      row("Where", `${COMPUTE_LABELS[ws.compute] || ws.compute || "—"}${ws.region ? ` · ${ws.region}` : ""}`, "workspace-where"),
      row("Host", ws.host ? el("span", { class: "mono ws-wrap" }, ws.host) : "Assigned while provisioning", "workspace-host"),
      row("Created", el("span", { title: absoluteTime(toEpochSeconds(ws.created_at)) }, shortDate(ws.created_at)), "workspace-created"),
      row("Running", running ? el("span", { title: absoluteTime(running) }, `Started ${relativeTime(running)}`) : "Not running", "workspace-running"),
      row("Compute time", duration(compute), "workspace-compute"),
      row("Repositories", repos.length
        ? el("ul", { class: "pv-chips ws-chips" }, repos.map((id) => el("li", { class: "pv-chip" }, this.repoNames.get(id) || id)))
        : "None", "workspace-repos-detail"),
      row("Providers", providers.length
        ? el("ul", { class: "pv-chips ws-chips" }, providers.map((id) => el("li", { class: "pv-chip" }, providerLabel(id))))
        : "None", "workspace-providers-detail"),
    );
  }

  // -- lifecycle -----------------------------------------------------------------------------------

  async lifecycle(action, button) {
    const spec = ACTIONS[action];
    this.actionError.hidden = true;
    for (const b of Object.values(this.buttons)) b.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.lastElementChild.textContent = spec.busy;
    let ws;
    try {
      ws = await api(`/api/workspaces/${encodeURIComponent(this.id)}/${action}`, { method: "POST", signal: this.abort.signal });
    } catch (err) {
      button.removeAttribute("aria-busy");
      button.lastElementChild.textContent = spec.label;
      if (this.destroyed || (err && err.name === "AbortError")) return;
      if (!(err && err.code === "SESSION_EXPIRED")) {
        const status = err && err.body && err.body.status;
        this.actionError.textContent = err && err.code === "WORKSPACE_STATE"
          ? `It can't ${action} right now${status ? `: it is ${(STATUS[status] || { label: status }).label.toLowerCase()}` : ""}.`
          : errorMessage(err, `We couldn't ${action} it. Please try again.`);
        this.actionError.hidden = false;
      }
      this.poller.poke();
      return;
    }
    button.removeAttribute("aria-busy");
    button.lastElementChild.textContent = spec.label;
    if (this.destroyed) return;
    if (ws && ws.id) this.ws = ws;
    this.render();
    this.poller.poke();
  }

  confirmDelete(trigger) {
    const ws = this.ws;
    const input = el("input", { class: "ws-input", id: "ws-delete-name", type: "text", autocomplete: "off", spellcheck: "false",
      "data-testid": "workspace-delete-name", "aria-describedby": "ws-delete-dialog-desc" });
    const dialog = confirmDialog({
      id: "ws-delete-dialog",
      testid: "workspace-delete",
      iconName: "alert",
      title: `Delete ${ws.name}?`,
      description: "Its machine, its disk and everything on it are removed for good, its repositories are detached and its key stops working. This can't be undone.",
      extra: el("div", { class: "ws-field ws-confirm-field" },
        el("label", { for: "ws-delete-name" }, "Type ", el("b", { class: "mono" }, ws.name), " to confirm"), input),
      cancelLabel: "Keep it",
      confirmLabel: "Delete workspace",
      trigger,
      fallbackFocus: () => this.main.querySelector("h1"),
      action: async () => {
        if (input.value.trim() !== ws.name) return "The name doesn't match.";
        try {
          const answer = await api(`/api/workspaces/${encodeURIComponent(this.id)}`, { method: "DELETE", signal: this.abort.signal });
          this.ws = answer && answer.id ? answer : { ...this.ws, status: "deleting" };
        } catch (err) {
          if (err && err.code === "SESSION_EXPIRED") return null;
          if (err && err.status === 404) {
            navigate(BASE);
            return null;
          }
          return errorMessage(err, "We couldn't delete it. Please try again.");
        }
        if (this.ws.status !== "deleting") this.ws = { ...this.ws, status: "deleting" };
        this.render();
        this.poller.poke();
        return null;
      },
    });
    // The confirm button stays disabled until the name is typed exactly.
    const confirm = dialog.querySelector('[data-testid="workspace-delete-confirm"]');
    const sync = () => (confirm.disabled = input.value.trim() !== ws.name);
    input.addEventListener("input", sync);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        if (!confirm.disabled) confirm.click();
      }
    });
    sync();
    input.focus();
  }

  // -- the custom domain -------------------------------------------------------------------------

  domainInfo() {
    const map = this.ws && this.ws.domain && typeof this.ws.domain === "object" ? this.ws.domain : null;
    const name = map && (map.domain || map.name);
    if (!name) return null;
    // The last claim/verify answer fills in what the workspace's map may not carry (records, checks).
    const view = this.domainView && this.domainView.domain === name ? this.domainView : {};
    const merged = { ...view };
    for (const [key, value] of Object.entries(map)) if (value !== null && value !== undefined) merged[key] = value;
    return { ...merged, domain: name };
  }

  renderDomain(force = false) {
    const info = this.domainInfo();
    const sig = JSON.stringify([info, this.ws.host, this.domainNotice || null]);
    if (!force && sig === this.sig.domain) return;
    this.sig.domain = sig;
    if (!info) {
      this.renderDomainForm();
      return;
    }
    const records = domainRecords(info, this.ws.host);
    const status = DOMAIN_STATUS[info.status] || { label: info.status || "Unknown", tone: "off" };
    const verify = el("button", { type: "button", class: "btn btn-primary btn-sm", "data-testid": "domain-verify" },
      icon("refresh"), el("span", {}, "Verify"));
    verify.addEventListener("click", () => this.verifyDomain(verify));
    const remove = el("button", { type: "button", class: "btn btn-ghost btn-sm pv-danger-ghost", "data-testid": "domain-remove" },
      icon("x"), el("span", {}, "Remove"));
    remove.addEventListener("click", () => this.confirmRemoveDomain(info.domain, remove));
    const expires = toEpochSeconds(info.expires_at);
    fill(this.domainEl,
      el("div", { class: "ws-domain-head" },
        el("span", { class: "mono ws-domain-name ws-wrap", "data-testid": "domain-name" }, info.domain),
        el("span", { class: `ws-status ws-tone-${status.tone}`, "data-testid": "domain-status", "data-status": info.status || "" },
          el("i", { "aria-hidden": "true" }), status.label)),
      info.status === "active"
        ? el("p", { class: "ws-muted" }, "Your domain points at this workspace and its certificate is live.")
        : el("p", { class: "ws-muted" }, "Create these two records at your DNS provider, then press Verify. DNS changes can take a few minutes to show up.",
          expires && info.status === "pending" ? ` Claim it by ${absoluteTime(expires)}, or it is released.` : ""),
      el("ul", { class: "ws-records", "data-testid": "domain-records" }, records.map((r) => recordItem(r))),
      info.checked_at ? checksList(info.checks, info.checked_at) : null,
      Array.isArray(info.reasons) && info.reasons.length && info.status === "pending"
        ? el("ul", { class: "ws-reasons", "data-testid": "domain-reasons" }, info.reasons.map((r) => el("li", {}, String(r))))
        : null,
      info.error && info.status === "failed"
        ? el("p", { class: "ws-form-error", "data-testid": "domain-failure" }, info.error.message || info.error.code || "It failed.",
          " Press Verify to try again.")
        : null,
      this.domainNotice ? el("p", { class: "ws-form-error", role: "alert", "data-testid": "domain-error" }, this.domainNotice) : null,
      el("div", { class: "ws-domain-actions" }, verify, remove));
  }

  renderDomainForm() {
    const input = el("input", { class: "ws-input", id: "ws-domain-input", type: "text", inputmode: "url", autocomplete: "off",
      spellcheck: "false", placeholder: "agents.acme.dev", "data-testid": "domain-input", required: true });
    const claim = el("button", { type: "submit", class: "btn btn-primary btn-sm", "data-testid": "domain-claim" }, el("span", {}, "Add domain"));
    const problem = el("div", { class: "ws-domain-problem", "data-testid": "domain-problem" });
    const form = el("form", { class: "ws-domain-form", novalidate: true },
      el("label", { for: "ws-domain-input" }, "Domain"),
      el("div", { class: "ws-inline" }, input, claim));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.claimDomain(input, claim, problem);
    });
    this.domainEl.replaceChildren(
      el("p", { class: "ws-muted" }, "Serve this workspace on your own domain. You prove you own it with a TXT record and point it here with a CNAME."),
      form,
      problem);
  }

  async claimDomain(input, button, problem) {
    const domain = input.value.trim().toLowerCase().replace(/^https?:\/\//, "").replace(/\/+$/, "");
    problem.replaceChildren();
    if (!domain) {
      input.setAttribute("aria-invalid", "true");
      problem.replaceChildren(el("p", { class: "ws-form-error", role: "alert", "data-testid": "domain-error" }, "Enter a domain, e.g. agents.acme.dev."));
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    let view;
    try {
      view = await api(`/api/workspaces/${encodeURIComponent(this.id)}/domain`, { method: "POST", body: { domain }, signal: this.abort.signal });
    } catch (err) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      if (this.destroyed || (err && err.name === "AbortError") || (err && err.code === "SESSION_EXPIRED")) return;
      if (err && err.code === "FEATURE_NOT_AVAILABLE") {
        problem.replaceChildren(el("div", { class: "notice ws-upgrade", role: "alert", "data-testid": "domain-upgrade" },
          svgIcon("sparkles"),
          el("span", {}, `Custom domains come with the ${planLabel((err.body && err.body.required_plan) || "team")} plan${
            err.body && err.body.plan ? ` (you're on ${planLabel(err.body.plan)})` : ""}.`),
          el("a", { class: "btn btn-sm btn-primary", href: upgradeHref(err.body), "data-testid": "domain-upgrade-link" }, "Upgrade")));
        return;
      }
      input.setAttribute("aria-invalid", "true");
      const message = err && err.code === "DOMAIN_TAKEN"
        ? "That domain is already verified for another workspace."
        : errorMessage(err, "We couldn't add that domain. Please try again.");
      problem.replaceChildren(el("p", { class: "ws-form-error", role: "alert", "data-testid": "domain-error" }, message));
      input.focus();
      return;
    }
    if (this.destroyed) return;
    this.domainView = view;
    this.domainNotice = null;
    this.ws = { ...this.ws, domain: { ...(this.ws.domain || {}), ...view } };
    this.renderDomain(true);
    const verify = this.domainEl.querySelector('[data-testid="domain-verify"]');
    if (verify) verify.focus({ preventScroll: true });
  }

  async verifyDomain(button) {
    clearTimeout(this.domainTimer);
    if (button) {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
    }
    let view;
    try {
      view = await api(`/api/workspaces/${encodeURIComponent(this.id)}/domain/verify`, { method: "POST", signal: this.abort.signal });
    } catch (err) {
      if (button) {
        button.disabled = false;
        button.removeAttribute("aria-busy");
      }
      if (this.destroyed || (err && err.name === "AbortError") || (err && err.code === "SESSION_EXPIRED")) return;
      if (err && err.status === 404 && err.code !== "WORKSPACE_NOT_FOUND") {
        // The claim is gone (expired, or removed in another tab).
        this.domainView = null;
        this.ws = { ...this.ws, domain: null };
        this.domainNotice = null;
        this.renderDomain(true);
        return;
      }
      this.domainNotice = errorMessage(err, "We couldn't check the records. Please try again.");
      this.renderDomain(true);
      return;
    }
    if (this.destroyed) return;
    this.domainView = { ...(this.domainView || {}), ...view };
    this.domainNotice = null;
    this.ws = { ...this.ws, domain: { ...(this.ws.domain || {}), ...view } };
    this.renderDomain(true);
    const again = this.domainEl.querySelector('[data-testid="domain-verify"]');
    if (button && document.activeElement === document.body && again) again.focus({ preventScroll: true });
    // While the certificate is on its way, look again by itself for a while.
    if ((view.status === "verified" || view.status === "issuing") && this.domainRechecks < DOMAIN_RECHECKS) {
      this.domainRechecks += 1;
      this.domainTimer = setTimeout(() => {
        if (!this.destroyed && document.visibilityState !== "hidden") this.verifyDomain(null);
      }, DOMAIN_RECHECK_MS);
    }
  }

  confirmRemoveDomain(domain, trigger) {
    confirmDialog({
      id: "ws-domain-remove-dialog",
      testid: "domain-remove",
      iconName: "x",
      title: `Remove ${domain}?`,
      description: "The workspace stops answering on it and its certificate is deleted. You can add it again later (and prove ownership again).",
      cancelLabel: "Keep it",
      confirmLabel: "Remove domain",
      trigger,
      fallbackFocus: () => this.domainEl.querySelector("input"),
      action: async () => {
        try {
          await api(`/api/workspaces/${encodeURIComponent(this.id)}/domain`, { method: "DELETE", signal: this.abort.signal });
        } catch (err) {
          if (err && err.code === "SESSION_EXPIRED") return null;
          if (!(err && err.status === 404)) return errorMessage(err, "We couldn't remove it. Please try again.");
        }
        clearTimeout(this.domainTimer);
        this.domainView = null;
        this.domainNotice = null;
        this.ws = { ...this.ws, domain: null };
        this.renderDomain(true);
        toast(`Removed ${domain}`);
        return null;
      },
    });
  }
}

function backLink() {
  return sectionLink(BASE, [icon("arrowLeft"), el("span", {}, "All workspaces")], { class: "ws-back", "data-testid": "workspaces-back" });
}

function lede(ws) {
  switch (ws.status) {
    case "provisioning": return "Setting up its machine, disk and key. It's ready in about a minute.";
    case "running": return "Running. Its agents are in your relay.";
    case "stopping": return "Stopping the machine. Its disk is kept.";
    case "stopped": return "Stopped. Its disk is kept; start it to pick up where it left off.";
    case "starting": return "Starting the machine.";
    case "restarting": return "Restarting the machine.";
    case "error": return "Provisioning failed.";
    case "deleting": return "Removing its machine, disk and key…";
    default: return "";
  }
}

function stepItem({ step, state, failed, message, at }) {
  const known = EVENT_STATES[state] || { label: state, tone: "pending" };
  const info = failed && state !== "failed" ? { label: `Failed, ${known.label.toLowerCase()}`, tone: "failed" } : known;
  const when = toEpochSeconds(at);
  const mark = info.tone === "done" ? icon("check") : info.tone === "failed" ? icon("x") : info.tone === "undone" ? icon("minus") : null;
  return el("li", { class: `ws-step ws-step-${info.tone}`, "data-testid": `workspace-step-${step}`, "data-step": step, "data-state": state,
    "data-failed": failed ? "true" : null },
    el("span", { class: "ws-step-mark", "aria-hidden": "true" }, mark),
    el("div", { class: "ws-step-text" },
      el("span", { class: "ws-step-label" }, STEP_LABELS[step] || step),
      message ? el("span", { class: "ws-step-message" }, message) : null),
    el("span", { class: "ws-step-state" }, info.label,
      when ? el("span", { class: "ws-step-time", title: absoluteTime(when) }, ` · ${relativeTime(when)}`) : null));
}

/** The two records to create: the server's list when it gave one, else built from the claim. */
function domainRecords(info, host) {
  if (Array.isArray(info.records) && info.records.length) return info.records.filter((r) => r && r.type);
  const records = [{ type: "TXT", name: `_relay-challenge.${info.domain}`, value: info.token || info.txt_value || "" }];
  records.push({ type: "CNAME", name: info.domain, value: host || "" });
  return records;
}

function recordItem(record) {
  const type = String(record.type).toUpperCase();
  const key = type.toLowerCase();
  const copyButton = (what, text) => {
    const button = el("button", { type: "button", class: "btn btn-sm ws-copy", "data-testid": `domain-copy-${key}-${what}`,
      "aria-label": `Copy the ${type} record's ${what}` }, icon("copy"), el("span", {}, "Copy"));
    button.addEventListener("click", () => copyFromButton(button, text));
    return button;
  };
  return el("li", { class: "ws-record", "data-testid": `domain-record-${key}` },
    el("span", { class: "ws-record-type tag" }, type),
    el("div", { class: "ws-record-field" },
      el("span", { class: "ws-record-label" }, "Name"),
      el("code", { class: "ws-record-value", "data-testid": `domain-record-${key}-name` }, record.name || ""),
      copyButton("name", record.name || "")),
    el("div", { class: "ws-record-field" },
      el("span", { class: "ws-record-label" }, type === "CNAME" ? "Points to" : "Value"),
      el("code", { class: "ws-record-value", "data-testid": `domain-record-${key}-value` }, record.value || "—"),
      record.value ? copyButton("value", record.value) : null));
}

/** {txt, cname} as booleans (or objects with ok/found) → a list of what was found at the last check. */
function checksList(checks, checkedAt) {
  if (!checks || typeof checks !== "object") return null;
  const ok = (v) => (v && typeof v === "object" ? Boolean(v.ok ?? v.found ?? v.matched ?? v.valid) : Boolean(v));
  const item = (key, label) => {
    if (!(key in checks)) return null;
    const good = ok(checks[key]);
    return el("li", { class: good ? "ws-check is-ok" : "ws-check is-missing", "data-testid": `domain-check-${key}`, "data-ok": String(good) },
      icon(good ? "checkCircle" : "xCircle"), el("span", {}, `${label}: ${good ? "found" : "not found yet"}`));
  };
  const when = toEpochSeconds(checkedAt);
  return el("ul", { class: "ws-checks", "data-testid": "domain-checks", title: when ? `Checked ${absoluteTime(when)}` : null },
    item("txt", "TXT ownership record"), item("cname", "CNAME to this workspace"));
}
