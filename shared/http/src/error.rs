//! The one mapping from use-case errors to HTTP responses: `{"error": {"code", "message"}}`.
//! Internal details are logged here (without secrets) and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pipes_core::StoreError;
use pipes_core::session::SessionError;
use pipes_core::usecases::numbers::NumbersError;
use pipes_core::usecases::signup::SignupError;
use pipes_core::usecases::{AuthError, GetSessionError, IssueTokenError};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` seconds (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 `rate_limited` with `Retry-After`.
    pub fn rate_limited(l: pipes_core::usecases::limits::Limited) -> Self {
        Self {
            retry_after: Some(l.retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry after {} s", l.retry_after),
            )
        }
    }

    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field}: {message}"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid app key is required: Authorization: Bearer ak_...",
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is temporarily unavailable; retry shortly",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut res = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, source = ?std::error::Error::source(&e), "store failure");
        Self::unavailable()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized => Self::unauthorized(),
            AuthError::Store(e) => e.into(),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Invalid { field, message } => Self::invalid(field, message),
            e @ SessionError::RedirectNotAllowed => Self::new(
                StatusCode::BAD_REQUEST,
                "redirect_not_allowed",
                e.to_string(),
            ),
        }
    }
}

impl From<IssueTokenError> for ApiError {
    fn from(e: IssueTokenError) -> Self {
        match e {
            IssueTokenError::Invalid(e) => e.into(),
            IssueTokenError::Store(e) => e.into(),
        }
    }
}

impl From<GetSessionError> for ApiError {
    fn from(e: GetSessionError) -> Self {
        match e {
            GetSessionError::NotFound => Self::not_found("session"),
            GetSessionError::Store(e) => e.into(),
        }
    }
}

impl From<SignupError> for ApiError {
    fn from(e: SignupError) -> Self {
        let status = match &e {
            SignupError::Invalid { field, message } => return Self::invalid(field, message),
            SignupError::Store(e) => {
                tracing::error!(error = %e, "store failure during signup");
                StatusCode::SERVICE_UNAVAILABLE
            }
            SignupError::TokenNotFound => StatusCode::NOT_FOUND,
            SignupError::TokenExpired | SignupError::TokenUsed => StatusCode::GONE,
            SignupError::InProgress | SignupError::LinkedToAnotherApp => StatusCode::CONFLICT,
            SignupError::MetaValidation(_)
            | SignupError::ReconnectOtherNumber(_)
            | SignupError::NoPhoneNumber
            | SignupError::PhoneNumberAmbiguous => StatusCode::UNPROCESSABLE_ENTITY,
            SignupError::CodeRejected => StatusCode::UNPROCESSABLE_ENTITY,
            SignupError::ExchangeFailed => StatusCode::BAD_GATEWAY,
            SignupError::Unavailable
            | SignupError::AppCredentials
            | SignupError::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = match &e {
            SignupError::Store(_) | SignupError::Unavailable => {
                "the service is temporarily unavailable; retry shortly".to_owned()
            }
            e => e.to_string(),
        };
        Self::new(status, e.code(), message)
    }
}

impl From<NumbersError> for ApiError {
    fn from(e: NumbersError) -> Self {
        match e {
            NumbersError::Invalid { field, message } => Self::invalid(field, message),
            NumbersError::NotFound => Self::not_found("number"),
            NumbersError::Removed => Self::new(
                StatusCode::CONFLICT,
                "number_removed",
                "the number was removed; connect it again to check it",
            ),
            NumbersError::Unavailable => Self::unavailable(),
            e @ NumbersError::SetupComplete => {
                Self::new(StatusCode::CONFLICT, "setup_complete", e.to_string())
            }
            e @ NumbersError::MetaWait(_) => {
                Self::new(StatusCode::CONFLICT, "setup_waiting", e.to_string())
            }
            NumbersError::Store(e) => e.into(),
        }
    }
}
