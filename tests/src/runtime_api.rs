//! A Lambda Runtime API on 127.0.0.1, enough to run a function's real bootstrap binary
//! against the sample events (what `sam local invoke` does, without Docker).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

#[derive(Debug, Clone)]
struct Shared {
    /// When the function first asked for an invocation: the end of its init.
    first_next: Arc<Mutex<Option<std::time::Instant>>>,
    pending: Arc<Mutex<VecDeque<(String, Value)>>>,
    ready: Arc<Notify>,
    results: mpsc::UnboundedSender<Outcome>,
}

/// A function spawned under its template name: (logical id, environment, recorder).
type Recorded = (String, Vec<(String, String)>, crate::iam::Recorder);

/// What the function answered for one invocation.
#[derive(Debug)]
pub enum Outcome {
    Response { request_id: String, body: Value },
    Error { request_id: String, body: Value },
    InitError(Value),
}

/// The Runtime API and the function process it serves.
#[derive(Debug)]
pub struct LambdaHarness {
    pub addr: SocketAddr,
    shared: Shared,
    results: mpsc::UnboundedReceiver<Outcome>,
    child: Option<Child>,
    spawned_at: Option<std::time::Instant>,
    next_id: u64,
    /// The function whose AWS calls are recorded, its environment and the recorder.
    recorded: Option<Recorded>,
}

async fn next(State(s): State<Shared>) -> impl IntoResponse {
    s.first_next
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(std::time::Instant::now);
    loop {
        let popped = s
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        if let Some((id, event)) = popped {
            let mut headers = HeaderMap::new();
            let deadline = chrono::Utc::now().timestamp_millis() + 300_000;
            headers.insert(
                "lambda-runtime-aws-request-id",
                id.parse().unwrap_or_else(|_| unreachable!()),
            );
            headers.insert(
                "lambda-runtime-deadline-ms",
                deadline
                    .to_string()
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:test"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
            );
            return (StatusCode::OK, headers, event.to_string());
        }
        s.ready.notified().await;
    }
}

async fn response(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = s.results.send(Outcome::Response {
        request_id: id,
        body,
    });
    StatusCode::ACCEPTED
}

async fn error(State(s): State<Shared>, UrlPath(id): UrlPath<String>, body: String) -> StatusCode {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = s.results.send(Outcome::Error {
        request_id: id,
        body,
    });
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Shared>, body: String) -> StatusCode {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = s.results.send(Outcome::InitError(body));
    StatusCode::ACCEPTED
}

impl LambdaHarness {
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            first_next: Arc::default(),
            pending: Arc::default(),
            ready: Arc::default(),
            results: tx,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // No delayed ACKs: every answer goes out at once, so a warm invoke measured
        // here is the function's time, not TCP's.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            shared,
            results: rx,
            child: None,
            spawned_at: None,
            next_id: 0,
            recorded: None,
        }
    }

    /// Starts the function binary with the Lambda environment plus `env`.
    pub fn spawn<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        &mut self,
        binary: &Path,
        env: &[(K, V)],
    ) {
        let mut cmd = Command::new(binary);
        cmd.env("AWS_LAMBDA_RUNTIME_API", self.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/test")
            .env_remove("TABLE_NAME")
            .env_remove("PUBLIC_BASE_URL")
            .env_remove("META_APP_ID")
            .env_remove("META_APP_SECRET")
            .env_remove("META_CONFIG_ID")
            .env_remove("META_APP_SECRET_PARAMETER")
            .env_remove("KMS_KEY_ID")
            .env_remove("SETUP_QUEUE_URL")
            .env_remove("SETUP_MAX_RECEIVE_COUNT")
            .env_remove("SWEEP_CONCURRENCY")
            .env_remove("SWEEP_MAX_INLINE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.spawned_at = Some(std::time::Instant::now());
        self.child = Some(cmd.spawn().expect("spawn the function"));
    }

    /// From spawning the process to its first request for an invocation (its init),
    /// once it has asked.
    pub fn init_duration(&self) -> Option<Duration> {
        let first = (*self
            .shared
            .first_next
            .lock()
            .unwrap_or_else(|p| p.into_inner()))?;
        Some(first.duration_since(self.spawned_at?))
    }

    /// Waits until the function has finished its init (asked for an invocation).
    pub async fn wait_ready(&self) -> Duration {
        for _ in 0..6000 {
            if let Some(d) = self.init_duration() {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the function did not ask for an invocation within 6 s");
    }

    /// The process's peak resident set size so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// Like `spawn`, as the template's `function` (its logical id): every AWS call goes
    /// through a recorder in front of moto, for `assert_least_privilege`.
    pub async fn spawn_as<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        &mut self,
        function: &str,
        binary: &Path,
        env: &[(K, V)],
    ) {
        let recorder = crate::iam::Recorder::start().await;
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| {
                (
                    k.as_ref().to_string_lossy().into_owned(),
                    v.as_ref().to_string_lossy().into_owned(),
                )
            })
            .collect();
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        let mut with_proxy = env.clone();
        with_proxy.push(("AWS_ENDPOINT_URL".into(), recorder.endpoint()));
        self.spawn(binary, &with_proxy);
        self.recorded = Some((function.to_owned(), env, recorder));
    }

    /// Fails unless every AWS call the function made so far is one its own policy in
    /// `template.yaml` (and the KMS key's policy) allows; returns the calls.
    pub fn assert_least_privilege(&self) -> Vec<crate::iam::Call> {
        use crate::iam::{Bindings, FunctionPolicy, TEMPLATE, Template};
        let (function, env, recorder) = self.recorded.as_ref().expect("spawned with spawn_as");
        let template = Template::parse(TEMPLATE).expect("template.yaml parses");
        let bindings = Bindings::for_env(&template, env);
        let policy = FunctionPolicy::from_template(&template, function, &bindings)
            .unwrap_or_else(|e| panic!("{function}'s policy: {e}"));
        let calls = recorder.calls();
        assert!(
            !calls.is_empty(),
            "{function} made no AWS call through the recorder"
        );
        let refused = policy.refused(&calls);
        assert!(
            refused.is_empty(),
            "{function} made AWS calls its policy in template.yaml does not allow:\n{}",
            refused.join("\n")
        );
        calls
    }

    /// Invokes the function with `event` and returns what it answered.
    pub async fn invoke(&mut self, event: Value) -> Outcome {
        self.next_id += 1;
        let id = format!("req-{}", self.next_id);
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((id, event));
        self.shared.ready.notify_waiters();
        self.outcome().await
    }

    pub async fn outcome(&mut self) -> Outcome {
        tokio::time::timeout(Duration::from_secs(60), self.results.recv())
            .await
            .expect("the function answered within 60 s")
            .expect("runtime API open")
    }

    /// Stops the process and returns what it printed on stdout.
    pub fn stop(&mut self) -> String {
        let mut child = self.child.take().expect("spawned");
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for the process to exit; returns its status and stderr.
    pub fn wait_exit(&mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().expect("spawned");
        let out = child.wait_with_output().expect("wait");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for LambdaHarness {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
