// The dashboard's progressive enhancement: the App page's number list refreshes itself
// every 2 seconds (a new number appears, a status change shows, the warning banner
// follows), forms marked data-confirm ask first, and a new key can be copied. Without
// JavaScript every page still works (plain links and form posts).
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("dash-config").textContent);

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  var copy = document.getElementById("copy-key");
  if (copy) {
    copy.addEventListener("click", function () {
      var key = document.getElementById("key-value").textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(key).then(function () { copy.textContent = "Copied"; });
    });
  }

  var tbody = document.getElementById("numbers");
  if (!tbody || !cfg.numbers) return;

  function when(v) { return v ? String(v).replace("T", " ").slice(0, 19) : "—"; }
  function cell(row, children) {
    var td = document.createElement("td");
    children.forEach(function (c) { td.appendChild(c); });
    row.appendChild(td);
  }
  function text(s) { return document.createTextNode(s); }

  function render(numbers, attention) {
    var rows = document.createDocumentFragment();
    numbers.forEach(function (n) {
      var status = n.health && n.health.status ? n.health.status : "pending";
      var tr = document.createElement("tr");
      tr.setAttribute("data-id", n.phoneNumberId);
      var link = document.createElement("a");
      link.href = "/dashboard/numbers/" + encodeURIComponent(n.phoneNumberId);
      link.textContent = n.displayPhoneNumber || n.phoneNumberId;
      cell(tr, [link]);
      cell(tr, [text(n.verifiedName || "—")]);
      var badge = document.createElement("span");
      badge.className = "badge " + status;
      badge.textContent = status;
      var reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = (n.health && (n.health.message || n.health.reason)) || "";
      cell(tr, [badge, text(" "), reason]);
      cell(tr, [text(when(n.health && n.health.lastCheckedAt))]);
      cell(tr, [text(when(n.connectedAt))]);
      rows.appendChild(tr);
    });
    tbody.replaceChildren(rows);
    document.getElementById("empty").hidden = numbers.length > 0;
    document.getElementById("warning").hidden = !attention;
  }

  function refresh() {
    fetch("/dashboard/numbers.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) { if (body) render(body.numbers, body.attention); })
      .catch(function () {});
  }
  setInterval(refresh, 2000);
})();
