// The dashboard: session check, sign-in / sign-in-error screens, the signed-in shell with path routing
// under /dashboard/<section>, the Overview, and sign-out. Every API call goes through api.js.

import { api, currentLocation, setCsrfToken, showSessionExpired, signInUrl } from "./api.js";
import { brand, icons, logoMark } from "./icons.js";
import { formatCode, mountLink } from "./link.js";
import { fetchDaemons, mountMachines } from "./machines.js";
import { AI_PROVIDER_IDS, fetchProviders, isUsable, mountProviders } from "./providers.js";
import { mountRepos } from "./repos.js";
import { mountWorkspaces } from "./workspaces.js";
import { avatarMarkup, confirmDialog, el, esc, toast, wireAvatarFallbacks } from "./ui.js";

const BASE = "/dashboard";

const SECTIONS = [
  { id: "overview", label: "Overview", icon: icons.overview },
  {
    id: "providers",
    label: "Providers",
    icon: icons.key,
    live: true,
    title: "Connect your AI providers",
    lede: "Give your agents access to Claude, Codex and Gemini — on each provider's own terms.",
    points: [
      "Bring your own API key, validated before it is stored in your encrypted vault",
      "Subscription logins run inside your workspace, so the token never leaves it",
      "Connection health at a glance, with one-click reconnect",
    ],
    preview: "rows",
  },
  {
    id: "machines",
    label: "Machines",
    icon: icons.machine,
    live: true,
    title: "Link your own machines",
    lede: "Run agents on your laptop or servers and let them talk to agents everywhere else.",
    points: [
      "Link with one command and approve the code here",
      "Live presence: online, stale or offline, with last-seen times",
      "Every agent on every machine, in one list",
    ],
    preview: "terminal",
  },
  {
    id: "repositories",
    label: "Repositories",
    icon: icons.repo,
    live: true,
  },
  {
    id: "workspaces",
    label: "Workspaces",
    icon: icons.cloud,
    live: true,
    title: "One-click cloud workspaces",
    lede: "Spin up a workspace with your repositories checked out and your agent team running.",
    points: [
      "Live provisioning progress, start and stop without losing your disk",
      "Attach repositories and pick providers per workspace",
      "Custom domains on the Team plan",
    ],
    preview: "rows",
  },
  {
    id: "team",
    label: "Team",
    icon: icons.users,
    title: "Invite your team",
    lede: "Share workspaces with teammates and decide exactly what each of them can do.",
    points: [
      "Invite by GitHub username or by email",
      "Owner, admin, member and viewer roles",
      "Accept, decline and revoke invitations in one place",
    ],
    preview: "rows",
  },
  {
    id: "usage",
    label: "Usage",
    icon: icons.usage,
    title: "Usage against your plan",
    lede: "See compute hours, concurrent agents and resources next to your plan's limits.",
    points: [
      "Metered from real workspace and machine events",
      "A heads-up when you reach 80 % of a limit",
      "Per-resource breakdown for the current period",
    ],
    preview: "bars",
  },
  {
    id: "billing",
    label: "Billing",
    icon: icons.billing,
    title: "Plans, invoices and payment",
    lede: "Upgrade, switch between monthly and yearly, and download invoices.",
    points: [
      "Secure checkout and customer portal by Stripe",
      "Prorated upgrades; downgrades at the end of the period",
      "Invoices and your upcoming charge",
    ],
    preview: "rows",
  },
];

const AUTH_ERRORS = {
  OAUTH_STATE_MISSING: {
    title: "We couldn't match this sign-in to your browser",
    body: "The sign-in started in another tab or browser, or cookies are blocked for this site. Start again from this browser and keep cookies enabled.",
  },
  OAUTH_STATE_INVALID: {
    title: "That sign-in link has expired",
    body: "Sign-in links work once and only for a few minutes. Nothing went wrong with your account — just start a fresh sign-in.",
  },
  OAUTH_DENIED: {
    title: "GitHub access wasn't granted",
    body: "The authorization was cancelled on GitHub. Agent Relay Cloud needs your GitHub profile to create your account and sign you in.",
  },
  OAUTH_CODE_INVALID: {
    title: "GitHub couldn't confirm your sign-in",
    body: "The confirmation code from GitHub was rejected or had already been used. This usually happens after using the back button — please try again.",
  },
  UPSTREAM_UNAVAILABLE: {
    title: "GitHub isn't responding right now",
    body: "We couldn't reach GitHub to finish signing you in. This is usually temporary — please try again in a moment.",
  },
};

const GENERIC_AUTH_ERROR = {
  title: "Sign-in didn't complete",
  body: "Something interrupted the sign-in with GitHub. Please try again.",
};

const root = document.getElementById("app");
const state = { user: null, me: null, providers: null, daemons: null, plans: null, plansPromise: null, routeToken: 0, cleanup: null };

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

function planTier(plan) {
  if (plan && typeof plan === "object") return String(plan.tier || plan.name || "free").toLowerCase();
  return String(plan || "free").toLowerCase();
}

function planName(plan) {
  if (plan && typeof plan === "object" && plan.name) return plan.name;
  const tier = planTier(plan);
  const fromCatalog = state.plans && state.plans.find((p) => p.tier === tier);
  if (fromCatalog) return fromCatalog.name;
  return tier.charAt(0).toUpperCase() + tier.slice(1);
}

function userPlanName(user) {
  return (user && user.plan_name) || planName(user && user.plan);
}

function displayName(user) {
  const name = (user && (user.name || user.github_login)) || "there";
  return name.split(/\s+/)[0];
}

function greeting() {
  const hour = new Date().getHours();
  if (hour < 5) return "Working late";
  if (hour < 12) return "Good morning";
  if (hour < 18) return "Good afternoon";
  return "Good evening";
}

function formatDate(value) {
  if (value === null || value === undefined || value === "") return "—";
  // Epoch seconds (the API's usual form), epoch milliseconds or an ISO 8601 string.
  const date = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  if (Number.isNaN(date.getTime())) return "—";
  return date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

function widthClass(percent) {
  const steps = [0, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 100];
  const nearest = steps.reduce((best, s) => (Math.abs(s - percent) < Math.abs(best - percent) ? s : best), 0);
  return `w-${nearest}`;
}

function sectionFromPath(pathname) {
  const rest = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : "";
  const id = rest.replace(/^\/+/, "").split("/")[0] || "overview";
  return id.toLowerCase();
}

function sectionHref(id) {
  return id === "overview" ? BASE : `${BASE}/${id}`;
}

/** The plan catalog (public), fetched once; resolves to null when it can't be loaded. */
function loadPlans() {
  if (!state.plansPromise) {
    state.plansPromise = api("/api/billing/plans")
      .then((data) => (state.plans = (data && data.plans) || []))
      .catch(() => {
        state.plansPromise = null;
        return null;
      });
  }
  return state.plansPromise;
}

function setTitle(label) {
  document.title = `${label} · Agent Relay Cloud`;
}

function providerLabel(id) {
  return { anthropic: "Claude", openai: "Codex", google: "Gemini", github: "GitHub" }[id] || id;
}

// ---------------------------------------------------------------------------
// signed-out screens
// ---------------------------------------------------------------------------

function publicHeader() {
  return `
    <header class="app-header">
      <div class="app-header-inner">
        ${brand("/")}
        <a class="btn btn-ghost btn-sm" href="/pricing">Pricing</a>
      </div>
    </header>`;
}

function githubButton(label, next) {
  return `<a class="btn btn-dark btn-lg btn-block" data-testid="signin-button" href="${esc(signInUrl(next))}">${icons.github}<span>${esc(label)}</span></a>`;
}

function renderSignedOut({ flash } = {}) {
  if (!flash && sectionFromPath(window.location.pathname) === "link") {
    renderSignedOutLink();
    return;
  }
  setTitle("Sign in");
  root.innerHTML = `
    ${publicHeader()}
    <main class="auth-wrap" id="main" tabindex="-1">
      <section class="auth-card" data-testid="signin-card" aria-labelledby="signin-title">
        ${flash ? `<p class="flash" role="status">${icons.checkCircle}<span>${esc(flash)}</span></p>` : ""}
        ${logoMark()}
        <h1 id="signin-title">Sign in to Agent Relay Cloud</h1>
        <p>Run and coordinate your AI coding agents across cloud workspaces and your own machines.</p>
        ${githubButton("Sign in with GitHub", currentLocation())}
        <ul class="auth-perks">
          <li>${icons.check}<span>New here? Signing in creates your free account.</span></li>
          <li>${icons.check}<span>No credit card needed for the Free plan.</span></li>
          <li>${icons.check}<span>Subscription logins stay on your own machines.</span></li>
        </ul>
        <p class="auth-foot"><a href="/pricing">Compare plans</a> · <a href="/">What is Agent Relay?</a></p>
      </section>
    </main>`;
}

/** Signed out on the link-approval page (usually a phone that scanned the terminal's QR code). */
function renderSignedOutLink() {
  const code = formatCode(new URLSearchParams(window.location.search).get("user_code") || "");
  setTitle("Sign in to link a machine");
  root.innerHTML = `
    ${publicHeader()}
    <main class="auth-wrap" id="main" tabindex="-1">
      <section class="auth-card" data-testid="signin-card" aria-labelledby="signin-title">
        <div class="lk-icon lk-icon-center" aria-hidden="true">${icons.link}</div>
        <h1 id="signin-title">Sign in to link your machine</h1>
        <p>${
          code
            ? `Sign in with the GitHub account that should own this machine. We'll bring you straight back to approve code <span class="lk-code-inline">${esc(code)}</span>.`
            : "Sign in with the GitHub account that should own this machine, then enter the code from your terminal."
        }</p>
        ${githubButton("Sign in with GitHub", currentLocation())}
        <ul class="auth-perks">
          <li>${icons.shield}<span>You'll see the machine's name and where the request came from before anything is linked.</span></li>
          <li>${icons.check}<span>New here? Signing in creates your free account.</span></li>
        </ul>
      </section>
    </main>`;
}

function renderAuthError(code) {
  const info = AUTH_ERRORS[code] || GENERIC_AUTH_ERROR;
  setTitle("Sign-in problem");
  root.innerHTML = `
    ${publicHeader()}
    <main class="auth-wrap" id="main" tabindex="-1">
      <section class="auth-card" data-testid="auth-error" data-code="${esc(code)}" role="alert" aria-labelledby="auth-error-title">
        <div class="state-icon">${icons.alert}</div>
        <h1 id="auth-error-title">${esc(info.title)}</h1>
        <p>${esc(info.body)}</p>
        <span class="error-code">Error code: ${esc(code)}</span>
        ${githubButton("Try again", currentLocation())}
        <p class="auth-foot">Still stuck? <a href="mailto:support@agentrelay.dev">Contact support</a> · <a href="/">Back to home</a></p>
      </section>
    </main>`;
}

function renderFatal(retry) {
  setTitle("Can't connect");
  root.innerHTML = `
    ${publicHeader()}
    <main class="auth-wrap" id="main" tabindex="-1">
      <section class="auth-card" role="alert" aria-labelledby="fatal-title">
        <div class="state-icon">${icons.alert}</div>
        <h1 id="fatal-title">We couldn't reach Agent Relay Cloud</h1>
        <p>Check your connection and try again. If this keeps happening, our service may be briefly unavailable.</p>
        <button type="button" class="btn btn-primary btn-lg btn-block" data-action="retry">${icons.refresh}<span>Try again</span></button>
      </section>
    </main>`;
  root.querySelector('[data-action="retry"]').addEventListener("click", retry);
}

// ---------------------------------------------------------------------------
// signed-in shell
// ---------------------------------------------------------------------------

function renderShell() {
  const user = state.user;
  const tier = planTier(user.plan);
  const paid = tier !== "free";
  const nav = SECTIONS.map(
    (s) => `<li><a href="${sectionHref(s.id)}" data-section="${s.id}">${s.icon}<span>${esc(s.label)}</span>${
      s.id === "overview" || s.live ? "" : '<span class="soon" aria-hidden="true">Soon</span>'
    }</a></li>`,
  ).join("");

  root.innerHTML = `
    <header class="app-header">
      <div class="app-header-inner">
        <button type="button" class="icon-btn app-menu-toggle" aria-controls="sidebar" aria-expanded="false" aria-label="Open navigation">${icons.menu}</button>
        ${brand(BASE)}
        <div class="user-menu" data-testid="user-menu">
          <div class="user-chip">
            ${avatarMarkup(user)}
            <span class="user-login" data-testid="user-login">${esc(user.github_login)}</span>
            <span class="plan-chip${paid ? " is-paid" : ""}" data-testid="user-plan" title="Your plan">${esc(userPlanName(user))}</span>
          </div>
          <button type="button" class="btn btn-ghost btn-sm" data-testid="signout-button" aria-label="Sign out">${icons.logout}<span class="signout-label">Sign out</span></button>
        </div>
      </div>
    </header>
    <div class="app-shell">
      <aside class="sidebar" id="sidebar" aria-label="Dashboard navigation">
        <p class="sidebar-label">Dashboard</p>
        <nav aria-label="Dashboard sections">
          <ul class="side-nav">${nav}</ul>
        </nav>
        ${
          paid
            ? ""
            : `<div class="sidebar-foot">
                 <div class="upgrade-card">
                   <strong>Upgrade to Pro</strong>
                   <p>More workspaces, more concurrent agents and coordinator agents.</p>
                   <a class="btn btn-primary btn-sm btn-block" href="/pricing">See plans</a>
                 </div>
               </div>`
        }
      </aside>
      <div class="backdrop" data-action="close-nav"></div>
      <main class="main" id="main" tabindex="-1"></main>
    </div>`;

  wireAvatarFallbacks(root);
  root.querySelector('[data-testid="signout-button"]').addEventListener("click", signOut);

  const toggle = root.querySelector(".app-menu-toggle");
  toggle.addEventListener("click", () => setNavOpen(toggle.getAttribute("aria-expanded") !== "true"));
  root.querySelector('[data-action="close-nav"]').addEventListener("click", () => setNavOpen(false));

  root.querySelector(".side-nav").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-section]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    if (link.getAttribute("href") !== window.location.pathname || window.location.search || window.location.hash) {
      window.history.pushState({}, "", link.getAttribute("href"));
    }
    setNavOpen(false);
    route({ focus: true });
  });
}

function setNavOpen(open) {
  const toggle = root.querySelector(".app-menu-toggle");
  const sidebar = root.querySelector(".sidebar");
  const backdrop = root.querySelector(".backdrop");
  if (!toggle || !sidebar) return;
  toggle.setAttribute("aria-expanded", String(open));
  toggle.setAttribute("aria-label", open ? "Close navigation" : "Open navigation");
  sidebar.classList.toggle("is-open", open);
  backdrop.classList.toggle("is-open", open);
  if (open) {
    const current = sidebar.querySelector('[aria-current="page"]') || sidebar.querySelector("a");
    if (current) current.focus();
  }
}

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  const toggle = root.querySelector(".app-menu-toggle");
  if (toggle && toggle.getAttribute("aria-expanded") === "true") {
    setNavOpen(false);
    toggle.focus();
  }
});

window.addEventListener("popstate", () => {
  if (state.user) route({ focus: true });
});

window.addEventListener("relay:session-expired", () => setNavOpen(false));

/** Stop whatever the current section runs in the background (polls, timers, requests). */
function leaveSection() {
  if (state.cleanup) {
    const cleanup = state.cleanup;
    state.cleanup = null;
    cleanup();
  }
}

window.addEventListener("pagehide", leaveSection);
window.addEventListener("pageshow", (event) => {
  if (event.persisted && state.user) route();
});

function route({ focus = false } = {}) {
  const id = sectionFromPath(window.location.pathname);
  // /dashboard/link (approving a machine's code) belongs to Machines.
  const navId = id === "link" ? "machines" : id;
  const section = SECTIONS.find((s) => s.id === id);
  for (const link of root.querySelectorAll(".side-nav a")) {
    if (link.dataset.section === navId) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const main = root.querySelector("#main");
  state.routeToken += 1;
  leaveSection();
  if (id === "link") {
    setTitle("Link a machine");
    state.cleanup = mountLink(main, { user: state.user });
  } else if (!section) {
    setTitle("Not found");
    main.innerHTML = notFound();
  } else if (section.id === "overview") {
    setTitle("Overview");
    loadOverview(main, state.routeToken);
  } else if (section.id === "providers") {
    setTitle(section.label);
    state.cleanup = mountProviders(main);
  } else if (section.id === "machines") {
    setTitle(section.label);
    state.cleanup = mountMachines(main);
  } else if (section.id === "repositories") {
    setTitle(section.label);
    state.cleanup = mountRepos(main);
  } else if (section.id === "workspaces") {
    setTitle(section.label);
    state.cleanup = mountWorkspaces(main);
  } else {
    setTitle(section.label);
    main.innerHTML = comingNext(section);
  }
  if (focus) {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  }
}

// ---------------------------------------------------------------------------
// overview
// ---------------------------------------------------------------------------

function overviewSkeleton() {
  return `
    <div class="page-head"><div>
      <h1>${esc(greeting())}, ${esc(displayName(state.user))}</h1>
      <p>Loading your account…</p>
    </div></div>
    <ul class="stats" aria-hidden="true">
      ${'<li class="stat"><div class="skeleton-line w-50"></div><div class="skeleton-line w-30"></div></li>'.repeat(4)}
    </ul>
    <div class="grid grid-main" aria-hidden="true">
      <section class="card"><div class="card-body"><div class="skeleton-line w-40"></div><div class="skeleton-line w-90"></div><div class="skeleton-line w-80"></div><div class="skeleton-line w-70"></div></div></section>
      <section class="card"><div class="card-body"><div class="skeleton-line w-60"></div><div class="skeleton-line w-90"></div><div class="skeleton-line w-50"></div></div></section>
    </div>`;
}

async function loadOverview(main, token) {
  main.innerHTML = overviewSkeleton();
  main.setAttribute("aria-busy", "true");
  const plansPromise = loadPlans();
  // The provider list feeds onboarding and the Providers stat; the overview still renders without it.
  const providersPromise = fetchProviders().catch(() => null);
  // Linked machines complete the last onboarding step; without the list the step just stays open.
  const daemonsPromise = fetchDaemons().catch(() => null);
  try {
    const me = await api("/api/auth/me");
    await plansPromise;
    const providers = await providersPromise;
    const daemons = await daemonsPromise;
    if (token !== state.routeToken) return;
    state.me = me;
    state.providers = providers;
    state.daemons = daemons;
    // Keep the header in step with the freshest profile.
    const planChip = root.querySelector('[data-testid="user-plan"]');
    if (planChip) planChip.textContent = userPlanName(me);
    main.innerHTML = overview(me);
    const leave = main.querySelector('[data-testid="account-delete"]');
    if (leave) leave.addEventListener("click", () => confirmDeleteAccount(me, leave));
  } catch (err) {
    if (token !== state.routeToken) return;
    const expired = err && err.code === "SESSION_EXPIRED";
    main.innerHTML = `
      <div class="page-head"><div><h1>Overview</h1></div></div>
      <div class="notice notice-error" role="alert">
        ${icons.alert}
        <span>${expired ? "Your session expired. Sign in again to see your account." : "We couldn't load your account details."}</span>
        ${expired ? "" : `<button type="button" class="btn btn-sm" data-action="retry">${icons.refresh}<span>Retry</span></button>`}
      </div>`;
    const retry = main.querySelector('[data-action="retry"]');
    if (retry) retry.addEventListener("click", () => route());
  } finally {
    if (token === state.routeToken) main.setAttribute("aria-busy", "false");
  }
}

/**
 * Usable AI-provider connections (Claude, Codex, Gemini with health valid or expiring), as
 * [{provider: id}]. From GET /api/providers; if that could not be loaded, from /api/auth/me (where the
 * GitHub sign-in connection is listed too, but it is not an AI provider).
 */
function aiProviders(me) {
  if (Array.isArray(state.providers)) {
    return state.providers.filter((p) => AI_PROVIDER_IDS.includes(p.id) && isUsable(p)).map((p) => ({ provider: p.id }));
  }
  return (me.connected_providers || []).filter((p) => p && p.provider && p.provider !== "github");
}

/** Every usable connection (any provider, GitHub and custom ones included), and the ones needing attention. */
function providerCounts(me) {
  if (!Array.isArray(state.providers)) {
    const n = aiProviders(me).length;
    return { connected: n, attention: 0, total: null };
  }
  return {
    connected: state.providers.filter(isUsable).length,
    attention: state.providers.filter((p) => ["refresh_failed", "revoked", "expiring"].includes(p.health)).length,
    total: state.providers.length,
  };
}

function providerStatSub(counts) {
  if (counts.attention) return `${counts.attention} need${counts.attention === 1 ? "s" : ""} attention`;
  if (counts.total !== null) return counts.connected ? `connected · ${counts.total} available` : `none connected · ${counts.total} available`;
  return counts.connected ? "AI providers connected" : "no AI provider yet";
}

function onboardingSteps(me) {
  const providers = aiProviders(me);
  const machines = Array.isArray(state.daemons) ? state.daemons : [];
  return [
    { title: "Sign in with GitHub", desc: `Connected as @${me.github_login}`, done: true },
    {
      title: "Connect an AI provider",
      desc: providers.length
        ? `Connected: ${providers.map((p) => providerLabel(p.provider)).join(", ")}`
        : "Claude, Codex or Gemini — with an API key or the provider's own login.",
      done: providers.length > 0,
      action: { label: "Connect", href: sectionHref("providers") },
    },
    {
      title: "Add a repository",
      desc: "Choose which GitHub repositories your agents may work on.",
      done: false,
      action: { label: "Add repo", href: sectionHref("repositories") },
    },
    {
      title: "Start a workspace or link a machine",
      desc: machines.length
        ? `Linked: ${machines.map((d) => d.name || d.machine_id).join(", ")}`
        : "Launch a cloud workspace, or run relay-cloud link on your own machine.",
      done: machines.length > 0,
      action: { label: "Set up", href: sectionHref("machines") },
    },
  ];
}

function overview(me) {
  const steps = onboardingSteps(me);
  const done = steps.filter((s) => s.done).length;
  const percent = Math.round((done / steps.length) * 100);
  const tier = planTier(me.plan);
  const catalog = (state.plans || []).find((p) => p.tier === tier);
  const providers = aiProviders(me);
  const counts = providerCounts(me);
  const invites = Number(me.pending_invites || 0);
  const limits = catalog ? catalog.limits || {} : null;
  const lim = (key, one, many) => {
    if (!limits || !(key in limits)) return "";
    const n = limits[key];
    return n === null ? `Unlimited ${many}` : `${n} ${n === 1 ? one : many}`;
  };

  const stepItems = steps
    .map(
      (s, i) => `
      <li class="${s.done ? "is-done" : ""}">
        <span class="check-dot" aria-hidden="true">${s.done ? icons.check : i + 1}</span>
        <span><strong>${esc(s.title)}</strong><span class="desc">${esc(s.desc)}</span>
          <span class="sr-only">${s.done ? "Done" : "Not done yet"}</span></span>
        ${
          s.done
            ? '<span class="tag tag-green">Done</span>'
            : s.action
              ? `<a class="btn btn-sm" href="${s.action.href}" data-section-link="${s.action.href}">${esc(s.action.label)}</a>`
              : ""
        }
      </li>`,
    )
    .join("");

  const limitItems = limits
    ? Object.entries({
        workspaces: "Workspaces",
        repositories: "Repositories",
        concurrent_agents: "Concurrent agents",
        compute_hours_per_month: "Compute hours / month",
        team_members_per_workspace: "Members per workspace",
      })
        .filter(([key]) => key in limits)
        .map(([key, label]) => `<li><span>${esc(label)}</span><b>${limits[key] === null ? "Unlimited" : esc(limits[key])}</b></li>`)
        .join("")
    : "";

  const html = `
    <div class="page-head">
      <div>
        <h1>${esc(greeting())}, ${esc(displayName(me))}</h1>
        <p>Here's where your agent team stands today.</p>
      </div>
      <a class="btn" href="${sectionHref("providers")}" data-section-link="${sectionHref("providers")}">${icons.sparkles}<span>Connect a provider</span></a>
    </div>

    ${
      invites > 0
        ? `<div class="notice" role="status">${icons.mail}<span>You have <b>${invites}</b> pending team invitation${invites === 1 ? "" : "s"}.</span>
             <a class="btn btn-sm" href="${sectionHref("team")}" data-section-link="${sectionHref("team")}">Review</a></div>`
        : ""
    }

    <ul class="stats">
      <li class="stat">
        <span class="stat-label">${icons.billing}Plan</span>
        <div class="stat-value" data-testid="overview-plan">${esc(userPlanName(me))}</div>
        <div class="stat-sub">${esc([lim("workspaces", "workspace", "workspaces"), lim("concurrent_agents", "agent", "agents")].filter(Boolean).join(" · ") || "Current plan")}</div>
      </li>
      <li class="stat">
        <span class="stat-label">${icons.key}Providers</span>
        <div class="stat-value" data-testid="overview-providers">${counts.connected}</div>
        <div class="stat-sub${counts.attention ? " stat-sub-warn" : ""}">${esc(providerStatSub(counts))}</div>
      </li>
      <li class="stat">
        <span class="stat-label">${icons.mail}Invitations</span>
        <div class="stat-value">${invites}</div>
        <div class="stat-sub">pending</div>
      </li>
      <li class="stat">
        <span class="stat-label">${icons.clock}Member since</span>
        <div class="stat-value stat-date">${esc(formatDate(me.created_at))}</div>
        <div class="stat-sub">via GitHub</div>
      </li>
    </ul>

    <div class="grid grid-main">
      <section class="card" aria-labelledby="onboarding-title" data-testid="onboarding">
        <div class="card-head">
          <h2 id="onboarding-title">Get your agent team running</h2>
          <span class="tag ${done === steps.length ? "tag-green" : "tag-accent"}">${done} of ${steps.length} done</span>
        </div>
        <div class="card-body">
          <div class="progress-meta"><span>Setup progress</span><strong>${percent}%</strong></div>
          <div class="progress" role="progressbar" aria-label="Setup progress" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${percent}"><span class="${widthClass(percent)}"></span></div>
          <ol class="onboarding">${stepItems}</ol>
        </div>
      </section>

      <div class="grid">
        <section class="card" aria-labelledby="account-title">
          <div class="card-head"><h2 id="account-title">Account</h2><span class="tag tag-green">${icons.github}GitHub</span></div>
          <div class="card-body">
            <div class="profile">
              ${avatarMarkup(me, { size: "avatar-lg", testid: "" })}
              <div><strong>${esc(me.name || me.github_login)}</strong><span>@${esc(me.github_login)}</span></div>
            </div>
            <dl class="kv">
              <div><dt>Email</dt><dd>${esc(me.email || "Not shared on GitHub")}</dd></div>
              <div><dt>Member since</dt><dd>${esc(formatDate(me.created_at))}</dd></div>
              <div><dt>AI providers</dt><dd>${
                providers.length ? esc(providers.map((p) => providerLabel(p.provider)).join(", ")) : "None yet"
              }</dd></div>
            </dl>
            <button type="button" class="btn btn-ghost btn-sm pv-danger-ghost account-delete" data-testid="account-delete">Delete account</button>
          </div>
        </section>

        <section class="card" aria-labelledby="plan-title">
          <div class="card-head"><h2 id="plan-title">Your plan</h2><span class="plan-chip${tier === "free" ? "" : " is-paid"}">${esc(userPlanName(me))}</span></div>
          <div class="card-body">
            ${limitItems ? `<ul class="limits">${limitItems}</ul>` : '<p class="muted">See what your plan includes on the pricing page.</p>'}
            <a class="btn ${tier === "free" ? "btn-primary" : ""} btn-block" href="/pricing">${tier === "free" ? "Upgrade plan" : "Compare plans"}</a>
          </div>
        </section>
      </div>
    </div>`;
  return html;
}

/** Account deletion behind a typed-login confirmation; the server's refusal (e.g. workspaces still
 * running: WORKSPACES_EXIST) is shown in the dialog as it words it. */
function confirmDeleteAccount(me, trigger) {
  const login = me.github_login;
  const input = el("input", { class: "ws-input", id: "account-delete-login", type: "text", autocomplete: "off",
    spellcheck: "false", "data-testid": "account-delete-login", "aria-describedby": "account-delete-dialog-desc" });
  const dialog = confirmDialog({
    id: "account-delete-dialog",
    testid: "account-delete",
    iconName: "alert",
    title: "Delete your account?",
    description: "Your connections, repositories, machines and encrypted keys are removed for good, and the GitHub authorization is given back. This can't be undone.",
    extra: el("div", { class: "ws-field ws-confirm-field" },
      el("label", { for: "account-delete-login" }, "Type ", el("b", { class: "mono" }, login), " to confirm"), input),
    cancelLabel: "Keep it",
    confirmLabel: "Delete account",
    trigger,
    action: async () => {
      if (input.value.trim() !== login) return "The username doesn't match.";
      try {
        await api("/api/account", { method: "DELETE", body: { confirm: input.value.trim() } });
      } catch (err) {
        if (err && err.code === "SESSION_EXPIRED") return null;
        return (err && err.body && err.body.error) || "We couldn't delete your account. Please try again.";
      }
      window.location.assign("/");
      return null;
    },
  });
  const confirm = dialog.querySelector('[data-testid="account-delete-confirm"]');
  const sync = () => (confirm.disabled = input.value.trim() !== login);
  input.addEventListener("input", sync);
  sync();
  input.focus();
}

// Links inside the main area that point at dashboard sections use client-side routing too.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-section-link]");
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  window.history.pushState({}, "", link.getAttribute("href"));
  route({ focus: true });
});

// ---------------------------------------------------------------------------
// coming-next sections
// ---------------------------------------------------------------------------

function preview(section) {
  if (section.preview === "terminal") {
    const login = state.user ? state.user.github_login : "you";
    return `<div class="terminal" role="img" aria-label="Example: linking a machine from the terminal"><span class="p">$</span> relay-cloud link
<span class="c">  Open ${esc(window.location.origin)}/dashboard/machines</span>
<span class="c">  and enter the code:</span>  WDJB-MJHT
<span class="p">✓</span> Linked "my-laptop" to @${esc(login)}</div>`;
  }
  if (section.preview === "bars") {
    const bar = (w) => `<div class="ghost-row"><i class="dot"></i><span><i></i><div class="progress"><span class="${w}"></span></div></span><i class="pill"></i></div>`;
    return `<div class="ghost-preview" aria-hidden="true">${bar("w-30")}${bar("w-60")}${bar("w-80")}</div>`;
  }
  const row = '<div class="ghost-row"><i class="dot"></i><span><i></i><i></i></span><i class="pill"></i></div>';
  return `<div class="ghost-preview" aria-hidden="true">${row.repeat(3)}</div>`;
}

function comingNext(section) {
  const params = new URLSearchParams(window.location.search);
  const chosen = section.id === "billing" && params.get("plan");
  const chosenInterval = params.get("interval") === "year" ? "yearly" : "monthly";
  const points = section.points.map((p) => `<li>${icons.checkCircle}<span>${esc(p)}</span></li>`).join("");
  const extra =
    section.id === "billing"
      ? `<a class="btn" href="/pricing">View plans</a>`
      : section.id === "machines"
        ? `<a class="btn" href="/#features">How linking works</a>`
        : "";
  return `
    <div class="page-head"><div><h1>${esc(section.label)}</h1><p>${esc(section.lede)}</p></div></div>
    ${
      chosen
        ? `<div class="notice" role="status">${icons.sparkles}<span>You picked <b>${esc(planName(chosen))}</b>, billed ${chosenInterval}. Checkout opens here as soon as billing is live.</span></div>`
        : ""
    }
    <section class="empty" data-testid="coming-next-${esc(section.id)}" aria-labelledby="empty-title">
      <div class="empty-grid">
        <div>
          <div class="empty-icon">${section.icon}</div>
          <span class="tag tag-accent">Coming next</span>
          <h2 id="empty-title">${esc(section.title)}</h2>
          <p>We're putting the finishing touches on this part of the dashboard. Here's what it will do:</p>
          <ul class="checklist">${points}</ul>
          <div class="empty-actions">
            <a class="btn btn-primary" href="${BASE}" data-section-link="${BASE}">${icons.overview}<span>Back to overview</span></a>
            ${extra}
          </div>
        </div>
        ${preview(section)}
      </div>
    </section>`;
}

function notFound() {
  return `
    <section class="empty" aria-labelledby="nf-title">
      <div class="empty-icon">${icons.inbox}</div>
      <h1 id="nf-title">This page doesn't exist</h1>
      <p class="muted">The dashboard section you asked for isn't here. It may have moved.</p>
      <div class="empty-actions"><a class="btn btn-primary" href="${BASE}" data-section-link="${BASE}">Go to overview</a></div>
    </section>`;
}

// ---------------------------------------------------------------------------
// sign-out
// ---------------------------------------------------------------------------

async function signOut(event) {
  const button = event.currentTarget;
  button.setAttribute("aria-busy", "true");
  button.disabled = true;
  try {
    await api("/api/auth/logout", { method: "POST" });
  } catch (err) {
    if (err && err.code === "SESSION_EXPIRED") return; // the session-expired modal has taken over
    if (!(err && err.status === 401)) {
      button.removeAttribute("aria-busy");
      button.disabled = false;
      toast("We couldn't sign you out. Please try again.");
      return;
    }
  }
  leaveSection();
  setCsrfToken(null);
  state.user = null;
  state.me = null;
  renderSignedOut({ flash: "You've been signed out." });
}

// ---------------------------------------------------------------------------
// boot
// ---------------------------------------------------------------------------

async function boot() {
  const params = new URLSearchParams(window.location.search);
  const authError = params.get("auth_error");
  let session;
  try {
    session = await api("/api/auth/session");
  } catch (err) {
    if (err && err.code === "SESSION_EXPIRED") {
      renderSignedOut();
      return;
    }
    renderFatal(boot);
    return;
  }

  if (session && session.authenticated && session.user) {
    setCsrfToken(session.csrf_token);
    state.user = session.user;
    if (authError) window.history.replaceState({}, "", currentLocation());
    // Load the catalog in the background so plan names come from the single source of truth.
    loadPlans().then(() => {
      const chip = root.querySelector('[data-testid="user-plan"]');
      if (chip && state.user && state.plans) chip.textContent = userPlanName(state.user);
    });
    renderShell();
    route();
    return;
  }

  setCsrfToken(null);
  if (authError) {
    renderAuthError(authError);
    return;
  }
  renderSignedOut();
  // The user had a session and it ran out: say so, and offer to come straight back here.
  if (session && session.code === "SESSION_EXPIRED") showSessionExpired();
}

boot();
