/* Draws every Plotly figure a page embeds as <script type="application/json" id="fig-...">
   next to a <div class="chart" data-figure="fig-...">; no inline scripts (CSP script-src 'self'). */
(function () {
  "use strict";
  var config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] };

  function draw(container) {
    var source = document.getElementById(container.getAttribute("data-figure"));
    if (!source) { return; }
    var figure = JSON.parse(source.textContent);
    window.Plotly.newPlot(container, figure.data, figure.layout, config).then(function () {
      container.setAttribute("data-drawn", "true");
    });
    // Figures whose layout.meta.ids lists one object id per row (heatmap) or bar link to
    // that object's page: data-link="/gpus/ID/".
    var link = container.getAttribute("data-link");
    var ids = figure.layout && figure.layout.meta && figure.layout.meta.ids;
    if (link && ids) {
      container.on("plotly_click", function (event) {
        var point = event.points && event.points[0];
        if (!point) { return; }
        var index = Array.isArray(point.pointIndex) ? point.pointIndex[0] : point.pointIndex;
        var id = ids[index];
        if (id !== undefined && id !== null) { window.location.href = link.replace("ID", String(id)); }
      });
    }
  }

  function autoSubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    autoSubmit();
    if (!window.Plotly) { return; }
    document.querySelectorAll(".chart[data-figure]").forEach(draw);
  });
})();
