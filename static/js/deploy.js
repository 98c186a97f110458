// Pre-fills the ref with the chosen application's default branch, and offers only the
// environments where that application is placed (the server refuses the others too).
(function () {
  var defaults = JSON.parse(document.getElementById("ref-defaults").textContent);
  var placed = JSON.parse(document.getElementById("placed-in").textContent);
  var repo = document.getElementById("id_repository");
  var ref = document.getElementById("id_ref");
  var env = document.getElementById("id_environment");
  if (!repo || !ref) return;
  function fill() { if (!ref.dataset.touched) ref.value = defaults[repo.value] || ""; }
  function offer() {
    if (!env) return;
    var allowed = (placed[repo.value] || []).map(String), first = null;
    Array.prototype.forEach.call(env.options, function (option) {
      var ok = allowed.indexOf(option.value) >= 0;
      option.hidden = option.disabled = !ok;
      if (ok && first === null) first = option;
    });
    if (env.selectedOptions.length && env.selectedOptions[0].disabled && first) first.selected = true;
  }
  ref.addEventListener("input", function () { ref.dataset.touched = "1"; });
  repo.addEventListener("change", function () { fill(); offer(); });
  if (!ref.value) fill();
  offer();
})();
