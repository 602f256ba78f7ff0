//! Test harness shared by the integration tests: stores on the emulator and on disk,
//! an in-process app with request helpers, a clock tests can move, and log capture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod iam;
pub mod runtime_api;

use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::Client as DynamoClient;
use axum::body::Body;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use pipes_adapters::config::{GraphTuning, MetaConfig};
use pipes_adapters::graph::AppSecret;
use pipes_adapters::kms::KmsWrapper;
use pipes_adapters::root;
use pipes_adapters::sqs::SqsQueue;
use pipes_adapters::{DynamoStore, EmbeddedStore, dynamo};
use pipes_core::crypto::{Envelope, KeyWrapper};
use pipes_core::meta::MetaGraph;
use pipes_core::queue::{Job, JobQueue};
use pipes_core::usecases::health::HealthPolicy;
use pipes_core::usecases::setup::WorkerDeps;
use pipes_core::usecases::sweep::{SweepConfig, SweepReport};
use pipes_core::usecases::{IssueTokenRequest, PublicBaseUrl, admin, issue_token};
use pipes_core::{App, AppKey, Clock, Platform, Store};
use pipes_sandbox::{Sandbox, SignupRequest, SignupResult};
use serde_json::Value;
use tower::ServiceExt;

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Utc::now().trunc_subsecs(3))))
    }
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The emulator's SDK configuration. Adapter tests need moto's server, which
/// `scripts/test` starts and names in `AWS_ENDPOINT_URL`; without it they fail loudly.
pub async fn emulator() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "AWS_ENDPOINT_URL must point at moto's server on 127.0.0.1 (run scripts/test), got {endpoint:?}"
    );
    aws_config::load_from_env().await
}

/// A DynamoDB store on a fresh table of its own (tests run in parallel).
pub async fn dynamo_store() -> DynamoStore {
    let conf = emulator().await;
    let client = DynamoClient::new(&conf);
    let table = format!("pipes-test-{}", uuid_like());
    dynamo::create_table(&client, &table).await.unwrap();
    DynamoStore::new(client, table)
}

/// An embedded store in a temporary data dir (kept alive by the returned guard).
pub fn embedded_store() -> (EmbeddedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (EmbeddedStore::open(&dir.path().join("data")).unwrap(), dir)
}

fn uuid_like() -> String {
    pipes_core::random::base62(12).to_lowercase()
}

/// What a TestApp runs on: a store, a job queue and a key wrapper, either all embedded
/// or all AWS (DynamoDB, SQS and KMS on moto's server).
#[derive(Debug, Clone)]
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn JobQueue>,
    pub events_queue: Arc<dyn JobQueue>,
    pub wrapper: Arc<dyn KeyWrapper>,
    /// The embedded store, when this backend is embedded (for its job table and file).
    pub embedded: Option<EmbeddedStore>,
    /// The SQS queue, when this backend is AWS.
    pub sqs: Option<SqsQueue>,
    /// The events queue, when this backend is AWS.
    pub events_sqs: Option<SqsQueue>,
    /// The DynamoDB table, when this backend is AWS.
    pub table: Option<String>,
    /// The KMS key id, when this backend is AWS.
    pub kms_key_id: Option<String>,
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl Backend {
    /// The parts the composition root assembles.
    pub fn storage(&self) -> root::Storage {
        root::Storage {
            store: Arc::clone(&self.store),
            queue: Arc::clone(&self.queue),
            events_queue: Arc::clone(&self.events_queue),
            keys: Arc::clone(&self.wrapper),
        }
    }

    pub fn embedded() -> Self {
        let (store, dir) = embedded_store();
        let master = pipes_adapters::local_key::load_or_create(dir.path()).unwrap();
        Self {
            store: Arc::new(store.clone()),
            queue: Arc::new(store.clone()),
            events_queue: Arc::new(pipes_adapters::embedded::EventLane(store.clone())),
            wrapper: Arc::new(master),
            embedded: Some(store),
            sqs: None,
            events_sqs: None,
            table: None,
            kms_key_id: None,
            _dir: Some(Arc::new(dir)),
        }
    }

    pub async fn aws() -> Self {
        Self::aws_with(emulator().await).await
    }

    /// An AWS backend whose every request goes through `recorder` (to count them).
    pub async fn aws_through(recorder: &iam::Recorder) -> Self {
        emulator().await;
        // The functions' own SDK configuration (retries and timeouts) pointed at it.
        let conf = pipes_adapters::config::lambda_aws_at(Some(recorder.endpoint())).await;
        Self::aws_with(conf).await
    }

    async fn aws_with(conf: aws_config::SdkConfig) -> Self {
        let client = DynamoClient::new(&conf);
        let table = format!("pipes-test-{}", uuid_like());
        dynamo::create_table(&client, &table).await.unwrap();
        let store = DynamoStore::new(client, table);
        let queue = sqs_queue(&conf).await;
        let events = sqs_queue(&conf).await;
        let table = Some(store.table().to_owned());
        let key = kms_key(&conf).await;
        Self {
            table,
            kms_key_id: Some(key.clone()),
            store: Arc::new(store),
            queue: Arc::new(queue.clone()),
            events_queue: Arc::new(events.clone()),
            wrapper: Arc::new(KmsWrapper::new(aws_sdk_kms::Client::new(&conf), key)),
            embedded: None,
            sqs: Some(queue),
            events_sqs: Some(events),
            _dir: None,
        }
    }

    /// The jobs waiting in the queue, without consuming them.
    /// The queued jobs other than partner-event deliveries (which every signup, health
    /// change and removal also queues; the events tests look at those).
    pub async fn queued_work(&self) -> Vec<Job> {
        self.queued_jobs()
            .await
            .into_iter()
            .filter(|j| !matches!(j, Job::Deliver { .. }))
            .collect()
    }

    pub async fn queued_jobs(&self) -> Vec<Job> {
        if let Some(e) = &self.embedded {
            let now = Utc::now();
            let jobs = e.take_jobs(now, 1000, now).await.unwrap();
            return jobs
                .iter()
                .map(|j| serde_json::from_str(&j.body).unwrap())
                .collect();
        }
        let sqs = self.sqs.as_ref().expect("a queue");
        let client = aws_sdk_sqs::Client::new(&emulator().await);
        let mut jobs = Vec::new();
        loop {
            let out = client
                .receive_message()
                .queue_url(sqs.queue_url())
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() || jobs.len() > 1000 {
                break;
            }
            let before = jobs.len();
            for m in msgs {
                let job: Job = serde_json::from_str(m.body().unwrap()).unwrap();
                jobs.push((m.message_id.unwrap_or_default(), job));
            }
            jobs.sort_by(|a, b| a.0.cmp(&b.0));
            jobs.dedup_by(|a, b| a.0 == b.0);
            if jobs.len() == before {
                break;
            }
        }
        jobs.into_iter().map(|(_, j)| j).collect()
    }
}

/// A KMS key on the emulator, wrapped as the platform uses it.
pub async fn kms_wrapper(conf: &aws_config::SdkConfig) -> KmsWrapper {
    KmsWrapper::new(aws_sdk_kms::Client::new(conf), kms_key(conf).await)
}

/// A fresh KMS key on the emulator; its id.
pub async fn kms_key(conf: &aws_config::SdkConfig) -> String {
    let client = aws_sdk_kms::Client::new(conf);
    let key = client.create_key().send().await.unwrap();
    key.key_metadata.unwrap().key_id
}

/// A fresh SQS queue on the emulator.
pub async fn sqs_queue(conf: &aws_config::SdkConfig) -> SqsQueue {
    let client = aws_sdk_sqs::Client::new(conf);
    let out = client
        .create_queue()
        .queue_name(format!("pipes-test-{}", uuid_like()))
        .send()
        .await
        .unwrap();
    SqsQueue::new(client, out.queue_url.unwrap())
}

/// Up to 10 messages, with the system attributes (receive count) Lambda passes on.
pub async fn receive_batch(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
}

/// An SQS Lambda event made of received messages, as the event source mapping builds it.
pub fn sqs_event(msgs: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in msgs {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id.clone();
        record.receipt_handle = m.receipt_handle.clone();
        record.body = m.body.clone();
        record.attributes = m
            .attributes
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v))
            .collect();
        record.event_source = Some("aws:sqs".into());
        event.records.push(record);
    }
    event
}

/// The whole local platform in process (every route, sandbox Meta) with one App and
/// its key. The sandbox's Graph API is also served on a loopback port, where the real
/// Graph client reaches it.
#[derive(Debug)]
pub struct TestApp {
    /// What the routers and workers run with, assembled by the composition root.
    pub platform: Platform,
    pub router: axum::Router,
    pub backend: Backend,
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    pub sandbox: Sandbox,
    pub graph_base: String,
    pub graph: Arc<dyn MetaGraph>,
    pub envelope: Envelope,
    pub policy: HealthPolicy,
    pub app: App,
    pub key: AppKey,
}

pub const BASE_URL: &str = "https://connect.pipes.test";
/// `META_WEBHOOK_VERIFY_TOKEN` in tests.
pub const VERIFY_TOKEN: &str = "verify-token-for-tests";

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with_origins(backend, &[]).await
    }

    pub async fn spawn_with_origins(backend: Backend, origins: &[&str]) -> Self {
        Self::spawn_with(backend, origins, BASE_URL).await
    }

    pub async fn spawn_with(backend: Backend, origins: &[&str], base_url: &str) -> Self {
        let clock = ManualClock::new();
        let store = Arc::clone(&backend.store);
        let origins: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
        let slug = format!("acme-{}", uuid_like());
        let mut created = admin::create_app(&*store, clock.now(), &slug, "Acme CRM", &origins)
            .await
            .unwrap();
        // Tests make requests faster than a partner may; the limit tests set their own.
        created.app = admin::update_app(
            &*store,
            &created.app,
            admin::AppUpdate {
                rate_per_second: Some(500),
                rate_burst: Some(30_000),
                ..admin::AppUpdate::default()
            },
        )
        .await
        .unwrap();
        let sandbox = Sandbox::in_memory(Arc::new(clock.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox_addr = listener.local_addr().unwrap();
        let graph_base = format!("http://{sandbox_addr}{}", pipes_sandbox::GRAPH_PATH);
        // The same assembly every host uses, with the sandbox as Meta and a clock the
        // test moves; the Graph client gives up sooner than in production.
        let meta = MetaConfig {
            app_id: pipes_sandbox::SANDBOX_APP_ID.into(),
            app_secret: AppSecret::Known(pipes_sandbox::SANDBOX_APP_SECRET.to_owned().into()),
            config_id: pipes_sandbox::SANDBOX_CONFIG_ID.into(),
            graph_base_url: graph_base.parse().unwrap(),
            graph_version: "v25.0".into(),
            tuning: GraphTuning {
                timeout: std::time::Duration::from_secs(2),
                backoff: std::time::Duration::from_millis(10),
            },
        };
        let mut platform = root::assemble(
            backend.storage(),
            &meta,
            Arc::new(clock.clone()),
            PublicBaseUrl::parse(base_url).unwrap(),
            true,
        )
        .unwrap();
        // As under `pipes dev`: partner endpoints on loopback, a verify token, and the
        // sandbox delivering Meta's webhooks to this server.
        platform.sender = Arc::new(pipes_adapters::event_sender::HttpEventSender::new(true));
        platform.allow_local_endpoints = true;
        platform.webhook_verify_token = Some(VERIFY_TOKEN.to_owned().into());
        let router =
            pipes_http::local_router(platform.clone(), pipes_sandbox::router(sandbox.clone()));
        // The whole server (the sandbox's Graph API included) on a loopback port.
        let served = router.clone();
        tokio::spawn(async move { axum::serve(listener, served).await });
        sandbox.set_webhook_target(format!("http://{sandbox_addr}/webhooks/meta"));
        Self {
            router,
            graph: Arc::clone(&platform.graph),
            envelope: platform.envelope.clone(),
            policy: platform.policy,
            platform,
            backend,
            store,
            clock,
            sandbox,
            graph_base,
            app: created.app,
            key: created.key,
        }
    }

    /// What the workers run with (the test's clock and sandbox).
    pub fn worker_deps(&self) -> WorkerDeps<'_> {
        self.platform.worker()
    }

    /// Runs the queued jobs as the deployed worker would, until none is visible:
    /// the embedded job table through the local worker, or SQS messages (with their
    /// receive counts) through the Lambda batch handler with partial batch failures.
    /// Returns the number of deliveries.
    pub async fn run_jobs(&self) -> usize {
        let mut delivered = 0;
        for _ in 0..20 {
            let n = self.run_jobs_once().await;
            delivered += n;
            if n == 0 {
                break;
            }
        }
        delivered
    }

    /// Runs the partner-event deliveries visible now (the events queue), until none is.
    pub async fn run_events(&self) -> usize {
        let mut delivered = 0;
        for _ in 0..20 {
            let n = self.run_lane_once(true).await;
            delivered += n;
            if n == 0 {
                break;
            }
        }
        delivered
    }

    /// One round of deliveries; returns how many messages were delivered.
    pub async fn run_jobs_once(&self) -> usize {
        self.run_lane_once(false).await
    }

    async fn run_lane_once(&self, events: bool) -> usize {
        if let Some(e) = &self.backend.embedded {
            let lane = if events {
                pipes_adapters::embedded::Lane::Events
            } else {
                pipes_adapters::embedded::Lane::Work
            };
            return pipes_adapters::local_worker::run_lane_once(
                e,
                lane,
                self.worker_deps(),
                self.clock.now(),
                100,
            )
            .await
            .unwrap();
        }
        let sqs = if events {
            self.backend.events_sqs.as_ref().expect("a queue")
        } else {
            self.backend.sqs.as_ref().expect("a queue")
        };
        let client = aws_sdk_sqs::Client::new(&emulator().await);
        let msgs = receive_batch(&client, sqs.queue_url()).await;
        let event = sqs_event(&msgs);
        let response = pipes_adapters::sqs_worker::handle_batch(self.worker_deps(), event, 5).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        for m in &msgs {
            let id = m.message_id().unwrap_or_default();
            if failed.iter().any(|f| f == id) {
                // As Lambda does with a reported failure: the message becomes visible again.
                client
                    .change_message_visibility()
                    .queue_url(sqs.queue_url())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            } else {
                client
                    .delete_message()
                    .queue_url(sqs.queue_url())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        msgs.len()
    }

    /// The environment a deployed function of this platform gets (AWS backend only):
    /// the table, key, queue, the Meta app (the sandbox, on loopback) and its secret in
    /// an SSM SecureString on the emulator.
    pub async fn function_env(&self) -> Vec<(&'static str, String)> {
        let conf = emulator().await;
        let parameter = format!("/pipes-test/{}/meta-app-secret", uuid_like());
        aws_sdk_ssm::Client::new(&conf)
            .put_parameter()
            .name(&parameter)
            .value(pipes_sandbox::SANDBOX_APP_SECRET)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .unwrap();
        vec![
            (
                "TABLE_NAME",
                self.backend.table.clone().expect("an AWS backend"),
            ),
            ("KMS_KEY_ID", self.backend.kms_key_id.clone().unwrap()),
            (
                "SETUP_QUEUE_URL",
                self.backend.sqs.as_ref().unwrap().queue_url().to_owned(),
            ),
            (
                "EVENTS_QUEUE_URL",
                self.backend
                    .events_sqs
                    .as_ref()
                    .unwrap()
                    .queue_url()
                    .to_owned(),
            ),
            ("META_WEBHOOK_VERIFY_TOKEN", VERIFY_TOKEN.into()),
            ("SETUP_MAX_RECEIVE_COUNT", "5".into()),
            ("PUBLIC_BASE_URL", BASE_URL.into()),
            ("META_APP_ID", pipes_sandbox::SANDBOX_APP_ID.into()),
            ("META_CONFIG_ID", pipes_sandbox::SANDBOX_CONFIG_ID.into()),
            ("META_APP_SECRET_PARAMETER", parameter),
            ("META_GRAPH_BASE_URL", self.graph_base.clone()),
        ]
    }

    /// The same platform as a freshly started process would see it: a new envelope
    /// (no cached data keys) over the same key wrapper.
    pub fn with_fresh_envelope(mut self) -> Self {
        self.envelope = Envelope::new(Arc::clone(&self.backend.wrapper));
        self.platform.envelope = self.envelope.clone();
        self
    }

    /// One sweep now, with the test's clock.
    pub async fn sweep(
        &self,
        cfg: SweepConfig,
        deadline: Option<std::time::Instant>,
    ) -> SweepReport {
        pipes_core::usecases::sweep::sweep(self.worker_deps(), cfg, deadline)
            .await
            .unwrap()
    }

    /// Seeds `count` healthy, set-up numbers whose check is due, spread over `apps`
    /// Apps and WABAs of `per_waba` numbers, straight into the store and the sandbox
    /// (much faster than the signup flow; for sweeps and benchmarks).
    pub async fn seed_due_numbers(
        &self,
        count: usize,
        apps: usize,
        per_waba: usize,
    ) -> Vec<pipes_core::Number> {
        use pipes_core::crypto::{SecretBinding, SecretPurpose};
        use pipes_core::ports::{Claim, SignupCompletion};
        let mut owners = vec![self.app.clone()];
        while owners.len() < apps {
            owners.push(self.other_app().await.0);
        }
        let now = self.clock.now();
        let mut numbers = Vec::with_capacity(count);
        let mut waba: Option<String> = None;
        for i in 0..count {
            if i % per_waba.max(1) == 0 {
                waba = None;
            }
            let (s, token) = self
                .sandbox
                .connect(SignupRequest {
                    waba_id: waba.clone(),
                    ..SignupRequest::default()
                })
                .unwrap();
            waba = Some(s.waba_id.clone());
            self.sandbox.subscribe(&s.waba_id);
            let connected = pipes_sandbox::NumberUpdate {
                status: Some("CONNECTED".into()),
                platform_type: Some("CLOUD_API".into()),
                ..Default::default()
            };
            self.sandbox.update_number(&s.phone_number_id, &connected);
            let app = &owners[i % owners.len()];
            let phone = pipes_core::PhoneNumberId::parse(&s.phone_number_id).unwrap();
            let binding = SecretBinding {
                purpose: SecretPurpose::BusinessToken,
                app_id: &app.id,
                phone_number_id: &phone,
            };
            let sealed = self.envelope.seal(binding, token.as_bytes()).await.unwrap();
            let req = IssueTokenRequest {
                redirect_url: "https://partner.example/done".into(),
                ..Default::default()
            };
            let base = PublicBaseUrl::parse(BASE_URL).unwrap();
            let issued = issue_token(&*self.store, &self.clock, &base, app, req)
                .await
                .unwrap();
            let claim = self
                .store
                .claim_session(
                    &issued.token.hash(),
                    "seed",
                    now,
                    now + chrono::Duration::seconds(60),
                )
                .await
                .unwrap();
            let Claim::Won(session) = claim else {
                panic!("{claim:?}")
            };
            let mut number = sample_number(
                &app.id,
                &s.phone_number_id,
                &session.id,
                now - chrono::Duration::hours(2),
            );
            number.waba_id = pipes_core::WabaId::parse(&s.waba_id).unwrap();
            number.sealed_token = Some(sealed);
            number.setup.webhook_subscribed = true;
            number.setup.registered = true;
            number.setup.profile_read = true;
            number.setup.completed_at = Some(now - chrono::Duration::hours(2));
            number.health.status = pipes_core::HealthStatus::Healthy;
            number.health.reason = None;
            number.health.next_check_at =
                Some(now - chrono::Duration::minutes(1) - chrono::Duration::milliseconds(i as i64));
            let completion = SignupCompletion {
                previous_waba: None,
                session_id: session.id.clone(),
                claim_id: "seed".into(),
                completed_at: now,
                number: number.clone(),
                expected_version: None,
                history: None,
            };
            self.store.complete_signup(&completion).await.unwrap();
            numbers.push(number);
        }
        numbers
    }

    /// Serves every route on a loopback port (for browsers and other real clients).
    pub async fn serve(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.router.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    /// A second App on the same store, with its key.
    pub async fn other_app(&self) -> (App, AppKey) {
        let slug = format!("other-{}", uuid_like());
        let c = admin::create_app(&*self.store, self.clock.now(), &slug, "Other", &[])
            .await
            .unwrap();
        (c.app, c.key)
    }

    pub async fn send(&self, req: Request<Body>) -> TestResponse {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        TestResponse {
            status,
            headers,
            body: bytes.to_vec(),
        }
    }

    pub fn authed(&self, method: Method, uri: &str) -> http::request::Builder {
        Request::builder().method(method).uri(uri).header(
            header::AUTHORIZATION,
            format!("Bearer {}", self.key.expose()),
        )
    }

    pub async fn issue(&self, body: Value) -> TestResponse {
        self.issue_as(&self.key, body).await
    }

    pub async fn issue_as(&self, key: &AppKey, body: Value) -> TestResponse {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/apps/token")
            .header(header::AUTHORIZATION, format!("Bearer {}", key.expose()))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    /// Mints a signup token for this App; returns (token, sessionId).
    pub async fn signup_token(&self) -> (String, String) {
        let v = self
            .issue(serde_json::json!({"redirectUrl": "https://partner.example/done?x=1"}))
            .await
            .json();
        (
            v["token"].as_str().unwrap().to_owned(),
            v["sessionId"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn get_session(&self, id: &str) -> TestResponse {
        let req = self
            .authed(Method::GET, &format!("/v1/sessions/{id}"))
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    pub async fn post_json(&self, uri: &str, body: Value) -> TestResponse {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    /// Posts a FINISH callback for `token` with what a sandbox signup produced.
    pub async fn finish(&self, token: &str, signup: &SignupResult) -> TestResponse {
        self.post_json(
            "/v1/signup/callback",
            serde_json::json!({
                "token": token, "event": "FINISH", "code": signup.code,
                "wabaId": signup.waba_id, "phoneNumberId": signup.phone_number_id,
                "businessId": signup.business_id,
            }),
        )
        .await
    }

    /// A sandbox signup (a finished Embedded Signup) for a new number.
    pub fn sandbox_signup(&self) -> SignupResult {
        self.sandbox.signup(SignupRequest::default()).unwrap()
    }

    /// A sandbox signup for a given number (existing or new).
    pub fn sandbox_signup_for(&self, phone: &str) -> SignupResult {
        self.sandbox
            .signup(SignupRequest {
                phone_number_id: Some(phone.into()),
                ..SignupRequest::default()
            })
            .unwrap()
    }

    /// Posts a Meta webhook delivery, signed as Meta signs it (the sandbox app secret).
    pub async fn meta_webhook(&self, payload: &Value) -> TestResponse {
        self.meta_webhook_raw(payload.to_string().as_bytes(), None)
            .await
    }

    /// Posts raw bytes to `/webhooks/meta` with `signature` (signed correctly if None).
    pub async fn meta_webhook_raw(&self, body: &[u8], signature: Option<&str>) -> TestResponse {
        let sig = signature.map_or_else(
            || pipes_core::webhooks::sign(pipes_sandbox::SANDBOX_APP_SECRET.as_bytes(), body),
            str::to_owned,
        );
        let req = Request::post("/webhooks/meta")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-hub-signature-256", sig)
            .body(Body::from(body.to_vec()))
            .unwrap();
        self.send(req).await
    }

    /// The page's report that Meta's flow finished with `waba` for `token`.
    pub async fn report_finish(&self, token: &str, waba: &str) -> TestResponse {
        self.post_json(
            "/v1/signup/progress",
            serde_json::json!({"token": token, "wabaId": waba}),
        )
        .await
    }

    /// Registers the App's webhook endpoint; returns (url, secret).
    pub async fn register_endpoint(&self, url: &str) -> (String, String) {
        let req = self
            .authed(Method::PUT, "/v1/webhook-endpoint")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::json!({ "url": url }).to_string()))
            .unwrap();
        let res = self.send(req).await;
        assert_eq!(
            res.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&res.body)
        );
        let v = res.json();
        (
            v["url"].as_str().unwrap().to_owned(),
            v["secret"].as_str().unwrap().to_owned(),
        )
    }
}

/// An SQS event carrying `bodies` as Lambda would deliver them (first receive).
pub fn sqs_event_of(bodies: &[String]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, body) in bodies.iter().enumerate() {
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("00000000-0000-4000-8000-{i:012}"));
        record.receipt_handle = Some(format!("handle-{i}"));
        record.body = Some(body.clone());
        record.attributes = [("ApproximateReceiveCount".to_owned(), "1".to_owned())]
            .into_iter()
            .collect();
        record.event_source = Some("aws:sqs".into());
        event.records.push(record);
    }
    event
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The error code of an API.md error body, asserting the body's shape.
    pub fn error_code(&self) -> String {
        let v = self.json();
        assert!(
            v["error"]["message"].is_string(),
            "error body without message: {v}"
        );
        v["error"]["code"].as_str().expect("error.code").to_owned()
    }
}

/// Captures everything logged at any level while `f` runs, for secret-leak checks.
#[derive(Debug, Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The process-wide capture: installed once as the global subscriber, TRACE and up,
    /// with every span field. Global rather than per-test because tracing caches
    /// callsite interest across threads, which makes thread-local capture miss events
    /// while other tests run; a global one sees every test's logs, which only makes a
    /// leak check stricter.
    pub fn global() -> &'static LogCapture {
        static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
        CAPTURE.get_or_init(|| {
            let capture = LogCapture::default();
            let sink = capture.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the test binary");
            capture
        })
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every row of every table of an embedded store's database, as text: what a person
/// with the file would see. Used to prove bad requests change nothing and that no
/// plaintext secret is stored.
/// Every stored row but the rate-limit counters (a refused request is still counted:
/// that is what limits are for).
pub fn raw_rows(db: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'rate_counters' \
             ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = String::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let cols = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            out.push_str(&table);
            for i in 0..cols {
                let v: rusqlite::types::Value = row.get(i).unwrap();
                out.push_str(&format!(" | {v:?}"));
            }
            out.push('\n');
        }
    }
    out
}

/// A freshly signed-up number record, as CompleteSignup would store it.
pub fn sample_number(
    app: &pipes_core::AppId,
    phone: &str,
    session: &pipes_core::SessionId,
    now: DateTime<Utc>,
) -> pipes_core::Number {
    use pipes_core::number::{Profile, SetupState, TokenInfo};
    pipes_core::Number {
        phone_number_id: pipes_core::PhoneNumberId::parse(phone).unwrap(),
        app_id: app.clone(),
        waba_id: pipes_core::WabaId::parse("2000000000001").unwrap(),
        business_id: None,
        profile: Profile {
            display_phone_number: Some("+1 555-010-0000".into()),
            ..Profile::default()
        },
        health: pipes_core::Health::pending(now),
        setup: SetupState::default(),
        token: TokenInfo::default(),
        sealed_token: None,
        sealed_pin: None,
        teardown_tokens: Default::default(),
        session_id: session.clone(),
        metadata: pipes_core::Metadata::default(),
        connected_at: now,
        updated_at: now,
        version: 1,
    }
}
