//! The App owner's dashboard: signing in with a single-use login link (the way a
//! payments platform hands its connected accounts a dashboard), the session that
//! follows, and the actions only a signed-in owner can take there. Everything the pages
//! show comes from the same use cases as the API.

use chrono::{DateTime, Duration, Utc};
use tracing::info;
use url::Url;

use crate::app::App;
use crate::clock::Clock;
use crate::ids::{DashboardCookie, KeyId, LoginToken};
use crate::ports::{AppStore, DashboardSession, DashboardStore, LinkUse, LoginLink, StoreError};
use crate::random;
use crate::session::{ExpiresIn, Metadata, RedirectUrl};
use crate::usecases::PublicBaseUrl;
use crate::usecases::issue_token::{IssuedToken, open_session};

/// How long a login link can be used (once).
pub const LOGIN_LINK_TTL: Duration = Duration::minutes(15);
/// How long a dashboard session lasts.
pub const SESSION_TTL: Duration = Duration::hours(12);

/// A freshly minted login link: the only time its URL exists in plaintext.
#[derive(Debug)]
pub struct MintedLink {
    pub url: Url,
    pub expires_at: DateTime<Utc>,
}

/// Mints a single-use login link to `app`'s dashboard.
pub async fn mint_login_link(
    store: &dyn DashboardStore,
    clock: &dyn Clock,
    base: &PublicBaseUrl,
    app: &App,
    minted_by: Option<&KeyId>,
) -> Result<MintedLink, StoreError> {
    let token = LoginToken::generate();
    let now = clock.now();
    let link = LoginLink {
        token_hash: token.hash(),
        app_id: app.id.clone(),
        minted_by: minted_by.cloned(),
        created_at: now,
        expires_at: now + LOGIN_LINK_TTL,
    };
    store.insert_login_link(&link).await?;
    info!(app_id = %app.id, "dashboard login link minted");
    let mut url = base.join("/dashboard/login");
    url.query_pairs_mut().append_pair("token", token.expose());
    Ok(MintedLink {
        url,
        expires_at: link.expires_at,
    })
}

/// Why a login link did not sign in.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("this login link is not valid")]
    Unknown,
    #[error("this login link was already used")]
    Used,
    #[error("this login link has expired")]
    Expired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new dashboard session: its cookie value (the only plaintext copy) and record.
#[derive(Debug)]
pub struct SignedIn {
    pub cookie: DashboardCookie,
    pub session: DashboardSession,
}

/// Spends a login link and opens a session for its App.
pub async fn sign_in(
    store: &dyn DashboardStore,
    clock: &dyn Clock,
    token: Option<&str>,
) -> Result<SignedIn, LoginError> {
    let token = token
        .and_then(LoginToken::parse)
        .ok_or(LoginError::Unknown)?;
    let now = clock.now();
    let link = match store.use_login_link(&token.hash(), now).await? {
        LinkUse::Signed(link) => link,
        LinkUse::NotFound => return Err(LoginError::Unknown),
        LinkUse::Used => return Err(LoginError::Used),
        LinkUse::Expired => return Err(LoginError::Expired),
    };
    let cookie = DashboardCookie::generate();
    let session = DashboardSession {
        cookie_hash: cookie.hash(),
        app_id: link.app_id,
        csrf: random::base62(32),
        minted_by: link.minted_by,
        created_at: now,
        expires_at: now + SESSION_TTL,
    };
    store.insert_dashboard_session(&session).await?;
    info!(app_id = %session.app_id, "dashboard session opened");
    Ok(SignedIn { cookie, session })
}

/// The App and session behind a presented cookie, while the session lasts.
pub async fn current_session(
    dash: &dyn DashboardStore,
    apps: &dyn AppStore,
    clock: &dyn Clock,
    cookie: Option<&str>,
) -> Result<Option<(App, DashboardSession)>, StoreError> {
    let Some(cookie) = cookie.and_then(DashboardCookie::parse) else {
        return Ok(None);
    };
    let Some(session) = dash.dashboard_session(&cookie.hash()).await? else {
        return Ok(None);
    };
    if session.expires_at <= clock.now() {
        return Ok(None);
    }
    // A session opened with an app key's link ends when that key is revoked: revoking a
    // leaked key must evict whoever used it, not leave them a dashboard to mint more.
    // Both reads at once: this runs on every dashboard request.
    let key_live = async {
        match &session.minted_by {
            Some(key) => Ok(apps
                .list_keys(&session.app_id)
                .await?
                .iter()
                .any(|k| &k.key_id == key && k.revoked_at.is_none())),
            None => Ok(true),
        }
    };
    let (key_live, app) = futures_util::try_join!(key_live, apps.app(&session.app_id))?;
    Ok(app.filter(|_| key_live).map(|app| (app, session)))
}

/// Ends a session (logout); unknown cookies are nothing to end.
pub async fn sign_out(store: &dyn DashboardStore, cookie: Option<&str>) -> Result<(), StoreError> {
    match cookie.and_then(DashboardCookie::parse) {
        Some(cookie) => store.end_dashboard_session(&cookie.hash()).await,
        None => Ok(()),
    }
}

/// Constant-time comparison of a presented CSRF token with the session's.
pub fn csrf_matches(session: &DashboardSession, presented: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(session.csrf.as_bytes())))
}

/// Add Number: a signup session minted for the owner themselves, whose redirect comes
/// back to the dashboard (trusted: it is ours, not a partner's, so the App's allowed
/// redirect origins do not apply). The owner runs the hosted page's Embedded Signup.
pub async fn add_number(
    sessions: &dyn crate::ports::SessionStore,
    clock: &dyn Clock,
    base: &PublicBaseUrl,
    app: &App,
) -> Result<IssuedToken, StoreError> {
    let mut back = base.join("/dashboard");
    back.query_pairs_mut().append_pair("added", "1");
    let redirect = RedirectUrl::parse(back.as_str(), &[])
        .map_err(|_| StoreError::Corrupt("the dashboard's own URL is not a redirect URL".into()))?;
    let metadata = Metadata::parse(serde_json::json!({"source": "dashboard"}))
        .map_err(|_| StoreError::Corrupt("metadata".into()))?;
    // One hour: long enough for Meta's flow, short for a link nobody shares.
    let expires_in =
        ExpiresIn::parse(Some(3600)).map_err(|_| StoreError::Corrupt("expiresIn".into()))?;
    open_session(sessions, clock, base, app, redirect, metadata, expires_in).await
}

/// Why a Reconnect cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReconnectError {
    #[error("number not found")]
    NotFound,
    #[error("the number was removed; use Add Number to connect it again")]
    Removed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reconnect: a signup session bound to one of the App's numbers (finishing it with
/// another number is refused); success updates the same record (new token, setup and
/// health again), and the owner comes back to the number's page.
pub async fn reconnect(
    sessions: &dyn crate::ports::SessionStore,
    numbers: &dyn crate::ports::NumberStore,
    clock: &dyn Clock,
    base: &PublicBaseUrl,
    app: &App,
    phone: &str,
) -> Result<IssuedToken, ReconnectError> {
    let phone = crate::PhoneNumberId::parse(phone).ok_or(ReconnectError::NotFound)?;
    let number = numbers
        .number(&app.id, &phone)
        .await?
        .ok_or(ReconnectError::NotFound)?;
    if !number.is_live() {
        return Err(ReconnectError::Removed);
    }
    let mut back = base.join(&format!("/dashboard/numbers/{phone}"));
    back.query_pairs_mut().append_pair("reconnected", "1");
    let redirect = RedirectUrl::parse(back.as_str(), &[])
        .map_err(|_| StoreError::Corrupt("the dashboard's own URL is not a redirect URL".into()))?;
    let metadata = Metadata::parse(serde_json::json!({
        "source": "dashboard",
        crate::session::RECONNECT_KEY: phone.as_str(),
    }))
    .map_err(|_| StoreError::Corrupt("metadata".into()))?;
    let expires_in =
        ExpiresIn::parse(Some(3600)).map_err(|_| StoreError::Corrupt("expiresIn".into()))?;
    Ok(open_session(sessions, clock, base, app, redirect, metadata, expires_in).await?)
}

/// How the App's recent signups went (the Signups page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Funnel {
    pub started: usize,
    /// Sessions where the owner cancelled at least once.
    pub cancelled: usize,
    /// Sessions where Meta or the owner reported an error at least once.
    pub errored: usize,
    pub completed: usize,
    /// Still usable (pending or completing) or failed.
    pub open: usize,
    pub expired: usize,
    /// Meta finished but our callback never arrived (open again to finish).
    pub interrupted: usize,
    /// Cancels by Meta's `current_step` (`unknown` when none was given).
    pub cancels_by_step: std::collections::BTreeMap<String, usize>,
}

/// The funnel of the App's sessions since `days` ago, and the sessions themselves.
pub async fn signups(
    sessions: &dyn crate::ports::SessionStore,
    clock: &dyn Clock,
    app: &App,
    days: i64,
) -> Result<(Funnel, Vec<crate::SignupSession>), StoreError> {
    use crate::session::{AbandonEvent, SessionStatus};
    let now = clock.now();
    let recent = sessions
        .recent_sessions(&app.id, now - Duration::days(days), 1000)
        .await?;
    let mut f = Funnel {
        started: recent.len(),
        ..Funnel::default()
    };
    for s in &recent {
        if s.abandons.iter().any(|a| a.event == AbandonEvent::Cancel) {
            f.cancelled += 1;
        }
        if s.abandons.iter().any(|a| a.event == AbandonEvent::Error) {
            f.errored += 1;
        }
        for a in s
            .abandons
            .iter()
            .filter(|a| a.event == AbandonEvent::Cancel)
        {
            let step = a.step.clone().unwrap_or_else(|| "unknown".into());
            *f.cancels_by_step.entry(step).or_default() += 1;
        }
        match s.status_at(now) {
            SessionStatus::Completed => f.completed += 1,
            SessionStatus::Expired => f.expired += 1,
            SessionStatus::Interrupted => {
                f.interrupted += 1;
                f.open += 1;
            }
            _ => f.open += 1,
        }
    }
    Ok((f, recent))
}
