// The lot page at the bench: one form per step, kept as a draft while it is typed and scanned, and
// never lost to an idle timeout. Without this script the page still works: the save button keeps a
// draft, the sign button signs, and an ended session sends the operator to sign in (the draft stays).
(function () {
  "use strict";
  var stepForm = document.getElementById("step-form");
  var dialog = document.getElementById("renew");
  var timer = null, renewing = null;

  // "Now" fills a time field with this moment as every page shows a time: the tablet's (the site's) zone,
  // with its offset so that the server reads it unambiguously: "2026-12-06 09:44 +01:00".
  document.querySelectorAll("button[data-now]").forEach(function (button) {
    button.addEventListener("click", function () {
      var d = new Date(), pad = function (n) { return String(Math.abs(n)).padStart(2, "0"); };
      var off = -d.getTimezoneOffset(), sign = off >= 0 ? "+" : "-";
      var input = button.closest("fieldset").querySelector("input");
      input.value = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) +
        ":" + pad(d.getMinutes()) + " " + sign + pad(Math.floor(Math.abs(off) / 60)) + ":" + pad(off % 60);
      input.dispatchEvent(new Event("input", {bubbles: true}));
    });
  });

  // Check each number against its limits as it is typed; the server check is the one that counts.
  document.querySelectorAll("input[data-min], input[data-max]").forEach(function (input) {
    input.addEventListener("input", function () {
      var v = parseFloat(input.value), min = parseFloat(input.dataset.min), max = parseFloat(input.dataset.max);
      var out = input.value !== "" && !isNaN(v) && ((!isNaN(min) && v < min) || (!isNaN(max) && v > max));
      var box = input.closest("fieldset");
      box.classList.toggle("invalid", out);
      box.querySelector(".limit-warning").hidden = !out;
      if (out) { box.querySelector("details").open = true; }
    });
  });

  // The page opens at the step being worked on, below the folded steps already done; what the last
  // save did is said in the bar that stays at the top.
  var bar = document.getElementById("progress");
  document.querySelectorAll("main > .notice, main > .error").forEach(function (said) {
    if (bar) { bar.appendChild(said); }
  });
  if (!location.hash) {
    var current = document.getElementById("current");
    if (current) { current.scrollIntoView({block: "start"}); }
  }

  function csrf() {
    var input = document.querySelector("input[name=csrf_token]");
    return input ? input.value : "";
  }

  // The gate marks its "sign in first" answers; a wrong signature password (also 401) is the page's own answer.
  function sessionEnded(response) {
    return response.status === 401 && response.headers.get("X-Cellbench-Signin") === "required";
  }

  // Ask for the password in place, renew the session, and hand the new form token to every form on the page.
  function renew() {
    if (renewing) { return renewing; }
    renewing = new Promise(function (resolve) {
      var form = dialog.querySelector("form"), why = dialog.querySelector(".why");
      var input = form.elements.renew_password;
      why.hidden = true;
      input.value = "";
      function submitted(event) {
        event.preventDefault();
        var body = new FormData();
        body.append("password", input.value);
        body.append("csrf_token", csrf());
        fetch("/session/renew", {method: "POST", body: body, credentials: "same-origin",
                                 headers: {Accept: "application/json"}})
          .then(function (response) {
            return response.json().then(function (data) { return {ok: response.ok, data: data}; });
          })
          .then(function (answer) {
            if (!answer.ok) {
              why.textContent = answer.data.error || "Wrong password.";
              why.hidden = false;
              input.value = "";
              input.focus();
              return;
            }
            document.querySelectorAll("input[name=csrf_token]").forEach(function (i) { i.value = answer.data.csrf_token; });
            form.removeEventListener("submit", submitted);
            dialog.close();
            renewing = null;
            resolve();
          });
      }
      form.addEventListener("submit", submitted);
      // Escape closes the dialog: the pending save is dropped, what is typed stays on the page.
      dialog.addEventListener("cancel", function () {
        form.removeEventListener("submit", submitted);
        renewing = null;
        document.querySelectorAll("form[data-keep] button").forEach(function (b) { b.disabled = false; });
        note("Not saved: your session has ended. Save again and enter your password to carry on.", true);
      }, {once: true});
      dialog.showModal();
      input.focus();
    });
    return renewing;
  }

  // POST, and when the session has ended on the way: renew it, then send the same thing again.
  function post(url, body, accept) {
    return fetch(url, {method: "POST", body: body, credentials: "same-origin", headers: {Accept: accept}})
      .then(function (response) {
        if (!sessionEnded(response) || !dialog) { return response; }
        return renew().then(function () {
          body.set("csrf_token", csrf());
          return post(url, body, accept);
        });
      });
  }

  function replacePage(html, url) {
    clearTimeout(timer);
    document.open();
    document.write(html);
    document.close();
    if (url) { history.replaceState(null, "", url); }
  }

  // Every form of the page is sent by fetch, so that an ended session asks for the password instead
  // of losing what was sent; the answer (the next page, or the same page with the refusal) replaces this one.
  document.querySelectorAll("form[data-keep]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = new FormData(form);
      if (event.submitter && event.submitter.name) { body.append(event.submitter.name, event.submitter.value); }
      form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      post(form.action, body, "text/html")
        .then(function (response) {
          return response.text().then(function (html) { replacePage(html, response.url); });
        })
        .catch(function () {
          form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
          note("No connection: nothing was sent. Try again when the network is back.", true);
        });
    });
  });

  function note(text, bad) {
    var box = stepForm && stepForm.querySelector(".draft-note");
    if (!box) { return; }
    box.hidden = false;
    box.textContent = text;
    box.classList.toggle("why", !!bad);
  }

  function renderScans(kind, items) {
    var list = stepForm.querySelector("fieldset[data-kind=" + kind + "] ul.scanned");
    if (!list) { return; }
    list.textContent = "";
    items.forEach(function (item) {
      var li = document.createElement("li"), hidden = document.createElement("input");
      var text = document.createElement("span"), label = document.createElement("label");
      var box = document.createElement("input");
      if (item.problem) { li.className = "refused"; }
      hidden.type = "hidden"; hidden.name = kind; hidden.value = item.code;
      text.textContent = item.described;
      li.appendChild(hidden);
      li.appendChild(text);
      if (item.problem) {
        var why = document.createElement("small");
        why.className = "why";
        why.textContent = item.problem;
        li.appendChild(why);
      }
      label.className = "remove";
      box.type = "checkbox"; box.name = "remove"; box.value = kind + ":" + item.code;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" Remove"));
      li.appendChild(label);
      list.appendChild(li);
    });
  }

  // The draft: saved a moment after typing stops, at once for a scan or a removal. The password never goes with it.
  // One save at a time: two in flight could land in either order, and the older form would overwrite
  // the newer draft (a scan lost to the typing saved just before it). A save asked for meanwhile follows.
  var inFlight = null, again = false;
  function saveDraft() {
    clearTimeout(timer);
    timer = null;
    if (inFlight) { again = true; return inFlight; }
    inFlight = sendDraft().then(function () {
      inFlight = null;
      if (again) { again = false; saveDraft(); }
    });
    return inFlight;
  }

  function sendDraft() {
    var body = new FormData(stepForm), sent = {};
    body.delete("password");
    body.delete("save");
    stepForm.querySelectorAll("input[data-scan]").forEach(function (input) { sent[input.name] = input.value; });
    return post(stepForm.dataset.draft, body, "application/json")
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) { note(data.error || "The draft could not be saved.", true); return; }
          renderScans("materials", data.materials || []);
          renderScans("equipment", data.equipment || []);
          stepForm.querySelectorAll("input[data-scan]").forEach(function (input) {
            if (input.value === sent[input.name]) { input.value = ""; }
          });
          var now = new Date();
          note("Draft, not part of the record until signed · saved " + String(now.getHours()).padStart(2, "0") + ":" +
               String(now.getMinutes()).padStart(2, "0"), false);
        });
      })
      .catch(function () { note("No connection: the draft is not saved yet. Keep this page open.", true); });
  }

  if (stepForm) {
    stepForm.addEventListener("input", function (event) {
      var target = event.target;
      if (target.name === "password" || target.hasAttribute("data-scan")) { return; }
      clearTimeout(timer);
      timer = setTimeout(saveDraft, 800);
    });
    stepForm.addEventListener("change", function (event) {
      var target = event.target;
      if (target.name === "password") { return; }
      if (target.name === "remove" || (target.hasAttribute("data-scan") && target.value.trim())) { saveDraft(); }
    });
    // A scanner types the code and presses Enter: that is a scan to keep, not the form's submission.
    stepForm.querySelectorAll("input[data-scan]").forEach(function (input) {
      input.addEventListener("keydown", function (event) {
        if (event.key !== "Enter") { return; }
        event.preventDefault();
        if (input.value.trim()) { saveDraft(); }
      });
    });
  }
}());
