// Palisade console sign-in page: the identity provider's link, and pasting a token of the
// built-in issuer. Messages are fixed texts chosen by code, never text from the URL.
"use strict";

(function () {
  const MESSAGES = {
    refused: "The sign-in was refused. Sign in again.",
    provider: "The identity provider could not be reached or answered wrongly. Try again later.",
    denied: "The identity provider did not sign you in.",
    unconfigured: "Sign-in with an identity provider is not configured on this server.",
    token: "That token was not accepted: it must be a valid token of Palisade's built-in issuer.",
  };
  const error = document.getElementById("error");

  function fail(code) {
    error.textContent = MESSAGES[code] || MESSAGES.refused;
    error.hidden = false;
  }

  const code = new URLSearchParams(window.location.search).get("error");
  if (code) fail(code);

  document.getElementById("paste").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = document.getElementById("token").value.trim();
    const response = await fetch("/console/session", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: token }),
    });
    if (response.ok) window.location.assign("/console/");
    else fail("token");
  });
})();
