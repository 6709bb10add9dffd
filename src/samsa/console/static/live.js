// Live updates: the server says (server-sent events) when the log moved; the page then asks
// for its <main> again. No update while a form field has the focus or a request is in flight.
(function () {
  const main = document.getElementById("live");
  const state = document.getElementById("live-state");
  if (!main || !window.EventSource) return;
  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    const focused = document.activeElement;
    if (focused && main.contains(focused) && focused.matches("input, select, textarea")) return;
    busy = true;
    try {
      const url = new URL(window.location.href);
      url.searchParams.set("fragment", "1");
      const response = await fetch(url, { headers: { Accept: "text/html" } });
      if (response.ok) {
        main.innerHTML = await response.text();
        main.dataset.version = response.headers.get("X-Console-Version") || "";
        main.dataset.refreshes = String(Number(main.dataset.refreshes || 0) + 1);
      }
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const events = new EventSource("/events");
  events.onmessage = function (event) {
    if (state) { state.textContent = "live"; state.dataset.version = event.data; }
    if (event.data !== main.dataset.version) refresh();
  };
  events.onerror = function () { if (state) state.textContent = "reconnecting"; };
})();
