/* Polls a running job's progress (assessments, what-ifs, benchmarks) and reloads the page when
   it is done. The container carries data-progress-url, answering JSON
   {status, progress (0..1), message, error, done}; no inline scripts (CSP script-src 'self'). */
(function () {
  "use strict";
  var INTERVAL_MS = 1500;

  function watch(card) {
    var url = card.getAttribute("data-progress-url");
    var bar = card.querySelector("[data-progress-bar]");
    var pct = card.querySelector("[data-progress-pct]");
    var message = card.querySelector("[data-progress-message]");

    function show(state) {
      var value = Math.max(0, Math.min(1, Number(state.progress) || 0));
      if (bar) { bar.value = value; }
      if (pct) { pct.textContent = Math.round(value * 100) + "%"; }
      if (message) {
        message.textContent = state.error ? state.status + ": " + state.error : (state.message || state.status);
      }
      card.setAttribute("data-status", state.status);
    }

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (state) {
          show(state);
          if (state.done) {
            card.setAttribute("data-done", "true");
            window.location.reload();
          } else {
            window.setTimeout(poll, INTERVAL_MS);
          }
        })
        .catch(function (error) {
          if (message) { message.textContent = "could not read progress (" + error.message + "); retrying"; }
          window.setTimeout(poll, INTERVAL_MS * 4);
        });
    }

    window.setTimeout(poll, INTERVAL_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-progress-url]").forEach(watch);
  });
})();
