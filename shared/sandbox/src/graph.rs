//! The simulated Graph API under `/sandbox/graph/{version}/...`: exactly the calls the
//! platform makes, with Meta's semantics and error bodies.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::Sandbox;
use crate::state::{
    self as st, FaultKind, REGISTRATION_WINDOW, REGISTRATIONS_PER_WINDOW, SANDBOX_APP_ID,
};

/// Meta's error body.
pub(crate) fn error(
    status: StatusCode,
    code: i64,
    subcode: Option<i64>,
    message: &str,
) -> Response {
    let mut body = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": format!("Sbx{}", pipes_core::random::base62(20)),
    });
    if let Some(s) = subcode {
        body["error_subcode"] = json!(s);
    }
    if code == 2 {
        body["is_transient"] = json!(true);
    }
    (status, Json(json!({ "error": body }))).into_response()
}

/// Meta's registration errors: code, HTTP status, message and `error_data.details` as
/// Meta's error-code reference gives them.
pub(crate) fn registration_error(code: i64) -> Response {
    let (status, message, details) = match code {
        133_000 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Incomplete deregistration",
            "A previous deregistration attempt failed. Deregister the number again before registering.",
        ),
        133_005 => (
            StatusCode::BAD_REQUEST,
            "Two step verification PIN Mismatch",
            "Two-step verification PIN incorrect.",
        ),
        133_006 => (
            StatusCode::BAD_REQUEST,
            "Phone number re-verification needed",
            "Phone number needs to be verified before registering.",
        ),
        133_008 => (
            StatusCode::BAD_REQUEST,
            "Too many two step verification PIN guesses",
            "Too many two-step verification PIN guesses for this phone number. Try again in 12 hours.",
        ),
        133_009 => (
            StatusCode::BAD_REQUEST,
            "Two step verification PIN guessed too fast",
            "Two-step verification PIN was entered too quickly. Try again in 60 seconds.",
        ),
        133_015 => (
            StatusCode::BAD_REQUEST,
            "Please wait a few minutes before attempting to register this phone number",
            "The phone number you are attempting to register was recently deleted, and deletion has not yet completed. Wait 5 minutes before re-trying the request.",
        ),
        133_016 => (
            StatusCode::BAD_REQUEST,
            "Account register deregister rate limit exceeded",
            "Registration or Deregistration failed because there were too many attempts for this phone number in a short period of time",
        ),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                other,
                None,
                "(#100) Invalid parameter",
            );
        }
    };
    let body = json!({"error": {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details},
        "fbtrace_id": format!("Sbx{}", pipes_core::random::base62(20)),
    }});
    (status, Json(body)).into_response()
}

fn missing_object(id: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        100,
        Some(33),
        &format!(
            "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
        ),
    )
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// Checks the business token and that it reaches `waba`.
#[allow(clippy::result_large_err)] // the error is the finished response, built once
fn authorize(
    state: &st::State,
    token: Option<&str>,
    waba: &str,
    now: DateTime<Utc>,
) -> Result<(), Response> {
    let Some(token) = token else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            2500,
            None,
            "An active access token must be used to query information about the current user.",
        ));
    };
    let Some(t) = state.tokens.get(token) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        ));
    };
    if t.revoked {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            190,
            Some(463),
            "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
        ));
    }
    if t.expires_at.is_some_and(|e| e <= now) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            190,
            Some(463),
            "Error validating access token: Session has expired.",
        ));
    }
    if !t.waba_ids.iter().any(|w| w == waba) {
        return Err(missing_object(waba));
    }
    Ok(())
}

fn kind_of(method: &Method, segments: &[&str], fields: Option<&str>, waba: bool) -> String {
    let what = match segments {
        ["oauth", "access_token"] => "oauth/access_token".to_owned(),
        ["debug_token"] => "debug_token".to_owned(),
        [_, op] => (*op).to_owned(),
        [_] if waba => "waba".to_owned(),
        [_] if fields.is_some_and(|f| f.contains("health_status")) => "health_status".to_owned(),
        [_] => "number".to_owned(),
        _ => "unknown".to_owned(),
    };
    format!("{method} {what}")
}

pub(crate) async fn handle(
    State(sandbox): State<Sandbox>,
    method: Method,
    Path((_version, path)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let in_flight = sandbox.enter();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is_waba = matches!(segments.as_slice(), [id] if sandbox.lock().wabas.contains_key(*id));
    let kind = kind_of(
        &method,
        &segments,
        query.get("fields").map(String::as_str),
        is_waba,
    );
    let (latency, fault) = {
        let mut state = sandbox.lock();
        *state.calls.entry(kind).or_default() += 1;
        (state.latency_ms, state.take_fault(method.as_str(), &path))
    };
    if latency > 0 {
        in_flight
            .hold(std::time::Duration::from_millis(latency))
            .await;
    }
    if let Some(f) = fault {
        return match f.kind {
            FaultKind::ServerError => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                2,
                None,
                "An unexpected error has occurred. Please retry your request later.",
            ),
            FaultKind::Timeout => {
                tokio::time::sleep(std::time::Duration::from_secs(120)).await;
                StatusCode::GATEWAY_TIMEOUT.into_response()
            }
            FaultKind::Error => match f.code {
                Some(code) if (133_000..134_000).contains(&code) => registration_error(code),
                code => error(
                    StatusCode::BAD_REQUEST,
                    code.unwrap_or(100),
                    None,
                    "(#100) Scripted error from the sandbox",
                ),
            },
            FaultKind::Throttle => {
                let minutes = f.regain_minutes.unwrap_or(5);
                let mut res = error(
                    StatusCode::BAD_REQUEST,
                    f.code.unwrap_or(80008),
                    None,
                    "There have been too many calls to this WhatsApp Business account. Wait a bit and try again.",
                );
                let usage = json!({"0": [{"type": "whatsapp_business_management", "call_count": 100, "total_cputime": 1, "total_time": 1, "estimated_time_to_regain_access": minutes}]});
                if let Ok(v) = HeaderValue::from_str(&usage.to_string()) {
                    res.headers_mut().insert("x-business-use-case-usage", v);
                }
                res
            }
        };
    }
    let token = bearer(&headers);
    let now = sandbox.now();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["oauth", "access_token"]) => exchange(&sandbox, &query, now),
        ("GET", ["debug_token"]) => debug_token(&sandbox, &query, token.as_deref(), now),
        ("GET", [waba, "phone_numbers"]) => phone_numbers(&sandbox, waba, token.as_deref(), now),
        (m @ ("GET" | "POST" | "DELETE"), [waba, "subscribed_apps"]) => {
            subscribed_apps(&sandbox, m, waba, token.as_deref(), now)
        }
        ("POST", [phone, "register"]) => register(&sandbox, phone, token.as_deref(), &body, now),
        ("POST", [phone, "deregister"]) => deregister(&sandbox, phone, token.as_deref(), now),
        ("GET", [waba]) if is_waba => waba_node(&sandbox, waba, token.as_deref(), now),
        ("GET", [phone]) => number(&sandbox, phone, token.as_deref(), query.get("fields"), now),
        _ => error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "Unknown path components",
        ),
    }
}

fn exchange(sandbox: &Sandbox, q: &HashMap<String, String>, now: DateTime<Utc>) -> Response {
    if q.get("client_id").map(String::as_str) != Some(SANDBOX_APP_ID) {
        return error(
            StatusCode::BAD_REQUEST,
            101,
            None,
            "Error validating application. Invalid application ID.",
        );
    }
    let secret = sandbox.lock().app_secret().to_owned();
    if q.get("client_secret") != Some(&secret) {
        return error(
            StatusCode::BAD_REQUEST,
            1,
            None,
            "Error validating client secret.",
        );
    }
    if q.contains_key("redirect_uri") {
        return error(
            StatusCode::BAD_REQUEST,
            100,
            Some(36008),
            "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
        );
    }
    let code = q.get("code").cloned().unwrap_or_default();
    let mut state = sandbox.lock();
    let Some(c) = state.codes.get_mut(&code) else {
        return error(
            StatusCode::BAD_REQUEST,
            100,
            Some(36007),
            "Invalid verification code format.",
        );
    };
    if c.used {
        return error(
            StatusCode::BAD_REQUEST,
            100,
            Some(36009),
            "This authorization code has been used.",
        );
    }
    if now - c.issued_at > st::CODE_LIFETIME {
        return error(
            StatusCode::BAD_REQUEST,
            100,
            Some(36007),
            "This authorization code has expired.",
        );
    }
    c.used = true;
    let token = c.token.clone();
    drop(state);
    sandbox.save();
    Json(json!({"access_token": token, "token_type": "bearer"})).into_response()
}

fn debug_token(
    sandbox: &Sandbox,
    q: &HashMap<String, String>,
    bearer: Option<&str>,
    now: DateTime<Utc>,
) -> Response {
    let app_token = format!("{SANDBOX_APP_ID}|{}", sandbox.lock().app_secret());
    let presented = q.get("access_token").map(String::as_str).or(bearer);
    if presented != Some(app_token.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            190,
            None,
            "Invalid OAuth access token signature.",
        );
    }
    let input = q.get("input_token").cloned().unwrap_or_default();
    let state = sandbox.lock();
    let Some(t) = state.tokens.get(&input) else {
        return Json(json!({"data": {"is_valid": false, "scopes": [], "error": {"code": 190, "message": "Invalid OAuth access token."}}})).into_response();
    };
    let expired = t.expires_at.is_some_and(|e| e <= now);
    let scopes = [
        "whatsapp_business_management",
        "whatsapp_business_messaging",
        "business_management",
    ];
    // The businesses owning the WABAs the owner shared (Meta lists them as targets).
    let businesses: Vec<String> = t
        .waba_ids
        .iter()
        .filter_map(|w| state.wabas.get(w).map(|w| w.business_id.clone()))
        .collect();
    let mut data = json!({
        "app_id": SANDBOX_APP_ID,
        "type": "SYSTEM_USER",
        "application": "Pipes.bot Sandbox",
        "data_access_expires_at": 0,
        "expires_at": t.expires_at.map_or(0, |e| e.timestamp()),
        "is_valid": !t.revoked && !expired,
        "issued_at": now.timestamp(),
        "scopes": scopes,
        "granular_scopes": [
            {"scope": "whatsapp_business_management", "target_ids": t.waba_ids},
            {"scope": "whatsapp_business_messaging", "target_ids": t.waba_ids},
            {"scope": "business_management", "target_ids": businesses},
        ],
        "user_id": "1000000000000099",
    });
    if t.revoked || expired {
        data["error"] = json!({"code": 190, "subcode": 463, "message": "Error validating access token: The session is invalid."});
    }
    Json(json!({ "data": data })).into_response()
}

fn phone_numbers(
    sandbox: &Sandbox,
    waba: &str,
    token: Option<&str>,
    now: DateTime<Utc>,
) -> Response {
    let state = sandbox.lock();
    if !state.wabas.contains_key(waba) {
        return missing_object(waba);
    }
    if let Err(e) = authorize(&state, token, waba, now) {
        return e;
    }
    let data: Vec<Value> = state
        .numbers
        .iter()
        .filter(|(_, n)| n.waba_id == waba)
        .map(|(id, n)| {
            json!({
                "id": id,
                "display_phone_number": n.display_phone_number,
                "verified_name": n.verified_name,
                "quality_rating": n.quality_rating,
                "status": n.status,
                "code_verification_status": n.code_verification_status,
                "name_status": n.name_status,
                "platform_type": n.platform_type,
            })
        })
        .collect();
    Json(json!({"data": data, "paging": {"cursors": {"before": "QVFIUz", "after": "QVFIUz"}}}))
        .into_response()
}

fn subscribed_apps(
    sandbox: &Sandbox,
    method: &str,
    waba: &str,
    token: Option<&str>,
    now: DateTime<Utc>,
) -> Response {
    let mut state = sandbox.lock();
    if !state.wabas.contains_key(waba) {
        return missing_object(waba);
    }
    if let Err(e) = authorize(&state, token, waba, now) {
        return e;
    }
    let Some(w) = state.wabas.get_mut(waba) else {
        return missing_object(waba);
    };
    let res = match method {
        "GET" => {
            // Meta's docs nest each app; the OpenAPI file shows it flat. We answer nested.
            let data: Vec<Value> = w
                .subscribed_apps
                .iter()
                .map(|id| json!({"whatsapp_business_api_data": {"id": id, "name": "Pipes.bot Sandbox", "link": "https://www.facebook.com/games/?app_id=0"}}))
                .collect();
            return Json(json!({ "data": data })).into_response();
        }
        "POST" => w.subscribed_apps.insert(SANDBOX_APP_ID.to_owned()),
        _ => w.subscribed_apps.remove(SANDBOX_APP_ID),
    };
    let _ = res;
    drop(state);
    sandbox.save();
    Json(json!({"success": true})).into_response()
}

fn number_waba(state: &st::State, phone: &str) -> Option<String> {
    state.numbers.get(phone).map(|n| n.waba_id.clone())
}

fn register(
    sandbox: &Sandbox,
    phone: &str,
    token: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Response {
    let mut state = sandbox.lock();
    let Some(waba) = number_waba(&state, phone) else {
        return missing_object(phone);
    };
    if let Err(e) = authorize(&state, token, &waba, now) {
        return e;
    }
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if req["messaging_product"] != "whatsapp" {
        return error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "(#100) The parameter messaging_product is required.",
        );
    }
    let Some(pin) = req["pin"]
        .as_str()
        .filter(|p| p.len() == 6 && p.bytes().all(|b| b.is_ascii_digit()))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "(#100) Param pin must be 6 digits.",
        );
    };
    let Some(n) = state.numbers.get_mut(phone) else {
        return missing_object(phone);
    };
    if n.is_on_biz_app {
        // Meta: numbers onboarded from the WhatsApp Business app are not registered.
        return error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "(#100) This phone number is in use on the WhatsApp Business app and cannot be registered",
        );
    }
    n.registrations.retain(|t| now - *t < REGISTRATION_WINDOW);
    if n.registrations.len() >= REGISTRATIONS_PER_WINDOW {
        return registration_error(133_016);
    }
    n.registrations.push(now);
    // Meta reviews display names while the number is in use: a pending name does not
    // stop registration.
    let refusal = if n.deregistration_incomplete {
        Some(133_000)
    } else if n.code_verification_status != "VERIFIED" {
        Some(133_006)
    } else if n.wrong_pin_guesses >= 3 {
        Some(133_008)
    } else if n.registered_pin.as_deref().is_some_and(|p| p != pin) {
        n.wrong_pin_guesses += 1;
        Some(133_005)
    } else {
        None
    };
    if let Some(code) = refusal {
        drop(state);
        sandbox.save();
        return registration_error(code);
    }
    n.registered_pin = Some(pin.to_owned());
    n.wrong_pin_guesses = 0;
    n.status = "CONNECTED".into();
    n.platform_type = "CLOUD_API".into();
    drop(state);
    sandbox.save();
    Json(json!({"success": true})).into_response()
}

fn deregister(sandbox: &Sandbox, phone: &str, token: Option<&str>, now: DateTime<Utc>) -> Response {
    let mut state = sandbox.lock();
    let Some(waba) = number_waba(&state, phone) else {
        return missing_object(phone);
    };
    if let Err(e) = authorize(&state, token, &waba, now) {
        return e;
    }
    if let Some(n) = state.numbers.get_mut(phone) {
        if n.is_on_biz_app {
            return error(
                StatusCode::BAD_REQUEST,
                100,
                None,
                "(#100) Deregistration is not available for WhatsApp Business app numbers",
            );
        }
        n.registrations.retain(|t| now - *t < REGISTRATION_WINDOW);
        if n.registrations.len() >= REGISTRATIONS_PER_WINDOW {
            return registration_error(133_016);
        }
        n.registrations.push(now);
        n.deregistration_incomplete = false;
        n.status = "PENDING".into();
        n.platform_type = "NOT_APPLICABLE".into();
    }
    drop(state);
    sandbox.save();
    Json(json!({"success": true})).into_response()
}

fn number(
    sandbox: &Sandbox,
    phone: &str,
    token: Option<&str>,
    fields: Option<&String>,
    now: DateTime<Utc>,
) -> Response {
    let state = sandbox.lock();
    let Some(waba) = number_waba(&state, phone) else {
        return missing_object(phone);
    };
    if let Err(e) = authorize(&state, token, &waba, now) {
        return e;
    }
    let Some(n) = state.numbers.get(phone) else {
        return missing_object(phone);
    };
    let mut out = serde_json::Map::new();
    out.insert("id".into(), json!(phone));
    let fields = fields.map_or("display_phone_number,verified_name", String::as_str);
    for field in fields.split(',').map(str::trim) {
        let value = match field {
            "display_phone_number" => json!(n.display_phone_number),
            "verified_name" => json!(n.verified_name),
            "quality_rating" => json!(n.quality_rating),
            "status" => json!(n.status),
            "name_status" => json!(n.name_status),
            "code_verification_status" => json!(n.code_verification_status),
            "is_on_biz_app" => json!(n.is_on_biz_app),
            "platform_type" => json!(n.platform_type),
            "throughput" => json!({"level": "STANDARD"}),
            "health_status" => health_status(&state, phone, n),
            _ => continue,
        };
        out.insert(field.to_owned(), value);
    }
    Json(Value::Object(out)).into_response()
}

/// `GET /{waba}?fields=account_review_status`.
fn waba_node(sandbox: &Sandbox, waba: &str, token: Option<&str>, now: DateTime<Utc>) -> Response {
    let state = sandbox.lock();
    if let Err(e) = authorize(&state, token, waba, now) {
        return e;
    }
    let Some(w) = state.wabas.get(waba) else {
        return missing_object(waba);
    };
    Json(json!({"id": waba, "name": "Sandbox WhatsApp Business Account", "account_review_status": w.account_review_status})).into_response()
}

/// `health_status` in Meta's shape: the aggregate and all four entities (PHONE_NUMBER,
/// WABA, BUSINESS, APP), with calling fields on the number and the app. As in Meta's
/// own sample, a SIP calling block makes the aggregate BLOCKED although every entity
/// can send messages.
fn health_status(state: &st::State, phone: &str, n: &st::SandboxNumber) -> Value {
    let mut number = json!({
        "entity_type": "PHONE_NUMBER", "id": phone,
        "can_send_message": n.can_send_message,
        "can_receive_call_sip": n.can_receive_call_sip,
    });
    let mut errors = Vec::new();
    match n.can_send_message.as_str() {
        "BLOCKED" => errors.push(json!({"error_code": 141010, "error_description": "The Business has been restricted.", "possible_solution": "Resolve the policy issue in Business Manager."})),
        "LIMITED" => {
            number["additional_info"] =
                json!(["Your business is limited to 250 conversations per 24 hours."]);
        }
        _ => {}
    }
    let sip_blocked = n.can_receive_call_sip == "BLOCKED";
    if sip_blocked {
        errors.push(json!({"error_code": 138024, "error_description": "WhatsApp Business calling cannot use SIP because it is not enabled", "possible_solution": "Configure SIP using {PHONE_NUMBER_ID}/settings API"}));
    }
    if !errors.is_empty() {
        number["errors"] = json!(errors);
    }
    let w = state.wabas.get(&n.waba_id);
    let waba_can = w.map_or("AVAILABLE", |w| w.can_send_message.as_str());
    let mut waba = json!({"entity_type": "WABA", "id": n.waba_id, "can_send_message": waba_can});
    if waba_can == "BLOCKED" {
        waba["errors"] = json!([{"error_code": 131031, "error_description": "The WhatsApp Business Account has been locked.", "possible_solution": "Request a review of the decision in Business Support Home."}]);
    }
    let business = json!({
        "entity_type": "BUSINESS",
        "id": w.map_or("", |w| w.business_id.as_str()),
        "can_send_message": "AVAILABLE",
    });
    let mut app = json!({
        "entity_type": "APP", "id": SANDBOX_APP_ID,
        "can_send_message": "AVAILABLE",
        "can_receive_call_sip": n.can_receive_call_sip,
    });
    if sip_blocked {
        app["errors"] = json!([{"error_code": 138025, "error_description": "This app cannot use SIP for WhatsApp Business calling because it has not configured a SIP server for this business phone number", "possible_solution": "Configure SIP server using {PHONE_NUMBER_ID}/settings API"}]);
    }
    let rank = |s: &str| match s {
        "BLOCKED" => 2,
        "LIMITED" => 1,
        _ => 0,
    };
    let worst = [n.can_send_message.as_str(), waba_can]
        .into_iter()
        .max_by_key(|s| rank(s))
        .unwrap_or("AVAILABLE");
    let aggregate = if sip_blocked { "BLOCKED" } else { worst };
    json!({"can_send_message": aggregate, "entities": [number, waba, business, app]})
}
