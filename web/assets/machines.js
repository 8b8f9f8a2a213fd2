// The Machines section (/dashboard/machines, SPEC C4 and C13, docs/design/daemon-linking.md): every
// machine linked with `relay-cloud link`, its live presence, its agents and the providers it may lease;
// unlinking revokes its key. The list refreshes every 15 s while the section is visible.
// Every API call goes through api.js (CSRF header, session-expired modal).

import { api } from "./api.js";
import { icons } from "./icons.js";
import { absoluteTime, confirmDialog, copyFromButton, el, esc, relativeTime, shortDate, toEpochSeconds, toast } from "./ui.js";

const REFRESH_MS = 15_000;
const LINK_COMMAND = "relay-cloud link";

export const PRESENCE = {
  online: { label: "Online", tone: "online" },
  stale: { label: "Stale", tone: "stale" },
  offline: { label: "Offline", tone: "offline" },
};

// The heartbeat's agent statuses (daemon-linking.md): running|idle|starting|stopped|crashed.
const AGENT_TONES = { running: "on", idle: "on", starting: "wait", stopped: "off", crashed: "bad" };

const PROVIDER_LABELS = { anthropic: "Claude", openai: "Codex", google: "Gemini", github: "GitHub" };

/** GET /api/daemons → the caller's machines (throws ApiError). */
export async function fetchDaemons(options = {}) {
  const data = await api("/api/daemons", options);
  return (data && Array.isArray(data.daemons) ? data.daemons : []).filter((d) => d && d.daemon_id);
}

function providerLabel(id) {
  return PROVIDER_LABELS[id] || String(id);
}

export function presenceOf(daemon) {
  return PRESENCE[daemon.presence] ? daemon.presence : "offline";
}

function lastSeenText(daemon) {
  const seen = toEpochSeconds(daemon.last_seen_at);
  return seen === null ? "Never seen" : `Last seen ${relativeTime(seen)}`;
}

/** Agents as reported by the machine: strings or objects with a name and, maybe, provider and status. */
function agentItems(agents) {
  return agents
    .map((agent) => {
      const a = typeof agent === "string" ? { name: agent } : agent || {};
      const name = a.name || a.agent || a.id || "agent";
      const provider = a.provider || a.cli || "";
      const status = a.status || a.state || "";
      const tone = AGENT_TONES[String(status).toLowerCase()] || (status ? "off" : "unknown");
      const detail = [provider ? providerLabel(provider) : "", status].filter(Boolean).join(" · ");
      return `<li class="mc-agent"><i class="mc-agent-dot mc-agent-${tone}" aria-hidden="true"></i><b>${esc(name)}</b>${
        detail ? `<span>${esc(detail)}</span>` : ""
      }</li>`;
    })
    .join("");
}

function commandBlock(testid = "machines-copy-command") {
  return `
    <div class="mc-command">
      <code><span class="mc-prompt" aria-hidden="true">$</span> ${esc(LINK_COMMAND)}</code>
      <button type="button" class="btn btn-sm mc-copy" data-action="copy" data-testid="${testid}" aria-label="Copy the command ${esc(LINK_COMMAND)}">${icons.copy}<span>Copy</span></button>
    </div>`;
}

function machineCard(daemon) {
  const id = esc(daemon.daemon_id);
  const presence = presenceOf(daemon);
  const p = PRESENCE[presence];
  const seen = toEpochSeconds(daemon.last_seen_at);
  const linked = toEpochSeconds(daemon.linked_at);
  const agents = Array.isArray(daemon.agents) ? daemon.agents : [];
  const allowed = Array.isArray(daemon.allowed_providers) ? daemon.allowed_providers : [];
  return `
    <li class="mc-card mc-is-${presence}" data-testid="machine-card-${id}" data-daemon-id="${id}" aria-labelledby="mc-name-${id}">
      <div class="mc-main">
        <div class="mc-icon" aria-hidden="true">${icons.machine}<i class="mc-dot"></i></div>
        <div class="mc-info">
          <div class="mc-title">
            <h2 id="mc-name-${id}">${esc(daemon.name || daemon.machine_id || "Machine")}</h2>
            <span class="mc-presence mc-presence-${p.tone}" data-testid="machine-presence-${id}" data-presence="${presence}"><i aria-hidden="true"></i>${esc(p.label)}</span>
          </div>
          <ul class="mc-meta">
            <li title="Machine id">${icons.terminal}<span class="mono">${esc(daemon.machine_id || "—")}</span></li>
            <li title="${esc(seen === null ? "No heartbeat yet" : absoluteTime(seen))}">${icons.clock}<span data-seen="${esc(seen ?? "")}">${esc(lastSeenText(daemon))}</span></li>
            <li title="${esc(linked === null ? "" : absoluteTime(linked))}">${icons.link}<span>Linked ${esc(shortDate(daemon.linked_at))}</span></li>
          </ul>
        </div>
        <div class="mc-actions">
          <button type="button" class="btn btn-ghost btn-sm pv-danger-ghost" data-action="unlink" data-testid="machine-unlink-${id}" aria-label="Unlink ${esc(daemon.name || daemon.machine_id)}">${icons.unlink}<span>Unlink</span></button>
        </div>
      </div>
      <div class="mc-details">
        <div class="mc-block">
          <h3>${icons.bot}<span>Agents</span>${agents.length ? `<span class="mc-count">${agents.length}</span>` : ""}</h3>
          ${agents.length ? `<ul class="mc-agents">${agentItems(agents)}</ul>` : '<p class="mc-none">No agents reported yet</p>'}
        </div>
        <div class="mc-block">
          <h3>${icons.key}<span>Credential leases</span></h3>
          ${
            allowed.length
              ? `<ul class="mc-chips">${allowed.map((a) => `<li class="pv-chip">${esc(providerLabel(a))}</li>`).join("")}</ul>`
              : '<p class="mc-none">None allowed</p>'
          }
        </div>
      </div>
    </li>`;
}

function emptyState() {
  return `
    <section class="empty mc-empty" data-testid="machines-empty" aria-labelledby="mc-empty-title">
      <div class="empty-grid">
        <div>
          <div class="empty-icon">${icons.machine}</div>
          <h2 id="mc-empty-title">Link your first machine</h2>
          <p>Run agents on your laptop or your servers, and let them talk to agents everywhere else.</p>
          <ol class="mc-steps">
            <li><span class="mc-step-num" aria-hidden="true">1</span><div><strong>Run this on the machine</strong>${commandBlock()}</div></li>
            <li><span class="mc-step-num" aria-hidden="true">2</span><div><strong>Approve the code here</strong><span>The terminal prints a code and a QR code. Open the link (or scan it with your phone) and approve the request.</span></div></li>
            <li><span class="mc-step-num" aria-hidden="true">3</span><div><strong>It shows up in this list</strong><span>With live presence, its agents, and the key it needs — the terminal finishes on its own.</span></div></li>
          </ol>
          <div class="empty-actions">
            <a class="btn btn-primary" href="/dashboard/link" data-section-link="/dashboard/link">${icons.link}<span>I have a code</span></a>
          </div>
        </div>
        <div class="terminal mc-terminal" role="img" aria-label="Example: linking a machine from the terminal"><span class="p">$</span> relay-cloud link
<span class="c">  Open ${esc(window.location.host)}/dashboard/link</span>
<span class="c">  and enter the code:</span>  WDJB-MJHT
<span class="c">  Waiting for approval…</span>
<span class="p">✓</span> Linked "my-laptop"</div>
      </div>
    </section>`;
}

function skeleton() {
  const card = `
    <li class="mc-card mc-skeleton" aria-hidden="true"><div class="mc-main">
      <div class="mc-icon"></div>
      <div class="mc-info"><div class="skeleton-line w-30"></div><div class="skeleton-line w-60"></div></div>
    </div></li>`;
  return `<ul class="mc-list" aria-busy="true">${card.repeat(2)}</ul>`;
}

/**
 * Render the Machines section into `main`. Returns a cleanup function that stops the refresh and
 * aborts requests in flight (called when the user leaves the section).
 */
export function mountMachines(main) {
  const page = new MachinesPage(main);
  page.start();
  return () => page.destroy();
}

class MachinesPage {
  constructor(main) {
    this.main = main;
    this.daemons = null;
    this.signature = "";
    this.abort = new AbortController();
    this.destroyed = false;
    this.timer = null;
    this.loading = false;
    this.onClick = (event) => this.handleClick(event);
    this.onVisibility = () => this.visibilityChanged();
  }

  start() {
    this.main.innerHTML = `
      <div class="page-head">
        <div>
          <h1>Machines</h1>
          <p>Your own computers and servers, linked with <code class="mc-inline">relay-cloud link</code>. Their agents work alongside your cloud workspaces.</p>
        </div>
        <div class="mc-head-actions">
          <div class="pv-summary" data-testid="machines-summary" aria-live="polite"></div>
          <a class="btn btn-sm" href="/dashboard/link" data-section-link="/dashboard/link">${icons.link}<span>Enter a code</span></a>
        </div>
      </div>
      <div class="mc-body">${skeleton()}</div>`;
    this.main.addEventListener("click", this.onClick);
    document.addEventListener("visibilitychange", this.onVisibility);
    this.load();
    this.schedule();
  }

  destroy() {
    this.destroyed = true;
    this.abort.abort();
    clearInterval(this.timer);
    this.timer = null;
    this.main.removeEventListener("click", this.onClick);
    document.removeEventListener("visibilitychange", this.onVisibility);
    const dialog = document.getElementById("mc-unlink-dialog");
    if (dialog) dialog.remove();
  }

  schedule() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.destroyed || document.visibilityState === "hidden") return;
    this.timer = setInterval(() => this.load({ quiet: true }), REFRESH_MS);
  }

  visibilityChanged() {
    if (this.destroyed) return;
    if (document.visibilityState === "hidden") {
      clearInterval(this.timer);
      this.timer = null;
    } else {
      this.load({ quiet: true });
      this.schedule();
    }
  }

  async load({ quiet = false } = {}) {
    if (this.loading) return;
    this.loading = true;
    let daemons;
    try {
      daemons = await fetchDaemons({ signal: this.abort.signal });
    } catch (err) {
      this.loading = false;
      if (this.destroyed || (err && err.name === "AbortError")) return;
      if (quiet && this.daemons) return; // keep showing the last good list; the next refresh may work
      const expired = err && err.code === "SESSION_EXPIRED";
      this.main.querySelector(".mc-body").innerHTML = `
        <div class="notice notice-error" role="alert" data-testid="machines-error">
          ${icons.alert}
          <span>${expired ? "Your session expired. Sign in again to see your machines." : "We couldn't load your machines."}</span>
          ${expired ? "" : `<button type="button" class="btn btn-sm" data-action="reload">${icons.refresh}<span>Retry</span></button>`}
        </div>`;
      return;
    }
    this.loading = false;
    if (this.destroyed) return;
    this.daemons = daemons;
    this.render();
  }

  render() {
    const body = this.main.querySelector(".mc-body");
    const signature = JSON.stringify(this.daemons);
    const summary = this.main.querySelector('[data-testid="machines-summary"]');
    summary.innerHTML = this.summary();
    if (signature === this.signature && body.querySelector(".mc-list, .mc-empty")) {
      // Nothing changed but time: keep focus and scroll where they are, refresh "last seen".
      for (const el of body.querySelectorAll("[data-seen]")) {
        if (el.dataset.seen) el.textContent = `Last seen ${relativeTime(Number(el.dataset.seen))}`;
      }
      return;
    }
    this.signature = signature;
    const focusedId = document.activeElement && document.activeElement.closest && document.activeElement.closest("[data-daemon-id]");
    const focusedAction = focusedId && document.activeElement.dataset.action;
    if (!this.daemons.length) {
      body.innerHTML = emptyState();
      return;
    }
    body.innerHTML = `
      <ul class="mc-list" data-testid="machines-list">${this.daemons.map(machineCard).join("")}</ul>
      <section class="mc-another" aria-labelledby="mc-another-title">
        <div>
          <h2 id="mc-another-title">${icons.machine}<span>Link another machine</span></h2>
          <p>Run this on it, then approve the code it prints. Re-linking a machine adds a new entry; unlink the old one when you're done.</p>
        </div>
        ${commandBlock("machines-copy-command")}
      </section>`;
    if (focusedId && focusedAction) {
      const again = body.querySelector(`[data-daemon-id="${CSS.escape(focusedId.dataset.daemonId)}"] [data-action="${CSS.escape(focusedAction)}"]`);
      if (again) again.focus({ preventScroll: true });
    }
  }

  summary() {
    const counts = { online: 0, stale: 0, offline: 0 };
    for (const d of this.daemons || []) counts[presenceOf(d)] += 1;
    const parts = [];
    if (counts.online) parts.push(`<span class="pv-stat mc-stat-online"><i class="mc-stat-dot" aria-hidden="true"></i><b>${counts.online}</b> online</span>`);
    if (counts.stale) parts.push(`<span class="pv-stat pv-stat-warn"><i class="mc-stat-dot" aria-hidden="true"></i><b>${counts.stale}</b> stale</span>`);
    if (counts.offline) parts.push(`<span class="pv-stat"><i class="mc-stat-dot" aria-hidden="true"></i><b>${counts.offline}</b> offline</span>`);
    return parts.join("");
  }

  handleClick(event) {
    const target = event.target.closest("[data-action]");
    if (!target || !this.main.contains(target)) return;
    const action = target.dataset.action;
    if (action === "reload") {
      this.main.querySelector(".mc-body").innerHTML = skeleton();
      this.load();
    } else if (action === "copy") {
      this.copy(target);
    } else if (action === "unlink") {
      const card = target.closest("[data-daemon-id]");
      const daemon = card && (this.daemons || []).find((d) => d.daemon_id === card.dataset.daemonId);
      if (daemon) this.confirmUnlink(daemon, target);
    }
  }

  copy(button) {
    copyFromButton(button, LINK_COMMAND);
  }

  confirmUnlink(daemon, trigger) {
    const name = daemon.name || daemon.machine_id || "this machine";
    confirmDialog({
      id: "mc-unlink-dialog",
      testid: "unlink",
      title: `Unlink ${name}?`,
      description: [
        "Its key stops working on its very next request: its agents drop out of your relay and it can't receive credential leases. To use it again, run ",
        el("code", {}, LINK_COMMAND),
        " on it.",
      ],
      extra: el("p", { class: "mc-dialog-id" }, el("span", { class: "mono" }, daemon.machine_id || ""), ` · linked ${shortDate(daemon.linked_at)}`),
      cancelLabel: "Keep linked",
      confirmLabel: "Unlink",
      trigger,
      fallbackFocus: () => this.main.querySelector('[data-action="unlink"], [data-action="copy"]'),
      action: async () => {
        try {
          await api(`/api/daemons/${encodeURIComponent(daemon.daemon_id)}`, { method: "DELETE" });
        } catch (err) {
          if (err && err.code === "SESSION_EXPIRED") return null;
          if (err && err.status === 404) {
            // Already gone (another tab, or the CLI's own unlink): show the truth.
            this.load({ quiet: true });
            return null;
          }
          return (err && err.body && err.body.error) || "We couldn't unlink it. Please try again.";
        }
        this.daemons = (this.daemons || []).filter((d) => d.daemon_id !== daemon.daemon_id);
        this.render();
        toast(`Unlinked ${name}`);
        return null;
      },
    });
  }
}
