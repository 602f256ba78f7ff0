//! The dashboard's Webhooks page: the App's endpoint (set, rotate the secret, send a
//! test, remove) and its recent events with their deliveries (redeliver one). The same
//! use cases as `/v1/webhook-endpoint` and `/v1/events`; a new secret is shown once.

use std::fmt::Write;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use pipes_core::Platform;
use pipes_core::usecases::events::{
    EndpointError, put_endpoint, redeliver, rotate_secret, send_ping,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{ChangeForm, Owner, PageId, header_html, message_page, page, unavailable};
use crate::html::escape;
use crate::partner::rfc3339;

pub(super) fn routes() -> Router<Platform> {
    Router::new()
        .route("/dashboard/webhooks", get(webhooks_page).post(set_endpoint))
        .route("/dashboard/webhooks/rotate", post(rotate))
        .route("/dashboard/webhooks/test", post(test))
        .route("/dashboard/webhooks/remove", post(remove))
        .route("/dashboard/events/{id}/redeliver", post(again))
}

async fn webhooks_page(State(p): State<Platform>, owner: Owner) -> Response {
    webhooks_html(&p, &owner, None, None).await
}

async fn webhooks_html(
    p: &Platform,
    owner: &Owner,
    secret: Option<&SecretString>,
    problem: Option<&str>,
) -> Response {
    let endpoint = match p.store.endpoint(&owner.app.id).await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: endpoint");
            return unavailable();
        }
    };
    let events = match p
        .store
        .list_events(&owner.app.id, None, 25, None, p.clock.now())
        .await
    {
        Ok(page) => page.events,
        Err(e) => {
            tracing::error!(error = %e, "dashboard: events");
            return unavailable();
        }
    };
    let nonce = pipes_core::random::base62(22);
    let csrf = escape(&owner.session.csrf);
    let mut body = header_html(&owner.app, &owner.session.csrf);
    body.push_str("<main>");
    if let Some(s) = secret {
        let _ = write!(
            body,
            "<section class=\"banner\" id=\"new-secret\"><h2>Your signing secret</h2>\
             <p>Store it now: it is shown once. Verify each event's <code>Pipes-Signature</code> with it.</p>\
             <p><code id=\"secret-value\">{}</code></p></section>",
            escape(s.expose_secret())
        );
    }
    if let Some(m) = problem {
        let _ = write!(
            body,
            "<p class=\"banner\" id=\"problem\" role=\"alert\">{}</p>",
            escape(m)
        );
    }
    body.push_str("<section><h1>Webhooks</h1>");
    let url = endpoint.as_ref().map(|e| e.url.as_str()).unwrap_or("");
    match &endpoint {
        Some(e) => {
            let _ = write!(
                body,
                "<p>Events are sent to <code id=\"endpoint-url\">{}</code> (since {}).</p>",
                escape(e.url.as_str()),
                escape(&rfc3339(e.created_at))
            );
            if let Some(t) = e.failing_since {
                let _ = write!(
                    body,
                    "<p class=\"banner\" id=\"failing\">An event failed every retry (since {}): check the endpoint, then redeliver.</p>",
                    escape(&rfc3339(t))
                );
            }
        }
        None => body.push_str(
            "<p id=\"no-endpoint\">No endpoint yet: events are kept here for 30 days; add one, then redeliver what you need.</p>",
        ),
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/dashboard/webhooks\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"url\">Endpoint URL</label> <input id=\"url\" name=\"url\" type=\"url\" required value=\"{}\" placeholder=\"https://your-app.example/pipes-webhooks\"> \
         <button id=\"save-endpoint\" type=\"submit\">Save</button></form>",
        escape(url)
    );
    if endpoint.is_some() {
        for (action, label, id, confirm) in [
            (
                "rotate",
                "Rotate secret",
                "rotate-secret",
                Some("Rotate the secret? The old one keeps signing for 24 hours."),
            ),
            ("test", "Send test event", "send-test", None),
            (
                "remove",
                "Remove endpoint",
                "remove-endpoint",
                Some("Remove the endpoint? Events are no longer sent."),
            ),
        ] {
            let confirm = confirm.map_or(String::new(), |c| {
                format!(" data-confirm=\"{}\"", escape(c))
            });
            let class = if action == "remove" {
                "danger"
            } else {
                "secondary"
            };
            let _ = write!(
                body,
                "<form class=\"inline\" method=\"post\" action=\"/dashboard/webhooks/{action}\"{confirm}>\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button class=\"{class}\" id=\"{id}\" type=\"submit\">{label}</button></form> "
            );
        }
    }
    body.push_str("</section><section><h2>Recent events</h2>");
    if events.is_empty() {
        body.push_str("<p id=\"no-events\">No events yet.</p>");
    } else {
        body.push_str(
            "<table><thead><tr><th scope=\"col\">Event</th><th scope=\"col\">Type</th><th scope=\"col\">Created</th>\
             <th scope=\"col\">Delivery</th><th scope=\"col\">Attempts</th><th scope=\"col\">Action</th></tr></thead><tbody id=\"events\">",
        );
        for e in &events {
            let id = escape(&e.id);
            let last = e.attempts.last().map_or_else(String::new, |a| {
                a.status.map_or_else(
                    || a.detail.clone().unwrap_or_default(),
                    |s| format!("HTTP {s}"),
                )
            });
            let _ = write!(
                body,
                "<tr><td><code>{id}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>",
                escape(e.kind.as_str()),
                escape(&rfc3339(e.created_at)),
                escape(e.delivery.as_str()),
                e.attempts.len(),
                escape(&last)
            );
            if endpoint.is_some() {
                let _ = write!(
                    body,
                    "<form class=\"inline\" method=\"post\" action=\"/dashboard/events/{id}/redeliver\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button class=\"secondary\" type=\"submit\" aria-label=\"Redeliver {id}\">Redeliver</button></form>"
                );
            }
            body.push_str("</td></tr>");
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section></main>");
    page(StatusCode::OK, "Webhooks", &nonce, &body, Some(&json!({})))
}

/// The page after a refused change: the reason in words, or an error page.
async fn failed(p: &Platform, owner: &Owner, e: EndpointError) -> Response {
    let problem = match e {
        EndpointError::InvalidUrl(m) => format!("The URL {m}."),
        EndpointError::NoEndpoint => "Add an endpoint first.".to_owned(),
        EndpointError::EventNotFound => {
            return message_page(
                StatusCode::NOT_FOUND,
                "Event not found",
                "This App has no such event.",
            );
        }
        other => {
            tracing::error!(error = %other, "dashboard: webhooks");
            return unavailable();
        }
    };
    webhooks_html(p, owner, None, Some(&problem)).await
}

async fn set_endpoint(State(p): State<Platform>, ChangeForm(owner, f): ChangeForm) -> Response {
    let url = f.get("url").map(String::as_str).unwrap_or_default();
    match put_endpoint(p.endpoints(), &owner.app.id, url).await {
        Ok((_, secret)) => webhooks_html(&p, &owner, secret.as_ref(), None).await,
        Err(e) => failed(&p, &owner, e).await,
    }
}

async fn rotate(State(p): State<Platform>, ChangeForm(owner, _): ChangeForm) -> Response {
    match rotate_secret(p.endpoints(), &owner.app.id).await {
        Ok((_, secret)) => webhooks_html(&p, &owner, Some(&secret), None).await,
        Err(e) => failed(&p, &owner, e).await,
    }
}

async fn test(State(p): State<Platform>, ChangeForm(owner, _): ChangeForm) -> Response {
    match send_ping(p.endpoints(), &owner.app.id).await {
        Ok(_) => Redirect::to("/dashboard/webhooks").into_response(),
        Err(e) => failed(&p, &owner, e).await,
    }
}

async fn remove(State(p): State<Platform>, ChangeForm(owner, _): ChangeForm) -> Response {
    match p.store.delete_endpoint(&owner.app.id).await {
        Ok(_) => Redirect::to("/dashboard/webhooks").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: remove endpoint");
            unavailable()
        }
    }
}

async fn again(
    State(p): State<Platform>,
    PageId(id): PageId,
    ChangeForm(owner, _): ChangeForm,
) -> Response {
    match redeliver(p.endpoints(), &owner.app.id, &id).await {
        Ok(_) => Redirect::to("/dashboard/webhooks").into_response(),
        Err(e) => failed(&p, &owner, e).await,
    }
}
