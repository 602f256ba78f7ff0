//! The domain of the Pipes.bot Embedded Signup backend: validating newtypes, the App and
//! signup-session models, the use cases, and the ports that adapters implement.
//! Nothing here talks to the network; hosts wire adapters into these use cases.

pub mod app;
pub mod clock;
pub mod crypto;
pub mod events;
pub mod ids;
pub mod meta;
pub mod number;
pub mod platform;
pub mod ports;
pub mod queue;
pub mod random;
pub mod session;
pub mod usecases;
pub mod webhooks;

pub use app::{App, AppKeyRecord, AppName, RedirectOrigin, Slug};
pub use clock::{Clock, SystemClock};
pub use ids::{AppId, AppKey, KeyId, SecretHash, SessionId, SignupToken};
pub use number::{
    BusinessId, Health, HealthEvent, HealthReason, HealthStatus, Number, PhoneNumberId, WabaId,
};
pub use platform::{MetaApp, Platform};
pub use ports::{AppStore, NumberStore, SessionStore, Store, StoreError};
pub use session::{
    Abandon, ExpiresIn, Metadata, RedirectUrl, SessionError, SessionStatus, SignupSession,
};
