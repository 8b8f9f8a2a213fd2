// The link-approval page (/dashboard/link, SPEC C4 and docs/design/daemon-linking.md): the second half of
// `relay-cloud link`'s RFC 8628 device flow. The user types the code from their terminal (or arrives with
// ?user_code=XXXX-XXXX from the QR code), sees which machine is asking, from where and for how long, and
// approves or denies it. Every API call goes through api.js (CSRF header, session-expired modal).

import { api } from "./api.js";
import { icons } from "./icons.js";
import { fetchProviders, isUsable } from "./providers.js";
import { absoluteTime, avatarMarkup, esc, mmss, relativeTime, toEpochSeconds, wireAvatarFallbacks } from "./ui.js";

const PATH = "/dashboard/link";
const ALPHABET = "BCDFGHJKLMNPQRSTVWXZ";
const CODE_LENGTH = 8;

export const LINK_MESSAGES = {
  notFound: "This code is invalid or has expired — run relay-cloud link again",
  decided: "Already decided",
  rateLimited: "Too many attempts, wait a few minutes",
};

/** The letters of a code as typed: uppercase, anything but A–Z dropped, at most 8. */
export function codeLetters(value) {
  return String(value || "")
    .toUpperCase()
    .replace(/[^A-Z]/g, "")
    .slice(0, CODE_LENGTH);
}

/** "wdjbmjht" / "WDJB-MJHT" / "wdjb mjht" → "WDJB-MJHT" (partial codes are formatted as far as they go). */
export function formatCode(value) {
  const letters = codeLetters(value);
  return letters.length > 4 ? `${letters.slice(0, 4)}-${letters.slice(4)}` : letters;
}

function isWellFormed(code) {
  const letters = codeLetters(code);
  return letters.length === CODE_LENGTH && [...letters].every((c) => ALPHABET.includes(c));
}

function errorText(err) {
  if (!err) return "Something went wrong. Please try again.";
  if (err.status === 404 || err.code === "LINK_REQUEST_NOT_FOUND") return LINK_MESSAGES.notFound;
  if (err.status === 409 || err.code === "LINK_REQUEST_DECIDED") return LINK_MESSAGES.decided;
  if (err.status === 429 || err.code === "RATE_LIMITED") return LINK_MESSAGES.rateLimited;
  if (err.code === "NETWORK_ERROR") return "We couldn't reach Agent Relay Cloud. Check your connection and try again.";
  return (err.body && err.body.error) || "Something went wrong. Please try again.";
}

/** "Claude (Anthropic)" → "Claude"; names without a parenthesis stay whole. */
function shortName(provider) {
  return String(provider.display_name || provider.id).replace(/\s*\(.*\)\s*$/, "") || provider.id;
}

/** "Claude (Anthropic)" → "Anthropic"; otherwise just "Connected". */
function upstream(provider) {
  const m = /\(([^)]+)\)/.exec(provider.display_name || "");
  return m ? m[1] : "Connected";
}

/**
 * Render the link page into `main`. `user` is the signed-in user from the session (the approving
 * account). Returns a cleanup function (timers, requests in flight).
 */
export function mountLink(main, { user } = {}) {
  const page = new LinkPage(main, user || {});
  page.start();
  return () => page.destroy();
}

class LinkPage {
  constructor(main, user) {
    this.main = main;
    this.user = user;
    this.abort = new AbortController();
    this.destroyed = false;
    this.timer = null;
    this.request = null;
    this.providers = null;
    this.busy = false;
    this.onClick = (event) => this.handleClick(event);
    this.onSubmit = (event) => this.handleSubmit(event);
    this.onInput = (event) => this.handleInput(event);
  }

  start() {
    this.main.addEventListener("click", this.onClick);
    this.main.addEventListener("submit", this.onSubmit);
    this.main.addEventListener("input", this.onInput);
    // Providers for the lease checkboxes load alongside the request; the page works without them.
    this.providersPromise = fetchProviders({ signal: this.abort.signal })
      .then((list) => (this.providers = list.filter(isUsable)))
      .catch(() => (this.providers = null));
    const code = new URLSearchParams(window.location.search).get("user_code");
    if (code) this.lookup(code);
    else this.renderEntry();
  }

  destroy() {
    this.destroyed = true;
    this.abort.abort();
    clearInterval(this.timer);
    this.main.removeEventListener("click", this.onClick);
    this.main.removeEventListener("submit", this.onSubmit);
    this.main.removeEventListener("input", this.onInput);
  }

  setUrl(code) {
    const url = code ? `${PATH}?user_code=${encodeURIComponent(code)}` : PATH;
    if (window.location.pathname + window.location.search !== url) window.history.replaceState({}, "", url);
  }

  frame(inner, { wide = false } = {}) {
    return `<div class="lk-wrap${wide ? " lk-wrap-wide" : ""}">${inner}</div>`;
  }

  // --- 1. the code -----------------------------------------------------------

  renderEntry({ code = "", error = "" } = {}) {
    clearInterval(this.timer);
    this.request = null;
    this.main.innerHTML = this.frame(`
      <section class="lk-card" aria-labelledby="lk-title">
        <div class="lk-icon" aria-hidden="true">${icons.link}</div>
        <h1 id="lk-title">Link a machine</h1>
        <p class="lk-lede">Enter the code shown in your terminal after running <code>relay-cloud link</code>.</p>
        ${error ? `<div class="lk-alert lk-alert-bad" role="alert" data-testid="link-error">${icons.alert}<span>${esc(error)}</span></div>` : ""}
        <form class="lk-form" novalidate>
          <label class="sr-only" for="lk-code">Code from your terminal</label>
          <input id="lk-code" class="lk-code-input" name="user_code" data-testid="link-code-input" value="${esc(formatCode(code))}"
            placeholder="XXXX-XXXX" maxlength="12" autocomplete="one-time-code" autocapitalize="characters" autocorrect="off"
            spellcheck="false" inputmode="text" aria-describedby="lk-code-hint"${error === LINK_MESSAGES.notFound ? ' aria-invalid="true"' : ""}>
          <p class="lk-field-error" role="alert" hidden></p>
          <button type="submit" class="btn btn-primary btn-lg btn-block" data-testid="link-code-submit">${icons.arrowRight}<span>Continue</span></button>
          <p class="lk-hint" id="lk-code-hint">8 letters, like <b>WDJB-MJHT</b>. Codes expire after 10 minutes.</p>
        </form>
        <div class="lk-foot">
          <span>${icons.terminal}</span>
          <p>Not started yet? On the machine you want to link, run <code>relay-cloud link</code>. It prints a code and a QR code that opens this page.</p>
        </div>
      </section>`);
    const input = this.main.querySelector('[data-testid="link-code-input"]');
    if (input) {
      input.focus();
      if (error) input.select();
    }
  }

  handleInput(event) {
    const input = event.target.closest('[data-testid="link-code-input"]');
    if (!input) return;
    const formatted = formatCode(input.value);
    if (formatted !== input.value) {
      input.value = formatted;
      input.setSelectionRange(formatted.length, formatted.length);
    }
    input.removeAttribute("aria-invalid");
    const fieldError = this.main.querySelector(".lk-field-error");
    if (fieldError) fieldError.hidden = true;
  }

  handleSubmit(event) {
    const form = event.target.closest(".lk-form");
    if (!form) return;
    event.preventDefault();
    const input = form.querySelector('[data-testid="link-code-input"]');
    const code = formatCode(input.value);
    if (codeLetters(code).length !== CODE_LENGTH) {
      const fieldError = form.querySelector(".lk-field-error");
      fieldError.textContent = "Enter all 8 letters of the code from your terminal.";
      fieldError.hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    this.lookup(code);
  }

  // --- 2. the request --------------------------------------------------------

  async lookup(rawCode) {
    const code = formatCode(rawCode);
    this.setUrl(code);
    if (!isWellFormed(code)) {
      // Not a code we could have issued: no need to spend one of the user's lookups on it.
      this.renderEntry({ code, error: LINK_MESSAGES.notFound });
      return;
    }
    this.renderLoading(code);
    let request;
    try {
      request = await api(`/api/daemons/link/requests/${encodeURIComponent(code)}`, { signal: this.abort.signal });
    } catch (err) {
      if (this.destroyed || (err && err.name === "AbortError")) return;
      if (err && err.code === "SESSION_EXPIRED") return; // the session-expired modal has taken over
      this.renderEntry({ code, error: errorText(err) });
      return;
    }
    if (this.destroyed) return;
    if (request && request.status && request.status !== "pending") {
      this.renderEntry({ code, error: LINK_MESSAGES.decided });
      return;
    }
    await this.providersPromise;
    if (this.destroyed) return;
    this.request = { ...request, user_code: (request && request.user_code) || code };
    this.renderRequest();
  }

  renderLoading(code) {
    clearInterval(this.timer);
    this.main.innerHTML = this.frame(`
      <section class="lk-card" aria-busy="true" aria-labelledby="lk-title">
        <div class="lk-icon" aria-hidden="true">${icons.link}</div>
        <h1 id="lk-title">Looking up <span class="lk-code-inline">${esc(code)}</span>…</h1>
        <div class="lk-skeleton" aria-hidden="true"><div class="skeleton-line w-60"></div><div class="skeleton-line w-90"></div><div class="skeleton-line w-70"></div></div>
      </section>`);
  }

  secondsLeft() {
    const r = this.request;
    let expires = toEpochSeconds(r && r.expires_at);
    if (expires === null) {
      const requested = toEpochSeconds(r && r.requested_at);
      expires = requested === null ? null : requested + 600;
    }
    return expires === null ? null : Math.max(0, Math.round(expires - Date.now() / 1000));
  }

  providerChoices() {
    if (this.providers === null) {
      return `<p class="lk-muted">We couldn't load your providers. You can still link this machine; it won't receive credential leases.</p>`;
    }
    if (!this.providers.length) {
      return `<p class="lk-muted">No AI provider is connected yet, so there is nothing to lease. <a href="/dashboard/providers" data-section-link="/dashboard/providers">Connect a provider</a> first if agents on this machine should use your cloud credentials.</p>`;
    }
    return `<ul class="lk-choices">${this.providers
      .map((p) => {
        const id = esc(p.id);
        const account = p.connection && p.connection.account ? ` · ${esc(p.connection.account)}` : "";
        return `<li><label class="lk-choice">
            <input type="checkbox" name="allowed_providers" value="${id}" data-testid="link-provider-${id}">
            <span class="lk-choice-box" aria-hidden="true">${icons.check}</span>
            <span class="lk-choice-text"><b>${esc(shortName(p))}</b><span>${esc(upstream(p))}${p.health === "expiring" ? " · expiring soon" : ""}${account}</span></span>
          </label></li>`;
      })
      .join("")}</ul>`;
  }

  renderRequest() {
    const r = this.request;
    const requested = toEpochSeconds(r.requested_at);
    const left = this.secondsLeft();
    const user = this.user;
    this.main.innerHTML = this.frame(
      `
      <section class="lk-card lk-card-request" data-testid="link-request" aria-labelledby="lk-title">
        <div class="lk-request-head">
          <div class="lk-icon" aria-hidden="true">${icons.machine}</div>
          <div>
            <h1 id="lk-title">Link this machine?</h1>
            <p class="lk-lede">A terminal asked to link a machine to your account with code <span class="lk-code-inline">${esc(r.user_code)}</span>.</p>
          </div>
        </div>

        <div class="lk-machine">
          <div class="lk-machine-name">
            <span class="lk-machine-icon" aria-hidden="true">${icons.terminal}</span>
            <div>
              <strong data-testid="link-machine-name">${esc(r.name)}</strong>
              <span class="lk-mono" data-testid="link-machine-id" title="Machine id">${esc(r.machine_id)}</span>
            </div>
          </div>
          <dl class="lk-facts">
            <div><dt>Requested from</dt><dd class="lk-mono" data-testid="link-requesting-ip">${esc(r.requesting_ip || "Unknown")}</dd></div>
            <div><dt>Requested</dt><dd title="${esc(absoluteTime(requested))}" data-rel="${esc(requested ?? "")}">${esc(requested === null ? "—" : relativeTime(requested))}</dd></div>
            <div><dt>Expires in</dt><dd><span class="lk-countdown${left !== null && left < 60 ? " is-low" : ""}" data-testid="link-countdown" role="timer" aria-live="off">${icons.clock}<b>${left === null ? "—" : mmss(left)}</b></span></dd></div>
          </dl>
        </div>

        <div class="lk-account">
          ${avatarMarkup(user, { size: "avatar-lg", testid: "link-account-avatar" })}
          <div>
            <span class="lk-account-label">Approving as</span>
            <strong data-testid="link-account-login">@${esc(user.github_login || "")}</strong>
          </div>
          <span class="tag tag-green">${icons.github}GitHub</span>
        </div>

        <div class="lk-alert lk-alert-warn" role="note">
          ${icons.shield}
          <span><b>Only approve if you just ran <code>relay-cloud link</code> on this machine.</b> Approving gives it a key that can run agents and message your other machines.</span>
        </div>

        <form class="lk-decide" novalidate>
          <fieldset class="lk-leases">
            <legend>Credential leases <span class="lk-optional">optional</span></legend>
            <p class="lk-leases-desc">Let this machine receive short-lived credentials for these providers, sealed to its own key:</p>
            ${this.providerChoices()}
          </fieldset>
          <div class="lk-alert lk-alert-bad" role="alert" data-testid="link-error" hidden></div>
          <div class="lk-actions">
            <button type="button" class="btn btn-lg" data-action="deny" data-testid="link-deny">${icons.x}<span>Deny</span></button>
            <button type="button" class="btn btn-primary btn-lg" data-action="approve" data-testid="link-approve">${icons.check}<span>Approve</span></button>
          </div>
        </form>
      </section>`,
      { wide: true },
    );
    wireAvatarFallbacks(this.main);
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), 1000);
    if (left === 0) this.tick();
    const heading = this.main.querySelector("h1");
    if (heading && document.activeElement && document.activeElement.closest && document.activeElement.closest(".lk-form")) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }

  tick() {
    const el = this.main.querySelector('[data-testid="link-countdown"]');
    if (!el || !this.request) {
      clearInterval(this.timer);
      return;
    }
    const left = this.secondsLeft();
    if (left === null) return;
    el.querySelector("b").textContent = mmss(left);
    el.classList.toggle("is-low", left < 60);
    const rel = this.main.querySelector("[data-rel]");
    if (rel && rel.dataset.rel) rel.textContent = relativeTime(Number(rel.dataset.rel));
    if (left <= 0) {
      clearInterval(this.timer);
      this.showInlineError(LINK_MESSAGES.notFound, { final: true });
    }
  }

  showInlineError(message, { final = false } = {}) {
    const box = this.main.querySelector('.lk-decide [data-testid="link-error"]');
    if (!box) return;
    box.innerHTML = `${icons.alert}<span>${esc(message)}</span>`;
    box.hidden = false;
    if (final) {
      for (const button of this.main.querySelectorAll(".lk-actions .btn")) button.remove();
      const actions = this.main.querySelector(".lk-actions");
      actions.innerHTML = `<button type="button" class="btn btn-lg" data-action="another">${icons.arrowLeft}<span>Enter another code</span></button>`;
      for (const input of this.main.querySelectorAll(".lk-leases input")) input.disabled = true;
    }
  }

  // --- 3. the decision -------------------------------------------------------

  handleClick(event) {
    const target = event.target.closest("[data-action]");
    if (!target || !this.main.contains(target)) return;
    const action = target.dataset.action;
    if (action === "approve") this.decide("approve", target);
    else if (action === "deny") this.decide("deny", target);
    else if (action === "another") {
      this.setUrl("");
      this.renderEntry();
    }
  }

  async decide(kind, button) {
    if (this.busy || !this.request) return;
    this.busy = true;
    const buttons = [...this.main.querySelectorAll(".lk-actions .btn")];
    for (const b of buttons) b.disabled = true;
    button.setAttribute("aria-busy", "true");
    const errorBox = this.main.querySelector('.lk-decide [data-testid="link-error"]');
    if (errorBox) errorBox.hidden = true;
    const code = this.request.user_code;
    const options = { method: "POST", signal: this.abort.signal };
    if (kind === "approve") {
      const allowed = [...this.main.querySelectorAll('.lk-leases input[name="allowed_providers"]:checked')].map((i) => i.value);
      options.body = { allowed_providers: allowed };
    }
    let answer;
    try {
      answer = await api(`/api/daemons/link/requests/${encodeURIComponent(code)}/${kind}`, options);
    } catch (err) {
      this.busy = false;
      if (this.destroyed || (err && err.name === "AbortError")) return;
      if (err && err.code === "SESSION_EXPIRED") {
        for (const b of buttons) b.disabled = false;
        button.removeAttribute("aria-busy");
        return;
      }
      const final = err && (err.status === 404 || err.status === 409);
      for (const b of buttons) b.disabled = false;
      button.removeAttribute("aria-busy");
      this.showInlineError(errorText(err), { final });
      if (final) clearInterval(this.timer);
      return;
    }
    this.busy = false;
    if (this.destroyed) return;
    clearInterval(this.timer);
    this.setUrl("");
    if (kind === "approve") this.renderResult("approved", (answer && answer.name) || this.request.name);
    else this.renderResult("denied", this.request.name);
  }

  renderResult(outcome, name) {
    const approved = outcome === "approved";
    this.main.innerHTML = this.frame(`
      <section class="lk-card lk-result lk-result-${approved ? "ok" : "denied"}" data-testid="link-result" data-outcome="${outcome}" role="status" aria-labelledby="lk-title">
        <div class="lk-result-icon" aria-hidden="true">${approved ? icons.checkCircle : icons.xCircle}</div>
        ${
          approved
            ? `<h1 id="lk-title">Machine linked</h1>
               <p class="lk-lede">Linked ${esc(name)}. You can close this tab; the terminal will finish on its own.</p>`
            : `<h1 id="lk-title">Denied</h1>
               <p class="lk-lede">${esc(name)} was not linked. Its terminal will report that access was denied.</p>`
        }
        <div class="lk-result-actions">
          <a class="btn btn-primary" href="/dashboard/machines" data-section-link="/dashboard/machines">${icons.machine}<span>View your machines</span></a>
          <button type="button" class="btn" data-action="another">${icons.link}<span>Link another</span></button>
        </div>
      </section>`);
    const heading = this.main.querySelector("h1");
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}
