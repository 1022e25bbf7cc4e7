// Baton: show each <time class="local" datetime="ISO"> in the viewer's own time zone.
// The server writes the relative text ("due in 3 h") with the UTC time as its tooltip, and
// beside it the exact UTC time as visible text (a tooltip alone is out of reach of keyboard
// and touch users): in full, <time class="local abs">, or compact, <time class="exact">
// (a list's second line). This writes both in the viewer's time instead ("Fri 31 Jan,
// 14:05 CET" when compact, the year only when it is not this one), on load and after
// every htmx swap (the Work Guide refreshes itself).
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    weekday: "short", year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });
  var compact = {weekday: "short", month: "short", day: "numeric", hour: "2-digit",
                 minute: "2-digit", timeZoneName: "short"};
  var short = new Intl.DateTimeFormat(undefined, compact);
  compact.year = "numeric";
  var shortYear = new Intl.DateTimeFormat(undefined, compact);
  var thisYear = new Date().getFullYear();

  function localise(root) {
    var nodes = (root || document).querySelectorAll("time.local[datetime], time.exact[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) { continue; }
      var text = format.format(when);
      if (el.hasAttribute("title")) { el.setAttribute("title", text); }
      if (el.classList.contains("exact")) {
        el.textContent = (when.getFullYear() === thisYear ? short : shortYear).format(when);
      } else if (el.classList.contains("abs")) {
        el.textContent = text;
      }
      el.setAttribute("data-localised", "true");
    }
  }

  // A form's date-time fields hold UTC (the server's value): shown in the viewer's time,
  // and sent back in UTC, as ISO 8601 with its Z.
  var zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "your time zone";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function localInputs(root) {
    var inputs = (root || document).querySelectorAll('input[type="datetime-local"][data-utc]');
    for (var i = 0; i < inputs.length; i++) {
      var el = inputs[i];
      if (el.getAttribute("data-localised")) { continue; }
      el.setAttribute("data-localised", "true");
      if (el.value) {
        var when = new Date(el.value + "Z");
        if (!isNaN(when.getTime())) {
          el.value = when.getFullYear() + "-" + pad(when.getMonth() + 1) + "-" +
            pad(when.getDate()) + "T" + pad(when.getHours()) + ":" + pad(when.getMinutes()) +
            (when.getSeconds() ? ":" + pad(when.getSeconds()) : "");
        }
      }
      var note = el.parentNode.querySelector("small.tz");
      if (note) { note.textContent = "(your time: " + zone + ")"; }
    }
  }

  document.addEventListener("submit", function (ev) {
    var inputs = ev.target.querySelectorAll('input[type="datetime-local"][data-utc]');
    for (var i = 0; i < inputs.length; i++) {
      var el = inputs[i];
      if (!el.value || !el.name) { continue; }
      var when = new Date(el.value);  // a datetime-local value: the viewer's time
      if (isNaN(when.getTime())) { continue; }
      var sent = document.createElement("input");
      sent.type = "hidden";
      sent.name = el.name;
      sent.value = when.toISOString();
      el.removeAttribute("name");
      el.parentNode.appendChild(sent);
    }
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    localise(document);
    localInputs(document);
  });
  document.addEventListener("htmx:afterSettle", function (ev) {
    localise(ev.target);
    localInputs(ev.target);
  });
})();
