// Small behaviours of every page, here rather than in the page: the Content-Security-Policy allows
// no inline script or on…= handler (app.SecurityHeaders). Each is tied to a data- attribute.
(function () {
  "use strict";
  // Keep the current page's link in view when the nav scrolls sideways (tablet width).
  var nav = document.querySelector("nav.main"), at = nav && nav.querySelector("[aria-current]");
  if (at && nav.scrollWidth > nav.clientWidth) nav.scrollLeft = at.offsetLeft - nav.clientWidth / 2 + at.offsetWidth / 2;

  // A filter (<select data-autosubmit>) applies as soon as it is chosen; without the script, its button does.
  document.querySelectorAll("[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // <button data-print> prints the page; <a data-back> goes back, or home without the script.
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });
  document.querySelectorAll("a[data-back]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      if (history.length > 1) { event.preventDefault(); history.back(); }
    });
  });
})();
