// Sandbox stand-in for Meta's JS SDK (connect.facebook.net/en_US/sdk.js): FB.init and
// FB.login with a small dialog to finish, cancel at a step, or report an error. It
// produces the same two signals as Meta's Embedded Signup: the code through the login
// callback and the session info as a window "message" event, in no fixed order.
(function () {
  "use strict";
  var STEPS = [
    "BUSINESS_ACCOUNT_SELECTION",
    "WABA_PHONE_PROFILE_PICKER",
    "WHATSAPP_BUSINESS_PROFILE_SETUP",
    "PHONE_NUMBER_SETUP",
    "PHONE_NUMBER_VERIFICATION",
    "PERMISSIONS",
  ];

  function post(message) {
    window.postMessage(JSON.stringify(message), window.location.origin);
  }

  function el(tag, props, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) {
      if (k === "css") node.style.cssText = props[k];
      else node[k] = props[k];
    });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function dialog(callback) {
    var overlay = el("div", {
      id: "sbx-dialog",
      css: "position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;align-items:center;justify-content:center;z-index:1000",
    });
    var phone = el("input", { id: "sbx-phone", placeholder: "phone number id (optional)", css: "width:100%;margin:4px 0 10px;padding:6px" });
    var step = el("select", { id: "sbx-step", css: "padding:6px;margin-right:6px" },
      STEPS.map(function (s) { return el("option", { value: s, textContent: s }); }));
    var finish = el("button", { id: "sbx-finish", textContent: "Finish signup", css: "padding:8px 14px;margin:4px 6px 4px 0" });
    var cancel = el("button", { id: "sbx-cancel", textContent: "Cancel at this step", css: "padding:8px 14px" });
    var fail = el("button", { id: "sbx-error", textContent: "Report an error", css: "padding:8px 14px;margin-top:10px" });
    var box = el("div", { css: "background:#fff;color:#111;border-radius:10px;padding:22px;max-width:440px;font:15px system-ui,sans-serif" }, [
      el("h2", { textContent: "Meta Embedded Signup (sandbox)", css: "margin:0 0 6px;font-size:18px" }),
      el("p", { textContent: "No Meta account is involved: this dialog stands in for Meta's.", css: "margin:0 0 12px;color:#555" }),
      phone, finish, el("div", { css: "margin-top:10px" }, [step, cancel]), fail,
    ]);
    overlay.appendChild(box);
    document.body.appendChild(overlay);
    function close() { overlay.remove(); }

    finish.addEventListener("click", function () {
      finish.disabled = true;
      var body = phone.value ? { phoneNumberId: phone.value } : {};
      fetch("/sandbox/signups", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
        .then(function (r) { return r.json(); })
        .then(function (r) {
          close();
          var info = function () {
            post({ type: "WA_EMBEDDED_SIGNUP", event: "FINISH", version: 3,
              data: { phone_number_id: r.phoneNumberId, waba_id: r.wabaId, business_id: r.businessId } });
          };
          var login = function () { callback({ status: "connected", authResponse: { code: r.code } }); };
          // Meta sends the two in no fixed order; so does the sandbox.
          if (Math.random() < 0.5) { info(); setTimeout(login, 10); } else { login(); setTimeout(info, 10); }
        });
    });
    cancel.addEventListener("click", function () {
      close();
      post({ type: "WA_EMBEDDED_SIGNUP", event: "CANCEL", version: 3, data: { current_step: step.value } });
      callback({ status: "unknown", authResponse: null });
    });
    fail.addEventListener("click", function () {
      close();
      post({ type: "WA_EMBEDDED_SIGNUP", event: "CANCEL", version: 3,
        data: { error_message: "Simulated error reported in the sandbox", error_code: "524126",
          session_id: "sbx-" + Date.now(), timestamp: Date.now() } });
      callback({ status: "unknown", authResponse: null });
    });
  }

  window.FB = {
    init: function () {},
    login: function (callback, options) {
      if (!options || options.response_type !== "code" || !options.config_id) {
        throw new Error("FB.login needs config_id and response_type 'code'");
      }
      dialog(callback);
    },
  };
  if (typeof window.fbAsyncInit === "function") window.fbAsyncInit();
})();
