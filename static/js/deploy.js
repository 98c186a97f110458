// Pre-fills the ref with the chosen repository's default branch.
(function () {
  var defaults = JSON.parse(document.getElementById("ref-defaults").textContent);
  var repo = document.getElementById("id_repository");
  var ref = document.getElementById("id_ref");
  if (!repo || !ref) return;
  function fill() { if (!ref.dataset.touched) ref.value = defaults[repo.value] || ""; }
  ref.addEventListener("input", function () { ref.dataset.touched = "1"; });
  repo.addEventListener("change", fill);
  if (!ref.value) fill();
})();
