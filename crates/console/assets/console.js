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

  async function route() {
    const path = window.location.pathname;
    const match = path.match(/^\/console\/models\/([^/]+)$/);
    try {
      if (match) modelPage(await api("/console/api/models/" + match[1]));
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
