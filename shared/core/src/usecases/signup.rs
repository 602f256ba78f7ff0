//! The number owner's side of signup: opening the hosted page, completing Embedded
//! Signup (CompleteSignup), and recording a cancel or error (RecordAbandon).
//!
//! CompleteSignup's critical path, kept short because Meta's code lives 30 seconds:
//! 1. claim the session (one conditional write; one winner);
//! 2. exchange the code ∥ read the number's platform owner ∥ read the App's record;
//! 3. `debug_token` ∥ `GET /{waba}/phone_numbers`;
//! 4. seal the token (a cached data key, or one key-service call);
//! 5. one transaction: session completed, number, ownership, history;
//! 6. enqueue the setup job (the slow steps run in the worker).
//!
//! Every way Meta's flow finishes is accepted (`FinishKind`). When the page could not
//! say which WABA or number (a finish without a number, or a code that arrived with no
//! session message), Meta is asked: the WABA from `debug_token`'s granular scopes, then
//! its numbers: exactly one is onboarded, none or several ask the owner to act and
//! leave the session `pending` (that path adds one or two sequential round trips).
//! Ownership by another App is decided only after the exchange and `debug_token` have
//! proved the caller controls the WABA, so a junk code learns nothing about which
//! numbers are connected. The whole completion runs within a deadline (the Lambda's
//! remaining time less a margin): when it passes, the claim is released at once.

use chrono::{DateTime, Duration, Utc};
use std::future::Future;
use std::pin::Pin;

use futures_util::future::{Either, join, select};
use tracing::{info, warn};
use url::Url;

use crate::app::{App, Slug};
use crate::clock::Clock;
use crate::crypto::{Envelope, SecretBinding, SecretPurpose};
use crate::events::{Event, EventType};
use crate::ids::{SessionId, SignupToken};
use crate::meta::{AuthCode, GraphError, GraphErrorKind, MetaGraph, TokenFacts, WabaNumber};
use crate::number::{
    BusinessId, Health, HealthEvent, HealthReason, HealthStatus, Number, PhoneNumberId, SetupState,
    TokenInfo, WabaId,
};
use crate::ports::{
    AppStore, Claim, CompletionError, NumberStore, Release, SessionStore, SignupCompletion,
    StoreError,
};
use crate::queue::{Job, JobQueue};
use crate::random;
use crate::session::{Abandon, AbandonEvent, SessionFailure, SessionStatus, SignupSession};

/// How long one completion may hold its claim before another may take over.
pub const CLAIM_LEASE: Duration = Duration::seconds(60);

/// Everything CompleteSignup talks to.
#[derive(Debug, Clone, Copy)]
pub struct SignupDeps<'a> {
    pub sessions: &'a dyn SessionStore,
    pub numbers: &'a dyn NumberStore,
    pub graph: &'a dyn MetaGraph,
    pub envelope: &'a Envelope,
    pub queue: &'a dyn JobQueue,
    pub clock: &'a dyn Clock,
    pub events: &'a dyn crate::ports::EventStore,
    pub events_queue: &'a dyn JobQueue,
}

impl<'a> SignupDeps<'a> {
    fn emitter(&self) -> crate::usecases::events::Emitter<'a> {
        crate::usecases::events::Emitter {
            store: self.events,
            queue: self.events_queue,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("this signup link is not valid")]
    TokenNotFound,
    #[error("this signup link has expired")]
    TokenExpired,
    #[error("this signup link has already been used")]
    TokenUsed,
    #[error("another completion of this signup is in progress")]
    InProgress,
    #[error("this number is connected to another App")]
    LinkedToAnotherApp,
    #[error("{0}")]
    MetaValidation(String),
    /// Meta refused the code itself (used, expired, or not one of Meta's): the page
    /// posted a code that cannot work. The link stays usable.
    #[error(
        "Meta did not accept the signup code (it was used, expired or is not Meta's); please connect again"
    )]
    CodeRejected,
    /// Meta failed to answer the exchange (5xx, timeout, throttled): not the owner's
    /// fault, and the code is spent. The link stays usable.
    #[error("Meta could not exchange the signup code right now; please connect again")]
    ExchangeFailed,
    #[error(
        "no WhatsApp number is in this WhatsApp Business Account yet: add one in WhatsApp Manager, then open the same link again"
    )]
    NoPhoneNumber,
    #[error(
        "this WhatsApp Business Account has several numbers and Meta did not say which one you chose: open the same link again and pick the number in Meta's dialog"
    )]
    PhoneNumberAmbiguous,
    /// Meta refused this platform's own app credentials: our fault, not the owner's.
    #[error("signups cannot be completed right now; please try again later")]
    AppCredentials,
    /// A Reconnect of one number finished with another.
    #[error(
        "this link reconnects number {0}; choose that number in Meta's dialog (to add another number, use Add Number)"
    )]
    ReconnectOtherNumber(String),
    #[error("the signup took too long to complete; please connect again")]
    DeadlineExceeded,
    #[error("a dependency is unavailable")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SignupError {
    /// The code recorded on the session when an attempt ends in this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid_request",
            Self::TokenNotFound => "token_not_found",
            Self::TokenExpired => "token_expired",
            Self::TokenUsed => "token_used",
            Self::InProgress => "signup_in_progress",
            Self::LinkedToAnotherApp => "number_linked_to_another_app",
            Self::MetaValidation(_) => "meta_validation_failed",
            Self::CodeRejected => "code_rejected",
            Self::ExchangeFailed => "token_exchange_failed",
            Self::NoPhoneNumber => "no_phone_number",
            Self::PhoneNumberAmbiguous => "phone_number_ambiguous",
            Self::AppCredentials => "meta_app_rejected",
            Self::ReconnectOtherNumber(_) => "reconnect_other_number",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Unavailable | Self::Store(_) => "unavailable",
        }
    }

    /// How the claim is given back after this error (`None`: not ours to release).
    fn release_status(&self) -> Option<SessionStatus> {
        match self {
            Self::CodeRejected
            | Self::ExchangeFailed
            | Self::Unavailable
            | Self::Store(_)
            | Self::NoPhoneNumber
            | Self::PhoneNumberAmbiguous
            | Self::AppCredentials
            | Self::ReconnectOtherNumber(_)
            | Self::DeadlineExceeded => Some(SessionStatus::Pending),
            Self::MetaValidation(_) | Self::LinkedToAnotherApp => Some(SessionStatus::Failed),
            _ => None,
        }
    }
}

fn invalid(field: &'static str, message: &str) -> SignupError {
    SignupError::Invalid {
        field,
        message: message.to_owned(),
    }
}

/// How Meta's flow finished (the message's `event`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FinishKind {
    /// `FINISH`, or a code that arrived with no session message.
    #[default]
    Finish,
    /// `FINISH_ONLY_WABA`: finished without adding a number (a number id may still come).
    OnlyWaba,
    /// `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING`: a WhatsApp Business app number
    /// (coexistence): onboarded, never registered by us.
    BusinessApp,
    /// `FINISH_OBO_MIGRATION`: a number migrated from the On-Behalf-Of model; onboarded
    /// like `FINISH` (registration is skipped when Meta shows it registered).
    ObOMigration,
    /// `FINISH_GRANT_ONLY_API_ACCESS` (app-only install): access to an existing WABA
    /// and number; onboarded like `FINISH`.
    GrantOnlyApiAccess,
}

impl FinishKind {
    pub const ALL: [Self; 5] = [
        Self::Finish,
        Self::OnlyWaba,
        Self::BusinessApp,
        Self::ObOMigration,
        Self::GrantOnlyApiAccess,
    ];

    /// Meta's event name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Finish => "FINISH",
            Self::OnlyWaba => "FINISH_ONLY_WABA",
            Self::BusinessApp => "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING",
            Self::ObOMigration => "FINISH_OBO_MIGRATION",
            Self::GrantOnlyApiAccess => "FINISH_GRANT_ONLY_API_ACCESS",
        }
    }

    pub fn parse(event: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == event)
    }
}

/// What the page posts when Meta's flow finished. The ids are what the session message
/// carried; any of them may be missing (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct FinishInput {
    pub token: String,
    pub code: String,
    pub kind: FinishKind,
    pub waba_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub business_id: Option<String>,
}

/// Resolves when the completion must stop (the Lambda's deadline less a margin).
pub type Deadline = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub session_id: SessionId,
    pub phone_number_id: PhoneNumberId,
    pub redirect_url: Url,
}

/// The hosted page for `slug` and `token`, or why it cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("unknown App")]
    UnknownApp,
    #[error("unknown signup link")]
    UnknownToken,
    #[error("expired signup link")]
    Expired,
    #[error("used signup link")]
    Used,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn open_signup_page(
    apps: &dyn AppStore,
    sessions: &dyn SessionStore,
    clock: &dyn Clock,
    slug: &str,
    token: Option<&str>,
) -> Result<(App, SignupSession), PageError> {
    // The App by slug and the session by token, at once.
    let app = async {
        match Slug::parse(slug) {
            Ok(slug) => apps.app_by_slug(&slug).await,
            Err(_) => Ok(None),
        }
    };
    let session = async {
        match token.and_then(SignupToken::parse) {
            Some(token) => sessions.session_by_token(&token.hash()).await,
            None => Ok(None),
        }
    };
    let (app, session) = join(app, session).await;
    let app = app?.ok_or(PageError::UnknownApp)?;
    let session = session?
        .filter(|s| s.app_id == app.id)
        .ok_or(PageError::UnknownToken)?;
    match session.status_at(clock.now()) {
        SessionStatus::Expired => Err(PageError::Expired),
        SessionStatus::Completed => Err(PageError::Used),
        _ => Ok((app, session)),
    }
}

struct Parsed {
    token: SignupToken,
    code: AuthCode,
    kind: FinishKind,
    waba: Option<WabaId>,
    phone: Option<PhoneNumberId>,
    business: Option<BusinessId>,
}

fn parse_finish(input: &FinishInput) -> Result<Parsed, SignupError> {
    let meta_id = "must be Meta's numeric id";
    let token = SignupToken::parse(&input.token).ok_or(SignupError::TokenNotFound)?;
    let given = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(Parsed {
        code: AuthCode::parse(&input.code)
            .ok_or_else(|| invalid("code", "must be the code from Meta's signup"))?,
        kind: input.kind,
        waba: given(&input.waba_id)
            .map(|w| WabaId::parse(&w).ok_or_else(|| invalid("wabaId", meta_id)))
            .transpose()?,
        phone: given(&input.phone_number_id)
            .map(|p| PhoneNumberId::parse(&p).ok_or_else(|| invalid("phoneNumberId", meta_id)))
            .transpose()?,
        business: input
            .business_id
            .as_deref()
            .map(|b| BusinessId::parse(b).ok_or_else(|| invalid("businessId", meta_id)))
            .transpose()?,
        token,
    })
}

/// CompleteSignup: see the module docs for the order of steps.
pub async fn complete_signup(
    deps: SignupDeps<'_>,
    input: FinishInput,
) -> Result<Completed, SignupError> {
    complete_signup_within(deps, input, None).await
}

/// CompleteSignup that stops at `deadline`, releasing its claim so the owner can retry
/// at once (never leaving the session `completing` until the lease runs out).
#[tracing::instrument(skip_all, fields(session_id = tracing::field::Empty, app_id = tracing::field::Empty, phone_number_id = tracing::field::Empty))]
pub async fn complete_signup_within(
    deps: SignupDeps<'_>,
    input: FinishInput,
    deadline: Option<Deadline>,
) -> Result<Completed, SignupError> {
    let p = parse_finish(&input)?;
    let now = deps.clock.now();
    let claim_id = random::base62(16);
    let session = match deps
        .sessions
        .claim_session(&p.token.hash(), &claim_id, now, now + CLAIM_LEASE)
        .await?
    {
        Claim::Won(s) => {
            let span = tracing::Span::current();
            span.record("session_id", tracing::field::display(&s.id));
            span.record("app_id", tracing::field::display(&s.app_id));
            *s
        }
        Claim::NotFound => return Err(SignupError::TokenNotFound),
        Claim::Expired => return Err(SignupError::TokenExpired),
        Claim::Used => return Err(SignupError::TokenUsed),
        Claim::Held => return Err(SignupError::InProgress),
    };
    let finishing = Box::pin(finish_claimed(deps, &session, &claim_id, p, now));
    let result = match deadline {
        None => finishing.await,
        Some(deadline) => match select(finishing, deadline).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => {
                warn!(session_id = %session.id, "signup deadline reached; releasing the claim");
                Err(SignupError::DeadlineExceeded)
            }
        },
    };
    match result {
        Ok(done) => Ok(done),
        Err(err) => {
            let mut released = None;
            if let Some(status) = err.release_status() {
                let release = Release {
                    status,
                    error: Some(SessionFailure {
                        code: err.code().to_owned(),
                        message: err.to_string(),
                    }),
                };
                // A few tries: a completion dropped at its deadline may still hold the
                // item in a transaction for a moment.
                for attempt in 1..=3 {
                    match deps
                        .sessions
                        .release_claim(&session.id, &claim_id, &release)
                        .await
                    {
                        Ok(r) => {
                            released = Some(r);
                            break;
                        }
                        // The lease ends by itself; the owner can retry after it.
                        Err(e) => {
                            warn!(session_id = %session.id, attempt, error = %e, "could not release the claim")
                        }
                    }
                }
            }
            if matches!(err, SignupError::DeadlineExceeded)
                && released == Some(false)
                && let Some(done) = completed_meanwhile(deps, &session).await
            {
                // The transaction committed just before the deadline: it is a success.
                return Ok(done);
            }
            warn!(session_id = %session.id, app_id = %session.app_id, code = err.code(), "signup not completed");
            Err(err)
        }
    }
}

/// When a completion dropped at its deadline had committed: the session as completed
/// (its setup job queued again, which is harmless: setups are idempotent).
async fn completed_meanwhile(deps: SignupDeps<'_>, session: &SignupSession) -> Option<Completed> {
    let current = deps.sessions.session(&session.id).await.ok()??;
    if current.status != SessionStatus::Completed {
        return None;
    }
    let phone = PhoneNumberId::parse(current.phone_number_id.as_deref()?)?;
    Some(queue_setup(deps, &current, phone).await)
}

/// Queues the number's setup job and says where the owner goes next. A job that cannot
/// be queued is not lost: the number is stored as pending and the sweep re-drives
/// stalled setups.
async fn queue_setup(
    deps: SignupDeps<'_>,
    session: &SignupSession,
    phone: PhoneNumberId,
) -> Completed {
    let job = Job::Setup {
        app_id: session.app_id.clone(),
        phone_number_id: phone.clone(),
    };
    if let Err(e) = deps.queue.enqueue(&job).await {
        warn!(phone_number_id = %phone, error = %e, "setup job not queued; the sweep will re-drive it");
    }
    let emitter = deps.emitter();
    emitter
        .emit_logged(Event::new(
            session.app_id.clone(),
            EventType::SignupCompleted,
            session.id.as_str(),
            session.completed_at.unwrap_or_else(|| deps.clock.now()),
            serde_json::json!({
                "sessionId": session.id,
                "phoneNumberId": phone,
                "metadata": serde_json::Value::from(session.metadata.clone()),
            }),
        ))
        .await;
    let redirect_url = signed_redirect(
        deps.events,
        deps.envelope,
        session,
        &[
            ("status", "success"),
            ("sessionId", session.id.as_str()),
            ("phoneNumberId", phone.as_str()),
        ],
    )
    .await;
    Completed {
        session_id: session.id.clone(),
        phone_number_id: phone,
        redirect_url,
    }
}

/// The redirect back to the partner with `params`, plus `signature` (see
/// [`crate::events::redirect_signature`]) when the App has a webhook endpoint. A secret
/// that cannot be opened leaves the redirect unsigned (logged): the owner still gets
/// back, and the partner can confirm through the API.
pub async fn signed_redirect(
    events: &dyn crate::ports::EventStore,
    envelope: &Envelope,
    session: &SignupSession,
    params: &[(&str, &str)],
) -> Url {
    let endpoint = match events.endpoint(&session.app_id).await {
        Ok(e) => e,
        Err(e) => {
            warn!(error = %e, "redirect left unsigned: endpoint unreadable");
            None
        }
    };
    let Some(endpoint) = endpoint else {
        return session.redirect_url.with_query(params);
    };
    match envelope
        .open_app_secret(&session.app_id, &endpoint.secret)
        .await
    {
        Ok(secret) => {
            use secrecy::ExposeSecret;
            let sig = crate::events::redirect_signature(secret.expose_secret().as_bytes(), params);
            let mut all = params.to_vec();
            all.push(("signature", &sig));
            session.redirect_url.with_query(&all)
        }
        Err(e) => {
            warn!(error = %e, "redirect left unsigned: endpoint secret unreadable");
            session.redirect_url.with_query(params)
        }
    }
}

/// Graph failures while validating: Meta's "no" is the owner's problem (422); Meta
/// being unavailable is ours (503, retry).
fn validation_error(e: GraphError, what: &str) -> SignupError {
    match e.kind {
        GraphErrorKind::Transient | GraphErrorKind::Throttled => SignupError::Unavailable,
        _ => SignupError::MetaValidation(format!("Meta refused to {what} (code {:?})", e.code)),
    }
}

fn check_token(
    facts: &TokenFacts,
    graph: &dyn MetaGraph,
    waba: &WabaId,
) -> Result<(), SignupError> {
    if !facts.is_valid {
        return Err(SignupError::MetaValidation(
            "the business token is not valid".into(),
        ));
    }
    if facts.app_id != graph.app_id() {
        return Err(SignupError::MetaValidation(
            "the business token belongs to another Meta app".into(),
        ));
    }
    if !facts.covers_waba(waba) {
        return Err(SignupError::MetaValidation(format!(
            "the business token does not cover WhatsApp Business Account {waba}"
        )));
    }
    Ok(())
}

fn exchange_error(e: GraphError) -> SignupError {
    warn!(kind = ?e.kind, code = ?e.code, subcode = ?e.subcode, "code exchange failed");
    if e.kind == GraphErrorKind::AppCredentials {
        tracing::error!(code = ?e.code, "Meta refused our app credentials on the code exchange: check META_APP_ID and the app secret");
        return SignupError::AppCredentials;
    }
    // Meta refuses a code as an invalid parameter (code 100; the sandbox, not a document
    // we hold, gives subcodes 36007 invalid or expired and 36009 used). 36008 would be a
    // redirect_uri mismatch, ours (we send none). Anything else, including answers we
    // cannot read, is the exchange failing (docs/DECISIONS.md).
    if e.code == Some(100) && e.subcode != Some(36008) {
        SignupError::CodeRejected
    } else {
        SignupError::ExchangeFailed
    }
}

fn describe_error(e: GraphError) -> SignupError {
    if e.kind == GraphErrorKind::AppCredentials {
        tracing::error!(code = ?e.code, "Meta refused our app access token on debug_token: check the app secret");
        return SignupError::AppCredentials;
    }
    validation_error(e, "describe the business token")
}

/// The number this signup connects: the one the page named (it must be in the WABA),
/// or the WABA's only number.
fn choose_number(
    numbers: Vec<WabaNumber>,
    named: Option<&PhoneNumberId>,
    waba: &WabaId,
) -> Result<WabaNumber, SignupError> {
    match named {
        Some(phone) => numbers.into_iter().find(|n| n.id == *phone).ok_or_else(|| {
            SignupError::MetaValidation(format!(
                "phone number {phone} is not in WhatsApp Business Account {waba}"
            ))
        }),
        None => {
            let mut numbers = numbers;
            match numbers.len() {
                0 => Err(SignupError::NoPhoneNumber),
                1 => Ok(numbers.remove(0)),
                _ => Err(SignupError::PhoneNumberAmbiguous),
            }
        }
    }
}

async fn finish_claimed(
    deps: SignupDeps<'_>,
    session: &SignupSession,
    claim_id: &str,
    p: Parsed,
    now: DateTime<Utc>,
) -> Result<Completed, SignupError> {
    let app_id = &session.app_id;
    // The store reads run beside the exchange when the page named the number; their
    // answer is acted on only once Meta has vouched for the token (no ownership oracle).
    let known = async {
        match &p.phone {
            Some(phone) => Some(
                join(
                    deps.numbers.number_owner(phone),
                    deps.numbers.number(app_id, phone),
                )
                .await,
            ),
            None => None,
        }
    };
    let (exchanged, known) = join(deps.graph.exchange_code(&p.code), known).await;
    let token = exchanged.map_err(exchange_error)?;

    let (facts, listed_numbers) = match &p.waba {
        Some(waba) => {
            let (facts, numbers) = join(
                deps.graph.debug_token(&token),
                deps.graph.waba_numbers(&token, waba),
            )
            .await;
            (facts, Some(numbers))
        }
        None => (deps.graph.debug_token(&token).await, None),
    };
    let facts = facts.map_err(describe_error)?;
    let waba = match &p.waba {
        Some(w) => w.clone(),
        None => facts.shared_waba().ok_or_else(|| {
            SignupError::MetaValidation(
                "Meta did not say which WhatsApp Business Account was shared".into(),
            )
        })?,
    };
    check_token(&facts, deps.graph, &waba)?;
    let numbers = match listed_numbers {
        Some(numbers) => numbers,
        None => deps.graph.waba_numbers(&token, &waba).await,
    }
    .map_err(|e| validation_error(e, "list the WABA's numbers"))?;
    let listed = choose_number(numbers, p.phone.as_ref(), &waba)?;
    let phone = listed.id.clone();
    if let Some(target) = session
        .metadata
        .reconnect_target()
        .filter(|t| *t != phone.as_str())
    {
        return Err(SignupError::ReconnectOtherNumber(target.to_owned()));
    }
    tracing::Span::current().record("phone_number_id", tracing::field::display(&phone));
    let (owner, existing) = match known {
        Some(read) => read,
        None => {
            join(
                deps.numbers.number_owner(&phone),
                deps.numbers.number(app_id, &phone),
            )
            .await
        }
    };
    if owner?.is_some_and(|o| &o != app_id) {
        return Err(SignupError::LinkedToAnotherApp);
    }
    let mut existing = existing?;

    let binding = SecretBinding {
        purpose: SecretPurpose::BusinessToken,
        app_id,
        phone_number_id: &phone,
    };
    let sealed = deps
        .envelope
        .seal(binding, token.expose().as_bytes())
        .await
        .map_err(|e| {
            warn!(error = %e, "sealing the business token failed");
            SignupError::Unavailable
        })?;

    let signup = Signup {
        session,
        waba: &waba,
        kind: p.kind,
        business: p.business.as_ref(),
        listed: &listed,
        facts: &facts,
        sealed: &sealed,
        now,
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (mut number, history) = signup.number(&phone, existing.as_ref());
        if let Some(old) = existing
            .as_ref()
            .filter(|n| n.waba_id != waba && n.is_live())
        {
            // Moved to another WABA: the old WABA's teardown uses the old token.
            if let Some(token) = &old.sealed_token {
                number
                    .teardown_tokens
                    .insert(old.waba_id.clone(), token.clone());
            }
        }
        let completion = SignupCompletion {
            session_id: session.id.clone(),
            claim_id: claim_id.to_owned(),
            completed_at: now,
            expected_version: existing.as_ref().map(|n| n.version),
            previous_waba: existing
                .as_ref()
                .filter(|n| n.waba_id != waba && n.is_live())
                .map(|n| n.waba_id.clone()),
            number,
            history,
        };
        match deps.numbers.complete_signup(&completion).await {
            Ok(()) => break,
            Err(CompletionError::NumberChanged) if attempts < 3 => {
                existing = deps.numbers.number(app_id, &phone).await?;
            }
            Err(CompletionError::NumberChanged) => return Err(SignupError::Unavailable),
            Err(CompletionError::ClaimLost) => return Err(SignupError::InProgress),
            Err(CompletionError::OwnedByAnotherApp) => return Err(SignupError::LinkedToAnotherApp),
            Err(CompletionError::Store(e)) => return Err(e.into()),
        }
    }
    info!(app_id = %app_id, session_id = %session.id, phone_number_id = %phone, finish = p.kind.as_str(), "signup completed");
    // Re-onboarded under another WABA: the old one is unsubscribed once no live number
    // of it remains (the teardown checks), with the token that reached it.
    if let Some(old) = existing
        .as_ref()
        .filter(|n| n.waba_id != waba && n.is_live() && n.sealed_token.is_some())
    {
        // Its token is kept on the new record (`teardown_tokens`) until this is done.
        let job = Job::Teardown {
            app_id: app_id.clone(),
            waba_id: old.waba_id.clone(),
            sealed_token: None,
            phone_number_id: phone.clone(),
            removed_version: None,
        };
        if let Err(e) = deps.queue.enqueue(&job).await {
            warn!(error = %e, "the old WABA's teardown was not queued; it stays subscribed");
        }
    }
    Ok(queue_setup(deps, session, phone).await)
}

struct Signup<'a> {
    session: &'a SignupSession,
    waba: &'a WabaId,
    kind: FinishKind,
    business: Option<&'a BusinessId>,
    listed: &'a WabaNumber,
    facts: &'a TokenFacts,
    sealed: &'a crate::crypto::Sealed,
    now: DateTime<Utc>,
}

impl Signup<'_> {
    /// The number record after this signup: a new one, or the App's existing record
    /// updated (new token, health back to pending, setup to be re-run).
    fn number(
        &self,
        phone: &PhoneNumberId,
        existing: Option<&Number>,
    ) -> (Number, Option<HealthEvent>) {
        let now = self.now;
        let setup = SetupState {
            register_attempts: existing
                .map(|n| n.setup.register_attempts.clone())
                .unwrap_or_default(),
            coexistence: self.kind == FinishKind::BusinessApp,
            ..SetupState::default()
        };
        let mut profile = existing.map(|n| n.profile.clone()).unwrap_or_default();
        let listed = &self.listed.profile;
        profile.display_phone_number = listed
            .display_phone_number
            .clone()
            .or(profile.display_phone_number);
        profile.verified_name = listed.verified_name.clone().or(profile.verified_name);
        profile.quality_rating = listed.quality_rating.clone().or(profile.quality_rating);
        let history = existing
            .filter(|n| n.health.status != HealthStatus::Pending)
            .map(|n| HealthEvent {
                at: now,
                from: n.health.status,
                to: HealthStatus::Pending,
                reason: Some(HealthReason::SetupPending),
                message: Some("connected again through Embedded Signup".into()),
            });
        let health = match existing {
            Some(n) if n.health.status == HealthStatus::Pending => Health {
                since: n.health.since,
                ..Health::pending(now)
            },
            _ => Health::pending(now),
        };
        let number = Number {
            phone_number_id: phone.clone(),
            app_id: self.session.app_id.clone(),
            waba_id: self.waba.clone(),
            // The page's businessId comes from the browser: kept only when Meta's token
            // names that business (its `business_management` scope's targets).
            business_id: self
                .business
                .filter(|b| {
                    self.facts.granular_scopes.iter().any(|g| {
                        g.scope == "business_management"
                            && g.target_ids
                                .as_ref()
                                .is_some_and(|ids| ids.iter().any(|id| id == b.as_str()))
                    })
                })
                .cloned()
                .or_else(|| existing.and_then(|n| n.business_id.clone())),
            profile,
            health,
            setup,
            token: TokenInfo {
                expires_at: self.facts.expires_at,
                scopes: self.facts.scopes.clone(),
            },
            sealed_token: Some(self.sealed.clone()),
            sealed_pin: existing.and_then(|n| n.sealed_pin.clone()),
            // Pending teardowns of earlier removals or moves keep their tokens.
            teardown_tokens: existing
                .map(|n| n.teardown_tokens.clone())
                .unwrap_or_default(),
            session_id: self.session.id.clone(),
            metadata: self.session.metadata.clone(),
            connected_at: existing.map_or(now, |n| n.connected_at),
            updated_at: now,
            version: existing.map_or(1, |n| n.version + 1),
        };
        (number, history)
    }
}

/// What the page posts when the owner cancelled or Meta reported an error.
#[derive(Debug, Clone, Default)]
pub struct AbandonInput {
    pub token: String,
    pub event: Option<AbandonEvent>,
    pub step: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub meta_session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub session_id: SessionId,
    pub redirect_url: Url,
}

fn bounded(
    field: &'static str,
    v: Option<String>,
    max: usize,
) -> Result<Option<String>, SignupError> {
    match v {
        Some(s) if s.chars().count() > max || s.chars().any(char::is_control) => Err(invalid(
            field,
            &format!("must be at most {max} characters without control characters"),
        )),
        v => Ok(v.filter(|s| !s.is_empty())),
    }
}

/// RecordAbandon: keeps the event for the funnel; the token stays usable.
#[tracing::instrument(skip_all)]
pub async fn record_abandon(
    deps: SignupDeps<'_>,
    input: AbandonInput,
) -> Result<Recorded, SignupError> {
    let (store, clock) = (deps.sessions, deps.clock);
    let event = input
        .event
        .filter(|e| *e != AbandonEvent::Finish)
        .ok_or_else(|| invalid("event", "must be CANCEL or ERROR"))?;
    let token = SignupToken::parse(&input.token).ok_or(SignupError::TokenNotFound)?;
    let now = clock.now();
    let abandon = Abandon {
        at: now,
        event,
        step: bounded("step", input.step, 64)?,
        error_code: bounded("errorCode", input.error_code, 32)?,
        error_message: bounded("errorMessage", input.error_message, 500)?,
        meta_session_id: bounded("metaSessionId", input.meta_session_id, 128)?,
        waba_id: None,
    };
    let session = store
        .session_by_token(&token.hash())
        .await?
        .ok_or(SignupError::TokenNotFound)?;
    match session.status_at(now) {
        SessionStatus::Expired => return Err(SignupError::TokenExpired),
        SessionStatus::Completed => return Err(SignupError::TokenUsed),
        _ => {}
    }
    if store.record_abandon(&session.id, &abandon).await? {
        let n = session.abandons.len();
        deps.emitter()
            .emit_logged(Event::new(
                session.app_id.clone(),
                EventType::SignupAbandoned,
                &format!("{}#{n}", session.id),
                now,
                serde_json::json!({
                    "sessionId": session.id,
                    "event": if event == AbandonEvent::Cancel { "CANCEL" } else { "ERROR" },
                    "step": abandon.step,
                    "errorCode": abandon.error_code,
                    "errorMessage": abandon.error_message,
                    "metaSessionId": abandon.meta_session_id,
                    "metadata": serde_json::Value::from(session.metadata.clone()),
                }),
            ))
            .await;
    } else {
        info!(session_id = %session.id, "abandon not recorded (session finished or full)");
    }
    let status = if event == AbandonEvent::Cancel {
        "cancelled"
    } else {
        "error"
    };
    info!(session_id = %session.id, app_id = %session.app_id, event = status, step = ?abandon.step, "signup abandoned");
    Ok(Recorded {
        redirect_url: signed_redirect(
            deps.events,
            deps.envelope,
            &session,
            &[("status", status), ("sessionId", session.id.as_str())],
        )
        .await,
        session_id: session.id,
    })
}

/// The most finish reports one session keeps (an owner may run Meta's flow a few times).
pub const MAX_FINISH_REPORTS: usize = 3;

/// RecordFinish: the page saw Meta's flow finish with `waba_id` (it reports this before
/// it posts the code), so a `PARTNER_ADDED` whose callback never arrives finds this
/// session. Never fails the owner's flow: an unknown or finished session is ignored.
#[tracing::instrument(skip_all)]
pub async fn record_finish(
    store: &dyn SessionStore,
    clock: &dyn Clock,
    token: &str,
    waba_id: &str,
) -> Result<(), SignupError> {
    let waba =
        WabaId::parse(waba_id).ok_or_else(|| invalid("wabaId", "must be Meta's numeric id"))?;
    let token = SignupToken::parse(token).ok_or(SignupError::TokenNotFound)?;
    let now = clock.now();
    let session = store
        .session_by_token(&token.hash())
        .await?
        .ok_or(SignupError::TokenNotFound)?;
    match session.status_at(now) {
        SessionStatus::Expired => return Err(SignupError::TokenExpired),
        SessionStatus::Completed => return Err(SignupError::TokenUsed),
        _ => {}
    }
    if session.finished_waba() == Some(&waba)
        || session
            .abandons
            .iter()
            .filter(|a| a.event == AbandonEvent::Finish)
            .count()
            >= MAX_FINISH_REPORTS
    {
        // Reported already, or more flows than an owner runs: nothing more is kept.
        return Ok(());
    }
    let finish = Abandon {
        at: now,
        event: AbandonEvent::Finish,
        step: None,
        error_code: None,
        error_message: None,
        meta_session_id: None,
        waba_id: Some(waba.clone()),
    };
    store.record_finish(&session, &finish, &waba).await?;
    info!(session_id = %session.id, app_id = %session.app_id, waba_id = %waba, "Meta's flow finished in the browser");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_error(kind: GraphErrorKind, code: Option<i64>, subcode: Option<i64>) -> GraphError {
        GraphError {
            kind,
            code,
            subcode,
            message: "m".into(),
            retry_after: None,
            details: None,
        }
    }

    #[test]
    fn only_meta_naming_the_code_makes_it_the_callers_fault() {
        use GraphErrorKind::*;
        let cases = [
            (graph_error(Other, Some(100), Some(36007)), "code_rejected"),
            (graph_error(Other, Some(100), Some(36009)), "code_rejected"),
            (graph_error(Other, Some(100), None), "code_rejected"),
            // A redirect_uri mismatch is ours: we send none.
            (
                graph_error(Other, Some(100), Some(36008)),
                "token_exchange_failed",
            ),
            (graph_error(Transient, None, None), "token_exchange_failed"),
            (
                graph_error(Throttled, Some(4), None),
                "token_exchange_failed",
            ),
            (
                graph_error(Permission, Some(200), None),
                "token_exchange_failed",
            ),
            // An answer we could not read.
            (graph_error(Other, None, None), "token_exchange_failed"),
            (
                graph_error(AppCredentials, Some(1), None),
                "meta_app_rejected",
            ),
        ];
        for (e, code) in cases {
            assert_eq!(exchange_error(e.clone()).code(), code, "{e:?}");
        }
    }
}
