// The zenml-authz console: plain DOM, no framework, no build step. Every value from the API is
// written as text (textContent), never as HTML. The caller token lives in this tab's session
// storage and goes only into the Authorization header.
"use strict";

const TOKEN_KEY = "zenml-authz-caller-token";
const VIEWS = ["status", "roles", "what-can", "who-can", "decisions"];
const POLL_MS = 2000;

let directory = null;
let lastDecision = 0;
let decisionRows = [];
let pollTimer = null;

const $ = (id) => document.getElementById(id);

// An element with attributes and children (strings become text nodes).
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(container, ...nodes) {
  container.replaceChildren(...nodes.flat(Infinity));
}

class Unauthorized extends Error {}

// GET an API path (relative to the console, so a path prefix in front of the sidecar works).
async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch("../" + path, { headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized("the caller token was refused");
  let body;
  try {
    body = await response.json();
  } catch (_) {
    throw new Error(`${path}: HTTP ${response.status}`);
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  $("forget").hidden = !token;
  return body;
}

function fail(error) {
  if (error instanceof Unauthorized) {
    askToken(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused." : "");
    return;
  }
  $("error").textContent = error.message;
}

function askToken(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("token-form").hidden = false;
  $("token-error").textContent = message;
  document.querySelector("main").hidden = true;
  $("token").focus();
}

// --- Status ---------------------------------------------------------------------------------

function definitionList(pairs) {
  return h("dl", {}, pairs.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

async function showStatus() {
  const status = await api("v1/status");
  const reloads = status.reloads;
  const counts = status.counts;
  const body = [
    definitionList([
      ["Revision", h("code", { id: "status-revision" }, status.revision)],
      ["Loaded at", status.loaded_at],
      ["Reloads", `${reloads.succeeded} succeeded, ${reloads.unchanged} unchanged, ${reloads.failed} failed`],
      ["Last reload", reloads.last_success_at || "never"],
      ["Last failed reload", reloads.last_failure_at || "never"],
      ["Policies", `${counts.policies} policies, ${counts.templates} templates, ${counts.entities} entities`],
      [
        "Directory",
        `${counts.workspaces} workspaces, ${counts.projects} projects, ${counts.teams} teams, ` +
          `${counts.users} users, ${counts.service_accounts} service accounts, ` +
          `${counts.custom_roles} custom roles, ${counts.bindings} bindings`,
      ],
      [
        "Shares",
        `${status.shares.count} (version ${status.shares.version}) in ${status.shares.store.location}` +
          (status.shares.withheld ? ", withheld: the share database is unreachable" : ""),
      ],
      ["Cache", status.cache.enabled ? `${status.cache.entries} entries, ${status.cache.hits} hits, ${status.cache.misses} misses` : "off"],
      ["Draining", status.draining ? "yes" : "no"],
    ]),
  ];
  if (status.last_load_error) {
    body.push(
      h("div", { class: "load-error", id: "last-load-error" },
        h("h3", {}, "The newest sources are invalid; the revision above is still active"),
        h("ul", {}, status.last_load_error.map((line) => h("li", {}, h("code", {}, line))))),
    );
  } else {
    body.push(h("p", { class: "ok", id: "last-load-error" }, "The newest sources loaded: no load error."));
  }
  if (status.warnings.length) {
    body.push(h("h3", {}, "Warnings"), h("ul", {}, status.warnings.map((w) => h("li", {}, w))));
  }
  show($("status-body"), body);
}

// --- The directory: dropdowns --------------------------------------------------------------

async function loadDirectory() {
  directory = await api("v1/directory");
  $("revision").textContent = "revision " + directory.revision;
  const scopes = [];
  const workspaces = [h("option", { value: "" }, "every workspace")];
  for (const workspace of directory.workspaces) {
    scopes.push(h("option", { value: workspace.id }, `workspace ${workspace.name}`));
    workspaces.push(h("option", { value: workspace.id }, workspace.name));
    for (const project of workspace.projects) {
      scopes.push(h("option", { value: project.id }, `project ${project.name} (${workspace.name})`));
    }
  }
  const scopeSelect = $("roles-scope");
  const chosen = scopeSelect.value;
  show(scopeSelect, scopes);
  if (chosen) scopeSelect.value = chosen;
  show($("what-can-workspace"), workspaces);
  show($("who-can-workspace"), workspaces.map((option) => option.cloneNode(true)));
  $("who-can-workspace").firstChild.textContent = "the resource's (or the only one)";
  show($("principals"), [
    directory.users.map((user) => h("option", { value: user.name }, `${user.kind}${user.active ? "" : ", deactivated"}`)),
    directory.teams.map((team) => h("option", { value: team.name }, `team of ${team.members}`)),
  ]);
  if (!$("who-can-action").options.length) {
    show($("who-can-action"), directory.actions.map((action) => h("option", { value: action }, action)));
  }
}

// --- Grids ----------------------------------------------------------------------------------

function actionsText(actions, all) {
  if (!actions.length) return "—";
  if (actions.length === all.length) return "all";
  return actions.join(" ");
}

// --- Roles ----------------------------------------------------------------------------------

async function showRoles() {
  const scope = $("roles-scope").value;
  if (!scope) return;
  const matrix = await api("v1/role-matrix?scope=" + encodeURIComponent(scope));
  const levels = [];
  for (const role of matrix.roles) {
    const where = role.bound_at.kind === "organization" ? "organization" : `${role.bound_at.kind} ${role.bound_at.name}`;
    const last = levels[levels.length - 1];
    if (last && last.where === where) last.count += 1;
    else levels.push({ where, count: 1 });
  }
  const head = h("thead", {},
    h("tr", {}, h("th", { rowspan: 2 }, "resource type"),
      levels.map((level) => h("th", { colspan: level.count, class: "level" }, `bound at ${level.where}`))),
    h("tr", {}, matrix.roles.map((role) =>
      h("th", { class: role.custom ? "role custom" : "role", title: role.custom ? "custom role" : "predefined role" },
        role.role + (role.custom ? " *" : "")))));
  const rows = matrix.types.map((type, index) =>
    h("tr", {}, h("th", { scope: "row" }, type),
      matrix.roles.map((role) => {
        const actions = role.grants[index].actions;
        const cell = { class: actions.length ? "granted" : "none", "data-bound": role.bound_at.kind, "data-role": role.role, "data-type": type };
        return h("td", cell,
          actionsText(actions, matrix.actions));
      })));
  const scopeName = matrix.scope.kind === "project"
    ? `project ${matrix.scope.name} (${matrix.scope.workspace})`
    : `workspace ${matrix.scope.name}`;
  show($("roles-body"),
    h("p", { class: "caption" }, `At ${scopeName}, revision ${matrix.revision}. * a custom role. `,
      "“all”: every action (", matrix.actions.join(", "), ")."),
    h("div", { class: "scroll" }, h("table", { class: "matrix", id: "role-matrix" }, head, h("tbody", {}, rows))));
}

// --- What can -------------------------------------------------------------------------------

function scopeText(scope) {
  if (scope.kind === "organization") return `organization ${scope.name}`;
  if (scope.kind === "workspace") return `workspace ${scope.name}`;
  return `project ${scope.name} (${scope.workspace})`;
}

function place(file, line) {
  return h("code", { class: "place" }, `${file}:${line}`);
}

async function showWhatCan(event) {
  if (event) event.preventDefault();
  const who = $("what-can-who").value.trim();
  if (!who) return;
  let path = "v1/what-can?who=" + encodeURIComponent(who);
  const workspace = $("what-can-workspace").value;
  if (workspace) path += "&workspace=" + encodeURIComponent(workspace);
  const answer = await api(path);
  const subject = answer.subject;
  const about = subject.kind === "team"
    ? `team ${subject.name}; members: ${subject.members.join(", ") || "none"}`
    : `${subject.kind} ${subject.name}${subject.active ? "" : " (deactivated)"}; teams: ${subject.teams.join(", ") || "none"}`;
  const bindings = answer.bindings.length
    ? h("table", { id: "bindings" },
        h("thead", {}, h("tr", {}, h("th", {}, "role"), h("th", {}, "at"), h("th", {}, "through"), h("th", {}, "where"))),
        h("tbody", {}, answer.bindings.map((binding) =>
          h("tr", {},
            h("td", {}, binding.role + (binding.custom ? " (custom)" : "")),
            h("td", {}, scopeText(binding.scope)),
            h("td", {}, binding.through_team ? `team ${binding.through_team}` : "directly"),
            h("td", {}, place(binding.file, binding.line))))))
    : h("p", { id: "bindings" }, "No bindings.");
  const grids = answer.scopes.map((scope) => {
    const granted = scope.grants.filter((row) => row.actions.length);
    const title = h("h4", {}, scopeText(scope));
    if (!granted.length) return h("div", { class: "grid" }, title, h("p", { class: "none" }, "nothing"));
    return h("div", { class: "grid" }, title,
      h("table", {}, h("tbody", {}, granted.map((row) =>
        h("tr", {}, h("th", { scope: "row" }, row.type), h("td", {}, actionsText(row.actions, directory.actions)))))));
  });
  show($("what-can-body"),
    h("p", { class: "caption", id: "what-can-subject" }, about),
    h("h3", {}, "Bindings"), bindings,
    h("h3", {}, "May do"), h("div", { class: "grids", id: "what-can-grids" }, grids));
}

// --- Who can --------------------------------------------------------------------------------

async function showWhoCan(event) {
  if (event) event.preventDefault();
  const resource = $("who-can-resource").value.trim();
  if (!resource) return;
  let path = "v1/who-can?action=" + encodeURIComponent($("who-can-action").value) +
    "&resource=" + encodeURIComponent(resource);
  const workspace = $("who-can-workspace").value;
  if (workspace) path += "&workspace=" + encodeURIComponent(workspace);
  const answer = await api(path);
  const question = answer.question;
  show($("who-can-body"),
    h("p", { class: "caption", id: "who-can-summary" },
      `Who can ${question.action} ${question.resource} in workspace ${question.workspace.name}: ` +
      `${answer.allowed_principals} of ${answer.principals} users and service accounts, ` +
      `${answer.allowed_teams} of ${answer.teams} teams.`),
    answer.grants.length
      ? h("table", { id: "who-can-table" },
          h("thead", {}, h("tr", {}, h("th", {}, "kind"), h("th", {}, "name"), h("th", {}, "because of"))),
          h("tbody", {}, answer.grants.map((grant) =>
            h("tr", {}, h("td", {}, grant.kind), h("td", {}, grant.name),
              h("td", {}, grant.policies.map((policy) =>
                h("span", { class: "policy" }, policy.id, " ", policy.file ? place(policy.file, policy.line) : "")))))))
      : h("p", {}, "Nobody."));
}

// --- Decisions ------------------------------------------------------------------------------

// A user's or service account's name for its id (ZenML API records) or Cedar uid
// (`ZenML::User::"…"`).
function principalName(principal) {
  if (!principal) return "";
  const uid = /^(?:\w+::)*User::"(.*)"$/.exec(principal);
  const id = uid ? uid[1] : principal;
  const user = directory && directory.users.find((candidate) => candidate.id === id);
  return user ? `${user.name} (${user.kind})` : principal;
}

function decisionRow(record) {
  if (record.event) {
    return h("tr", { class: "event" }, h("td", {}, record.number), h("td", {}, record.time),
      h("td", { colspan: 6 }, `share ${record.event}: ${record.resource} (${record.reason || ""})`));
  }
  return h("tr", { class: record.decision },
    h("td", {}, record.number),
    h("td", {}, record.time),
    h("td", {}, record.api),
    h("td", {}, principalName(record.principal)),
    h("td", {}, record.action || ""),
    h("td", {}, record.resource || ""),
    h("td", { class: "verdict" }, record.decision),
    h("td", {}, (record.policies || []).join(", ") + (record.cached ? " (cached)" : "")));
}

async function pollDecisions() {
  const answer = await api("v1/decisions?after=" + lastDecision);
  if (!answer.enabled) {
    show($("decisions-body"), h("p", { id: "decisions-off" },
      "The decision log is off. Start the sidecar with --decision-log memory (or a file, or stdout) " +
      "to see the recent decisions here."));
    return;
  }
  if (answer.last < lastDecision) decisionRows = []; // the sidecar restarted
  lastDecision = answer.last;
  decisionRows = answer.records.slice().reverse().concat(decisionRows).slice(0, answer.kept);
  show($("decisions-body"),
    h("p", { class: "caption" }, `${answer.last} records written since start; the last ${answer.kept} are kept.`),
    h("table", { id: "decisions" },
      h("thead", {}, h("tr", {}, ["#", "time", "api", "principal", "action", "resource", "decision", "policies"]
        .map((title) => h("th", {}, title)))),
      h("tbody", {}, decisionRows.map(decisionRow))));
}

function stopPolling() {
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = null;
}

// --- Views ----------------------------------------------------------------------------------

async function render() {
  const view = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "status";
  for (const name of VIEWS) $("view-" + name).hidden = name !== view;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.view === view);
  }
  $("error").textContent = "";
  stopPolling();
  try {
    await loadDirectory();
    if (view === "status") await showStatus();
    if (view === "roles") await showRoles();
    if (view === "decisions") {
      await pollDecisions();
      pollTimer = setInterval(() => pollDecisions().catch(fail), POLL_MS);
    }
  } catch (error) {
    fail(error);
  }
}

function guarded(handler) {
  return (event) => {
    $("error").textContent = "";
    handler(event).catch(fail);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    $("token-form").hidden = true;
    document.querySelector("main").hidden = false;
    render();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("forget").hidden = true;
    location.reload();
  });
  $("roles-scope").addEventListener("change", guarded(showRoles));
  $("what-can-form").addEventListener("submit", guarded(showWhatCan));
  $("who-can-form").addEventListener("submit", guarded(showWhoCan));
  window.addEventListener("hashchange", render);
  render();
});
