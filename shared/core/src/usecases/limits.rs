//! Rate limits that keep one client from hurting others: per App on its app-key routes
//! (its `RateLimit`), a per-App budget of on-demand health checks (they spend the Meta
//! app's rate limit every tenant shares), per signup token on the callback, and per
//! client IP on the public routes. Fixed-window counters in the store, shared by every
//! Lambda instance. A counter that cannot be reached lets the request through (logged):
//! limits protect the service, they must not take it down.

use chrono::{DateTime, Duration, Utc};

use crate::app::App;
use crate::clock::Clock;
use crate::ports::RateCounter;

/// One limit: at most `max` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub window: Duration,
}

/// The limits that are not an App's own setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// On-demand health checks per App: a burst of 10, then 5 a minute on average.
    pub checks_per_app: Limit,
    /// Callback and progress posts per signup token.
    pub per_token: Limit,
    /// Requests to the public routes (hosted page, callback, login links) per client IP.
    pub per_ip: Limit,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            checks_per_app: Limit {
                max: 10,
                window: Duration::minutes(2),
            },
            per_token: Limit {
                max: 30,
                window: Duration::minutes(1),
            },
            per_ip: Limit {
                max: 300,
                window: Duration::minutes(1),
            },
        }
    }
}

/// Over a limit: retry after this many seconds (the window's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited; retry after {retry_after} s")]
pub struct Limited {
    pub retry_after: u64,
}

/// The window containing `now`, and its end.
fn window(now: DateTime<Utc>, length: Duration) -> (DateTime<Utc>, DateTime<Utc>) {
    let len = length.num_milliseconds().max(1000);
    let start_ms = now.timestamp_millis().div_euclid(len) * len;
    let start = DateTime::from_timestamp_millis(start_ms).unwrap_or(now);
    (start, start + Duration::milliseconds(len))
}

/// Counts one request against `bucket`; `Err(Limited)` when over `limit`.
pub async fn admit(
    counter: &dyn RateCounter,
    clock: &dyn Clock,
    bucket: &str,
    limit: Limit,
) -> Result<(), Limited> {
    let now = clock.now();
    let (start, end) = window(now, limit.window);
    match counter
        .count_request(bucket, start, end + Duration::minutes(5))
        .await
    {
        Ok(n) if n > limit.max => Err(Limited {
            retry_after: u64::try_from((end - now).num_seconds().max(1)).unwrap_or(1),
        }),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, bucket_kind = bucket.split(':').next().unwrap_or(""), "rate counter unavailable; request let through");
            Ok(())
        }
    }
}

/// The App's own limit on its app-key routes.
pub async fn admit_app(
    counter: &dyn RateCounter,
    clock: &dyn Clock,
    app: &App,
) -> Result<(), Limited> {
    let limit = Limit {
        max: u64::from(app.rate_limit.burst),
        window: app.rate_limit.window(),
    };
    admit(counter, clock, &format!("app:{}", app.id), limit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_and_contain_now() {
        let now = DateTime::from_timestamp(1_000_003, 500_000_000).unwrap();
        let (s, e) = window(now, Duration::seconds(5));
        assert_eq!(s.timestamp(), 1_000_000);
        assert_eq!(e.timestamp(), 1_000_005);
        assert!(s <= now && now < e);
    }

    #[test]
    fn an_apps_rate_makes_its_window() {
        use crate::app::RateLimit;
        assert_eq!(RateLimit::default().window(), Duration::seconds(5));
        assert_eq!(
            RateLimit::new(10, 10).unwrap().window(),
            Duration::seconds(1)
        );
        assert_eq!(
            RateLimit::new(3, 10).unwrap().window(),
            Duration::seconds(4)
        );
        assert!(RateLimit::new(0, 10).is_err());
        assert!(RateLimit::new(10, 5).is_err());
    }
}
