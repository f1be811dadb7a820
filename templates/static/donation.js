// Tablet convenience: a laboratory or sample date typed in one row fills the empty, not yet
// recorded rows below it, where the operator sees it before saving.
document.querySelectorAll("#panel [data-copy]").forEach(function (input) {
  input.addEventListener("change", function () {
    var rows = Array.from(document.querySelectorAll("#panel tbody tr"));
    var kind = input.dataset.copy, start = rows.indexOf(input.closest("tr"));
    rows.slice(start + 1).forEach(function (row) {
      var other = row.querySelector('[data-copy="' + kind + '"]');
      if (row.dataset.recorded === "no" && other && !other.value) { other.value = input.value; }
    });
  });
});

