/* window.gcaPoll(url, {intervalMs, onData, onError}): polls a JSON url for the pages
   that follow work on the server (progress.js, rollout.js; load this script before them).
   The first request goes out one interval after the call (the page was just rendered with the
   current state). Each answer goes to onData(data); it returns a truthy value to stop polling
   (the job is over, the page is reloading), a falsy one to ask again after intervalMs. A request
   that fails (network, a non-2xx status, bad JSON) or an onData that throws goes to
   onError(error), where error.message reads e.g. "HTTP 503", and the next request waits four
   intervals, so a server in trouble is not asked at full rate. No inline scripts, no eval
   (CSP script-src 'self'). */
(function () {
  "use strict";
  var RETRY_INTERVALS = 4;

  window.gcaPoll = function (url, options) {
    if (!(options.intervalMs > 0)) {
      throw new Error("gcaPoll: intervalMs must be a positive number of milliseconds");
    }
    if (typeof options.onData !== "function") {
      throw new Error("gcaPoll: onData must be a function");
    }
    var intervalMs = options.intervalMs;

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          if (!options.onData(data)) { window.setTimeout(poll, intervalMs); }
        })
        .catch(function (error) {
          // Scheduled before onError, so a failing handler cannot end the polling.
          window.setTimeout(poll, intervalMs * RETRY_INTERVALS);
          if (options.onError) { options.onError(error); }
        });
    }

    window.setTimeout(poll, intervalMs);
  };
})();
