// The pricing page, rendered from the plan catalog (GET /api/billing/plans). No price lives in HTML.

import { api, signInUrl } from "./api.js";
import { icons } from "./icons.js";

const POPULAR_TIER = "pro";
const SALES_EMAIL = "mailto:sales@agentrelay.dev?subject=Agent%20Relay%20Cloud%20Enterprise";

const LIMIT_LABELS = {
  workspaces: ["workspace", "workspaces", "Unlimited workspaces"],
  repositories: ["repository", "repositories", "Unlimited repositories"],
  concurrent_agents: ["concurrent agent", "concurrent agents", "Unlimited concurrent agents"],
  compute_hours_per_month: ["compute hour / month", "compute hours / month", "Unlimited compute hours"],
  team_members_per_workspace: ["member per workspace", "members per workspace", "Unlimited team members"],
};

const LIMIT_ROWS = {
  workspaces: "Workspaces",
  repositories: "Repositories",
  concurrent_agents: "Concurrent agents",
  compute_hours_per_month: "Compute hours / month",
  team_members_per_workspace: "Team members per workspace",
};

const FEATURE_LABELS = {
  coordinators: "Coordinator agents",
  custom_domains: "Custom domains",
  audit_log_export: "Audit log export",
  sso: "Single sign-on (SSO)",
};

const state = { plans: [], interval: "month" };

const els = {
  plans: document.getElementById("plans"),
  switchWrap: document.getElementById("billing-switch"),
  toggle: document.getElementById("billing-toggle"),
  optMonth: document.getElementById("opt-month"),
  optYear: document.getElementById("opt-year"),
  savePill: document.getElementById("save-pill"),
  compare: document.getElementById("compare"),
  table: document.getElementById("compare-table"),
};

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function humanize(key) {
  const text = String(key).replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function formatMoney(cents, currency = "usd") {
  const whole = cents % 100 === 0;
  return new Intl.NumberFormat("en-US", {
    style: "currency",
    currency: String(currency || "usd").toUpperCase(),
    minimumFractionDigits: whole ? 0 : 2,
    maximumFractionDigits: 2,
  }).format(cents / 100);
}

function limitText(key, value) {
  const labels = LIMIT_LABELS[key];
  if (value === null || value === undefined) return labels ? labels[2] : `Unlimited ${humanize(key).toLowerCase()}`;
  if (key === "team_members_per_workspace" && value === 1) return "Just you in each workspace";
  if (!labels) return `${humanize(key)}: ${value}`;
  return `${value.toLocaleString("en-US")} ${value === 1 ? labels[0] : labels[1]}`;
}

function isCustom(plan) {
  return Boolean(plan.price && (plan.price.custom || plan.price.monthly_cents === null || plan.price.monthly_cents === undefined));
}

function isFree(plan) {
  return !isCustom(plan) && plan.price.monthly_cents === 0;
}

function maxDiscount() {
  return state.plans.reduce((max, p) => Math.max(max, (p.price && p.price.yearly_discount_percent) || 0), 0);
}

function priceView(plan) {
  const price = plan.price || {};
  if (isCustom(plan)) {
    return { amount: "Custom", period: "", note: "Volume pricing, SSO and a dedicated contact" };
  }
  const currency = price.currency || "usd";
  if (isFree(plan)) {
    return { amount: formatMoney(0, currency), period: "", note: "Free forever — no credit card" };
  }
  if (state.interval === "year") {
    const perMonth = formatMoney(Math.round(price.yearly_cents / 12), currency);
    const save = price.yearly_discount_percent ? ` · <strong>save ${esc(price.yearly_discount_percent)}%</strong>` : "";
    return {
      amount: formatMoney(price.yearly_cents, currency),
      period: "/year",
      note: `${esc(perMonth)}/mo, billed yearly${save}`,
    };
  }
  return { amount: formatMoney(price.monthly_cents, currency), period: "/month", note: "Billed monthly, cancel anytime" };
}

function cta(plan) {
  if (isCustom(plan)) {
    return `<a class="btn btn-block" href="${SALES_EMAIL}">Contact sales</a>`;
  }
  if (isFree(plan)) {
    return `<a class="btn btn-block" href="${esc(signInUrl("/dashboard"))}">Start for free</a>`;
  }
  const next = `/dashboard/billing?plan=${encodeURIComponent(plan.tier)}&interval=${state.interval}`;
  const primary = plan.tier === POPULAR_TIER ? "btn-primary" : "btn-dark";
  return `<a class="btn ${primary} btn-block" href="${esc(signInUrl(next))}">Get ${esc(plan.name)}</a>`;
}

function planCard(plan) {
  const view = priceView(plan);
  const popular = plan.tier === POPULAR_TIER;
  const limits = Object.entries(plan.limits || {})
    .map(([key, value]) => `<li>${icons.check}<span>${esc(limitText(key, value))}</span></li>`)
    .join("");
  const features = Object.entries(plan.features || {})
    .map(([key, on]) => {
      const label = esc(FEATURE_LABELS[key] || humanize(key));
      return on
        ? `<li>${icons.check}<span>${label}</span></li>`
        : `<li class="is-off">${icons.minus}<span><span class="sr-only">Not included: </span>${label}</span></li>`;
    })
    .join("");
  const id = `plan-${esc(plan.tier)}-name`;
  return `
    <article class="plan${popular ? " is-popular" : ""}" data-testid="pricing-card-${esc(plan.tier)}" aria-labelledby="${id}">
      ${popular ? '<span class="plan-badge">Most popular</span>' : ""}
      <h2 id="${id}">${esc(plan.name)}</h2>
      <p class="plan-tagline">${esc(plan.tagline)}</p>
      <div class="plan-price">
        <span class="plan-amount" data-testid="price-${esc(plan.tier)}">${esc(view.amount)}</span>
        ${view.period ? `<span class="plan-period">${esc(view.period)}</span>` : ""}
      </div>
      <p class="plan-note">${view.note}</p>
      ${cta(plan)}
      <ul class="plan-list" aria-label="${esc(plan.name)} includes">${limits}${features}</ul>
    </article>`;
}

function renderCompare() {
  const plans = state.plans;
  const head = plans
    .map((p) => `<th scope="col"${p.tier === POPULAR_TIER ? ' class="is-popular"' : ""}>${esc(p.name)}</th>`)
    .join("");
  const priceRow = plans
    .map((p) => {
      const v = priceView(p);
      return `<td>${esc(v.amount)}${v.period ? `<span class="muted"> ${esc(v.period)}</span>` : ""}</td>`;
    })
    .join("");
  const limitKeys = [...new Set(plans.flatMap((p) => Object.keys(p.limits || {})))];
  const featureKeys = [...new Set(plans.flatMap((p) => Object.keys(p.features || {})))];
  const limitRows = limitKeys
    .map((key) => {
      const cells = plans
        .map((p) => {
          const v = (p.limits || {})[key];
          return `<td>${v === null || v === undefined ? "Unlimited" : esc(v.toLocaleString("en-US"))}</td>`;
        })
        .join("");
      return `<tr><th scope="row">${esc(LIMIT_ROWS[key] || humanize(key))}</th>${cells}</tr>`;
    })
    .join("");
  const featureRows = featureKeys
    .map((key) => {
      const cells = plans
        .map((p) =>
          (p.features || {})[key]
            ? `<td><span class="yes">${icons.check}</span><span class="sr-only">Included</span></td>`
            : `<td><span class="no">${icons.minus}</span><span class="sr-only">Not included</span></td>`,
        )
        .join("");
      return `<tr><th scope="row">${esc(FEATURE_LABELS[key] || humanize(key))}</th>${cells}</tr>`;
    })
    .join("");
  const cols = plans.length + 1;
  els.table.innerHTML = `
    <caption class="sr-only">Limits and features of every plan, ${state.interval === "year" ? "billed yearly" : "billed monthly"}</caption>
    <thead><tr><th scope="col"><span class="sr-only">Plan</span></th>${head}</tr></thead>
    <tbody>
      <tr><th scope="row">Price</th>${priceRow}</tr>
      <tr class="group-row"><th scope="colgroup" colspan="${cols}">Limits</th></tr>
      ${limitRows}
      <tr class="group-row"><th scope="colgroup" colspan="${cols}">Features</th></tr>
      ${featureRows}
    </tbody>`;
  els.compare.hidden = false;
}

function render() {
  els.plans.setAttribute("aria-busy", "false");
  els.plans.className = "plans";
  els.plans.innerHTML = state.plans.map(planCard).join("");
  renderCompare();
}

function setInterval_(interval) {
  state.interval = interval;
  const yearly = interval === "year";
  els.toggle.setAttribute("aria-checked", String(yearly));
  els.optMonth.classList.toggle("is-active", !yearly);
  els.optYear.classList.toggle("is-active", yearly);
  if (state.plans.length) render();
}

function renderError(err) {
  els.switchWrap.hidden = true;
  els.compare.hidden = true;
  els.plans.setAttribute("aria-busy", "false");
  els.plans.className = "";
  els.plans.innerHTML = `
    <div class="state-card" role="alert" data-testid="pricing-error">
      <div class="state-icon">${icons.alert}</div>
      <h2>We couldn't load pricing</h2>
      <p>${esc(err && err.status ? "Our pricing service returned an error." : "We couldn't reach Agent Relay Cloud.")} Please try again in a moment.</p>
      <button type="button" class="btn btn-primary" data-testid="pricing-retry">${icons.refresh}<span>Try again</span></button>
    </div>`;
  const retry = els.plans.querySelector("button");
  retry.addEventListener("click", () => load());
  retry.focus();
}

function renderLoading() {
  els.plans.className = "plans";
  els.plans.setAttribute("aria-busy", "true");
  els.plans.innerHTML =
    '<div class="plan-skeleton" aria-hidden="true"></div>'.repeat(4) + '<span class="sr-only">Loading plans…</span>';
}

async function load() {
  renderLoading();
  try {
    const data = await api("/api/billing/plans");
    const plans = (data && Array.isArray(data.plans) && data.plans) || [];
    if (!plans.length) throw new Error("empty catalog");
    state.plans = plans;
    const discount = maxDiscount();
    els.savePill.hidden = !discount;
    els.savePill.textContent = discount ? `Save ${discount}%` : "";
    els.switchWrap.hidden = false;
    render();
  } catch (err) {
    renderError(err);
  }
}

els.toggle.addEventListener("click", () => setInterval_(state.interval === "year" ? "month" : "year"));
els.optMonth.addEventListener("click", () => setInterval_("month"));
els.optYear.addEventListener("click", () => setInterval_("year"));

load();
