// Palisade console: the pages of a signed-in person. Plain JavaScript, no framework, no
// inline script; every text goes in as a text node, never parsed as HTML.
"use strict";

(function () {
  const main = document.getElementById("main");
  let csrf = null;
  // The built-in issuer, for service-account callers (null when the server has none).
  let issuer = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  async function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    if (opts.method && opts.method !== "GET") opts.headers["x-csrf-token"] = csrf;
    const response = await fetch(path, opts);
    if (response.status === 401) {
      window.location.assign("/console/signin");
      throw new Error("signed out");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
    return body;
  }

  function show(...nodes) {
    main.replaceChildren(...nodes);
  }

  function tensors(list) {
    return (list || []).map((t) => t.name + " " + t.datatype + " [" + t.shape.join(", ") + "]").join("; ");
  }

  function modelsPage(data) {
    const title = el("h1", {}, "My models");
    if (!data.models.length) {
      show(title, el("p", { class: "muted", id: "no-models" }, "You own no model served here."));
      return;
    }
    const rows = [];
    for (const model of data.models) {
      for (const v of model.versions) {
        rows.push(el("tr", { "data-model": model.name },
          el("td", {}, el("a", { href: "/console/models/" + encodeURIComponent(model.name) }, model.name)),
          el("td", {}, model.namespace),
          el("td", {}, v.version, v.latest ? el("span", { class: "tag" }, " latest") : null),
          el("td", {}, el("span", { class: "tag " + (v.status === "ready" ? "good" : "bad") }, v.status)),
          el("td", { class: "digest" }, v.digest),
          el("td", {}, el("code", {}, tensors(v.inputs))),
          el("td", {}, el("code", {}, tensors(v.outputs)))));
      }
    }
    show(title,
      el("table", { id: "models" },
        el("thead", {}, el("tr", {}, ["Model", "Namespace", "Version", "Status", "Bundle digest", "Inputs", "Outputs"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)));
  }

  function modelPage(model) {
    const versions = model.versions.map((v) => el("section", { class: "card" },
      el("h2", {}, "Version " + v.version + (v.latest ? " (latest)" : "")),
      el("p", {}, "Status: ", el("span", { class: "tag " + (v.status === "ready" ? "good" : "bad") }, v.status), " · engine ", v.engine),
      el("p", {}, "Bundle digest: ", el("span", { class: "digest" }, v.digest)),
      el("table", {},
        el("thead", {}, el("tr", {}, ["", "Name", "Datatype", "Shape"].map((h) => el("th", {}, h)))),
        el("tbody", {},
          v.inputs.map((t) => el("tr", {}, el("td", {}, "input"), el("td", {}, t.name), el("td", {}, t.datatype), el("td", {}, "[" + t.shape.join(", ") + "]"))),
          v.outputs.map((t) => el("tr", {}, el("td", {}, "output"), el("td", {}, t.name), el("td", {}, t.datatype), el("td", {}, "[" + t.shape.join(", ") + "]")))))));
    show(el("h1", { id: "model-name" }, model.name),
      el("p", { class: "muted" }, "Namespace " + model.namespace + " · owners: " + model.owners.join(", ")),
      ...versions);
  }

  function accessSection(access) {
    const sections = [el("h2", { id: "access" }, "Who can call this model, and why")];
    const area = deleteArea();
    for (const v of access.versions) {
      const rows = v.policies.map((p, i) => {
        let remove = null;
        if (p.deletable) {
          remove = el("button", { type: "button", class: "secondary small", "data-delete": p.policy }, "Delete…");
          remove.addEventListener("click", () => deletePolicy(p.policy, area));
        }
        return el("tr", { "data-policy": p.policy },
          el("td", {}, String(i + 1)),
          el("td", {}, el("span", { class: "tag " + (p.action === "DENY" ? "bad" : "good") }, p.action), p.dry_run ? " (dry run)" : ""),
          el("td", {}, el("code", {}, p.policy), p.root_namespace ? " (platform-wide)" : "", remove ? " " : null, remove),
          el("td", {}, p.rules.length ? el("ul", {}, p.rules.map((r) => el("li", {}, r))) : "allows nothing"));
      });
      sections.push(el("section", { class: "card" },
        el("h3", {}, "Version " + v.version),
        el("p", {}, v.owner_default
          ? "No ALLOW policy applies: only the owners may call this version."
          : "ALLOW policies apply: a caller, owners included, needs a rule below that admits them (DENY rules are checked first)."),
        el("p", {}, "Owners: ", v.owners.map((o) => o.owner + " (" + o.matches + ")").join("; ")),
        rows.length
          ? el("table", { class: "access" },
            el("thead", {}, el("tr", {}, ["Step", "Action", "Policy", "Rules"].map((h) => el("th", {}, h)))),
            el("tbody", {}, rows))
          : el("p", { class: "muted" }, "No policy applies to this version.")));
    }
    sections.push(area);
    return sections;
  }

  function checkForm(model) {
    const claims = el("textarea", { id: "check-claims", rows: "3", spellcheck: "false" });
    claims.value = '{"email": "someone@example.com"}';
    const token = el("textarea", { id: "check-token", rows: "2", spellcheck: "false", placeholder: "or paste a token instead of claims" });
    const result = el("p", { id: "check-result", role: "status" });
    const form = el("form", { id: "check" },
      el("label", { for: "check-claims" }, "Claims (JSON)"), claims,
      el("label", { for: "check-token" }, "Token"), token,
      el("button", { type: "submit" }, "Would this caller be allowed?"), result);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { model: model };
      try {
        if (token.value.trim()) body.token = token.value.trim();
        else body.claims = JSON.parse(claims.value);
        const answer = await api("/console/api/check", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        result.className = answer.allowed ? "ok" : "error";
        result.textContent = (answer.allowed ? "Allowed (200): " : "Refused (" + answer.status + "): ") + answer.reason;
      } catch (err) {
        result.className = "error";
        result.textContent = err.message;
      }
    });
    return [el("h2", {}, "Would this caller be allowed?"), el("section", { class: "card" }, form)];
  }

  function quoted(list) {
    return "[" + list.map((v) => JSON.stringify(v)).join(", ") + "]";
  }

  // An ALLOW policy for the callers and operations in `form`: one rule per kind of caller
  // (emails, groups, service accounts), each limited to the paths and methods given.
  function policyYaml(model, name, form) {
    let op = "";
    if (form.paths.length || form.methods.length) {
      op = "    to:\n    - operation:\n" +
        (form.paths.length ? "        paths: " + quoted(form.paths) + "\n" : "") +
        (form.methods.length ? "        methods: " + quoted(form.methods) + "\n" : "");
    }
    const claimRule = (claim, values) => "  - when:\n    - key: request.auth.claims[" + claim + "]\n      values: " + quoted(values) + "\n" + op;
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n" +
      "  name: " + name + "\n  namespace: " + model.namespace + "\nspec:\n  action: ALLOW\n  rules:\n";
    if (form.emails.length) text += claimRule("email", form.emails);
    if (form.groups.length) text += claimRule("groups", form.groups);
    if (form.accounts.length && issuer) {
      const principals = form.accounts.map((a) => {
        const [ns, sa] = a.includes("/") ? a.split("/", 2) : [model.namespace, a];
        return issuer + "/system:serviceaccount:" + ns + ":" + sa;
      });
      text += "  - from:\n    - source:\n        requestPrincipals: " + quoted(principals) + "\n" + op;
    }
    if (!form.emails.length && !form.groups.length && !(form.accounts.length && issuer)) {
      text += "  - when:\n    - key: request.auth.claims[email]\n      values: []\n";
    }
    return text;
  }

  function impactList(impact) {
    if (!impact.length) return el("p", { class: "muted" }, "Nobody gains or loses access.");
    return el("ul", { id: "impact" }, impact.map((m) => el("li", {}, el("code", {}, m.model), ": ",
      m.gains.length ? el("span", { class: "ok" }, "gains " + m.gains.join(", ")) : null,
      m.gains.length && m.loses.length ? "; " : null,
      m.loses.length ? el("span", { class: "error" }, "loses " + m.loses.join(", ")) : null)));
  }

  // The policy's YAML before and after, line by line (computed by the server).
  function diffView(id, diff) {
    const mark = { same: "  ", removed: "- ", added: "+ " };
    return el("div", { class: "diff-box" },
      el("p", { class: "muted" }, "The policy's YAML, old (−) and new (+):"),
      el("pre", { id: id, class: "diff" }, (diff || []).map((d) => el("span", { class: "diff-" + d.op }, mark[d.op] + d.line))));
  }

  function changeResult(answer, dryRun, diffId) {
    const parts = [];
    if (dryRun) {
      parts.push(el("div", { class: "side-by-side" },
        diffView(diffId, answer.diff),
        el("div", {}, el("p", { class: "muted" }, "Who gains and who loses access:"), impactList(answer.impact))));
    } else {
      parts.push(impactList(answer.impact));
    }
    return parts;
  }

  function changeForm(model) {
    const split = (text) => text.split(",").map((v) => v.trim()).filter(Boolean);
    const input = (id, placeholder) => el("input", { type: "text", id: id, placeholder: placeholder });
    const name = input("change-name", model.name + "-callers");
    const emails = input("change-emails", "bob@example.com, carol@example.com");
    const groups = input("change-groups", "fraud-analysts");
    const accounts = input("change-accounts", issuer ? "billing/batch-job (namespace/name)" : "no built-in issuer on this server");
    if (!issuer) accounts.setAttribute("disabled", "disabled");
    const paths = input("change-paths", "/v2/models/" + model.name + "/infer (empty: every path)");
    const methods = input("change-methods", "POST, GET (empty: every method)");
    const yaml = el("textarea", { id: "change-yaml", rows: "14", spellcheck: "false" });
    // The owners stay in the rules: an ALLOW policy replaces the owners-only default.
    const ownerEmails = model.owners.filter((o) => o.includes("@") && !o.includes(":"));
    const ownerGroups = model.owners.filter((o) => o.startsWith("group:")).map((o) => o.slice(6));
    const ownerAccounts = model.owners.filter((o) => o.startsWith("serviceaccount:")).map((o) => o.slice(15));
    name.value = model.name + "-callers";
    emails.value = ownerEmails.join(", ");
    groups.value = ownerGroups.join(", ");
    accounts.value = issuer ? ownerAccounts.join(", ") : "";
    const refresh = () => {
      yaml.value = policyYaml(model, name.value.trim() || model.name + "-callers", {
        emails: split(emails.value), groups: split(groups.value), accounts: split(accounts.value),
        paths: split(paths.value), methods: split(methods.value).map((m) => m.toUpperCase()),
      });
    };
    refresh();
    for (const field of [name, emails, groups, accounts, paths, methods]) field.addEventListener("input", refresh);
    const confirm = el("input", { type: "checkbox", id: "change-confirm" });
    const result = el("div", { id: "change-result", role: "status" });
    const send = async (dryRun) => {
      const query = [];
      if (dryRun) query.push("dryRun=true");
      if (confirm.checked) query.push("confirm=true");
      try {
        const answer = await api("/console/api/policies" + (query.length ? "?" + query.join("&") : ""), {
          method: "POST",
          headers: { "content-type": "application/yaml" },
          body: yaml.value,
        });
        const title = dryRun
          ? "Dry run of " + answer.policy + " (nothing changed):"
          : "Applied " + answer.applied + (answer.created ? " (created):" : " (replaced):");
        result.replaceChildren(el("p", { class: dryRun ? "" : "ok" }, title), ...changeResult(answer, dryRun, "change-diff"));
        if (!dryRun) {
          const again = el("a", { href: window.location.pathname }, "Reload");
          result.append(el("p", {}, again, " to see who can call the model now."));
        }
      } catch (err) {
        result.replaceChildren(el("p", { class: "error" }, err.message));
      }
    };
    const dry = el("button", { type: "button", id: "change-dry-run", class: "secondary" }, "Dry run");
    const apply = el("button", { type: "button", id: "change-apply" }, "Apply");
    dry.addEventListener("click", () => send(true));
    apply.addEventListener("click", () => send(false));
    return [el("h2", {}, "Change access"), el("section", { class: "card" },
      el("p", { class: "muted" }, "An ALLOW policy you create applies to the models you own in namespace " + model.namespace +
        ", and is recorded in the audit trail with your name. Dry run first: it shows the policy's changes line by line and who gains and who loses access."),
      el("label", { for: "change-name" }, "Policy name"), name,
      el("label", { for: "change-emails" }, "People (emails)"), emails,
      el("label", { for: "change-groups" }, "Groups"), groups,
      el("label", { for: "change-accounts" }, "Service accounts (Palisade's built-in issuer: namespace/name)"), accounts,
      el("label", { for: "change-paths" }, "Paths (the rules above apply only to these; * and {*} templates as in Istio)"), paths,
      el("label", { for: "change-methods" }, "Methods"), methods,
      el("label", { for: "change-yaml" }, "The policy (YAML, written from the fields above; edit it for anything else, e.g. DENY)"), yaml,
      el("p", {}, el("label", { for: "change-confirm", class: "inline" }, confirm, " Apply even if owners lose access")),
      el("p", {}, dry, " ", apply), result)];
  }

  // Deleting an owner-managed policy: a dry run first (its lines removed, who loses
  // access), then the deletion, as the management API's DELETE does it.
  function deleteArea() {
    return el("div", { id: "delete-result", role: "status" });
  }

  async function deletePolicy(policy, area) {
    const path = "/console/api/policies/" + policy.split("/").map(encodeURIComponent).join("/");
    try {
      const answer = await api(path + "?dryRun=true", { method: "DELETE" });
      const confirm = el("input", { type: "checkbox", id: "delete-owners" });
      const go = el("button", { type: "button", id: "delete-confirm" }, "Delete " + policy);
      go.addEventListener("click", async () => {
        try {
          const done = await api(path + (confirm.checked ? "?confirm=true" : ""), { method: "DELETE" });
          area.replaceChildren(el("p", { class: "ok" }, "Deleted " + done.deleted + ":"), impactList(done.impact),
            el("p", {}, el("a", { href: window.location.pathname }, "Reload"), " to see who can call the model now."));
        } catch (err) {
          area.append(el("p", { class: "error" }, err.message));
        }
      });
      area.replaceChildren(el("p", {}, "Dry run of deleting " + answer.policy + " (nothing changed):"),
        ...changeResult(answer, true, "delete-diff"),
        el("p", {}, el("label", { for: "delete-owners", class: "inline" }, confirm, " Delete even if owners lose access")),
        el("p", {}, go));
    } catch (err) {
      area.replaceChildren(el("p", { class: "error" }, err.message));
    }
  }

  function auditPage() {
    const field = (id, label, attrs) => [el("label", { for: id }, label), el("input", Object.assign({ type: "text", id: id }, attrs || {}))];
    const decision = el("select", { id: "audit-decision" }, ["", "allow", "deny"].map((d) => el("option", { value: d }, d || "any")));
    const form = el("form", { id: "audit-filter", class: "card" },
      field("audit-caller", "Caller (email or principal)"),
      field("audit-model", "Model"),
      el("label", { for: "audit-decision" }, "Decision"), decision,
      field("audit-status", "Status (404, or 4 for every 4xx)"),
      field("audit-from", "From (2026-12-07 or 2026-12-07T10:00:00Z)"),
      field("audit-to", "To"),
      el("button", { type: "submit" }, "Show"));
    const exportLink = el("a", { id: "audit-export", class: "button secondary", href: "/console/api/audit?format=jsonl" }, "Export as JSON lines");
    const results = el("div", { id: "audit-results" });
    const opened = el("div", { id: "audit-opened" });
    const openButton = (seq) => {
      const button = el("button", { type: "button", class: "secondary small", "data-seq": String(seq) }, "Open");
      button.addEventListener("click", () => openRecord(seq, opened));
      return button;
    };
    const params = () => {
      const query = new URLSearchParams();
      for (const [key, id] of [["caller", "audit-caller"], ["model", "audit-model"], ["decision", "audit-decision"],
        ["status", "audit-status"], ["from", "audit-from"], ["to", "audit-to"]]) {
        const value = document.getElementById(id).value.trim();
        if (value) query.set(key, value);
      }
      return query;
    };
    const load = async () => {
      const query = params();
      const exported = new URLSearchParams(query);
      exported.set("format", "jsonl");
      exportLink.setAttribute("href", "/console/api/audit?" + exported.toString());
      try {
        const data = await api("/console/api/audit?" + query.toString());
        const rows = data.records.map((r) => el("tr", { "data-request": r.request_id || "" },
          el("td", {}, r.received || ""),
          el("td", {}, r.model ? r.model.name + (r.model.version ? ":" + r.model.version : "") : ""),
          el("td", {}, r.email || r.request_principal || r.peer_identity || "anonymous"),
          el("td", {}, r.authz ? el("span", { class: "tag " + (r.authz.decision === "allow" ? "good" : "bad") }, r.authz.decision) : ""),
          el("td", {}, r.authz && r.authz.policy ? r.authz.policy : ""),
          el("td", {}, r.status === undefined || r.status === null ? "" : String(r.status)),
          el("td", {}, (r.method || "") + " " + (r.path || "")),
          el("td", {}, r.latency_ms === undefined || r.latency_ms === null ? "" : r.latency_ms.toFixed(1) + " ms"),
          el("td", {}, openButton(r.seq))));
        results.replaceChildren(
          timelineChart(data.timeline),
          el("p", { class: "muted" }, (data.auditor ? "Every model's requests" : "Requests to the models you own") +
            ", newest first (at most " + data.limit + ")."),
          rows.length
            ? el("table", { id: "audit" },
              el("thead", {}, el("tr", {}, ["Time", "Model", "Caller", "Decision", "Policy", "Status", "Request", "Latency", ""].map((h) => el("th", {}, h)))),
              el("tbody", {}, rows))
            : el("p", { id: "audit-empty" }, "No request matches."));
      } catch (err) {
        results.replaceChildren(el("p", { class: "error" }, err.message));
      }
    };
    form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
    show(el("h1", {}, "Audit"), form, el("p", {}, exportLink), opened, results);
    return load();
  }

  // A record's fields as rows: nested objects by dotted name, lists as JSON.
  function fieldRows(value, prefix, rows) {
    for (const [key, v] of Object.entries(value)) {
      const name = prefix ? prefix + "." + key : key;
      if (v !== null && typeof v === "object" && !Array.isArray(v)) fieldRows(v, name, rows);
      else rows.push(el("tr", {}, el("th", {}, name), el("td", {}, el("code", {}, typeof v === "string" ? v : JSON.stringify(v)))));
    }
    return rows;
  }

  function verificationText(v, seq) {
    const checked = v.records_checked + " record" + (v.records_checked === 1 ? "" : "s") + " checked (seq " + v.first_seq + " to " + v.last_seq + ")";
    if (v.status === "verified") {
      return "verified: the record's hash recomputes, it links to " + (seq === 0 ? "the log's genesis checkpoint" : "record " + (seq - 1)) +
        ", and the checkpoint signed at " + v.checkpoint.time + " (seq " + v.checkpoint.seq + ", checkpoints.jsonl line " + v.checkpoint.line +
        ") covers it; " + checked + ", key " + v.key_id + ".";
    }
    if (v.status === "pending") {
      return "pending: the record's hash recomputes and it links to the record before it, but no signed checkpoint covers it yet " +
        "(the server signs one every 10 s at most); " + checked + ".";
    }
    return "failed: " + (v.problem || (v.chained ? "no signed checkpoint covers it" : "the record's link to the one before it could not be checked")) + ".";
  }

  async function openRecord(seq, into) {
    try {
      const data = await api("/console/api/audit/" + encodeURIComponent(seq));
      const v = data.verification;
      into.replaceChildren(el("section", { class: "card", id: "audit-record", "data-seq": String(seq) },
        el("h2", {}, "Record " + seq),
        el("p", { id: "audit-verify", class: v.status === "verified" ? "ok" : (v.status === "pending" ? "" : "error") },
          el("span", { class: "tag " + (v.status === "verified" ? "good" : (v.status === "pending" ? "" : "bad")) }, v.status), " ",
          verificationText(v, seq)),
        el("table", { class: "fields" }, el("tbody", {}, fieldRows(data.record, "", [])))));
    } catch (err) {
      into.replaceChildren(el("p", { class: "error", id: "audit-record-error" }, err.message));
    }
  }

  function exampleBody(version) {
    const inputs = (version.inputs || []).map((t) => {
      const shape = t.shape.map((d) => (d < 0 ? 1 : d));
      const size = shape.reduce((a, b) => a * b, 1);
      const zero = t.datatype === "BYTES" ? "" : (t.datatype === "BOOL" ? false : 0);
      return { name: t.name, shape: shape, datatype: t.datatype, data: new Array(size).fill(zero) };
    });
    return JSON.stringify({ inputs: inputs }, null, 2);
  }

  // "Try it" calls the model's own V2 endpoint from the page, with a token the person
  // pastes: the request takes the data plane's whole path (authentication, policies,
  // audit) as any client's would. The token is used for this one call and kept nowhere.
  function tryForm(model) {
    const latest = model.versions.find((v) => v.latest) || model.versions[0];
    const token = el("textarea", { id: "try-token", rows: "2", spellcheck: "false", autocomplete: "off", placeholder: "your API token" });
    const body = el("textarea", { id: "try-body", rows: "8", spellcheck: "false" });
    body.value = exampleBody(latest);
    const result = el("pre", { id: "try-result" });
    const form = el("form", { id: "try" },
      el("label", { for: "try-token" }, "Your token"), token,
      el("label", { for: "try-body" }, "Request (Open Inference Protocol V2)"), body,
      el("button", { type: "submit" }, "Call " + model.name), result);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const response = await fetch("/v2/models/" + encodeURIComponent(model.name) + "/infer", {
        method: "POST",
        credentials: "omit",
        headers: { "content-type": "application/json", authorization: "Bearer " + token.value.trim() },
        body: body.value,
      }).catch((err) => ({ status: 0, text: async () => err.message }));
      const text = await response.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (err) { shown = text; }
      result.textContent = "HTTP " + response.status + "\n" + shown;
    });
    return [el("h2", {}, "Try it"), el("section", { class: "card" },
      el("p", { class: "muted" }, "Calls " + model.name + " as you, with your own token: the request is authorized and audited like any other."),
      form)];
  }

  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    return node;
  }

  // The axis top for a largest value `v`: the next 1, 2 or 5 times a power of ten, so the
  // label reads "2 requests/s" or "0.05 s", not "1.10 requests/s".
  function niceCeil(v) {
    const power = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5]) if (m * power >= v) return m * power;
    return 10 * power;
  }

  // A line chart of `series` ([{name, values}]) over the points' times; attributes only,
  // no style (the page's CSP allows no inline style).
  function chart(id, title, unit, points, series) {
    const width = 720, height = 180, left = 56, bottom = 24;
    const values = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
    const top = niceCeil(Math.max(1e-9, ...values) * 1.05);
    const box = svg("svg", { id: id, class: "chart", viewBox: "0 0 " + width + " " + height, role: "img" });
    box.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
    const label = svg("text", { x: 2, y: 12, class: "tick" });
    label.textContent = Number(top.toPrecision(3)) + " " + unit;
    box.append(label);
    const x = (i) => left + (points.length < 2 ? 0 : (i * (width - left)) / (points.length - 1));
    const y = (v) => height - bottom - (v / top) * (height - bottom - 16);
    series.forEach((s, n) => {
      const coords = s.values.map((v, i) => (v === null || v === undefined ? null : x(i) + "," + y(v))).filter(Boolean);
      if (coords.length) box.append(svg("polyline", { points: coords.join(" "), class: "series s" + (n % 8) }));
      s.values.forEach((v, i) => {
        if (v !== null && v !== undefined) box.append(svg("circle", { cx: x(i), cy: y(v), r: 3, class: "dot s" + (n % 8) }));
      });
    });
    const legend = el("ul", { class: "legend" }, series.map((s, n) => el("li", { class: "s" + (n % 8) }, s.name)));
    return el("section", { class: "card" }, el("h2", {}, title), box, legend);
  }

  // The refusal reasons met in `points` (each point's `pick(point)` is {reason: count}),
  // as one series per reason, 0 where a point has none.
  function reasonSeries(points, pick) {
    const names = [...new Set(points.flatMap((p) => Object.keys(pick(p) || {})))].sort();
    return names.map((name) => ({ name: name, values: points.map((p) => (pick(p) || {})[name] || 0) }));
  }

  // Stacked bars of the matching records per time bucket: allowed below, refused above.
  function timelineChart(timeline) {
    const buckets = timeline.buckets;
    if (!buckets.length) return el("p", { id: "audit-timeline-empty", class: "muted" }, "No request over time to chart.");
    const width = 720, height = 160, left = 40, bottom = 34, top = 14;
    const most = Math.max(1, ...buckets.map((b) => b.allowed + b.refused));
    const box = svg("svg", { id: "chart-audit", class: "chart", viewBox: "0 0 " + width + " " + height, role: "img" });
    const title = svg("title", {});
    title.textContent = "Matching requests per " + span(timeline.bucket_s) + ", allowed and refused";
    box.append(title);
    box.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
    const scale = (height - bottom - top) / most;
    const step = (width - left) / buckets.length;
    const barWidth = Math.min(48, Math.max(1, step * 0.8));
    buckets.forEach((b, i) => {
      const x = left + i * step + (step - barWidth) / 2;
      const allowedHeight = b.allowed * scale, refusedHeight = b.refused * scale;
      const base = height - bottom;
      const label = b.start + ": " + b.allowed + " allowed, " + b.refused + " refused";
      for (const [kind, y, h] of [["allowed", base - allowedHeight, allowedHeight], ["refused", base - allowedHeight - refusedHeight, refusedHeight]]) {
        if (h <= 0) continue;
        const bar = svg("rect", { x: x, y: y, width: barWidth, height: h, class: "bar " + kind, "data-start": b.start });
        const tip = svg("title", {});
        tip.textContent = label;
        bar.append(tip);
        box.append(bar);
      }
    });
    const text = (x, y, cls, content, anchor) => {
      const node = svg("text", { x: x, y: y, class: cls, "text-anchor": anchor || "start" });
      node.textContent = content;
      box.append(node);
    };
    text(2, top, "tick", String(most));
    text(left, height - bottom + 14, "tick", buckets[0].start);
    if (buckets.length > 1) text(width, height - bottom + 14, "tick", buckets[buckets.length - 1].start, "end");
    text(left, height - 4, "key allowed", "■ allowed");
    text(left + 90, height - 4, "key refused", "■ refused");
    text(width, height - 4, "tick", "one bar per " + span(timeline.bucket_s), "end");
    return el("section", { class: "card" }, el("h2", {}, "Requests over time"), box);
  }

  function span(seconds) {
    if (seconds % 86400 === 0) return seconds / 86400 === 1 ? "day" : seconds / 86400 + " days";
    if (seconds % 3600 === 0) return seconds / 3600 === 1 ? "hour" : seconds / 3600 + " hours";
    return seconds / 60 === 1 ? "minute" : seconds / 60 + " minutes";
  }

  async function healthPage() {
    const data = await api("/console/api/health");
    const points = data.points;
    const scope = data.auditor ? "every model" : "the models you own";
    if (!points.length) {
      show(el("h1", {}, "Health"), el("p", { id: "health-empty", class: "muted" },
        "No data yet: the server samples its metrics every " + data.every_s + " s; come back in a moment."));
      return;
    }
    const pick = (key) => points.map((p) => p[key]);
    show(el("h1", {}, "Health"),
      el("p", { class: "muted" }, "The last hour of requests to " + scope + ", from the server's own metrics, every " + data.every_s + " s."),
      chart("chart-rps", "Requests per second", "req/s", points, [{ name: "requests", values: pick("rps") }]),
      chart("chart-latency", "Latency", "ms", points, [
        { name: "p50", values: pick("p50_ms") }, { name: "p95", values: pick("p95_ms") }, { name: "p99", values: pick("p99_ms") }]),
      refusalsChart("chart-refused", "Refusals by reason", points, (p) => p.reasons));
    const models = [...new Set(points.flatMap((p) => Object.keys(p.by_model || {})))].sort();
    main.append(el("h2", { id: "refusals-by-model" }, "Refusals by reason, per model"));
    if (!models.length) main.append(el("p", { class: "muted", id: "no-refusals" }, "No refusal in the last hour."));
    models.forEach((model, i) => {
      const card = refusalsChart("chart-refused-" + i, model === "-" ? "Requests that name no served model" : model, points,
        (p) => (p.by_model || {})[model]);
      card.setAttribute("data-model", model);
      card.classList.add("model-refusals");
      main.append(card);
    });
  }

  function refusalsChart(id, title, points, pick) {
    const series = reasonSeries(points, pick);
    if (!series.length) {
      return el("section", { class: "card" }, el("h2", {}, title), el("p", { id: id, class: "muted" }, "No refusal in the last hour."));
    }
    return chart(id, title, "requests", points, series);
  }

  async function route() {
    const path = window.location.pathname;
    const match = path.match(/^\/console\/models\/([^/]+)$/);
    try {
      if (path === "/console/audit") await auditPage();
      else if (path === "/console/health") await healthPage();
      else if (match) {
        const model = await api("/console/api/models/" + match[1]);
        modelPage(model);
        const access = await api("/console/api/models/" + match[1] + "/access");
        main.append(...tryForm(model), ...accessSection(access), ...checkForm(model.name), ...changeForm(model));
      }
      else modelsPage(await api("/console/api/models"));
    } catch (err) {
      show(el("h1", {}, "Not available"), el("p", { class: "error", id: "error" }, err.message));
    }
  }

  async function start() {
    const me = await api("/console/api/me");
    csrf = me.csrf;
    issuer = me.builtin_issuer || null;
    document.getElementById("who").textContent = me.email || me.principal;
    const signout = document.getElementById("signout");
    signout.hidden = false;
    signout.addEventListener("click", async () => {
      await api("/console/logout", { method: "POST" }).catch(() => null);
      window.location.assign("/console/signin");
    });
    await route();
  }

  start().catch(() => null);
})();
