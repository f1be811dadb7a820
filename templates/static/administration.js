// "Now" fills the time with this moment in the site's local time, to the minute.
document.querySelectorAll("button[data-now]").forEach(function (button) {
  button.addEventListener("click", function () {
    var d = new Date(), pad = function (n) { return String(n).padStart(2, "0"); };
    button.closest(".with-button").querySelector("input[name=administered_at]").value =
      d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes());
  });
});
