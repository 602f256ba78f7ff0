//! IssueToken: a partner mints a one-time signup link for one of its customers.

use chrono::{DateTime, Utc};
use serde_json::Value;
use url::Url;

use crate::app::App;
use crate::clock::Clock;
use crate::ids::{SessionId, SignupToken};
use crate::ports::{SessionStore, StoreError};
use crate::session::{
    ExpiresIn, Metadata, RedirectUrl, SessionError, SessionStatus, SignupSession,
};

/// Where the hosted pages are served from, e.g. `https://connect.pipes.bot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBaseUrl(Url);

impl PublicBaseUrl {
    /// An absolute http(s) URL without query or fragment; a trailing `/` is dropped.
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = Url::parse(s.trim_end_matches('/'))
            .map_err(|e| format!("PUBLIC_BASE_URL is not an absolute URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
            return Err("PUBLIC_BASE_URL must be an http(s) URL without a query".into());
        }
        Ok(Self(url))
    }

    /// `{base}{path}`: the base's own path (a prefix) followed by `path`.
    pub fn join(&self, path: &str) -> Url {
        let mut url = self.0.clone();
        url.path_segments_mut()
            .map(|mut p| {
                p.pop_if_empty()
                    .extend(path.split('/').filter(|s| !s.is_empty()));
            })
            .ok();
        url
    }

    /// Whether the base is https (cookies then carry `Secure` and the `__Host-` prefix).
    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    /// The base's origin (`scheme://host[:port]`), for same-origin checks.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }

    /// `{base}/apps/{slug}?token={token}`.
    pub fn signup_url(&self, app: &App, token: &SignupToken) -> String {
        let mut url = self.0.clone();
        url.path_segments_mut()
            .map(|mut p| {
                p.pop_if_empty().extend(["apps", app.slug.as_str()]);
            })
            .ok();
        url.query_pairs_mut().append_pair("token", token.expose());
        url.into()
    }
}

/// The partner's request, as received (already JSON-typed, not yet validated).
#[derive(Debug, Clone, Default)]
pub struct IssueTokenRequest {
    pub redirect_url: String,
    pub metadata: Option<Value>,
    pub expires_in: Option<i64>,
}

#[derive(Debug)]
pub struct IssuedToken {
    pub token: SignupToken,
    pub session_id: SessionId,
    pub signup_url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueTokenError {
    #[error(transparent)]
    Invalid(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validates the partner's request, stores a pending session under the App and returns
/// the token (its only plaintext copy) with the hosted-page URL.
#[tracing::instrument(skip_all, fields(app_id = %app.id, session_id = tracing::field::Empty))]
pub async fn issue_token(
    sessions: &dyn SessionStore,
    clock: &dyn Clock,
    base: &PublicBaseUrl,
    app: &App,
    req: IssueTokenRequest,
) -> Result<IssuedToken, IssueTokenError> {
    let redirect_url = RedirectUrl::parse(&req.redirect_url, &app.allowed_origins)?;
    // Plain http (localhost only) is for development: under `pipes dev` (which serves on
    // http itself) or for an App marked for development.
    if redirect_url.as_str().starts_with("http:") && base.is_https() && !app.development {
        return Err(SessionError::Invalid {
            field: "redirectUrl",
            message: "must be an https URL (plain http to localhost only for Apps marked for \
                      development: pipes apps update --development true)"
                .into(),
        }
        .into());
    }
    let metadata = req
        .metadata
        .map(Metadata::parse)
        .transpose()?
        .unwrap_or_default();
    let expires_in = ExpiresIn::parse(req.expires_in)?;
    Ok(open_session(
        sessions,
        clock,
        base,
        app,
        redirect_url,
        metadata,
        expires_in,
    )
    .await?)
}

/// Stores a pending signup session whose request is already valid (the partner's,
/// validated above, or the dashboard's own Add Number) and returns its token and URL.
pub async fn open_session(
    sessions: &dyn SessionStore,
    clock: &dyn Clock,
    base: &PublicBaseUrl,
    app: &App,
    redirect_url: RedirectUrl,
    metadata: Metadata,
    expires_in: ExpiresIn,
) -> Result<IssuedToken, StoreError> {
    let now = clock.now();
    let token = SignupToken::generate();
    let session = SignupSession {
        id: SessionId::generate(),
        app_id: app.id.clone(),
        token_hash: token.hash(),
        status: SessionStatus::Pending,
        redirect_url,
        metadata,
        created_at: now,
        expires_at: now + expires_in.duration(),
        completed_at: None,
        phone_number_id: None,
        error: None,
        abandons: Vec::new(),
    };
    tracing::Span::current().record("session_id", tracing::field::display(&session.id));
    sessions.insert_session(&session).await?;
    tracing::info!(app_id = %app.id, session_id = %session.id, "signup token issued");
    Ok(IssuedToken {
        signup_url: base.signup_url(app, &token),
        token,
        session_id: session.id,
        expires_at: session.expires_at,
    })
}
