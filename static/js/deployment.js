// Keeps the live log readable: follows the tail while the user is at the bottom,
// and caps the number of lines in the page so huge logs never freeze it (the raw
// log link has everything).
(function () {
  var MAX_LINES = 5000;
  document.addEventListener("htmx:sseMessage", function (evt) {
    var log = document.getElementById("log");
    if (!log || evt.detail.type !== "line") return;
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    var extra = log.childElementCount - MAX_LINES;
    for (; extra > 0; extra--) log.removeChild(log.firstElementChild);
    if (atBottom) log.scrollTop = log.scrollHeight;
  });
  document.addEventListener("DOMContentLoaded", function () {
    var log = document.getElementById("log");
    if (log) log.scrollTop = log.scrollHeight;
  });
})();
