// The hosted signup page's script: runs Meta's Embedded Signup (or the sandbox's
// stand-in), holds the code and the WA_EMBEDDED_SIGNUP message until both have
// arrived (they come in no fixed order), posts the callback once, then sends the
// owner back to the partner. Every finish type is forwarded as Meta named it; when
// the code arrives and no session message follows within INFO_WAIT_MS (an older
// configuration, a closed window), the code is posted alone and the server asks Meta
// which WABA and number were shared. Configuration comes from the JSON block.
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("pipes-config").textContent);
  // The token is in the configuration now: take it out of the address bar (and so out
  // of the history, bookmarks and screenshots).
  if (window.history && window.history.replaceState && window.location.search) {
    window.history.replaceState(null, "", window.location.pathname);
  }
  var connect = document.getElementById("connect");
  var statusEl = document.getElementById("status");
  var retry = document.getElementById("retry");
  var tryAgain = document.getElementById("try-again");
  var back = document.getElementById("back");
  var INFO_WAIT_MS = 3000;
  var code = null;
  var info = null;
  var finishEvent = "FINISH";
  var busy = false;
  var waitTimer = null;

  function show(text) { statusEl.textContent = text; }
  function offerRetry() { retry.hidden = false; connect.hidden = true; }

  // Only Meta may speak to the page: facebook.com or a subdomain of it over https
  // (a plain endsWith("facebook.com") would also accept evilfacebook.com). In sandbox
  // mode the stand-in SDK runs in this page, so the page's own origin is Meta.
  function trusted(origin) {
    if (cfg.sandbox) return origin === window.location.origin;
    var url;
    try { url = new URL(origin); } catch (e) { return false; }
    return url.protocol === "https:" &&
      (url.hostname === "facebook.com" || url.hostname.slice(-13) === ".facebook.com");
  }

  function send(body) {
    body.token = cfg.token;
    return fetch(cfg.callbackUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
    }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, body: j }; });
    });
  }

  function failed(res) {
    var message = res && res.body && res.body.error ? res.body.error.message : "Something went wrong.";
    show(message);
    offerRetry();
  }

  function text(v) { return v === undefined || v === null || v === "" ? undefined : String(v); }

  function submit() {
    if (!code || busy) return;
    busy = true;
    if (waitTimer) { clearTimeout(waitTimer); waitTimer = null; }
    var data = info || {};
    show("Connecting your number…");
    send({ event: finishEvent, code: code, wabaId: text(data.waba_id),
      phoneNumberId: text(data.phone_number_id), businessId: text(data.business_id) })
      .then(function (res) {
        if (res.ok) {
          show("Connected. Taking you back…");
          window.location.assign(res.body.redirectUrl);
          return;
        }
        code = null; info = null; busy = false;
        failed(res);
      }, function () { code = null; info = null; busy = false; failed(null); });
  }

  // Tells the server Meta's flow finished with this WABA before anything else can go
  // wrong: if the window closes now, Meta's webhook still finds this signup.
  function reportFinish(wabaId) {
    if (!wabaId) return;
    fetch(cfg.progressUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: cfg.token, wabaId: wabaId }),
      credentials: "omit",
      keepalive: true,
    }).catch(function () {});
  }

  function finishIfReady() {
    if (!code || busy) return;
    if (info) { submit(); return; }
    // The code came first: give the session message a moment, then go without it.
    if (!waitTimer) waitTimer = setTimeout(function () { waitTimer = null; submit(); }, INFO_WAIT_MS);
  }

  function abandon(body, text) {
    show(text);
    send(body).then(function (res) {
      if (res.ok && res.body.redirectUrl) back.href = res.body.redirectUrl;
      offerRetry();
    }, function () { offerRetry(); });
  }

  window.addEventListener("message", function (event) {
    if (!trusted(event.origin)) return;
    var msg;
    try { msg = typeof event.data === "string" ? JSON.parse(event.data) : event.data; } catch (e) { return; }
    if (!msg || msg.type !== "WA_EMBEDDED_SIGNUP") return;
    var data = msg.data || {};
    // Meta's support reference is error_code in newer docs, error_id in older ones.
    var errorCode = text(data.error_code !== undefined ? data.error_code : data.error_id);
    if (typeof msg.event === "string" && msg.event.indexOf("FINISH") === 0) {
      // FINISH, FINISH_ONLY_WABA, FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING, ...: the
      // server knows each; missing ids are found from Meta.
      finishEvent = msg.event;
      info = data;
      reportFinish(text(data.waba_id));
      finishIfReady();
    } else if (msg.event === "CANCEL" && data.error_message) {
      abandon({ event: "ERROR", errorCode: errorCode, errorMessage: String(data.error_message),
        metaSessionId: text(data.session_id) },
        "Meta reported a problem: " + data.error_message);
    } else if (msg.event === "CANCEL") {
      abandon({ event: "CANCEL", step: text(data.current_step) },
        "You left the signup before it finished.");
    } else if (msg.event === "ERROR") {
      abandon({ event: "ERROR", errorCode: errorCode, errorMessage: String(data.error_message || "unknown error"),
        metaSessionId: text(data.session_id) },
        "Meta reported a problem.");
    }
  });

  function launch() {
    code = null; info = null; busy = false; finishEvent = "FINISH";
    if (waitTimer) { clearTimeout(waitTimer); waitTimer = null; }
    retry.hidden = true; connect.hidden = false;
    show("");
    window.FB.login(function (response) {
      if (response && response.authResponse && response.authResponse.code) {
        code = response.authResponse.code;
        finishIfReady();
      }
    }, {
      config_id: cfg.configId,
      response_type: "code",
      override_default_response_type: true,
      // sessionInfoVersion asks for the session message explicitly, so a configuration
      // of an older Embedded Signup version still sends it (v3 and v4 send it anyway).
      extras: { setup: {}, sessionInfoVersion: "3" },
    });
  }

  window.fbAsyncInit = function () {
    window.FB.init({ appId: cfg.metaAppId, autoLogAppEvents: false, xfbml: true, version: cfg.graphVersion });
    connect.disabled = false;
  };
  if (window.FB) window.fbAsyncInit();
  connect.addEventListener("click", launch);
  tryAgain.addEventListener("click", launch);
})();
