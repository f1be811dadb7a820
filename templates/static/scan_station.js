// A label scanned while the station field has the focus: the code goes to the scan field, not into the station's name.
(function () {
  var station = document.querySelector("input[name=station]"), code = document.getElementById("scan-code");
  station.addEventListener("keydown", function (e) {
    var found = e.key === "Enter" && station.value.match(/CB\d+:\S+$/i);
    if (found) { station.value = station.value.slice(0, found.index).trim(); code.value = found[0]; }
  });
})();
