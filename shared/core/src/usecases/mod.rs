//! The use cases: one function or struct per thing a caller can ask of the platform,
//! each with its own error enum (mapped to HTTP in one place, in the http crate).

pub mod admin;
pub mod authenticate;
pub mod dashboard;
pub mod events;
pub mod get_session;
pub mod health;
pub mod idempotency;
pub mod inbound;
pub mod issue_token;
pub mod jobs;
pub mod limits;
pub mod numbers;
pub mod setup;
pub mod signup;
pub mod sweep;

pub use admin::{AdminError, CreatedApp, CreatedKey};
pub use authenticate::{AuthError, authenticate, authenticate_key};
pub use get_session::{GetSessionError, get_session};
pub use issue_token::{
    IssueTokenError, IssueTokenRequest, IssuedToken, PublicBaseUrl, issue_token,
};
