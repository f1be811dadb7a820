// Count down to each use-by time, corrected for the difference between this tablet's clock and the server's.
document.querySelectorAll("[data-use-by]").forEach(function (el) {
  var end = Date.parse(el.dataset.useBy), skew = Date.parse(el.dataset.now) - Date.now();
  function tick() {
    var s = Math.round((end - (Date.now() + skew)) / 1000);
    if (s <= 0) { el.textContent = "Use window passed"; el.classList.add("over"); el.classList.remove("soon"); return; }
    el.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0") + " left";
    el.classList.toggle("soon", s < 600);
    setTimeout(tick, 1000 - (Date.now() % 1000));
  }
  tick();
});
