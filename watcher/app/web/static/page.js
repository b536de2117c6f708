// Live refresh of the status page: every few seconds, fetch the page's <main> again
// (X-Fragment: 1) and swap it in, unless the person is typing in a form. No inline script
// (the CSP allows scripts from this origin only), no library.
"use strict";
(function () {
  const main = document.getElementById("live");
  if (!main) return;
  const every = Number(main.dataset.refresh) || 3000;
  let busy = false;
  async function refresh() {
    const active = document.activeElement;
    if (busy || document.hidden || (active && main.contains(active) && active.form)) return;
    busy = true;
    try {
      const answer = await fetch(window.location.href, {
        headers: { "X-Fragment": "1" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (answer.ok) {
        main.innerHTML = await answer.text();
        main.dataset.refreshed = String(Date.now());
        document.body.classList.remove("stale");
      } else {
        document.body.classList.add("stale");
      }
    } catch (error) {
      document.body.classList.add("stale");
    } finally {
      busy = false;
    }
  }
  window.setInterval(refresh, every);
})();
