// The one fetch wrapper every page uses for /api calls.
// - same-origin credentials, JSON in and out;
// - X-CSRF-Token on every state-changing request (token from GET /api/auth/session);
// - any 401 whose body says code "SESSION_EXPIRED" opens the session-expired modal, whose button
//   signs the user in again and brings them back to the page they were on.

import { icons } from "./icons.js";

const SIGN_IN_PATH = "/api/auth/github/login";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

let csrfToken = null;

export function setCsrfToken(token) {
  csrfToken = token || null;
}

export function getCsrfToken() {
  return csrfToken;
}

/** Where the user is now (path + query + fragment), minus a one-shot ?auth_error=. */
export function currentLocation() {
  const url = new URL(window.location.href);
  url.searchParams.delete("auth_error");
  return url.pathname + url.search + url.hash;
}

/** The sign-in URL that returns the user to `next` (a same-site path) afterwards. */
export function signInUrl(next = currentLocation()) {
  return `${SIGN_IN_PATH}?next=${encodeURIComponent(next)}`;
}

export class ApiError extends Error {
  constructor(status, body) {
    const message = (body && body.error) || (status ? `Request failed (HTTP ${status})` : "Network error");
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body || null;
    this.code = (body && body.code) || (status ? `HTTP_${status}` : "NETWORK_ERROR");
  }
}

async function readBody(response) {
  if (response.status === 204 || response.status === 205) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: text.slice(0, 200) };
  }
}

/**
 * Call the API. Resolves with the parsed JSON body (null for 204); rejects with ApiError.
 * options: { method, body (object → JSON), headers, signal }
 */
export async function api(path, options = {}) {
  const method = (options.method || "GET").toUpperCase();
  const headers = new Headers(options.headers || {});
  headers.set("Accept", "application/json");
  let body = options.body;
  if (body !== undefined && body !== null && typeof body !== "string" && !(body instanceof FormData)) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(body);
  }
  if (!SAFE_METHODS.has(method) && csrfToken) {
    headers.set("X-CSRF-Token", csrfToken);
  }

  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body,
      credentials: "same-origin",
      cache: "no-store",
      signal: options.signal,
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, { error: "We couldn't reach Agent Relay Cloud. Check your connection.", code: "NETWORK_ERROR" });
  }

  const data = await readBody(response);
  if (response.status === 401 && data && data.code === "SESSION_EXPIRED") {
    showSessionExpired();
  }
  if (!response.ok) {
    throw new ApiError(response.status, data);
  }
  return data;
}

// ---------------------------------------------------------------------------
// Session-expired modal
// ---------------------------------------------------------------------------

let modal = null;

export function isSessionExpiredOpen() {
  return Boolean(modal && modal.open);
}

export function showSessionExpired() {
  csrfToken = null;
  if (!modal) {
    modal = document.createElement("dialog");
    modal.className = "modal";
    modal.id = "session-expired-modal";
    modal.setAttribute("role", "dialog");
    modal.setAttribute("aria-modal", "true");
    modal.setAttribute("aria-labelledby", "session-expired-title");
    modal.setAttribute("aria-describedby", "session-expired-desc");
    modal.dataset.testid = "session-expired-modal";
    modal.innerHTML = `
      <div class="modal-body">
        <div class="modal-icon">${icons.clock}</div>
        <h2 id="session-expired-title">Your session expired</h2>
        <p id="session-expired-desc">For your security you were signed out. Sign in again with GitHub and we'll bring you right back to this page.</p>
        <button type="button" class="btn btn-dark btn-lg btn-block" data-testid="session-expired-signin">${icons.github}<span>Sign in again</span></button>
        <p class="modal-foot">Unsaved changes on this page may need to be redone.</p>
      </div>`;
    modal.querySelector("button").addEventListener("click", (event) => {
      const button = event.currentTarget;
      button.setAttribute("aria-busy", "true");
      window.location.assign(signInUrl());
    });
    // The user has to sign in again; Escape must not leave a dead page behind the modal.
    modal.addEventListener("cancel", (event) => event.preventDefault());
    modal.addEventListener("close", () => {
      if (modal.dataset.keepOpen === "true") modal.showModal();
    });
    document.body.appendChild(modal);
  }
  modal.dataset.keepOpen = "true";
  if (!modal.open) {
    if (typeof modal.showModal === "function") modal.showModal();
    else modal.setAttribute("open", "");
  }
  modal.querySelector("button").focus();
  window.dispatchEvent(new CustomEvent("relay:session-expired"));
}
