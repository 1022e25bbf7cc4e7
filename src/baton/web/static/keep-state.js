// Baton: what a page's own refresh (an htmx swap of a part of it) must not take from the
// person reading it: the sections they opened or closed (<details data-key>), and the
// control that had the keyboard focus (found again in its row: the element with the same
// id around it, then the same control, else that row's first button or link), given back
// without scrolling the page (the refresh keeps where the reader is). And the forms they
// are using: a part marked data-keep-input that a refresh sends again out of band (the run
// page's operator actions, when they changed) is left as it is while one of its forms holds
// the focus or something typed; the refresh's note about it (data-if-kept="ITS ID") stays
// only then, and the next refresh redraws it once the form is left (sent, or emptied).
(function () {
  "use strict";
  var opened = null;
  var focus = null;
  var keptNow = {};

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
        again = again || scope.querySelector("button, a[href]");
        if (again) { again.focus({preventScroll: true}); }
      }
    }
    focus = null;
  });
})();
