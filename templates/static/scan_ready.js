// A page a scanner types into (the scan_ready macro of _macros.html loads this where it stands).
(function () {
  var field = document.querySelector("input.scan-input[autofocus]") || document.querySelector("input.scan-input");
  var first = document.querySelector("[autofocus]");
  if (!field) return;
  if (!first || first === field) { field.focus(); field.select(); }  // else a refused field elsewhere keeps it
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.key.length !== 1) return;
    if (e.target.closest && e.target.closest("input, textarea, select, [contenteditable]")) return;
    field.focus();
  });
})();
