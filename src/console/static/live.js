// payhook console: refreshes the figures marked data-live="name" from
// /console/live every 5 seconds, without reloading the page. Nothing else.
(function () {
  "use strict";
  function refresh() {
    fetch("/console/live", { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (live) {
        if (!live) return;
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var v = live[el.getAttribute("data-live")];
          if (v !== undefined && v !== null) el.textContent = String(v);
        });
      })
      .catch(function () {});
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("[data-live]")) {
      refresh();
      setInterval(refresh, 5000);
    }
  });
})();
