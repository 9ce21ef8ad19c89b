// Refreshes the counts of a sending edition without reloading the page. The page works
// without it (reload to see new counts); this only fetches the edition's JSON every few
// seconds and puts the numbers where the page shows them, until the edition stops.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box || !box.dataset.progressUrl) { return; }
  var url = box.dataset.progressUrl;
  var shown = box.dataset.state;

  function show(data) {
    box.querySelectorAll("[data-count]").forEach(function (cell) {
      var key = cell.dataset.count;
      if (key in data) { cell.textContent = String(data[key]); }
    });
    var bar = box.querySelector("[data-progress=done]");
    if (bar) { bar.value = data.recipients - data.queued; }
    var stamp = box.querySelector("[data-field=refreshed]");
    if (stamp) { stamp.textContent = new Date().toLocaleTimeString(); }
  }

  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        // 401: the session ended; a reload shows the login page.
        if (response.status === 401) { window.location.reload(); }
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (data) {
        show(data);
        // Another state (finished, paused, cancelled): the page's buttons change with it.
        if (data.state !== shown) { window.location.reload(); }
        else { window.setTimeout(poll, 3000); }
      })
      .catch(function () { window.setTimeout(poll, 15000); });
  }
  window.setTimeout(poll, 3000);
}());
