// Baton: what a page's own refresh (an htmx swap of a part of it) must not take from the
// person reading it: the sections they opened or closed (<details data-key>), and the
// control that had the keyboard focus (found again in its row: the element with the same
// id around it, then the same control, else that row's first button or link), given back
// without scrolling the page (the refresh keeps where the reader is). And the forms they
// are using: a part marked data-keep-input that a refresh sends again out of band (the run
// page's operator actions, when they changed) is left as it is while one of its forms holds
// the focus or something typed; the refresh's note about it (data-if-kept="ITS ID") stays
// only then, and the next refresh redraws it once the form is left (sent, or emptied).
// For a keyboard or screen reader user: when the control that had the focus is gone (a
// claimed row's Claim button), the focus goes to the row's control marked data-focus; what
// a swap did (data-announce) or what a refresh changed (data-live-summary, data-live-keys:
// the items shown) is said once in the page's live region (#announce); a part that updates
// itself can be paused (a button data-pause="ITS ID", WCAG 2.2.2); and a form drawn again
// with errors (data-focus-invalid) puts the focus on its first invalid field.
// A page loaded anew after an action (a claim on the work item's page) says what it did
// (data-announce-on-load="WORDS") and puts the focus on what comes next (the element marked
// data-focus-on-load: a control, or a form's first field).
(function () {
  "use strict";
  var opened = null;
  var focus = null;
  var keptNow = {};
  var swapped = null;  // the swap's target: {id, summary, keys} as it was
  var paused = {};     // ids of the parts whose updates are paused

  function announce(text) {
    var region = document.getElementById("announce");
    if (!region || !text) { return; }
    region.textContent = "";  // (the same words again are said again)
    window.setTimeout(function () { region.textContent = text; }, 100);
  }

  function words(list) { return list ? list.split(" ").filter(Boolean) : []; }

  function changes(before, part) {
    var note = part.matches("[data-announce]") ? part : part.querySelector("[data-announce]");
    if (note) { return note.getAttribute("data-announce"); }
    var summary = part.getAttribute("data-live-summary");
    if (!before || summary === null) { return null; }
    if (part.hasAttribute("data-live-keys")) {
      var was = words(before.keys), now = words(part.getAttribute("data-live-keys"));
      var added = now.filter(function (k) { return was.indexOf(k) < 0; }).length;
      var gone = was.filter(function (k) { return now.indexOf(k) < 0; }).length;
      if (added || gone) {
        var what = [];
        if (added) { what.push(added + " new"); }
        if (gone) { what.push(gone + " gone"); }
        return "Updated: " + what.join(", ") + ". " + summary;
      }
    }
    return summary !== before.summary ? summary : null;
  }

  function typedInto(form) {
    var kept = form.hasAttribute("data-kept");  // drawn again with what a refused submit sent
    for (var i = 0; i < form.elements.length; i++) {
      var el = form.elements[i];
      var type = (el.getAttribute("type") || "").toLowerCase();
      if (el.tagName === "BUTTON" || el.tagName === "FIELDSET" ||
          ["hidden", "submit", "button", "reset", "image"].indexOf(type) >= 0) { continue; }
      if (type === "radio" || type === "checkbox") {
        if (el.checked !== el.defaultChecked) { return true; }
      } else if (el.tagName === "SELECT") {
        for (var j = 0; j < el.options.length; j++) {
          if (el.options[j].selected !== el.options[j].defaultSelected) { return true; }
        }
      } else if (el.value !== el.defaultValue || (kept && el.value !== "")) {
        return true;
      }
    }
    return false;
  }

  function inUse(part) {
    var forms = part.querySelectorAll("form");
    for (var i = 0; i < forms.length; i++) {
      if (forms[i].contains(document.activeElement) || typedInto(forms[i])) { return true; }
    }
    return false;
  }

  document.addEventListener("htmx:oobBeforeSwap", function (ev) {
    var target = ev.detail.target;
    if (target && target.id && target.hasAttribute("data-keep-input") && inUse(target)) {
      keptNow[target.id] = true;
      ev.preventDefault();
    }
  });

  document.addEventListener("htmx:afterSwap", function (ev) {
    var notes = ev.target.querySelectorAll ? ev.target.querySelectorAll("[data-if-kept]") : [];
    for (var i = 0; i < notes.length; i++) {
      if (!keptNow[notes[i].getAttribute("data-if-kept")]) { notes[i].remove(); }
    }
  });

  function controlKey(el) {
    return [el.tagName, el.getAttribute("name") || "", el.getAttribute("value") || "",
            (el.textContent || "").trim()].join("\u0000");
  }

  document.addEventListener("htmx:beforeSwap", function (ev) {
    keptNow = {};  // (an answer's out-of-band parts are swapped after this, its target last)
    var target = ev.detail.target;
    if (!target) { return; }
    swapped = target.id ? {id: target.id, summary: target.getAttribute("data-live-summary"),
                           keys: target.getAttribute("data-live-keys")} : null;
    opened = {};
    var details = target.querySelectorAll("details[data-key]");
    for (var i = 0; i < details.length; i++) {
      opened[details[i].getAttribute("data-key")] = details[i].open;
    }
    focus = null;
    var active = document.activeElement;
    if (active && active !== document.body && target.contains(active)) {
      var holder = active.closest("[id]");
      focus = {holder: holder ? holder.id : null, key: controlKey(active)};
    }
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (opened) {
      var details = document.querySelectorAll("details[data-key]");
      for (var i = 0; i < details.length; i++) {
        var key = details[i].getAttribute("data-key");
        if (Object.prototype.hasOwnProperty.call(opened, key)) { details[i].open = opened[key]; }
      }
      opened = null;
    }
    if (focus && (document.activeElement === document.body || !document.activeElement)) {
      var scope = focus.holder ? document.getElementById(focus.holder) : null;
      if (scope && scope.matches("button, a[href], input, select, textarea")) {
        scope.focus({preventScroll: true});
      } else if (scope) {
        var controls = scope.querySelectorAll("button, a[href], input, select, textarea");
        var again = null;
        for (var j = 0; j < controls.length && !again; j++) {
          if (controlKey(controls[j]) === focus.key) { again = controls[j]; }
        }
        again = again || scope.querySelector("[data-focus]") || scope.querySelector("button, a[href]");
        if (again) { again.focus({preventScroll: true}); }
      }
    }
    focus = null;
    var part = swapped ? document.getElementById(swapped.id) : null;
    if (part) { announce(changes(swapped, part)); }
    swapped = null;
    showPauses();
  });

  // Pausing a part that updates itself: its polls are not sent while it is paused.
  function showPauses() {
    var buttons = document.querySelectorAll("button[data-pause]");
    for (var i = 0; i < buttons.length; i++) {
      var part = document.getElementById(buttons[i].getAttribute("data-pause"));
      var holder = buttons[i].closest(".live-control") || buttons[i];
      holder.hidden = !(window.htmx && part && part.hasAttribute("hx-trigger"));
    }
  }

  document.addEventListener("click", function (ev) {
    var button = ev.target.closest ? ev.target.closest("button[data-pause]") : null;
    if (!button) { return; }
    var id = button.getAttribute("data-pause");
    paused[id] = !paused[id];
    button.setAttribute("aria-pressed", paused[id] ? "true" : "false");
  });

  document.addEventListener("htmx:beforeRequest", function (ev) {
    var elt = ev.detail.elt;
    if (elt && elt.id && paused[elt.id]) { ev.preventDefault(); }
  });

  function unfocused() {
    return !document.activeElement || document.activeElement === document.body;
  }

  // A form's first field to fill in (in a group of radio buttons: the one chosen, else the
  // first), else its first button.
  function firstField(form) {
    var fields = form.querySelectorAll("input, select, textarea, button");
    for (var i = 0; i < fields.length; i++) {
      var el = fields[i];
      if (el.type === "hidden" || el.disabled || el.tagName === "BUTTON") { continue; }
      if (el.type === "radio" && !el.checked && form.querySelector(
          'input[type="radio"][name="' + CSS.escape(el.name) + '"]:checked')) { continue; }
      return el;
    }
    return form.querySelector("button");
  }

  document.addEventListener("DOMContentLoaded", function () {
    showPauses();
    var forms = document.querySelectorAll("form[data-focus-invalid]");
    for (var i = 0; i < forms.length; i++) {
      var bad = forms[i].querySelector('[aria-invalid="true"]');
      if (!bad || !unfocused()) { continue; }
      if (bad.tagName === "FIELDSET") {
        bad = bad.querySelector("input:checked") || bad.querySelector("input, select, textarea");
      }
      if (bad) { bad.focus(); }
      break;
    }
    var next = document.querySelector("[data-focus-on-load]");
    if (next && unfocused()) {
      next = next.tagName === "FORM" ? firstField(next) : next;
      if (next) { next.focus(); }
    }
    var done = document.querySelector("[data-announce-on-load]");
    if (done) { announce(done.getAttribute("data-announce-on-load")); }
  });
})();
