//! The App owner's dashboard: sign in with a login link, the App page (Add Number, the
//! live number list, a warning when a number needs attention), each number's page
//! (details, setup, health timeline, Check now, Remove), the keys page, and logout.
//! Server-rendered HTML with a little progressive-enhancement JavaScript, on the same
//! use cases as the API. Every state-changing request needs the session's CSRF token
//! (form field `csrf` or header `X-CSRF-Token`) and a same-origin `Origin`.

#[path = "dashboard_webhooks.rs"]
mod webhooks;

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use pipes_core::ports::DashboardSession;
use pipes_core::usecases::admin;
use pipes_core::usecases::dashboard::{
    LoginError, ReconnectError, add_number, csrf_matches, current_session, mint_login_link,
    reconnect, sign_in, sign_out, signups,
};
use pipes_core::usecases::numbers::{
    ListRequest, check_now, get_number, list_numbers, number_history, remove_number,
};
use pipes_core::{App, HealthEvent, HealthStatus, Number, Platform, random};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiError;
use crate::extract::PartnerKey;
use crate::html::{escape, script_json};
use crate::numbers::number_view;
use crate::partner::rfc3339;

/// The App's API route of the dashboard (app key, idempotent POST).
pub(crate) fn api_routes() -> Router<Platform> {
    Router::new().route("/v1/dashboard/login-links", post(login_link))
}

pub(crate) fn routes() -> Router<Platform> {
    Router::new()
        .route("/dashboard/login", get(login_opened).post(login))
        .route("/dashboard/signin", get(signin_help))
        .route("/dashboard", get(app_page))
        .route("/dashboard/numbers.json", get(numbers_json))
        .route("/dashboard/numbers/new", post(new_number))
        .route("/dashboard/numbers/{id}", get(number_page))
        .route("/dashboard/numbers/{id}/check", post(check))
        .route("/dashboard/numbers/{id}/remove", post(remove))
        .route("/dashboard/numbers/{id}/reconnect", post(reconnect_number))
        .route("/dashboard/keys", get(keys_page).post(create_key))
        .route("/dashboard/signups", get(signups_page))
        .route("/dashboard/keys/{id}/revoke", post(revoke_key))
        .route("/dashboard/logout", post(logout))
        .merge(webhooks::routes())
}

const DASHBOARD_JS: &str = include_str!("dashboard.js");

const STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,-apple-system,Segoe UI,sans-serif;background:#f4f6f5;color:#1c1e21}\
header{background:#fff;border-bottom:1px solid #dadde1;padding:12px 16px;display:flex;flex-wrap:wrap;gap:12px;align-items:center;justify-content:space-between}\
header nav a{margin-right:14px}\
main{max-width:960px;margin:16px auto;padding:0 16px}\
section{background:#fff;border-radius:12px;padding:16px 20px;margin:0 0 16px;box-shadow:0 1px 6px rgba(0,0,0,.06)}\
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:0 0 8px}\
a{color:#0b57d0}\
button{font:inherit;border:0;border-radius:8px;padding:10px 16px;background:#0b57d0;color:#fff;cursor:pointer}\
button.secondary{background:#e4e6eb;color:#1c1e21}button.danger{background:#b3261e}\
button:focus-visible,a:focus-visible{outline:3px solid #1c1e21;outline-offset:2px}\
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:8px;border-bottom:1px solid #eceff1;vertical-align:top}\
.badge{display:inline-block;border-radius:999px;padding:2px 10px;font-size:14px;font-weight:600}\
.healthy{background:#d7f5dd;color:#0b5d1e}.degraded{background:#fff0c2;color:#6b4e00}\
.down{background:#fdd9d7;color:#8c1d18}.pending{background:#e4e6eb;color:#3c4043}.removed{background:#3c4043;color:#fff}\
.banner{background:#fff0c2;border:1px solid #e0b400;border-radius:10px;padding:12px 16px;margin:0 0 16px}\
.muted{color:#4d5156;font-size:14px}code{background:#eceff1;border-radius:4px;padding:1px 4px;word-break:break-all}\
form.inline{display:inline}\
@media (max-width:600px){table.numbers thead{display:none}table.numbers td{display:block;border:0;padding:2px 0}table.numbers tr{display:block;border-bottom:1px solid #eceff1;padding:8px 0}}";

fn cookie_name(platform: &Platform) -> &'static str {
    if platform.public_base_url.is_https() {
        "__Host-pipes_dashboard"
    } else {
        "pipes_dashboard"
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A page's response: HTML with the headers every dashboard page carries.
fn page(
    status: StatusCode,
    title: &str,
    nonce: &str,
    body: &str,
    config: Option<&Value>,
) -> Response {
    let scripts = match config {
        Some(cfg) => format!(
            "<script type=\"application/json\" id=\"dash-config\">{}</script>\
             <script nonce=\"{nonce}\">{DASHBOARD_JS}</script>",
            script_json(cfg)
        ),
        None => String::new(),
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\"><meta name=\"robots\" content=\"noindex\">\
         <link rel=\"icon\" href=\"data:,\"><title>{} · Pipes.bot</title><style nonce=\"{nonce}\">{STYLE}</style></head>\
         <body>{body}{scripts}</body></html>\n",
        escape(title)
    );
    let mut res = (status, Html(html)).into_response();
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'"
    );
    let h = res.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store".to_owned()),
        // same-origin, not no-referrer: with no-referrer, browsers send `Origin: null` on
        // form posts, and every change needs our origin. No dashboard URL carries a
        // secret (the login link redirects at once, and its response sets no-referrer).
        (header::REFERRER_POLICY, "same-origin".to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::X_FRAME_OPTIONS, "DENY".to_owned()),
        (header::CONTENT_SECURITY_POLICY, csp),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    res
}

fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<main><section><h1 id=\"heading\">{}</h1><p>{}</p></section></main>",
        escape(title),
        escape(text)
    );
    page(status, title, &random::base62(22), &body, None)
}

/// A record id in a dashboard path. One that does not decode (invalid percent-encoded
/// UTF-8) names nothing: the not-found page, not axum's plain-text rejection.
#[derive(Debug)]
pub(crate) struct PageId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PageId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|_| {
                message_page(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "There is nothing at this address.",
                )
            })
    }
}

fn unavailable() -> Response {
    message_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "The dashboard could not load this page. Please try again in a minute.",
    )
}

/// A signed-in owner: the App and the session.
#[derive(Debug)]
pub struct Owner {
    pub app: App,
    pub session: DashboardSession,
}

impl FromRequestParts<Platform> for Owner {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, p: &Platform) -> Result<Self, Response> {
        let cookie = cookie_value(&parts.headers, cookie_name(p));
        match current_session(&*p.store, &*p.store, &*p.clock, cookie).await {
            Ok(Some((app, session))) => Ok(Self { app, session }),
            Ok(None) => Err(Redirect::to("/dashboard/signin").into_response()),
            Err(e) => {
                tracing::error!(error = %e, "dashboard: store failure");
                Err(unavailable())
            }
        }
    }
}

/// Whether the request's `Origin` is our own.
fn same_origin(p: &Platform, headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o == p.public_base_url.origin())
}

/// A state change is allowed only with the session's CSRF token and from our origin.
#[allow(clippy::result_large_err)] // the error is the finished response, built once
fn guard(
    p: &Platform,
    owner: &Owner,
    headers: &HeaderMap,
    form_csrf: Option<&str>,
) -> Result<(), Response> {
    let origin_ok = same_origin(p, headers);
    let presented = form_csrf.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    if origin_ok && csrf_matches(&owner.session, presented) {
        Ok(())
    } else {
        tracing::warn!(app_id = %owner.app.id, origin_ok, "dashboard: refused a request without a valid CSRF token or origin");
        Err(message_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This request did not come from your dashboard page, so nothing was changed. Go back to the dashboard and try again.",
        ))
    }
}

/// A signed-in owner's state change: the form post carries the session's CSRF token
/// (or the `X-CSRF-Token` header) and comes from our origin; otherwise 403 and the
/// handler never runs.
pub struct Change(pub Owner);

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Change({})", self.0.app.id)
    }
}

impl axum::extract::FromRequest<Platform> for Change {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, p: &Platform) -> Result<Self, Response> {
        let ChangeForm(owner, _) = ChangeForm::from_request(req, p).await?;
        Ok(Self(owner))
    }
}

/// A state change whose form carries fields besides the CSRF token (`csrf`).
pub(super) struct ChangeForm(pub(super) Owner, pub(super) HashMap<String, String>);

impl axum::extract::FromRequest<Platform> for ChangeForm {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, p: &Platform) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let owner = Owner::from_request_parts(&mut parts, p).await?;
        let headers = parts.headers.clone();
        let req = axum::extract::Request::from_parts(parts, body);
        let fields = Form::<HashMap<String, String>>::from_request(req, p)
            .await
            .map(|Form(f)| f)
            .unwrap_or_default();
        guard(p, &owner, &headers, fields.get("csrf").map(String::as_str))?;
        Ok(Self(owner, fields))
    }
}

async fn login_link(
    State(p): State<Platform>,
    PartnerKey(app, key): PartnerKey,
) -> Result<Response, ApiError> {
    let link = mint_login_link(&*p.store, &*p.clock, &p.public_base_url, &app, Some(&key)).await?;
    // The link is a credential: no cache may keep it.
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"url": link.url.as_str(), "expiresAt": rfc3339(link.expires_at)})),
    )
        .into_response())
}

/// A login link opened: a browser's top-level navigation (or a client that does not say,
/// such as curl) signs in at once (303 with the cookie). A fetch the browser marks as
/// anything but a document (an `<img>`, an `<iframe>`, a script's `fetch`) spends nothing
/// and gets a page whose Continue button signs in by a same-origin POST: a page elsewhere
/// cannot sign a visitor in by embedding someone's link.
async fn login_opened(
    State(p): State<Platform>,
    ip: crate::limits::ClientIp,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(l) = crate::limits::per_ip(&p, &ip).await {
        return ApiError::rate_limited(l).into_response();
    }
    let token = q.get("token").map(String::as_str);
    let dest = headers.get("sec-fetch-dest").and_then(|v| v.to_str().ok());
    match dest {
        None | Some("document") => complete_login(&p, token).await,
        Some(_) => login_page(token.unwrap_or_default()),
    }
}

fn login_page(token: &str) -> Response {
    let nonce = random::base62(22);
    let body = format!(
        "<main><section><h1 id=\"heading\">Sign in to your dashboard</h1>\
         <p>This link signs you in to a Pipes.bot App's dashboard, once. Continue only if you asked for it.</p>\
         <form method=\"post\" action=\"/dashboard/login\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
         <button id=\"sign-in\" type=\"submit\">Continue</button></form></section></main>",
        escape(token)
    );
    let mut res = page(StatusCode::OK, "Sign in", &nonce, &body, None);
    // The token is in this page's URL: it must not leave as a Referer.
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// What the login page posts (no Debug: the token is a credential).
#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: Option<String>,
}

async fn login(
    State(p): State<Platform>,
    ip: crate::limits::ClientIp,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if let Err(l) = crate::limits::per_ip(&p, &ip).await {
        return ApiError::rate_limited(l).into_response();
    }
    if !same_origin(&p, &headers) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "Sign in from the login link's own page. Nothing was changed and the link was not used.",
        );
    }
    complete_login(&p, f.token.as_deref()).await
}

/// Spends the link and answers 303 with the session cookie, or a page saying why not.
async fn complete_login(p: &Platform, token: Option<&str>) -> Response {
    match sign_in(&*p.store, &*p.clock, token).await {
        Ok(signed) => {
            let name = cookie_name(p);
            let secure = if p.public_base_url.is_https() {
                "; Secure"
            } else {
                ""
            };
            let max_age = (signed.session.expires_at - p.clock.now())
                .num_seconds()
                .max(0);
            let cookie = format!(
                "{name}={}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}",
                signed.cookie.expose()
            );
            let mut res = Redirect::to("/dashboard").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res.headers_mut().insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            res
        }
        Err(LoginError::Unknown) => message_page(
            StatusCode::NOT_FOUND,
            "Login link not valid",
            "This login link is not valid. Ask for a new one: your partner's app can create one, or an operator with `pipes apps login-link --app <slug>`.",
        ),
        Err(LoginError::Used) => message_page(
            StatusCode::GONE,
            "Login link already used",
            "Login links work once. Ask for a new one: your partner's app can create one, or an operator with `pipes apps login-link --app <slug>`.",
        ),
        Err(LoginError::Expired) => message_page(
            StatusCode::GONE,
            "Login link expired",
            "Login links work for 15 minutes. Ask for a new one: your partner's app can create one, or an operator with `pipes apps login-link --app <slug>`.",
        ),
        Err(LoginError::Store(e)) => {
            tracing::error!(error = %e, "dashboard login: store failure");
            unavailable()
        }
    }
}

async fn signin_help() -> Response {
    message_page(
        StatusCode::UNAUTHORIZED,
        "Sign in to your dashboard",
        "You are not signed in, or your session ended. Open a fresh login link: your partner's app creates one with POST /v1/dashboard/login-links, and an operator with `pipes apps login-link --app <slug>`. Links work once, for 15 minutes.",
    )
}

fn header_html(app: &App, csrf: &str) -> String {
    format!(
        "<header><div><strong>{}</strong> <span class=\"muted\">({})</span></div>\
         <nav aria-label=\"Dashboard\"><a href=\"/dashboard\">Numbers</a><a href=\"/dashboard/signups\">Signups</a><a href=\"/dashboard/keys\">Keys</a><a href=\"/dashboard/webhooks\">Webhooks</a></nav>\
         <form class=\"inline\" method=\"post\" action=\"/dashboard/logout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button class=\"secondary\" type=\"submit\">Sign out</button></form></header>",
        escape(app.name.as_str()),
        escape(app.slug.as_str()),
        escape(csrf)
    )
}

/// What a status's reason says in words (the API's message, when there is one).
fn reason_words(n: &Value) -> String {
    n["health"]["message"]
        .as_str()
        .or_else(|| n["health"]["reason"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn when(v: &Value) -> String {
    v.as_str().map_or_else(
        || "—".to_owned(),
        |s| s.replace('T', " ").chars().take(19).collect(),
    )
}

fn needs_attention(numbers: &[Value]) -> usize {
    numbers
        .iter()
        .filter(|n| matches!(n["health"]["status"].as_str(), Some("degraded" | "down")))
        .count()
}

async fn app_page(
    State(p): State<Platform>,
    owner: Owner,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let page_of = match list_numbers(
        &*p.store,
        &owner.app,
        ListRequest {
            limit: Some("100".into()),
            ..ListRequest::default()
        },
    )
    .await
    {
        Ok(page_of) => page_of,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: numbers");
            return unavailable();
        }
    };
    // Removed numbers are gone from the owner's list (the API still shows them).
    let numbers: Vec<Value> = page_of
        .numbers
        .iter()
        .filter(|n| n.is_live())
        .map(number_view)
        .collect();
    let nonce = random::base62(22);
    let csrf = escape(&owner.session.csrf);
    let mut body = header_html(&owner.app, &owner.session.csrf);
    body.push_str("<main>");
    if q.contains_key("added") {
        body.push_str("<p class=\"banner\" id=\"added\" role=\"status\">Signup finished: your number appears below within a few seconds, once its setup completes.</p>");
    }
    let attention = needs_attention(&numbers);
    let _ = write!(
        body,
        "<div class=\"banner\" id=\"warning\" role=\"alert\"{}><strong>A number needs attention.</strong> \
         Open it below to see why and what to do; a number whose token broke is fixed with <em>Reconnect</em> \
         (or remove it and run Add Number again).</div>",
        if attention == 0 { " hidden" } else { "" }
    );
    let _ = write!(
        body,
        "<section><h1>{}</h1><p class=\"muted\">Slug <code>{}</code></p>\
         <form method=\"post\" action=\"/dashboard/numbers/new\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button id=\"add-number\" type=\"submit\">Add Number</button></form></section>",
        escape(owner.app.name.as_str()),
        escape(owner.app.slug.as_str())
    );
    body.push_str(
        "<section><h2>Numbers</h2><table class=\"numbers\"><thead><tr><th scope=\"col\">Number</th>\
         <th scope=\"col\">Verified name</th><th scope=\"col\">Status</th><th scope=\"col\">Last checked</th>\
         <th scope=\"col\">Connected</th></tr></thead><tbody id=\"numbers\">",
    );
    for n in &numbers {
        body.push_str(&number_row(n));
    }
    body.push_str("</tbody></table>");
    let _ = write!(
        body,
        "<p class=\"muted\" id=\"empty\"{}>No number yet: click <strong>Add Number</strong> to connect one.</p></section></main>",
        if numbers.is_empty() { "" } else { " hidden" }
    );
    let config = json!({"numbers": numbers});
    page(
        StatusCode::OK,
        owner.app.name.as_str(),
        &nonce,
        &body,
        Some(&config),
    )
}

/// One row of the numbers table (the live refresh builds the same row in the page).
fn number_row(n: &Value) -> String {
    let id = n["phoneNumberId"].as_str().unwrap_or_default();
    let status = n["health"]["status"].as_str().unwrap_or("pending");
    format!(
        "<tr data-id=\"{id}\"><td><a href=\"/dashboard/numbers/{id}\">{}</a></td><td>{}</td>\
         <td><span class=\"badge {status}\">{status}</span> <span class=\"reason\">{}</span></td><td>{}</td><td>{}</td></tr>",
        escape(n["displayPhoneNumber"].as_str().unwrap_or(id)),
        escape(n["verifiedName"].as_str().unwrap_or("—")),
        escape(&reason_words(n)),
        escape(&when(&n["health"]["lastCheckedAt"])),
        escape(&when(&n["connectedAt"])),
        id = escape(id),
        status = escape(status),
    )
}

async fn numbers_json(State(p): State<Platform>, owner: Owner) -> Response {
    match list_numbers(
        &*p.store,
        &owner.app,
        ListRequest {
            limit: Some("100".into()),
            ..ListRequest::default()
        },
    )
    .await
    {
        Ok(page_of) => {
            // Removed numbers are gone from the owner's list (the API still shows them).
            let numbers: Vec<Value> = page_of
                .numbers
                .iter()
                .filter(|n| n.is_live())
                .map(number_view)
                .collect();
            let mut res = Json(json!({"numbers": numbers, "attention": needs_attention(&numbers)}))
                .into_response();
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn new_number(State(p): State<Platform>, Change(owner): Change) -> Response {
    match add_number(&*p.store, &*p.clock, &p.public_base_url, &owner.app).await {
        // The hosted page, with the same Embedded Signup code partners' customers run.
        Ok(issued) => Redirect::to(&issued.signup_url).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: add number");
            unavailable()
        }
    }
}

const STATUS_COLOURS: [(&str, &str); 5] = [
    ("healthy", "#2e7d32"),
    ("degraded", "#e0a800"),
    ("down", "#c62828"),
    ("pending", "#9aa0a6"),
    ("removed", "#3c4043"),
];

/// The health history as a timeline: one band from connection to now, coloured by the
/// status each period had, with the transitions listed below it.
fn timeline_svg(number: &Number, events: &[HealthEvent], now: DateTime<Utc>) -> String {
    let start = number
        .connected_at
        .min(events.iter().map(|e| e.at).min().unwrap_or(now));
    let span = (now - start).num_milliseconds().max(1) as f64;
    let x =
        |t: DateTime<Utc>| ((t - start).num_milliseconds() as f64 / span * 600.0).clamp(0.0, 600.0);
    let mut chronological: Vec<&HealthEvent> = events.iter().collect();
    chronological.sort_by_key(|e| e.at);
    let mut periods: Vec<(DateTime<Utc>, HealthStatus)> = vec![(
        start,
        chronological
            .first()
            .map_or(number.health.status, |e| e.from),
    )];
    periods.extend(chronological.iter().map(|e| (e.at, e.to)));
    let mut svg = String::from(
        "<svg id=\"timeline\" role=\"img\" aria-label=\"Health over time\" viewBox=\"0 0 600 40\" width=\"100%\" height=\"40\" preserveAspectRatio=\"none\">",
    );
    for (i, (at, status)) in periods.iter().enumerate() {
        let end = periods.get(i + 1).map_or(now, |(t, _)| *t);
        let colour = STATUS_COLOURS
            .iter()
            .find(|(s, _)| *s == status.as_str())
            .map_or("#9aa0a6", |(_, c)| *c);
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"4\" width=\"{:.1}\" height=\"32\" fill=\"{colour}\"><title>{}</title></rect>",
            x(*at),
            (x(end) - x(*at)).max(1.0),
            status.as_str()
        );
    }
    svg.push_str("</svg>");
    svg
}

async fn number_page(State(p): State<Platform>, owner: Owner, PageId(id): PageId) -> Response {
    let number = match get_number(&*p.store, &owner.app, &id).await {
        Ok(n) => n,
        Err(pipes_core::usecases::numbers::NumbersError::NotFound) => {
            return message_page(
                StatusCode::NOT_FOUND,
                "Number not found",
                "This App has no such number.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard: number");
            return unavailable();
        }
    };
    let events = number_history(&*p.store, &owner.app, &id)
        .await
        .unwrap_or_default();
    let v = number_view(&number);
    let nonce = random::base62(22);
    let csrf = escape(&owner.session.csrf);
    let idq = escape(number.phone_number_id.as_str());
    let status = number.health.status.as_str();
    let mut body = header_html(&owner.app, &owner.session.csrf);
    let _ = write!(
        body,
        "<main><section><h1>{}</h1><p><span class=\"badge {status}\" id=\"status\">{status}</span> \
         <span id=\"reason\">{}</span></p>",
        escape(
            v["displayPhoneNumber"]
                .as_str()
                .unwrap_or(number.phone_number_id.as_str())
        ),
        escape(&reason_words(&v)),
    );
    if number.is_live() {
        let _ = write!(
            body,
            "<form class=\"inline\" method=\"post\" action=\"/dashboard/numbers/{idq}/check\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button id=\"check-now\" type=\"submit\">Check now</button></form> "
        );
        if matches!(
            number.health.status,
            HealthStatus::Degraded | HealthStatus::Down
        ) {
            let _ = write!(
                body,
                "<form class=\"inline\" method=\"post\" action=\"/dashboard/numbers/{idq}/reconnect\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button id=\"reconnect\" type=\"submit\">Reconnect</button></form> "
            );
        }
        let _ = write!(
            body,
            "<form class=\"inline\" method=\"post\" action=\"/dashboard/numbers/{idq}/remove\" data-confirm=\"Remove this number? Its token is destroyed at once.\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button id=\"remove\" class=\"danger\" type=\"submit\">Remove</button></form>"
        );
    }
    body.push_str("</section><section><h2>Health history</h2>");
    body.push_str(&timeline_svg(&number, &events, p.clock.now()));
    body.push_str("<ol id=\"history\">");
    for e in &events {
        let _ = write!(
            body,
            "<li><time>{}</time>: {} → {}{}</li>",
            escape(&rfc3339(e.at)),
            e.from.as_str(),
            e.to.as_str(),
            e.message
                .as_deref()
                .map(|m| format!(" — {}", escape(m)))
                .unwrap_or_default()
        );
    }
    body.push_str("</ol></section><section><h2>Details</h2><table><tbody>");
    let rows = [
        (
            "Phone number id",
            v["phoneNumberId"].as_str().unwrap_or("").to_owned(),
        ),
        (
            "WhatsApp Business Account",
            v["wabaId"].as_str().unwrap_or("").to_owned(),
        ),
        (
            "Business",
            v["businessId"].as_str().unwrap_or("—").to_owned(),
        ),
        (
            "Verified name",
            v["verifiedName"].as_str().unwrap_or("—").to_owned(),
        ),
        (
            "Quality",
            v["qualityRating"].as_str().unwrap_or("—").to_owned(),
        ),
        (
            "Webhooks subscribed",
            v["setup"]["webhookSubscribed"].to_string(),
        ),
        ("Registered", v["setup"]["registered"].to_string()),
        ("Setup completed", when(&v["setup"]["completedAt"])),
        (
            "Last setup error",
            v["setup"]["lastError"].as_str().unwrap_or("—").to_owned(),
        ),
        (
            "Token expires",
            v["token"]["expiresAt"]
                .as_str()
                .unwrap_or("never")
                .to_owned(),
        ),
        ("Last checked", when(&v["health"]["lastCheckedAt"])),
        ("Connected", when(&v["connectedAt"])),
        ("Metadata", v["metadata"].to_string()),
    ];
    for (k, val) in rows {
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
            escape(k),
            escape(&val)
        );
    }
    body.push_str("</tbody></table></section></main>");
    page(StatusCode::OK, "Number", &nonce, &body, Some(&json!({})))
}

async fn check(State(p): State<Platform>, PageId(id): PageId, Change(owner): Change) -> Response {
    if let Err(l) = crate::limits::per_app_checks(&p, &owner.app.id).await {
        return ApiError::rate_limited(l).into_response();
    }
    match check_now(p.check(), &owner.app, &id).await {
        Ok(_) => Redirect::to(&format!("/dashboard/numbers/{}", urlencode(&id))).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn reconnect_number(
    State(p): State<Platform>,
    PageId(id): PageId,
    Change(owner): Change,
) -> Response {
    match reconnect(
        &*p.store,
        &*p.store,
        &*p.clock,
        &p.public_base_url,
        &owner.app,
        &id,
    )
    .await
    {
        // The hosted page's Embedded Signup, bound to this number.
        Ok(issued) => Redirect::to(&issued.signup_url).into_response(),
        Err(ReconnectError::NotFound) => message_page(
            StatusCode::NOT_FOUND,
            "Number not found",
            "This App has no such number.",
        ),
        Err(ReconnectError::Removed) => message_page(
            StatusCode::CONFLICT,
            "Number removed",
            "This number was removed; use Add Number to connect it again.",
        ),
        Err(ReconnectError::Store(e)) => {
            tracing::error!(error = %e, "dashboard: reconnect");
            unavailable()
        }
    }
}

async fn remove(State(p): State<Platform>, PageId(id): PageId, Change(owner): Change) -> Response {
    match remove_number(
        &*p.store,
        &*p.queue,
        p.emitter(),
        &*p.clock,
        &owner.app,
        &id,
    )
    .await
    {
        Ok(()) => Redirect::to("/dashboard").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn keys_page(State(p): State<Platform>, owner: Owner) -> Response {
    keys_html(&p, &owner, None).await
}

async fn keys_html(p: &Platform, owner: &Owner, new_key: Option<&str>) -> Response {
    let keys = match p.store.list_keys(&owner.app.id).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: keys");
            return unavailable();
        }
    };
    let nonce = random::base62(22);
    let csrf = escape(&owner.session.csrf);
    let mut body = header_html(&owner.app, &owner.session.csrf);
    body.push_str("<main>");
    if let Some(key) = new_key {
        let _ = write!(
            body,
            "<section class=\"banner\" id=\"new-key\"><h2>Your new app key</h2><p>Store it now: it is shown once.</p>\
             <p><code id=\"key-value\">{}</code> <button type=\"button\" class=\"secondary\" id=\"copy-key\">Copy</button></p></section>",
            escape(key)
        );
    }
    let _ = write!(
        body,
        "<section><h1>App keys</h1><form method=\"post\" action=\"/dashboard/keys\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button id=\"create-key\" type=\"submit\">Create key</button></form>\
         <table><thead><tr><th scope=\"col\">Key</th><th scope=\"col\">Created</th><th scope=\"col\">Revoked</th><th scope=\"col\">Action</th></tr></thead><tbody id=\"keys\">"
    );
    for k in &keys {
        let id = escape(k.key_id.as_str());
        let _ = write!(
            body,
            "<tr><td><code>{id}</code></td><td>{}</td><td>{}</td><td>",
            escape(&rfc3339(k.created_at)),
            k.revoked_at
                .map_or_else(|| "—".to_owned(), |t| escape(&rfc3339(t)))
        );
        if k.revoked_at.is_none() {
            let _ = write!(
                body,
                "<form class=\"inline\" method=\"post\" action=\"/dashboard/keys/{id}/revoke\" data-confirm=\"Revoke this key? Requests with it fail at once.\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button class=\"danger\" type=\"submit\" aria-label=\"Revoke {id}\">Revoke</button></form>"
            );
        }
        body.push_str("</td></tr>");
    }
    body.push_str("</tbody></table></section></main>");
    page(StatusCode::OK, "Keys", &nonce, &body, Some(&json!({})))
}

async fn create_key(State(p): State<Platform>, Change(owner): Change) -> Response {
    match admin::create_key(&*p.store, p.clock.now(), &owner.app).await {
        Ok(created) => keys_html(&p, &owner, Some(created.key.expose())).await,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: create key");
            unavailable()
        }
    }
}

async fn revoke_key(
    State(p): State<Platform>,
    PageId(id): PageId,
    Change(owner): Change,
) -> Response {
    match admin::revoke_key(&*p.store, p.clock.now(), &owner.app, &id).await {
        Ok(_) => Redirect::to("/dashboard/keys").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard: revoke key");
            message_page(
                StatusCode::NOT_FOUND,
                "Key not found",
                "This App has no such key.",
            )
        }
    }
}

async fn logout(State(p): State<Platform>, headers: HeaderMap, Change(_owner): Change) -> Response {
    let cookie = cookie_value(&headers, cookie_name(&p));
    if let Err(e) = sign_out(&*p.store, cookie).await {
        tracing::error!(error = %e, "dashboard: logout");
        return unavailable();
    }
    let secure = if p.public_base_url.is_https() {
        "; Secure"
    } else {
        ""
    };
    let mut res = Redirect::to("/dashboard/signin").into_response();
    let expired = format!(
        "{}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{secure}",
        cookie_name(&p)
    );
    if let Ok(v) = HeaderValue::from_str(&expired) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// The last 30 days of signups: the funnel as a bar chart, cancels by step, and the
/// sessions with their status and metadata.
async fn signups_page(State(p): State<Platform>, owner: Owner) -> Response {
    let (funnel, sessions) = match signups(&*p.store, &*p.clock, &owner.app, 30).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: signups");
            return unavailable();
        }
    };
    let nonce = random::base62(22);
    let mut body = header_html(&owner.app, &owner.session.csrf);
    body.push_str("<main><section><h1>Signups, last 30 days</h1>");
    let bars = [
        ("Started", funnel.started, "#0b57d0"),
        ("Cancelled", funnel.cancelled, "#e0a800"),
        ("Errors", funnel.errored, "#c62828"),
        ("Completed", funnel.completed, "#2e7d32"),
    ];
    let max = funnel.started.max(1) as f64;
    let _ = write!(
        body,
        "<svg id=\"funnel\" role=\"img\" aria-label=\"Signup funnel: {} started, {} cancelled, {} with errors, {} completed\" viewBox=\"0 0 600 {}\" width=\"100%\">",
        funnel.started,
        funnel.cancelled,
        funnel.errored,
        funnel.completed,
        bars.len() * 34
    );
    for (i, (label, count, colour)) in bars.iter().enumerate() {
        let y = i * 34;
        let w = (*count as f64 / max * 440.0).max(2.0);
        let _ = write!(
            body,
            "<text x=\"0\" y=\"{}\" font-size=\"14\">{label}</text>\
             <rect x=\"100\" y=\"{}\" width=\"{w:.1}\" height=\"24\" fill=\"{colour}\"></rect>\
             <text x=\"{:.1}\" y=\"{}\" font-size=\"14\">{count}</text>",
            y + 17,
            y + 2,
            100.0 + w + 6.0,
            y + 17
        );
    }
    body.push_str("</svg>");
    let _ = write!(
        body,
        "<p class=\"muted\">{} still open or failed, {} expired.</p>",
        funnel.open, funnel.expired
    );
    if funnel.interrupted > 0 {
        let _ = write!(
            body,
            "<p class=\"banner\" id=\"interrupted\">{} finished Meta's flow but never came back \
             (window closed): their owners open the same link once more to finish.</p>",
            funnel.interrupted
        );
    }
    if !funnel.cancels_by_step.is_empty() {
        body.push_str("<h2>Cancelled at</h2><ul id=\"cancels\">");
        for (step, count) in &funnel.cancels_by_step {
            let _ = write!(body, "<li><code>{}</code>: {count}</li>", escape(step));
        }
        body.push_str("</ul>");
    }
    body.push_str(
        "</section><section><h2>Recent sessions</h2><table><thead><tr><th scope=\"col\">Created</th>\
         <th scope=\"col\">Status</th><th scope=\"col\">Number</th><th scope=\"col\">Events</th>\
         <th scope=\"col\">Metadata</th></tr></thead><tbody id=\"sessions\">",
    );
    let now = p.clock.now();
    for s in sessions.iter().take(100) {
        let events: Vec<String> = s
            .abandons
            .iter()
            .map(|a| {
                let what = a
                    .step
                    .as_deref()
                    .or(a.error_message.as_deref())
                    .unwrap_or("");
                format!("{:?} {}", a.event, what)
            })
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&rfc3339(s.created_at)),
            escape(s.status_at(now).as_str()),
            escape(s.phone_number_id.as_deref().unwrap_or("—")),
            escape(&events.join("; ")),
            escape(&Value::from(s.metadata.clone()).to_string())
        );
    }
    body.push_str("</tbody></table></section></main>");
    page(StatusCode::OK, "Signups", &nonce, &body, None)
}
