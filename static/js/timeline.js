// The deployment page's pipeline timeline and its total: grows while the run goes on.
// The server draws it (templates/deployments/deployment.html) with epoch milliseconds
// on each bar; this keeps the running stage's bar, its duration and the total moving,
// and moves bars when a stage starts or ends (the "shipmate-stage" event of
// js/deployment.js, stamped with the server's time). An htmx refresh of the summary
// brings a newly drawn timeline, which is read afresh on the next tick.
(function () {
  "use strict";

  function seconds(total) {
    // As the `seconds` template filter: 2.3 s, 4 min 05 s, 1 h 02 min.
    if (total < 60) return total.toFixed(1) + " s";
    var m = Math.floor(total / 60), s = Math.floor(total % 60);
    if (m < 60) return m + " min " + (s < 10 ? "0" : "") + s + " s";
    var h = Math.floor(m / 60);
    m = m % 60;
    return h + " h " + (m < 10 ? "0" : "") + m + " min";
  }

  function num(el, name) {
    var v = el.getAttribute("data-" + name);
    return v === null || v === "" ? null : +v;
  }

  function serverNow(tl) {
    // The clock of the server that drew this timeline, so a skewed laptop clock does not stretch it.
    if (!tl.hasAttribute("data-skew")) tl.setAttribute("data-skew", String(num(tl, "now") - Date.now()));
    return Date.now() + num(tl, "skew");
  }

  function draw() {
    var tl = document.getElementById("timeline");
    if (!tl) return;
    var start = num(tl, "start"), end = num(tl, "end");
    var horizon = end !== null ? end : serverNow(tl);
    var span = Math.max(horizon - start, 1);
    var rows = tl.querySelectorAll(".tl-row");
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i], from = num(row, "start");
      if (from === null) continue;
      var to = num(row, "end");
      if (to === null) to = row.getAttribute("data-status") === "running" ? horizon : from;
      to = Math.max(Math.min(to, horizon), from);
      var bar = row.querySelector(".tl-bar");
      bar.style.left = ((from - start) / span) * 100 + "%";
      bar.style.width = ((to - from) / span) * 100 + "%";
      bar.className = "tl-bar tl-" + row.getAttribute("data-status");
      row.querySelector(".tl-dur").textContent = seconds((to - from) / 1000);
    }
    var total = seconds((horizon - start) / 1000);
    tl.querySelector(".tl-total").textContent = total;
    var duration = document.getElementById("duration");
    if (duration) duration.textContent = total;
  }

  document.addEventListener("shipmate-stage", function (e) {
    var tl = document.getElementById("timeline"), d = e.detail;
    if (!tl) return;
    var row = tl.querySelector('.tl-row[data-stage="' + d.name + '"]');
    if (!row) return;
    var at = d.ms !== null ? d.ms : serverNow(tl); // a replayed snapshot has no time of its own
    row.setAttribute("data-status", d.status);
    if (d.status === "running") {
      row.setAttribute("data-start", String(at));
      row.setAttribute("data-end", "");
    } else if (d.status !== "pending" && row.getAttribute("data-start")) {
      row.setAttribute("data-end", String(at));
    }
    draw();
  });

  function loop() {
    var tl = document.getElementById("timeline");
    if (tl && num(tl, "end") === null) draw();
  }
  setInterval(loop, 250);
})();
