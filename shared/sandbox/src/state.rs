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
    pub registered_pin: Option<String>,
    pub registrations: Vec<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxWaba {
    pub business_id: String,
    pub subscribed_apps: BTreeSet<String>,
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
    /// Calls served, by `METHOD kind` (e.g. `POST register`), for tests and people.
    #[serde(default)]
    pub calls: BTreeMap<String, u64>,
    /// Added to every Graph answer, in milliseconds (to measure under latency).
    #[serde(default)]
    pub latency_ms: u64,
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
}

impl State {
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
        let waba_id = match (req.waba_id, existing_waba) {
            (Some(asked), Some(has)) if asked != has => {
                return Err(format!("number already belongs to WABA {has}"));
            }
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
                    },
                );
                b
            }
        };
        let phone = req.phone_number_id.unwrap_or_else(meta_id);
        if !phone.bytes().all(|b| b.is_ascii_digit()) || phone.is_empty() {
            return Err("phoneNumberId must be digits".into());
        }
        let tail = &phone[phone.len().saturating_sub(4)..];
        self.numbers
            .entry(phone.clone())
            .or_insert_with(|| SandboxNumber {
                waba_id: waba_id.clone(),
                display_phone_number: req
                    .display_phone_number
                    .unwrap_or_else(|| format!("+1 555-010-{tail:0>4}")),
                verified_name: req
                    .verified_name
                    .unwrap_or_else(|| "Sandbox Business".into()),
                quality_rating: "GREEN".into(),
                status: "PENDING".into(),
                name_status: "APPROVED".into(),
                platform_type: "NOT_APPLICABLE".into(),
                can_send_message: "AVAILABLE".into(),
                registered_pin: None,
                registrations: Vec::new(),
            });
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
