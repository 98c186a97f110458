// The matrix follows the placement feed: each "changed" event re-renders it (htmx GET of
// the #environments partial), at most every 250 ms and always once after the last change.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.dataset.eventsUrl;
  if (!url || !window.EventSource) return;
  var timer = null;
  function refresh() {
    if (timer) return;
    timer = setTimeout(function () {
      timer = null;
      var region = document.getElementById("environments");
      if (region) htmx.trigger(region, "matrix-changed");
    }, 250);
  }
  var source = new EventSource(url);
  // After a (re)connect, changes made while the page had no connection are unknown: refresh once.
  source.addEventListener("ready", refresh);
  source.addEventListener("changed", refresh);
  window.addEventListener("pagehide", function () { source.close(); });
})();
