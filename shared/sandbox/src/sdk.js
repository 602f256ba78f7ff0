// Sandbox stand-in for Meta's JS SDK (connect.facebook.net/en_US/sdk.js): FB.init and
// FB.login with a small dialog to finish, cancel at a step, or report an error. It
// produces the same two signals as Meta's Embedded Signup: the code through the login
// callback and the session info as a window "message" event, in no fixed order, with
// the payloads of Meta's documented samples (docs/reference/meta-samples.md):
// - FINISH: {phone_number_id, waba_id, business_id}, no version;
// - FINISH_ONLY_WABA: {phone_number_id?, waba_id}, version 3;
// - FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING: {waba_id}, version 3;
// - CANCEL with current_step, or with a user-reported error (error_code or, as Meta's
//   older docs named it, error_id).
// Like a configuration of an older Embedded Signup version, it sends the session
// message only when FB.login asks for it with extras.sessionInfoVersion; "Close
// without a session message" stands for a closed window: the code arrives alone.
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
  // [value, label]: how the flow finishes.
  var FINISHES = [
    ["FINISH", "FINISH: a number was chosen"],
    ["FINISH_ONLY_WABA", "FINISH_ONLY_WABA: no number added"],
    ["FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING", "WhatsApp Business app number (coexistence)"],
    ["CODE_ONLY", "Close without a session message (code only)"],
  ];
  // [value, label]: scripted situations (Scenario in the sandbox's state).
  var SCENARIOS = [
    ["", "A plain number"],
    ["two_step_pin_set", "Two-step PIN set elsewhere (133005)"],
    ["unverified", "Number not verified (133006)"],
    ["deregistration_incomplete", "Deregistration incomplete (133000)"],
    ["several_numbers", "The WABA has two numbers"],
    ["sip_blocked", "SIP calling not configured"],
  ];
  var askedForSessionInfo = false;

  function post(message) {
    if (!askedForSessionInfo) return;
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

  function options(list) {
    return list.map(function (o) { return el("option", { value: o[0], textContent: o[1] }); });
  }

  function label(text, control) {
    return el("label", { css: "display:block;margin:4px 0 10px" }, [text, el("br"), control]);
  }

  function dialog(callback) {
    var overlay = el("div", {
      id: "sbx-dialog",
      css: "position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;align-items:center;justify-content:center;z-index:1000",
    });
    var phone = el("input", { id: "sbx-phone", placeholder: "phone number id (optional)", css: "width:100%;padding:6px" });
    var finishType = el("select", { id: "sbx-finish-type", css: "padding:6px" }, options(FINISHES));
    var scenario = el("select", { id: "sbx-scenario", css: "padding:6px" }, options(SCENARIOS));
    var step = el("select", { id: "sbx-step", css: "padding:6px;margin-right:6px" },
      STEPS.map(function (s) { return el("option", { value: s, textContent: s }); }));
    var finish = el("button", { id: "sbx-finish", textContent: "Finish signup", css: "padding:8px 14px;margin:4px 6px 4px 0" });
    var cancel = el("button", { id: "sbx-cancel", textContent: "Cancel at this step", css: "padding:8px 14px" });
    var fail = el("button", { id: "sbx-error", textContent: "Report an error", css: "padding:8px 14px;margin-top:10px" });
    var box = el("div", { css: "background:#fff;color:#111;border-radius:10px;padding:22px;max-width:460px;font:15px system-ui,sans-serif" }, [
      el("h2", { textContent: "Meta Embedded Signup (sandbox)", css: "margin:0 0 6px;font-size:18px" }),
      el("p", { textContent: "No Meta account is involved: this dialog stands in for Meta's.", css: "margin:0 0 12px;color:#555" }),
      label("Phone number id", phone), label("How the flow finishes", finishType), label("Situation", scenario),
      finish, el("div", { css: "margin-top:10px" }, [step, cancel]), fail,
    ]);
    overlay.appendChild(box);
    document.body.appendChild(overlay);
    function close() { overlay.remove(); }

    finish.addEventListener("click", function () {
      finish.disabled = true;
      var kind = finishType.value;
      var body = phone.value ? { phoneNumberId: phone.value } : {};
      if (kind === "FINISH_ONLY_WABA") body.scenario = "no_number";
      else if (kind === "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING") body.scenario = "business_app";
      else if (scenario.value) body.scenario = scenario.value;
      fetch("/sandbox/signups", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
        .then(function (r) { return r.json(); })
        .then(function (r) {
          close();
          var message = null;
          if (kind === "FINISH") {
            message = { type: "WA_EMBEDDED_SIGNUP", event: "FINISH",
              data: { phone_number_id: r.phoneNumberId, waba_id: r.wabaId, business_id: r.businessId } };
          } else if (kind === "FINISH_ONLY_WABA") {
            message = { type: "WA_EMBEDDED_SIGNUP", event: "FINISH_ONLY_WABA", version: 3, data: { waba_id: r.wabaId } };
          } else if (kind === "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING") {
            message = { type: "WA_EMBEDDED_SIGNUP", event: "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING", version: 3,
              data: { waba_id: r.wabaId } };
          }
          var info = function () { if (message) post(message); };
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
      // Meta's older docs name the support reference error_id; newer ones error_code.
      post({ type: "WA_EMBEDDED_SIGNUP", event: "CANCEL",
        data: { error_message: "Simulated error reported in the sandbox", error_id: "524126",
          session_id: "sbx-" + Date.now(), timestamp: String(Math.floor(Date.now() / 1000)) } });
      callback({ status: "unknown", authResponse: null });
    });
  }

  window.FB = {
    init: function () {},
    login: function (callback, options) {
      if (!options || options.response_type !== "code" || !options.config_id) {
        throw new Error("FB.login needs config_id and response_type 'code'");
      }
      askedForSessionInfo = !!(options.extras && options.extras.sessionInfoVersion);
      window.__sandboxLoginOptions = options;
      dialog(callback);
    },
  };
  if (typeof window.fbAsyncInit === "function") window.fbAsyncInit();
})();
