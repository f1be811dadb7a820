// Confirmation of irreversible actions (randomise, reject, abort, destroy, unblind, quarantine).
//
// A form (or its submit button) carrying data-confirm="…summary…" is not sent at the first click:
// a dialog shows the summary, with the usual choice (go back) focused first and the irreversible
// one styled apart. Confirming sends the form as clicked, same button, same values. Without
// JavaScript the form is sent as before, and the server still requires what it requires (reason,
// password, signature): this only adds a pause before the click that cannot be undone.
(function () {
  "use strict";
  var confirmed = new WeakSet();

  function dialogFor(summary, action) {
    var dialog = document.createElement("dialog");
    dialog.className = "confirm";
    dialog.setAttribute("aria-labelledby", "confirm-title");
    var title = document.createElement("h2");
    title.id = "confirm-title";
    title.textContent = "This cannot be undone";
    var text = document.createElement("p");
    text.className = "confirm-summary";
    text.textContent = summary;
    var choices = document.createElement("div");
    choices.className = "confirm-choices";
    var back = document.createElement("button");
    back.type = "button";
    back.className = "primary confirm-cancel";
    back.textContent = "Go back";
    back.autofocus = true;
    var go = document.createElement("button");
    go.type = "button";
    go.className = "danger confirm-go";
    go.textContent = action;
    choices.append(back, go);
    dialog.append(title, text, choices);
    return { dialog: dialog, back: back, go: go };
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter || null;
    var holder = submitter && submitter.hasAttribute("data-confirm") ? submitter : form;
    var summary = holder.getAttribute && holder.getAttribute("data-confirm");
    if (!summary || confirmed.has(form) || typeof HTMLDialogElement === "undefined") {
      confirmed.delete(form);
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();  // other scripts (drafts, re-sign-in) see only the confirmed submit
    var action = holder.getAttribute("data-confirm-action") ||
      (submitter && submitter.textContent.trim()) || "Confirm";
    var parts = dialogFor(summary, action);
    document.body.appendChild(parts.dialog);
    parts.back.addEventListener("click", function () { parts.dialog.close(); });
    parts.dialog.addEventListener("close", function () { parts.dialog.remove(); });
    parts.go.addEventListener("click", function () {
      parts.dialog.close();
      confirmed.add(form);
      if (submitter && form.requestSubmit) { form.requestSubmit(submitter); }
      else if (form.requestSubmit) { form.requestSubmit(); }
      else { form.submit(); }
    });
    parts.dialog.showModal();
    parts.back.focus();
  }, true);
})();
