/* jobqueue monitor: live refresh, confirmations, select-all. No library; no inline script. */
(function () {
  "use strict";
  var KEY = "jobqueue.monitor.live";
  var PERIOD_MS = 3000;

  function setupLive() {
    var toggle = document.getElementById("jq-live-toggle");
    var region = document.getElementById("jq-live");
    var stamp = document.getElementById("jq-live-stamp");
    if (!toggle || !region) return;
    var timer = null;
    var busy = false;

    function refresh() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(window.location.href, {credentials: "same-origin", cache: "no-store",
                                   headers: {"X-Requested-With": "XMLHttpRequest"}})
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("jq-live");
          if (fresh) {
            region.replaceChildren.apply(region, Array.prototype.map.call(
              fresh.childNodes, function (node) { return document.importNode(node, true); }));
          }
          if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
        })
        .catch(function (error) {
          if (stamp) stamp.textContent = "update failed (" + error.message + ")";
        })
        .then(function () { busy = false; });
    }

    function apply(on) {
      toggle.checked = on;
      try { window.localStorage.setItem(KEY, on ? "1" : "0"); } catch (e) { /* private mode */ }
      if (timer) { window.clearInterval(timer); timer = null; }
      if (on) { timer = window.setInterval(refresh, PERIOD_MS); }
      else if (stamp) { stamp.textContent = ""; }
    }

    toggle.addEventListener("change", function () { apply(toggle.checked); });
    var stored = null;
    try { stored = window.localStorage.getItem(KEY); } catch (e) { /* private mode */ }
    apply(stored === "1");
  }

  // Buttons and links with data-confirm ask first (the server still requires a POST).
  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("[data-confirm]") : null;
    if (target && !window.confirm(target.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });

  document.addEventListener("change", function (event) {
    var box = event.target;
    var name = box.getAttribute && box.getAttribute("data-select-all");
    if (!name) return;
    var form = box.form || document;
    Array.prototype.forEach.call(form.querySelectorAll("input[type=checkbox][name='" + name + "']"),
      function (other) { other.checked = box.checked; });
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setupLive);
  } else {
    setupLive();
  }
})();
