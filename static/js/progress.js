/* Polls a running job's progress (assessments, what-ifs, benchmarks) and reloads the page when
   it is done. The container carries data-progress-url, answering JSON
   {status, progress (0..1), message, error, done}; the loop (every 1.5 s, 6 s after a failed
   request) is static/js/poll.js, loaded first. No inline scripts (CSP script-src 'self'). */
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

    window.gcaPoll(url, {
      intervalMs: INTERVAL_MS,
      onData: function (state) {
        show(state);
        if (state.done) {
          card.setAttribute("data-done", "true");
          window.location.reload();
        }
        return Boolean(state.done);
      },
      onError: function (error) {
        if (message) { message.textContent = "could not read progress (" + error.message + "); retrying"; }
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-progress-url]").forEach(watch);
  });
})();
