"use strict";
// Report when the page finished loading, measured from navigation start.
window.addEventListener("load", function () {
  var el = document.getElementById("status");
  if (!el) return;
  var ms = Math.round(performance.now());
  el.textContent = "app.js ran at " + new Date().toLocaleTimeString() +
    " \u2014 page loaded in " + ms + " ms.";
});
