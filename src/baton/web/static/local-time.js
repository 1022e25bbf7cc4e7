// Baton: show each <time class="local" datetime="ISO"> in the viewer's own time zone.
// The server writes the relative text ("due in 3 h") and the UTC time as the tooltip; this
// replaces the tooltip (and the text of <time class="local abs">) with the local time, on
// load and after every htmx swap (the Work Guide refreshes itself).
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    weekday: "short", year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });

  function localise(root) {
    var nodes = (root || document).querySelectorAll("time.local[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) { continue; }
      var text = format.format(when);
      el.setAttribute("title", text);
      if (el.classList.contains("abs")) { el.textContent = text; }
      el.setAttribute("data-localised", "true");
    }
  }

  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:afterSettle", function (ev) { localise(ev.target); });
})();
