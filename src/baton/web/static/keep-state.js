// Baton: what a page's own refresh (an htmx swap of a part of it) must not take from the
// person reading it: the sections they opened or closed (<details data-key>), and the
// control that had the keyboard focus (found again in its row: the element with the same
// id around it, then the same control, else that row's first button or link), given back
// without scrolling the page (the refresh keeps where the reader is).
(function () {
  "use strict";
  var opened = null;
  var focus = null;

  function controlKey(el) {
    return [el.tagName, el.getAttribute("name") || "", el.getAttribute("value") || "",
            (el.textContent || "").trim()].join("\u0000");
  }

  document.addEventListener("htmx:beforeSwap", function (ev) {
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
