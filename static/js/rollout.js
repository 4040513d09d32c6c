/* Polls a rollout's status.json while it is not over and updates its page in place: the status,
   the current step, each node's row (status, generation, gates, error) and new audit events.
   The page reloads when the rollout ends (the ledger and the final outcome appear) or when its
   state or pause changes and no note is being typed (the action buttons depend on both).
   The card carries data-rollout-status-url; the loop (every 3 s, 12 s after a failed request)
   is static/js/poll.js, loaded first. No inline scripts (CSP script-src 'self'). */
(function () {
  "use strict";
  var INTERVAL_MS = 3000;

  function cell(text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    return td;
  }

  function showTarget(target) {
    var row = document.querySelector('tr[data-node-id="' + target.node_id + '"]');
    if (!row) { return; }
    var status = row.querySelector('[data-field="status"]');
    var generation = row.querySelector('[data-field="generation"]');
    var gates = row.querySelector('[data-field="gates"]');
    var error = row.querySelector('[data-field="error"]');
    if (status) { status.textContent = target.status_label; }
    if (generation) {
      var text = target.desired_generation === null ? "–" : String(target.desired_generation);
      if (target.rollback_generation) { text += " → " + target.rollback_generation + " (restore)"; }
      generation.textContent = text;
    }
    if (gates) {
      gates.textContent = "";
      target.gates.forEach(function (gate) {
        var span = document.createElement("span");
        span.className = gate.passed ? "ok" : "error";
        span.title = gate.detail || "";
        span.textContent = gate.name;
        gates.appendChild(span);
        gates.appendChild(document.createTextNode(" "));
      });
    }
    if (error) { error.textContent = target.error || ""; }
  }

  function showEvents(events) {
    var body = document.querySelector("[data-rollout-events]");
    if (!body) { return; }
    events.forEach(function (event) {
      if (body.querySelector('tr[data-event-id="' + event.id + '"]')) { return; }
      var row = document.createElement("tr");
      row.setAttribute("data-event-id", String(event.id));
      var what = event.kind;
      if (event.to_status) { what += ": " + (event.from_status || "–") + " → " + event.to_status; }
      row.appendChild(cell(event.at_text));
      row.appendChild(cell(event.actor));
      row.appendChild(cell(what));
      row.appendChild(cell(event.node));
      row.appendChild(cell(event.message));
      body.appendChild(row);
    });
  }

  function noteTyped() {
    var note = document.querySelector('input[name="note"]');
    return Boolean(note && note.value);
  }

  function watch(card) {
    var url = card.getAttribute("data-rollout-status-url");
    var shown = { status: card.getAttribute("data-status"), paused: card.getAttribute("data-paused") };
    var message = card.querySelector("[data-rollout-message]");

    function show(state) {
      document.querySelectorAll('[data-rollout-field="status_label"]').forEach(function (el) {
        el.textContent = state.status_label;
      });
      document.querySelectorAll('[data-rollout-field="step"]').forEach(function (el) {
        el.textContent = state.step;
      });
      state.targets.forEach(showTarget);
      showEvents(state.events);
      if (message) { message.textContent = "Updated " + new Date().toLocaleTimeString() + "."; }
    }

    window.gcaPoll(url, {
      intervalMs: INTERVAL_MS,
      onData: function (state) {
        show(state);
        var changed = state.status !== shown.status || String(state.paused) !== shown.paused;
        var reloading = Boolean(state.done || (changed && !noteTyped()));
        if (reloading) { window.location.reload(); }
        return reloading;
      },
      onError: function (error) {
        if (message) { message.textContent = "could not read the status (" + error.message + "); retrying"; }
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-rollout-status-url]").forEach(watch);
  });
})();
