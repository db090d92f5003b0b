"use strict";
// The dashboard: sign in with a pasted credential, then fetch the server-rendered view every REFRESH_MS.
// The credential lives in this closure only: never in a cookie, web storage or the URL, and gone with the page.
(() => {
  const REFRESH_MS = 10000;
  // An access token is a JWT (three base64url parts); anything else is taken for the admin API key.
  const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
  let credential = null;
  let timer = null;

  const byId = (id) => document.getElementById(id);

  function authHeaders() {
    return JWT.test(credential) ? { Authorization: `Bearer ${credential}` } : { "X-API-Key": credential };
  }

  function say(text) {
    byId("message").textContent = text;
  }

  function showSignedIn(signedIn) {
    byId("sign-in").hidden = signedIn;
    byId("signed-in").hidden = !signedIn;
  }

  function schedule() {
    clearTimeout(timer);
    if (credential !== null) {
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  function signOut() {
    credential = null;
    clearTimeout(timer);
    byId("view").replaceChildren();
    delete byId("view").dataset.loadedAt;
    showSignedIn(false);
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return `${body.error.code}: ${body.error.message}`;
    } catch {
      return `HTTP ${response.status}`;
    }
  }

  async function refresh() {
    if (credential === null) {
      return;
    }
    let response;
    try {
      response = await fetch("/dashboard/view", { headers: authHeaders(), cache: "no-store", credentials: "omit" });
    } catch (error) {
      say(`The API did not answer (${error.message}); retrying.`);
      schedule();
      return;
    }
    if (!response.ok) {
      const text = await errorText(response);
      if (response.status === 401 || response.status === 403) {
        signOut();
        say(`Signed out: ${text}`);
      } else {
        say(`${text}; retrying.`);
        schedule();
      }
      return;
    }
    // The server escapes every text it puts in the view, and the page's CSP runs no script that came with it.
    const parsed = new DOMParser().parseFromString(await response.text(), "text/html");
    const view = byId("view");
    view.replaceChildren(...Array.from(parsed.body.childNodes, (node) => document.adoptNode(node)));
    view.dataset.loadedAt = String(Date.now());
    byId("refreshed").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    say("");
    schedule();
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("sign-in").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = byId("credential");
      credential = input.value.trim();
      input.value = "";
      showSignedIn(true);
      say("Loading…");
      refresh();
    });
    byId("sign-out").addEventListener("click", () => {
      signOut();
      say("Signed out.");
    });
  });
})();
