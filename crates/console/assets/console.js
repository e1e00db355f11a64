// Palisade console: the pages of a signed-in person. Plain JavaScript, no framework, no
// inline script; every text goes in as a text node, never parsed as HTML.
"use strict";

(function () {
  const main = document.getElementById("main");
  let csrf = null;

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
    for (const v of access.versions) {
      const rows = v.policies.map((p, i) => el("tr", { "data-policy": p.policy },
        el("td", {}, String(i + 1)),
        el("td", {}, el("span", { class: "tag " + (p.action === "DENY" ? "bad" : "good") }, p.action), p.dry_run ? " (dry run)" : ""),
        el("td", {}, el("code", {}, p.policy), p.root_namespace ? " (platform-wide)" : ""),
        el("td", {}, p.rules.length ? el("ul", {}, p.rules.map((r) => el("li", {}, r))) : "allows nothing")));
      sections.push(el("section", { class: "card" },
        el("h3", {}, "Version " + v.version),
        el("p", {}, v.owner_default
          ? "No ALLOW policy applies: only the owners may call this version."
          : "Owners may call it; so may whoever an ALLOW rule below admits (DENY rules first)."),
        el("p", {}, "Owners: ", v.owners.map((o) => o.owner + " (" + o.matches + ")").join("; ")),
        rows.length
          ? el("table", { class: "access" },
            el("thead", {}, el("tr", {}, ["Step", "Action", "Policy", "Rules"].map((h) => el("th", {}, h)))),
            el("tbody", {}, rows))
          : el("p", { class: "muted" }, "No policy applies to this version.")));
    }
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

  async function route() {
    const path = window.location.pathname;
    const match = path.match(/^\/console\/models\/([^/]+)$/);
    try {
      if (match) {
        modelPage(await api("/console/api/models/" + match[1]));
        const access = await api("/console/api/models/" + match[1] + "/access");
        main.append(...accessSection(access), ...checkForm(decodeURIComponent(match[1])));
      }
      else modelsPage(await api("/console/api/models"));
    } catch (err) {
      show(el("h1", {}, "Not available"), el("p", { class: "error", id: "error" }, err.message));
    }
  }

  async function start() {
    const me = await api("/console/api/me");
    csrf = me.csrf;
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
