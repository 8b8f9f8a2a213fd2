// The Repositories section (/dashboard/repositories, SPEC C5 and C8, docs/design/repositories.md): the
// repositories the user added (remove with confirmation), adding one by name, and an "Add from GitHub"
// picker paged from GET /api/repos/github with multi-select → POST /api/repos/bulk and its per-item
// results. The plan limit's 402 shows an upgrade message. Server data only ever lands in textContent and
// attributes (ui.js el()); every API call goes through api.js (CSRF header, session-expired modal).

import { api } from "./api.js";
import { confirmDialog, el, icon, shortDate, toast } from "./ui.js";

const PER_PAGE = 20;
const MAX_BULK = 50;

const STATUS = {
  added: { label: "Added", tone: "ok" },
  exists: { label: "Already added", tone: "info" },
  not_found: { label: "Not found on GitHub", tone: "bad" },
  invalid: { label: "Not a valid owner/name", tone: "bad" },
  limit_exceeded: { label: "Over your plan's limit", tone: "warn" },
};

/** GET /api/repos → {repositories, usage} (throws ApiError). */
export async function fetchRepos(options = {}) {
  const data = await api("/api/repos", options);
  return {
    repositories: (data && Array.isArray(data.repositories) ? data.repositories : []).filter((r) => r && r.id),
    usage: (data && data.usage) || null,
  };
}

/** The pricing link of a 402: the server's upgrade_url when it is this site, else /pricing. */
function upgradeHref(limit) {
  try {
    const url = new URL(limit.upgrade_url, window.location.origin);
    if (url.origin === window.location.origin) return url.pathname + url.search;
  } catch {
    // fall through
  }
  return "/pricing";
}

function planLabel(tier) {
  const t = String(tier || "free");
  return t.charAt(0).toUpperCase() + t.slice(1);
}

/** Why GitHub could not be asked, in words, with where to fix it. */
function githubProblem(err) {
  const code = err && err.code;
  if (code === "GITHUB_NOT_CONNECTED") {
    return ["Connect GitHub to list and add repositories. ", providersLink("Connect GitHub")];
  }
  if (code === "GITHUB_TOKEN_INVALID") {
    return ["GitHub no longer accepts your authorization. ", providersLink("Reconnect GitHub"), " or sign in again."];
  }
  if (err && err.status === 503) return "GitHub isn't responding right now. Please try again in a moment.";
  return (err && err.body && err.body.error) || "Something went wrong. Please try again.";
}

function providersLink(label) {
  return el("a", { href: "/dashboard/providers", "data-section-link": "/dashboard/providers" }, label);
}

export function mountRepos(main) {
  const page = new ReposPage(main);
  page.start();
  return () => page.destroy();
}

class ReposPage {
  constructor(main) {
    this.main = main;
    this.repos = null;
    this.usage = null;
    this.abort = new AbortController();
    this.destroyed = false;
    this.picker = { open: false, page: 1, hasNext: false, items: [], selected: new Map(), loading: false, source: null };
  }

  start() {
    this.usageEl = el("div", { class: "rp-usage", "data-testid": "repos-usage", "aria-live": "polite" });
    this.openButton = el("button", { type: "button", class: "btn btn-primary btn-sm", "data-testid": "repos-add-open",
      "aria-expanded": "false", "aria-controls": "rp-picker" }, icon("github"), el("span", {}, "Add from GitHub"));
    this.openButton.addEventListener("click", () => (this.picker.open ? this.closePicker() : this.openPicker()));
    this.noticeEl = el("div", { class: "rp-notices", "data-testid": "repos-notices" });
    this.pickerEl = el("section", { class: "card rp-picker", id: "rp-picker", "data-testid": "repos-picker",
      "aria-labelledby": "rp-picker-title", hidden: true });
    this.bodyEl = el("div", { class: "rp-body", "aria-busy": "true" }, this.skeleton());
    this.main.replaceChildren(
      el("div", { class: "page-head" },
        el("div", {},
          el("h1", {}, "Repositories"),
          el("p", {}, "The GitHub repositories your agents may work on. Add them here, then attach them to a workspace.")),
        el("div", { class: "rp-head-actions" }, this.usageEl, this.openButton)),
      this.noticeEl,
      this.pickerEl,
      this.byNameForm(),
      this.bodyEl,
    );
    this.load();
  }

  destroy() {
    this.destroyed = true;
    this.abort.abort();
    const dialog = document.getElementById("rp-remove-dialog");
    if (dialog) dialog.remove();
  }

  skeleton() {
    const row = () => el("li", { class: "rp-row rp-skeleton", "aria-hidden": "true" },
      el("div", { class: "skeleton-line w-40" }), el("div", { class: "skeleton-line w-20" }));
    return el("ul", { class: "rp-list" }, row(), row());
  }

  async load() {
    let data;
    try {
      data = await fetchRepos({ signal: this.abort.signal });
    } catch (err) {
      if (this.destroyed || (err && err.name === "AbortError")) return;
      const retry = el("button", { type: "button", class: "btn btn-sm" }, icon("refresh"), el("span", {}, "Retry"));
      retry.addEventListener("click", () => {
        this.bodyEl.replaceChildren(this.skeleton());
        this.load();
      });
      this.bodyEl.replaceChildren(el("div", { class: "notice notice-error", role: "alert", "data-testid": "repos-error" },
        icon("alert"), el("span", {}, err && err.code === "SESSION_EXPIRED" ? "Your session expired." : "We couldn't load your repositories."),
        err && err.code === "SESSION_EXPIRED" ? null : retry));
      return;
    }
    if (this.destroyed) return;
    this.repos = data.repositories;
    this.usage = data.usage;
    this.render();
  }

  // -- the list ------------------------------------------------------------------------------------

  render() {
    this.bodyEl.setAttribute("aria-busy", "false");
    const usage = this.usage;
    if (usage) {
      const limit = usage.limit === null || usage.limit === undefined ? "unlimited" : usage.limit;
      this.usageEl.replaceChildren(el("b", {}, String(usage.used)), ` of ${limit} on ${planLabel(usage.plan)}`);
    }
    if (!this.repos.length) {
      const start = el("button", { type: "button", class: "btn btn-primary" }, icon("github"), el("span", {}, "Add from GitHub"));
      start.addEventListener("click", () => this.openPicker());
      this.bodyEl.replaceChildren(el("section", { class: "empty rp-empty", "data-testid": "repos-empty", "aria-labelledby": "rp-empty-title" },
        el("div", { class: "empty-icon" }, icon("repo")),
        el("h2", { id: "rp-empty-title" }, "Add your first repository"),
        el("p", {}, "Pick repositories from your GitHub account. Your agents only ever work on the ones you add."),
        el("div", { class: "empty-actions" }, start)));
      return;
    }
    this.bodyEl.replaceChildren(el("ul", { class: "rp-list", "data-testid": "repos-list" }, this.repos.map((r) => this.row(r))));
  }

  row(repo) {
    const remove = el("button", { type: "button", class: "btn btn-ghost btn-sm pv-danger-ghost", "data-testid": `repo-remove-${repo.id}`,
      "aria-label": `Remove ${repo.full_name}`, disabled: Boolean(repo.attached_workspace_id),
      title: repo.attached_workspace_id ? "Attached to a workspace: detach it first" : null },
      icon("x"), el("span", {}, "Remove"));
    remove.addEventListener("click", () => this.confirmRemove(repo, remove));
    const name = repo.html_url && /^https?:\/\//.test(repo.html_url)
      ? el("a", { href: repo.html_url, target: "_blank", rel: "noopener noreferrer" }, repo.full_name)
      : repo.full_name;
    return el("li", { class: "rp-row", "data-testid": `repo-row-${repo.id}`, "data-repo-id": repo.id },
      el("div", { class: "rp-icon", "aria-hidden": "true" }, icon(repo.private ? "lock" : "repo")),
      el("div", { class: "rp-info" },
        el("h2", { class: "rp-name" }, name),
        el("ul", { class: "rp-meta" },
          el("li", {}, el("span", { class: `tag ${repo.private ? "tag-amber" : ""}` }, repo.private ? "Private" : "Public")),
          el("li", { title: "Default branch" }, icon("terminal"), el("span", { class: "mono" }, repo.default_branch || "—")),
          el("li", {}, `Added ${shortDate(repo.added_at)}`),
          repo.attached_workspace_id ? el("li", {}, el("span", { class: "tag tag-accent" }, "In a workspace")) : null)),
      el("div", { class: "rp-actions" }, remove));
  }

  confirmRemove(repo, trigger) {
    confirmDialog({
      id: "rp-remove-dialog",
      testid: "repo-remove",
      iconName: "x",
      title: `Remove ${repo.full_name}?`,
      description: "Your agents stop seeing it here. Nothing changes on GitHub, and you can add it again any time.",
      cancelLabel: "Keep it",
      confirmLabel: "Remove",
      trigger,
      fallbackFocus: () => this.openButton,
      action: async () => {
        try {
          await api(`/api/repos/${encodeURIComponent(repo.id)}`, { method: "DELETE" });
        } catch (err) {
          if (err && err.code === "SESSION_EXPIRED") return null;
          if (err && err.status === 404) {
            this.load();
            return null;
          }
          return (err && err.body && err.body.error) || "We couldn't remove it. Please try again.";
        }
        toast(`Removed ${repo.full_name}`);
        this.clearNotices();
        await this.load();
        this.refreshPickerMarks();
        return null;
      },
    });
  }

  // -- notices -------------------------------------------------------------------------------------

  clearNotices() {
    this.noticeEl.replaceChildren();
  }

  showLimit(limit) {
    const href = upgradeHref(limit);
    this.noticeEl.replaceChildren(el("div", { class: "notice rp-upgrade", role: "alert", "data-testid": "repos-upgrade" },
      icon("sparkles"),
      el("span", {}, `Your ${planLabel(limit.plan)} plan includes ${limit.limit} repositories and you have ${limit.used}. `,
        "Upgrade to add more, or remove one you no longer need."),
      el("a", { class: "btn btn-sm btn-primary", href, "data-testid": "repos-upgrade-link" }, "See plans")));
  }

  showProblem(content) {
    this.noticeEl.replaceChildren(el("div", { class: "notice notice-error", role: "alert", "data-testid": "repos-problem" },
      icon("alert"), el("span", {}, content)));
  }

  // -- add by name ---------------------------------------------------------------------------------

  byNameForm() {
    const input = el("input", { class: "rp-input", id: "rp-by-name", name: "full_name", type: "text", required: true,
      autocomplete: "off", spellcheck: "false", placeholder: "owner/repository", "data-testid": "repos-by-name-input",
      pattern: "[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}" });
    const submit = el("button", { type: "submit", class: "btn btn-sm", "data-testid": "repos-by-name-submit" }, el("span", {}, "Add"));
    const form = el("form", { class: "rp-by-name", "data-testid": "repos-by-name" },
      el("label", { for: "rp-by-name" }, "Add by name"), el("div", { class: "rp-by-name-row" }, input, submit));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fullName = input.value.trim();
      if (!fullName) return;
      submit.disabled = true;
      submit.setAttribute("aria-busy", "true");
      this.clearNotices();
      try {
        const repo = await api("/api/repos", { method: "POST", body: { full_name: fullName } });
        toast(`Added ${repo.full_name}`);
        input.value = "";
        await this.load();
        this.refreshPickerMarks();
      } catch (err) {
        if (err && err.code === "PLAN_LIMIT_EXCEEDED") this.showLimit(err.body);
        else if (err && err.code === "REPO_NOT_FOUND") this.showProblem(`${fullName} doesn't exist, or your GitHub account can't see it.`);
        else if (err && err.code === "INVALID_REPO_NAME") this.showProblem("Enter a repository as owner/name, for example octocat/hello-world.");
        else if (err && err.code !== "SESSION_EXPIRED") this.showProblem(githubProblem(err));
      } finally {
        submit.disabled = false;
        submit.removeAttribute("aria-busy");
      }
    });
    return form;
  }

  // -- the GitHub picker ---------------------------------------------------------------------------

  openPicker() {
    this.picker.open = true;
    this.pickerEl.hidden = false;
    this.openButton.setAttribute("aria-expanded", "true");
    this.picker.selected.clear();
    this.loadPage(1);
  }

  closePicker() {
    this.picker.open = false;
    this.pickerEl.hidden = true;
    this.openButton.setAttribute("aria-expanded", "false");
    this.openButton.focus({ preventScroll: true });
  }

  async loadPage(pageNo) {
    const picker = this.picker;
    picker.loading = true;
    this.renderPicker({ loading: true });
    let data;
    try {
      data = await api(`/api/repos/github?page=${pageNo}&per_page=${PER_PAGE}`, { signal: this.abort.signal });
    } catch (err) {
      picker.loading = false;
      if (this.destroyed || (err && err.name === "AbortError")) return;
      this.renderPicker({ problem: err && err.code === "SESSION_EXPIRED" ? "Your session expired." : githubProblem(err) });
      return;
    }
    if (this.destroyed) return;
    picker.loading = false;
    picker.page = data.page || pageNo;
    picker.hasNext = Boolean(data.has_next);
    picker.source = data.token_source || null;
    picker.items = Array.isArray(data.repositories) ? data.repositories : [];
    this.renderPicker({});
  }

  /** After adding or removing elsewhere on the page, the open picker's "added" marks follow. */
  refreshPickerMarks() {
    if (!this.picker.open || this.picker.loading) return;
    const added = new Map((this.repos || []).map((r) => [r.github_id, r.id]));
    this.picker.items = this.picker.items.map((item) => ({ ...item, added: added.has(item.github_id), repo_id: added.get(item.github_id) || null }));
    this.renderPicker({});
  }

  renderPicker({ loading = false, problem = null, results = null }) {
    const picker = this.picker;
    const close = el("button", { type: "button", class: "icon-btn", "aria-label": "Close the picker", "data-testid": "picker-close" }, icon("x"));
    close.addEventListener("click", () => this.closePicker());
    const head = el("div", { class: "card-head" }, el("h2", { id: "rp-picker-title" }, "Add from GitHub"), close);
    const parts = [head];
    if (picker.source === "sign_in" && !problem) {
      parts.push(el("p", { class: "rp-hint", "data-testid": "picker-public-only" }, icon("lock"),
        el("span", {}, "Only public repositories are listed. ", providersLink("Connect GitHub"), " to include private ones.")));
    }
    if (results) parts.push(results);
    if (problem) {
      parts.push(el("div", { class: "notice notice-error", role: "alert", "data-testid": "picker-problem" }, icon("alert"), el("span", {}, problem)));
    } else if (loading) {
      parts.push(el("div", { class: "rp-pick-list", "aria-busy": "true" },
        el("div", { class: "skeleton-line w-60" }), el("div", { class: "skeleton-line w-40" }), el("div", { class: "skeleton-line w-50" })));
    } else if (!picker.items.length) {
      parts.push(el("p", { class: "muted rp-none", "data-testid": "picker-empty" }, "No repositories on this page."));
    } else {
      parts.push(el("fieldset", { class: "rp-pick-list", "data-testid": "picker-list" },
        el("legend", { class: "sr-only" }, `Your GitHub repositories, page ${picker.page}`),
        picker.items.map((item) => this.pickItem(item))));
    }
    parts.push(this.pickerFooter(loading));
    this.pickerEl.replaceChildren(...parts);
  }

  pickItem(item) {
    const id = `rp-pick-${item.github_id}`;
    const box = el("input", { type: "checkbox", id, "data-testid": `picker-item-${item.github_id}`,
      checked: item.added || this.picker.selected.has(item.full_name), disabled: Boolean(item.added) });
    box.addEventListener("change", () => {
      if (box.checked) this.picker.selected.set(item.full_name, true);
      else this.picker.selected.delete(item.full_name);
      this.updateSubmit();
    });
    return el("div", { class: `rp-pick${item.added ? " is-added" : ""}` },
      box,
      el("label", { for: id },
        el("span", { class: "rp-pick-name" }, item.full_name),
        el("span", { class: "rp-pick-meta" },
          item.private ? "Private" : "Public",
          item.language ? ` · ${item.language}` : "",
          item.description ? ` · ${item.description}` : "")),
      item.added ? el("span", { class: "tag tag-green" }, "Added") : null);
  }

  pickerFooter(loading) {
    const picker = this.picker;
    const prev = el("button", { type: "button", class: "btn btn-sm", "data-testid": "picker-prev", disabled: loading || picker.page <= 1 },
      icon("arrowLeft"), el("span", {}, "Previous"));
    const next = el("button", { type: "button", class: "btn btn-sm", "data-testid": "picker-next", disabled: loading || !picker.hasNext },
      el("span", {}, "Next"), icon("chevronRight"));
    prev.addEventListener("click", () => this.loadPage(picker.page - 1));
    next.addEventListener("click", () => this.loadPage(picker.page + 1));
    this.submitButton = el("button", { type: "button", class: "btn btn-primary btn-sm", "data-testid": "picker-submit" });
    this.submitButton.addEventListener("click", () => this.addSelected());
    this.updateSubmit(loading);
    return el("div", { class: "rp-picker-foot" },
      el("div", { class: "rp-pager" }, prev, el("span", { class: "rp-page", "data-testid": "picker-page" }, `Page ${picker.page}`), next),
      this.submitButton);
  }

  updateSubmit(loading = this.picker.loading) {
    const n = this.picker.selected.size;
    this.submitButton.replaceChildren(icon("check"), el("span", {}, n ? `Add selected (${n})` : "Add selected"));
    this.submitButton.disabled = loading || n === 0 || n > MAX_BULK;
  }

  async addSelected() {
    const names = [...this.picker.selected.keys()];
    if (!names.length) return;
    this.submitButton.disabled = true;
    this.submitButton.setAttribute("aria-busy", "true");
    this.clearNotices();
    let answer;
    try {
      answer = await api("/api/repos/bulk", { method: "POST", body: { full_names: names } });
    } catch (err) {
      this.submitButton.removeAttribute("aria-busy");
      this.updateSubmit();
      if (err && err.code !== "SESSION_EXPIRED") this.showProblem(githubProblem(err));
      return;
    }
    this.picker.selected.clear();
    if (answer.plan_limit) this.showLimit(answer.plan_limit);
    const added = Number(answer.added || 0);
    if (added) toast(`Added ${added} repositor${added === 1 ? "y" : "ies"}`);
    await this.load();
    const byGithubId = new Map((this.repos || []).map((r) => [r.github_id, r.id]));
    this.picker.items = this.picker.items.map((item) => ({ ...item, added: byGithubId.has(item.github_id), repo_id: byGithubId.get(item.github_id) || null }));
    this.renderPicker({ results: this.resultList(answer.results || []) });
  }

  resultList(results) {
    return el("div", { class: "rp-results", "data-testid": "bulk-results", role: "status" },
      el("h3", {}, "Results"),
      el("ul", {}, results.map((r) => {
        const s = STATUS[r.status] || { label: String(r.status), tone: "info" };
        return el("li", { class: `rp-result rp-result-${s.tone}`, "data-status": r.status },
          el("span", { class: "rp-result-name mono" }, String(r.full_name)), el("span", { class: "rp-result-status" }, s.label));
      })));
  }
}
