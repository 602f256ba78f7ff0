//! The simulated Meta's state: businesses, WABAs owning numbers, business tokens,
//! single-use 30-second codes, webhook subscriptions, registrations, and faults.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use pipes_core::random;
use serde::{Deserialize, Serialize};

/// The sandbox's own Meta app (what `META_APP_ID`/`META_APP_SECRET` are in sandbox mode).
pub const SANDBOX_APP_ID: &str = "1000000000000001";
pub const SANDBOX_APP_SECRET: &str = "sandbox-app-secret";
pub const SANDBOX_CONFIG_ID: &str = "1000000000000002";

/// How long a signup code is valid, as on Meta.
pub const CODE_LIFETIME: Duration = Duration::seconds(30);
/// Registrations allowed per number per window (then error 133016).
pub const REGISTRATIONS_PER_WINDOW: usize = 10;
pub const REGISTRATION_WINDOW: Duration = Duration::hours(72);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxNumber {
    pub waba_id: String,
    pub display_phone_number: String,
    pub verified_name: String,
    pub quality_rating: String,
    /// `CONNECTED` once registered; `PENDING` before.
    pub status: String,
    pub name_status: String,
    pub platform_type: String,
    pub can_send_message: String,
    /// The two-step verification PIN the number has; `Some` before we register it when
    /// the number has one set elsewhere (then our PIN mismatches: 133005).
    pub registered_pin: Option<String>,
    pub registrations: Vec<DateTime<Utc>>,
    /// `VERIFIED`, or `UNVERIFIED` (Meta's OpenAPI enum; registration answers 133006).
    #[serde(default = "verified")]
    pub code_verification_status: String,
    /// Wrong PINs tried; from 3 on, registration answers 133008 (wait 12 hours).
    #[serde(default)]
    pub wrong_pin_guesses: u32,
    /// A previous deregistration did not complete: register answers 133000 until a
    /// deregister call.
    #[serde(default)]
    pub deregistration_incomplete: bool,
    /// A WhatsApp Business app number (coexistence): not to be registered.
    #[serde(default)]
    pub is_on_biz_app: bool,
    /// Calling over SIP: `BLOCKED` (with Meta's 138024/138025) unless configured.
    #[serde(default = "available")]
    pub can_receive_call_sip: String,
}

fn verified() -> String {
    "VERIFIED".into()
}

fn available() -> String {
    "AVAILABLE".into()
}

fn approved() -> String {
    "APPROVED".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxWaba {
    pub business_id: String,
    pub subscribed_apps: BTreeSet<String>,
    /// The WABA entity's `can_send_message` in `health_status`.
    #[serde(default = "available")]
    pub can_send_message: String,
    /// `APPROVED`, `PENDING` or `REJECTED`.
    #[serde(default = "approved")]
    pub account_review_status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxToken {
    pub waba_ids: Vec<String>,
    pub revoked: bool,
    /// `None`: never expires (`expires_at: 0`).
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxCode {
    pub token: String,
    pub issued_at: DateTime<Utc>,
    pub used: bool,
}

/// A fault to inject into the next `remaining` calls whose path contains `path`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// A substring of the Graph path after the version, e.g. `subscribed_apps`.
    pub path: String,
    #[serde(default)]
    pub method: Option<String>,
    pub kind: FaultKind,
    pub remaining: u32,
    /// For `throttle`: the Graph error code (default 80008) and regain time in minutes.
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub regain_minutes: Option<u32>,
}

impl Fault {
    /// The next `count` calls whose path contains `path` fail with `kind`.
    pub fn new(path: impl Into<String>, kind: FaultKind, count: u32) -> Self {
        Self {
            path: path.into(),
            method: None,
            kind,
            remaining: count,
            code: None,
            regain_minutes: None,
        }
    }

    /// Only calls with this HTTP method.
    pub fn on(mut self, method: &str) -> Self {
        self.method = Some(method.to_owned());
        self
    }

    /// For a throttle: Meta's error code and the minutes until access returns.
    pub fn throttle(mut self, code: i64, regain_minutes: u32) -> Self {
        self.code = Some(code);
        self.regain_minutes = Some(regain_minutes);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// HTTP 500 with a transient Graph error.
    #[serde(rename = "5xx")]
    ServerError,
    /// No answer for longer than any client waits.
    Timeout,
    /// A rate-limit error with usage headers.
    Throttle,
    /// Meta's error body with `code` (registration codes with Meta's own details).
    Error,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub businesses: BTreeSet<String>,
    pub wabas: BTreeMap<String, SandboxWaba>,
    pub numbers: BTreeMap<String, SandboxNumber>,
    pub tokens: BTreeMap<String, SandboxToken>,
    pub codes: BTreeMap<String, SandboxCode>,
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Percent of Graph calls (the code exchange spared) failing at random: a 5xx, a
    /// dropped answer (timeout) or a throttle with usage headers, in equal shares.
    #[serde(default)]
    pub fault_rate: u8,
    /// Calls served, by `METHOD kind` (e.g. `POST register`), for tests and people.
    #[serde(default)]
    pub calls: BTreeMap<String, u64>,
    /// Added to every Graph answer, in milliseconds (to measure under latency).
    #[serde(default)]
    pub latency_ms: u64,
    /// The app secret Meta expects now, when it was rotated away from the one the
    /// platform is configured with (`POST /sandbox/app-secret/rotate`).
    #[serde(default)]
    pub rotated_app_secret: Option<String>,
}

pub fn meta_id() -> String {
    // 15 digits, not starting with 0, like Meta's ids.
    let digits: String = random::base62(14)
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    format!("1{digits}")
}

/// What `POST /sandbox/signups` hands the page: what a finished Embedded Signup yields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignupResult {
    pub code: String,
    pub waba_id: String,
    pub phone_number_id: String,
    pub business_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignupRequest {
    pub phone_number_id: Option<String>,
    pub waba_id: Option<String>,
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    /// Seconds until the business token expires (default: never).
    pub token_expires_in: Option<i64>,
    /// How the new number behaves (default: a plain number that registers).
    pub scenario: Option<Scenario>,
}

/// Scripted situations from Meta's documents, for people (`pipes dev`) and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// The number already has a two-step verification PIN set elsewhere: registration
    /// answers 133005 until the owner turns it off (`POST /sandbox/numbers/{id}`
    /// `{"twoStepVerification": false}`).
    TwoStepPinSet,
    /// The number is not verified: registration answers 133006.
    Unverified,
    /// A previous deregistration did not complete: registration answers 133000 until
    /// the number is deregistered.
    DeregistrationIncomplete,
    /// A WhatsApp Business app number (coexistence): Meta's flow finishes with
    /// `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING`; registering it is refused.
    BusinessApp,
    /// The owner finished without adding a number (`FINISH_ONLY_WABA`, no number id).
    NoNumber,
    /// The WABA has two numbers; Meta's message names the chosen one.
    SeveralNumbers,
    /// Calling over SIP is not configured: entities report `can_receive_call_sip`
    /// BLOCKED with Meta's 138024/138025 and the aggregate says BLOCKED, as in Meta's
    /// own sample, while every entity can send messages.
    SipBlocked,
}

impl SandboxNumber {
    fn new(waba_id: &str, display: String, name: String, scenario: Option<Scenario>) -> Self {
        let business_app = scenario == Some(Scenario::BusinessApp);
        Self {
            waba_id: waba_id.to_owned(),
            display_phone_number: display,
            verified_name: name,
            quality_rating: "GREEN".into(),
            // A WhatsApp Business app number is in use already.
            status: if business_app { "CONNECTED" } else { "PENDING" }.into(),
            name_status: "APPROVED".into(),
            platform_type: if business_app {
                "CLOUD_API"
            } else {
                "NOT_APPLICABLE"
            }
            .into(),
            can_send_message: available(),
            registered_pin: (scenario == Some(Scenario::TwoStepPinSet))
                .then(|| format!("{:0>6}", &meta_id()[..6])),
            registrations: Vec::new(),
            code_verification_status: if scenario == Some(Scenario::Unverified) {
                "UNVERIFIED".into()
            } else {
                verified()
            },
            wrong_pin_guesses: 0,
            deregistration_incomplete: scenario == Some(Scenario::DeregistrationIncomplete),
            is_on_biz_app: business_app,
            can_receive_call_sip: if scenario == Some(Scenario::SipBlocked) {
                "BLOCKED".into()
            } else {
                available()
            },
        }
    }
}

impl State {
    /// The app secret Meta accepts now.
    pub fn app_secret(&self) -> &str {
        self.rotated_app_secret
            .as_deref()
            .unwrap_or(SANDBOX_APP_SECRET)
    }

    /// Runs one finished Embedded Signup: the WABA and number exist afterwards (created
    /// if new), and a fresh business token covering the WABA waits behind a new code.
    pub fn signup(
        &mut self,
        req: SignupRequest,
        now: DateTime<Utc>,
    ) -> Result<SignupResult, String> {
        let existing_waba = req
            .phone_number_id
            .as_ref()
            .and_then(|p| self.numbers.get(p))
            .map(|n| n.waba_id.clone());
        let moving = matches!((&req.waba_id, &existing_waba), (Some(a), Some(h)) if a != h);
        let waba_id = match (req.waba_id, existing_waba) {
            (Some(w), _) | (None, Some(w)) => w,
            (None, None) => meta_id(),
        };
        if !waba_id.bytes().all(|b| b.is_ascii_digit()) || waba_id.is_empty() {
            return Err("wabaId must be digits".into());
        }
        let business_id = match self.wabas.get(&waba_id) {
            Some(w) => w.business_id.clone(),
            None => {
                let b = meta_id();
                self.businesses.insert(b.clone());
                self.wabas.insert(
                    waba_id.clone(),
                    SandboxWaba {
                        business_id: b.clone(),
                        subscribed_apps: BTreeSet::new(),
                        can_send_message: available(),
                        account_review_status: approved(),
                    },
                );
                b
            }
        };
        let scenario = req.scenario;
        let phone = if scenario == Some(Scenario::NoNumber) {
            String::new()
        } else {
            let phone = req.phone_number_id.unwrap_or_else(meta_id);
            if !phone.bytes().all(|b| b.is_ascii_digit()) || phone.is_empty() {
                return Err("phoneNumberId must be digits".into());
            }
            let mut extra = Vec::new();
            if scenario == Some(Scenario::SeveralNumbers) {
                extra.push(meta_id());
            }
            for id in std::iter::once(phone.clone()).chain(extra) {
                let tail = &id[id.len().saturating_sub(4)..];
                let display = match &req.display_phone_number {
                    Some(d) if id == phone => d.clone(),
                    _ => format!("+1 555-010-{tail:0>4}"),
                };
                let name = req
                    .verified_name
                    .clone()
                    .unwrap_or_else(|| "Sandbox Business".into());
                let n = self
                    .numbers
                    .entry(id.clone())
                    .or_insert_with(|| SandboxNumber::new(&waba_id, display, name, scenario));
                if moving && id == phone {
                    // Migrated to another WABA (Meta's migration flow): it is that WABA's now.
                    n.waba_id.clone_from(&waba_id);
                }
            }
            phone
        };
        let token = format!("EAAS{}", random::base62(48));
        self.tokens.insert(
            token.clone(),
            SandboxToken {
                waba_ids: vec![waba_id.clone()],
                revoked: false,
                expires_at: req.token_expires_in.map(|s| now + Duration::seconds(s)),
            },
        );
        let code = format!("AQ{}", random::base62(64));
        self.codes.insert(
            code.clone(),
            SandboxCode {
                token,
                issued_at: now,
                used: false,
            },
        );
        Ok(SignupResult {
            code,
            waba_id,
            phone_number_id: phone,
            business_id,
        })
    }

    /// The owner revokes our access: every token reaching the number's WABA stops working.
    pub fn revoke(&mut self, phone: &str) -> bool {
        let Some(waba) = self.numbers.get(phone).map(|n| n.waba_id.clone()) else {
            return false;
        };
        for t in self.tokens.values_mut() {
            if t.waba_ids.contains(&waba) {
                t.revoked = true;
            }
        }
        true
    }

    /// Takes the first matching fault, counting it down.
    pub fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        if let Some(f) = self.scripted_fault(method, path) {
            return Some(f);
        }
        if self.fault_rate == 0 || path.contains("oauth/access_token") {
            return None;
        }
        // Two base62 draws: a uniform number below 3844.
        let r: Vec<u32> = pipes_core::random::base62(2)
            .bytes()
            .map(|b| match b {
                b'0'..=b'9' => u32::from(b - b'0'),
                b'A'..=b'Z' => u32::from(b - b'A') + 10,
                _ => u32::from(b - b'a') + 36,
            })
            .collect();
        let n = r[0] * 62 + r[1];
        if n * 100 >= u32::from(self.fault_rate) * 3844 {
            return None;
        }
        let kind = match n % 3 {
            0 => FaultKind::ServerError,
            1 => FaultKind::Timeout,
            _ => FaultKind::Throttle,
        };
        Some(Fault {
            path: path.to_owned(),
            method: None,
            kind,
            remaining: 1,
            code: None,
            regain_minutes: Some(1),
        })
    }

    fn scripted_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let i = self.faults.iter().position(|f| {
            f.remaining > 0
                && path.contains(&f.path)
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
        })?;
        let fault = self.faults[i].clone();
        self.faults[i].remaining -= 1;
        if self.faults[i].remaining == 0 {
            self.faults.remove(i);
        }
        Some(fault)
    }
}
