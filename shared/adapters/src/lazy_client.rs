//! AWS SDK clients built on first use. Building one (its configuration, runtime
//! plugins and endpoint resolver) costs a cold start 0.1-0.3 ms,
//! and most functions never call most services on most invocations: the token issuer
//! never calls KMS, SQS or SSM. DynamoDB, which every function's first request calls,
//! stays built at init.

use std::sync::{Arc, OnceLock};

/// A client of one AWS service, built by the first [`LazyClient::get`] and shared by
/// every clone after that.
pub struct LazyClient<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    client: OnceLock<C>,
    make: Box<dyn Fn() -> C + Send + Sync>,
}

impl<C> Clone for LazyClient<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> std::fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyClient")
            .field("built", &self.inner.client.get().is_some())
            .finish()
    }
}

impl<C: Send + Sync + 'static> LazyClient<C> {
    /// Built from `conf` by `make` (e.g. `aws_sdk_sqs::Client::new`) on first use.
    pub fn new(conf: &aws_config::SdkConfig, make: fn(&aws_config::SdkConfig) -> C) -> Self {
        let conf = conf.clone();
        Self {
            inner: Arc::new(Inner {
                client: OnceLock::new(),
                make: Box::new(move || make(&conf)),
            }),
        }
    }

    /// The client, built now if this is its first use.
    pub fn get(&self) -> &C {
        self.inner.client.get_or_init(|| (self.inner.make)())
    }

    /// Whether the client has been built (for tests of what a cold start builds).
    pub fn is_built(&self) -> bool {
        self.inner.client.get().is_some()
    }
}

/// A client built already (tests, the admin CLI).
impl<C: Clone + Send + Sync + 'static> From<C> for LazyClient<C> {
    fn from(client: C) -> Self {
        let again = client.clone();
        Self {
            inner: Arc::new(Inner {
                client: OnceLock::from(client),
                make: Box::new(move || again.clone()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static BUILT: AtomicUsize = AtomicUsize::new(0);

    fn make(conf: &aws_config::SdkConfig) -> String {
        BUILT.fetch_add(1, Ordering::SeqCst);
        format!("client in {:?}", conf.region())
    }

    #[test]
    fn a_client_is_built_once_on_first_use_and_shared_by_clones() {
        let conf = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .build();
        let lazy = LazyClient::new(&conf, make);
        let clone = lazy.clone();
        assert!(!lazy.is_built());
        assert_eq!(BUILT.load(Ordering::SeqCst), 0, "nothing built at init");
        assert_eq!(clone.get(), "client in Some(Region(\"eu-west-1\"))");
        assert!(lazy.is_built(), "a clone's first use builds it for all");
        assert_eq!(lazy.get(), clone.get());
        assert_eq!(BUILT.load(Ordering::SeqCst), 1);
        let ready = LazyClient::from("built".to_owned());
        assert!(ready.is_built());
        assert_eq!(ready.get(), "built");
    }
}
