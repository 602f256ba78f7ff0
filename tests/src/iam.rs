//! Least privilege, proven by the tests: moto enforces no IAM, so every AWS call a
//! function's real bootstrap makes in a test goes through a recording proxy in front of
//! moto, and is then evaluated against that function's own policy statements parsed
//! from `template.yaml` (and, for KMS, against the key's policy too).
//!
//! What a call is evaluated as, as AWS would:
//! - DynamoDB: one action per item: `TransactWriteItems` is `PutItem`, `UpdateItem`,
//!   `DeleteItem` or `ConditionCheckItem` per item, each with the item's partition key
//!   as `dynamodb:LeadingKeys`; `Query` has the partition key bound in its key
//!   condition (the index's, on an index, on `table/T/index/I`); `Scan` has none.
//! - KMS: the key's ARN, `kms:EncryptionContext:<k>` and `kms:EncryptionContextKeys`;
//!   allowed when the key policy allows the function's role directly, or allows the
//!   account (delegating to IAM) and the role's policy allows too.
//! - SQS and SSM: the queue's and the parameter's ARN.
//! - Anything this module cannot read is recorded as denied, so it cannot pass unseen.
//!
//! Policy language: `Allow`/`Deny`, `Action`/`NotAction`, `Resource`, `Principal.AWS`
//! (key policy), and the condition operators `String(Not)Equals`, `String(Not)Like`,
//! `ArnEquals`/`ArnLike`, `Bool`, `Null`, with `ForAllValues:`/`ForAnyValue:` and
//! `IfExists`; anything else in a statement fails the test as unsupported rather than
//! being guessed. Intrinsics: `!Ref`, `!GetAtt`, `!Sub`, pseudo parameters, and
//! parameter defaults.
//!
//! What it cannot see: calls made by code paths no test drives through a real
//! bootstrap; permission boundaries, SCPs, session policies and resource policies
//! other than the KMS key's; and what AWS does implicitly (the Lambda service polling
//! SQS for the event source mapping, CloudWatch Logs from stdout).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// The repository's template, as deployed.
pub const TEMPLATE: &str = include_str!("../../template.yaml");

pub const ACCOUNT: &str = "123456789012";

fn region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())
}

/// One authorisation AWS would make for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `service:Action`, e.g. `dynamodb:PutItem`.
    pub action: String,
    /// The resource's ARN (`*` when the action has none).
    pub resource: String,
    /// Request context keys (lower-case names) and their values.
    pub context: BTreeMap<String, Vec<String>>,
}

impl Call {
    fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
            context: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &str, values: Vec<String>) -> Self {
        self.context.insert(key.to_ascii_lowercase(), values);
        self
    }

    fn unreadable(why: impl Into<String>) -> Self {
        Self::new(format!("unreadable:{}", why.into()), "*")
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)?;
        for (k, v) in &self.context {
            write!(f, " {k}={v:?}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Reading requests

fn dynamo_arn(table: &str, index: Option<&str>) -> String {
    let base = format!("arn:aws:dynamodb:{}:{ACCOUNT}:table/{table}", region());
    match index {
        Some(i) => format!("{base}/index/{i}"),
        None => base,
    }
}

/// The table's key schema: (table hash key, index name → index hash key).
#[derive(Debug, Clone, Default)]
pub struct KeySchema {
    pub hash: String,
    pub indexes: HashMap<String, String>,
}

fn str_of<'a>(v: &'a Json, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn leading_key(keys: &KeySchema, item: Option<&Json>) -> Vec<String> {
    item.and_then(|i| i.get(&keys.hash))
        .and_then(|v| v.get("S").or_else(|| v.get("N")))
        .and_then(Json::as_str)
        .map(|s| vec![s.to_owned()])
        .unwrap_or_default()
}

fn dynamo_item_call(keys: &KeySchema, action: &str, req: &Json, key_field: &str) -> Call {
    let Some(table) = str_of(req, &["TableName"]) else {
        return Call::unreadable(format!("dynamodb:{action} without TableName"));
    };
    // DynamoDB always binds the partition key of an item operation: one we cannot read
    // must not pass as an empty set (which `ForAllValues` would accept).
    let leading = leading_key(keys, req.get(key_field));
    if leading.is_empty() {
        return Call::unreadable(format!("dynamodb:{action} with no readable partition key"));
    }
    Call::new(format!("dynamodb:{action}"), dynamo_arn(table, None))
        .with("dynamodb:LeadingKeys", leading)
}

/// The value bound to `hash` by equality in a key condition (`#pk = :pk AND ...`).
fn query_leading_key(req: &Json, hash: &str) -> Vec<String> {
    let Some(expr) = str_of(req, &["KeyConditionExpression"]) else {
        return Vec::new();
    };
    let names = req.get("ExpressionAttributeNames");
    let values = req.get("ExpressionAttributeValues");
    let resolve = |token: &str| -> String {
        let t = token.trim().trim_matches(|c| c == '(' || c == ')');
        names
            .and_then(|n| n.get(t))
            .and_then(Json::as_str)
            .unwrap_or(t)
            .to_owned()
    };
    for clause in expr.split(" AND ").flat_map(|c| c.split(" and ")) {
        let Some((lhs, rhs)) = clause.split_once('=') else {
            continue;
        };
        if lhs.ends_with(['<', '>', '!']) || rhs.starts_with('=') {
            continue;
        }
        if resolve(lhs) == hash {
            let placeholder = rhs.trim().trim_matches(|c| c == '(' || c == ')');
            if let Some(v) = values
                .and_then(|v| v.get(placeholder))
                .and_then(|v| v.get("S").or_else(|| v.get("N")))
                .and_then(Json::as_str)
            {
                return vec![v.to_owned()];
            }
        }
    }
    Vec::new()
}

fn dynamo_calls(keys: &KeySchema, op: &str, req: &Json) -> Vec<Call> {
    match op {
        "GetItem" | "UpdateItem" | "DeleteItem" => vec![dynamo_item_call(keys, op, req, "Key")],
        "PutItem" => vec![dynamo_item_call(keys, op, req, "Item")],
        "Query" | "Scan" => {
            let Some(table) = str_of(req, &["TableName"]) else {
                return vec![Call::unreadable(format!("dynamodb:{op} without TableName"))];
            };
            let index = str_of(req, &["IndexName"]);
            let call = Call::new(format!("dynamodb:{op}"), dynamo_arn(table, index));
            if op == "Scan" {
                return vec![call];
            }
            let hash = match index {
                Some(i) => match keys.indexes.get(i) {
                    Some(h) => h.as_str(),
                    None => return vec![Call::unreadable(format!("unknown index {i}"))],
                },
                None => keys.hash.as_str(),
            };
            let leading = query_leading_key(req, hash);
            if leading.is_empty() {
                return vec![Call::unreadable(
                    "dynamodb:Query whose partition key condition cannot be read",
                )];
            }
            vec![call.with("dynamodb:LeadingKeys", leading)]
        }
        "TransactWriteItems" | "TransactGetItems" => {
            let items = req
                .get("TransactItems")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            items
                .iter()
                .map(|item| {
                    let kinds = [
                        ("Put", "PutItem", "Item"),
                        ("Update", "UpdateItem", "Key"),
                        ("Delete", "DeleteItem", "Key"),
                        ("ConditionCheck", "ConditionCheckItem", "Key"),
                        ("Get", "GetItem", "Key"),
                    ];
                    kinds
                        .iter()
                        .find_map(|(kind, action, key)| {
                            item.get(*kind)
                                .map(|inner| dynamo_item_call(keys, action, inner, key))
                        })
                        .unwrap_or_else(|| Call::unreadable("transaction item"))
                })
                .collect()
        }
        "BatchGetItem" | "BatchWriteItem" => {
            let mut calls = Vec::new();
            let Some(tables) = req.get("RequestItems").and_then(Json::as_object) else {
                return vec![Call::unreadable(format!(
                    "dynamodb:{op} without RequestItems"
                ))];
            };
            for (table, reqs) in tables {
                let as_req = |key_field: &str, item: &Json| serde_json::json!({"TableName": table, key_field: item});
                if op == "BatchGetItem" {
                    for k in reqs
                        .get("Keys")
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                    {
                        calls.push(dynamo_item_call(keys, "GetItem", &as_req("Key", k), "Key"));
                    }
                } else {
                    for r in reqs.as_array().into_iter().flatten() {
                        if let Some(i) = r.get("PutRequest").and_then(|p| p.get("Item")) {
                            calls.push(dynamo_item_call(
                                keys,
                                "PutItem",
                                &as_req("Item", i),
                                "Item",
                            ));
                        } else if let Some(k) = r.get("DeleteRequest").and_then(|p| p.get("Key")) {
                            calls.push(dynamo_item_call(
                                keys,
                                "DeleteItem",
                                &as_req("Key", k),
                                "Key",
                            ));
                        } else {
                            calls.push(Call::unreadable("batch write request"));
                        }
                    }
                }
            }
            calls
        }
        other => match str_of(req, &["TableName"]) {
            Some(t) => vec![Call::new(format!("dynamodb:{other}"), dynamo_arn(t, None))],
            None => vec![Call::new(format!("dynamodb:{other}"), "*")],
        },
    }
}

fn kms_calls(op: &str, req: &Json) -> Vec<Call> {
    // Only a key named by id or key ARN can be judged against its key policy; by alias,
    // or with no key at all (legal for Decrypt), the call is refused here.
    let resource = match str_of(req, &["KeyId"]) {
        Some(id) if id.starts_with("alias/") || id.contains(":alias/") => {
            return vec![Call::unreadable(format!(
                "kms:{op} by alias {id} (name the key by id or ARN)"
            ))];
        }
        Some(id) if id.starts_with("arn:") => id.to_owned(),
        Some(id) => format!("arn:aws:kms:{}:{ACCOUNT}:key/{id}", region()),
        None => {
            return vec![Call::unreadable(format!("kms:{op} without KeyId"))];
        }
    };
    let mut call = Call::new(format!("kms:{op}"), resource);
    if let Some(ctx) = req.get("EncryptionContext").and_then(Json::as_object) {
        let mut keys = Vec::new();
        for (k, v) in ctx {
            keys.push(k.clone());
            let v = v.as_str().unwrap_or_default().to_owned();
            call = call.with(&format!("kms:EncryptionContext:{k}"), vec![v]);
        }
        call = call.with("kms:EncryptionContextKeys", keys);
    }
    vec![call]
}

fn queue_arn(url: &str) -> String {
    let name = url.rsplit('/').next().unwrap_or_default();
    format!("arn:aws:sqs:{}:{ACCOUNT}:{name}", region())
}

fn sqs_calls(op: &str, queue_url: Option<&str>) -> Vec<Call> {
    // The batch variants are authorised as their single-message actions.
    let action = match op {
        "SendMessageBatch" => "SendMessage",
        "DeleteMessageBatch" => "DeleteMessage",
        "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
        other => other,
    };
    let resource = queue_url.map_or_else(|| "*".to_owned(), queue_arn);
    vec![Call::new(format!("sqs:{action}"), resource)]
}

fn ssm_parameter_arn(name: &str) -> String {
    let name = name.strip_prefix('/').unwrap_or(name);
    format!("arn:aws:ssm:{}:{ACCOUNT}:parameter/{name}", region())
}

fn ssm_calls(op: &str, req: &Json) -> Vec<Call> {
    let mut names: Vec<String> = str_of(req, &["Name"])
        .map(str::to_owned)
        .into_iter()
        .collect();
    names.extend(
        req.get("Names")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_owned)),
    );
    if names.is_empty() {
        return vec![Call::new(format!("ssm:{op}"), "*")];
    }
    names
        .iter()
        .map(|n| Call::new(format!("ssm:{op}"), ssm_parameter_arn(n)))
        .collect()
}

/// The service named in the SigV4 credential scope (`Credential=AK/date/region/svc/...`).
fn signed_service(headers: &http::HeaderMap) -> Option<String> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    let scope: Vec<&str> = cred.split([',', ' ']).next()?.split('/').collect();
    scope.get(3).map(|s| (*s).to_owned())
}

/// What AWS would authorise for one HTTP request to a service endpoint.
pub fn calls_of(keys: &KeySchema, headers: &http::HeaderMap, body: &[u8]) -> Vec<Call> {
    let Some(service) = signed_service(headers) else {
        return vec![Call::unreadable("unsigned request")];
    };
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.rsplit('.').next().unwrap_or(t).to_owned());
    let json: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
    // The query protocol (form bodies) names the action in `Action=`.
    let form: HashMap<String, String> = if target.is_none() {
        url::form_urlencoded::parse(body).into_owned().collect()
    } else {
        HashMap::new()
    };
    let Some(op) = target.or_else(|| form.get("Action").cloned()) else {
        return vec![Call::unreadable(format!(
            "{service} request without an action"
        ))];
    };
    match service.as_str() {
        "dynamodb" => dynamo_calls(keys, &op, &json),
        "kms" => kms_calls(&op, &json),
        "sqs" => sqs_calls(
            &op,
            str_of(&json, &["QueueUrl"]).or(form.get("QueueUrl").map(String::as_str)),
        ),
        "ssm" => ssm_calls(&op, &json),
        other => vec![Call::new(format!("{other}:{op}"), "*")],
    }
}

// ---------------------------------------------------------------------------------
// The recording proxy

#[derive(Debug, Clone)]
struct Proxy {
    upstream: String,
    client: reqwest::Client,
    keys: KeySchema,
    calls: Arc<Mutex<Vec<Call>>>,
    requests: Arc<Mutex<Vec<String>>>,
    /// While set, every request fails as an AWS outage would (503).
    down: Arc<std::sync::atomic::AtomicBool>,
}

/// `service:Operation` of one request (a transaction is one request, many calls).
fn operation(headers: &http::HeaderMap, body: &[u8]) -> String {
    let service = signed_service(headers).unwrap_or_else(|| "unsigned".into());
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.rsplit('.').next().unwrap_or(t).to_owned())
        .or_else(|| {
            url::form_urlencoded::parse(body)
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{service}:{op}")
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_else(|_| Bytes::new());
    if p.down.load(std::sync::atomic::Ordering::SeqCst) {
        return Response::builder()
            .status(503)
            .header("content-type", "application/x-amz-json-1.0")
            .body(Body::from(
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ServiceUnavailable","message":"outage"}"#,
            ))
            .unwrap_or_else(|_| Response::new(Body::empty()));
    }
    let recorded = calls_of(&p.keys, &parts.headers, &bytes);
    p.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(operation(&parts.headers, &bytes));
    p.calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(recorded);
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let mut out = p
        .client
        .request(parts.method, format!("{}{path}", p.upstream));
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let mut response = Response::builder();
    match out.body(bytes).send().await {
        Ok(res) => {
            response = response.status(res.status());
            for (name, value) in res.headers() {
                if name != http::header::TRANSFER_ENCODING && name != http::header::CONTENT_LENGTH {
                    response = response.header(name, value);
                }
            }
            let body = res.bytes().await.unwrap_or_default();
            response.body(Body::from(body))
        }
        Err(_) => response.status(502).body(Body::empty()),
    }
    .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A proxy in front of the emulator that records what each request would need.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    requests: Arc<Mutex<Vec<String>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    /// Forwards to `AWS_ENDPOINT_URL` (moto's server).
    pub async fn start() -> Self {
        let upstream = std::env::var("AWS_ENDPOINT_URL")
            .expect("AWS_ENDPOINT_URL names moto's server (run scripts/test)");
        let template = Template::parse(TEMPLATE).expect("template.yaml parses");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let proxy = Proxy {
            down: Arc::clone(&down),
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            keys: template.key_schema(),
            calls: Arc::clone(&calls),
            requests: Arc::clone(&requests),
        };
        let app = Router::new().fallback(forward).with_state(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            calls,
            requests,
            down,
        }
    }

    /// An AWS outage (every request 503) until `false` again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every request so far, as `service:Operation`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

// ---------------------------------------------------------------------------------
// The template and its policies

/// What the template's references stand for in a test deployment.
#[derive(Debug, Clone, Default)]
pub struct Bindings(HashMap<String, String>);

impl Bindings {
    /// From a function's environment as the tests give it (`TABLE_NAME`, `KMS_KEY_ID`,
    /// `SETUP_QUEUE_URL`, `META_APP_SECRET_PARAMETER`) and the template's names.
    pub fn for_env(template: &Template, env: &[(String, String)]) -> Self {
        let region = region();
        let mut b = HashMap::new();
        for (k, v) in [
            ("AWS::Partition", "aws".to_owned()),
            ("AWS::Region", region.clone()),
            ("AWS::AccountId", ACCOUNT.to_owned()),
            ("AWS::StackName", "pipes".to_owned()),
            ("AWS::URLSuffix", "amazonaws.com".to_owned()),
        ] {
            b.insert(k.to_owned(), v);
        }
        for (name, default) in template.parameter_defaults() {
            b.insert(name, default);
        }
        for name in template.function_names() {
            b.insert(
                format!("{name}Role.Arn"),
                format!("arn:aws:iam::{ACCOUNT}:role/{name}Role"),
            );
        }
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(t) = get("TABLE_NAME") {
            b.insert("Table.Arn".into(), dynamo_arn(&t, None));
            b.insert("Table".into(), t);
        }
        if let Some(k) = get("KMS_KEY_ID") {
            b.insert(
                "TokenKey.Arn".into(),
                format!("arn:aws:kms:{region}:{ACCOUNT}:key/{k}"),
            );
            b.insert("TokenKey".into(), k);
        }
        if let Some(q) = get("SETUP_QUEUE_URL") {
            b.insert("SetupQueue.Arn".into(), queue_arn(&q));
            b.insert("SetupQueue".into(), q);
        }
        if let Some(q) = get("EVENTS_QUEUE_URL") {
            b.insert("EventsQueue.Arn".into(), queue_arn(&q));
            b.insert("EventsQueue".into(), q);
        }
        if let Some(p) = get("META_APP_SECRET_PARAMETER") {
            b.insert("MetaAppSecretParameterName".into(), p);
        }
        Self(b)
    }

    fn get(&self, name: &str) -> Result<&str, String> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("unresolved reference {name}"))
    }
}

/// The parsed template.
#[derive(Debug, Clone)]
pub struct Template(Yaml);

fn ystr(v: &Yaml) -> Option<&str> {
    v.as_str()
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_yaml_ng::from_str(text)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Yaml)> {
        self.0
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((ystr(k)?, v)))
    }

    fn resource(&self, name: &str) -> Option<&Yaml> {
        self.resources().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn function_names(&self) -> Vec<String> {
        self.resources()
            .filter(|(_, r)| r.get("Type").and_then(ystr) == Some("AWS::Serverless::Function"))
            .map(|(n, _)| n.to_owned())
            .collect()
    }

    fn parameter_defaults(&self) -> Vec<(String, String)> {
        self.0
            .get("Parameters")
            .and_then(Yaml::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let d = v.get("Default")?;
                let d = match d {
                    Yaml::String(s) => s.clone(),
                    Yaml::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((ystr(k)?.to_owned(), d))
            })
            .collect()
    }

    /// The table's hash key and each GSI's.
    pub fn key_schema(&self) -> KeySchema {
        let hash_of = |schema: Option<&Yaml>| {
            schema
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
                .find(|k| k.get("KeyType").and_then(ystr) == Some("HASH"))
                .and_then(|k| k.get("AttributeName").and_then(ystr))
                .unwrap_or_default()
                .to_owned()
        };
        let props = self.resource("Table").and_then(|t| t.get("Properties"));
        let mut keys = KeySchema {
            hash: hash_of(props.and_then(|p| p.get("KeySchema"))),
            indexes: HashMap::new(),
        };
        for gsi in props
            .and_then(|p| p.get("GlobalSecondaryIndexes"))
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            if let Some(name) = gsi.get("IndexName").and_then(ystr) {
                keys.indexes
                    .insert(name.to_owned(), hash_of(gsi.get("KeySchema")));
            }
        }
        keys
    }

    /// The function's identity policy statements, rendered.
    pub fn function_statements(&self, function: &str, b: &Bindings) -> Result<Vec<Json>, String> {
        let f = self
            .resource(function)
            .ok_or_else(|| format!("no resource {function} in template.yaml"))?;
        let props = f.get("Properties").ok_or("function without Properties")?;
        if props.get("Role").is_some() {
            return Err(format!(
                "{function}: a Role property is not read by this test"
            ));
        }
        let mut out = Vec::new();
        for p in props
            .get("Policies")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            let doc = render(p, b)?;
            let stmts = doc
                .get("Statement")
                .and_then(Json::as_array)
                .ok_or_else(|| {
                    format!("{function}: only inline policy documents are read, got {doc}")
                })?;
            out.extend(stmts.iter().cloned());
        }
        Ok(out)
    }

    /// The KMS key's policy statements, rendered.
    pub fn key_policy(&self, key: &str, b: &Bindings) -> Result<Vec<Json>, String> {
        let doc = self
            .resource(key)
            .and_then(|k| k.get("Properties"))
            .and_then(|p| p.get("KeyPolicy"))
            .ok_or_else(|| format!("no KeyPolicy on {key}"))?;
        let doc = render(doc, b)?;
        doc.get("Statement")
            .and_then(Json::as_array)
            .cloned()
            .ok_or_else(|| "key policy without Statement".into())
    }
}

/// Evaluates the intrinsics of a template fragment into plain JSON.
fn render(v: &Yaml, b: &Bindings) -> Result<Json, String> {
    Ok(match v {
        Yaml::Null => Json::Null,
        Yaml::Bool(x) => Json::Bool(*x),
        Yaml::Number(n) => serde_json::from_str(&n.to_string()).map_err(|e| e.to_string())?,
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(
            items
                .iter()
                .map(|i| render(i, b))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(m) => {
            if m.len() == 1
                && let Some((k, arg)) = m.iter().next()
                && let Some(name) = ystr(k).filter(|k| *k == "Ref" || k.starts_with("Fn::"))
            {
                return intrinsic(name.trim_start_matches("Fn::"), arg, b);
            }
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let k = ystr(k).ok_or("a non-string key")?;
                out.insert(k.to_owned(), render(v, b)?);
            }
            Json::Object(out)
        }
        Yaml::Tagged(t) => {
            let tag = t.tag.to_string();
            intrinsic(tag.trim_start_matches('!'), &t.value, b)?
        }
    })
}

fn intrinsic(name: &str, arg: &Yaml, b: &Bindings) -> Result<Json, String> {
    let text = match name {
        "Ref" => b.get(ystr(arg).ok_or("!Ref takes a name")?)?.to_owned(),
        "GetAtt" => {
            let path = match arg {
                Yaml::String(s) => s.clone(),
                Yaml::Sequence(parts) => {
                    parts.iter().filter_map(ystr).collect::<Vec<_>>().join(".")
                }
                _ => return Err("!GetAtt takes Name.Attribute".into()),
            };
            b.get(&path)?.to_owned()
        }
        "Sub" => {
            let (pattern, vars) = match arg {
                Yaml::String(s) => (s.clone(), None),
                Yaml::Sequence(parts) if parts.len() == 2 => (
                    ystr(&parts[0]).ok_or("!Sub pattern")?.to_owned(),
                    parts[1].as_mapping(),
                ),
                _ => return Err("!Sub takes a string or [string, map]".into()),
            };
            let mut out = String::new();
            let mut rest = pattern.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after.find('}').ok_or("unclosed ${ in !Sub")?;
                let var = &after[..end];
                let local = vars
                    .and_then(|m| m.get(var))
                    .map(|v| render(v, b))
                    .transpose()?;
                match local {
                    Some(Json::String(s)) => out.push_str(&s),
                    Some(other) => out.push_str(&other.to_string()),
                    None => out.push_str(b.get(var)?),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            out
        }
        other => return Err(format!("intrinsic {other} is not read by this test")),
    };
    Ok(Json::String(text))
}

// ---------------------------------------------------------------------------------
// Evaluating

/// `*` any run, `?` any one character.
pub fn glob(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            value.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), value.chars().collect())
    };
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn strings(v: Option<&Json>) -> Vec<String> {
    match v {
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(a)) => a
            .iter()
            .map(|x| match x {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(Json::Bool(b)) => vec![b.to_string()],
        Some(other) => vec![other.to_string()],
        None => Vec::new(),
    }
}

fn condition_holds(op: &str, key: &str, wanted: &[String], call: &Call) -> Result<bool, String> {
    let (set, rest) = match op.split_once(':') {
        Some((s @ ("ForAllValues" | "ForAnyValue"), r)) => (Some(s), r),
        _ => (None, op),
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let present = call.context.get(&key.to_ascii_lowercase());
    if base == "Null" {
        let absent = present.is_none_or(Vec::is_empty);
        return Ok(wanted.iter().any(|w| (w == "true") == absent));
    }
    let (negated, matcher): (bool, fn(&str, &str) -> bool) = match base {
        "StringEquals" | "ArnEquals" | "Bool" => (false, |p, v| p == v),
        "StringLike" | "ArnLike" => (false, |p, v| glob(p, v, false)),
        "StringNotEquals" | "ArnNotEquals" => (true, |p, v| p == v),
        "StringNotLike" | "ArnNotLike" => (true, |p, v| glob(p, v, false)),
        other => {
            return Err(format!(
                "condition operator {other} is not read by this test"
            ));
        }
    };
    let matches_any = |v: &str| wanted.iter().any(|p| matcher(p, v));
    let values = present.cloned().unwrap_or_default();
    Ok(match set {
        Some("ForAllValues") => values.iter().all(|v| matches_any(v) != negated),
        Some(_) => values.iter().any(|v| matches_any(v) != negated),
        None => match values.as_slice() {
            [] if if_exists => true,
            [] if negated => {
                return Err(format!(
                    "{op} on the missing key {key} is not read by this test"
                ));
            }
            [] => false,
            [v] => matches_any(v) != negated,
            _ => {
                return Err(format!(
                    "{op} on the multi-valued key {key}: use ForAllValues/ForAnyValue"
                ));
            }
        },
    })
}

fn statement_applies(stmt: &Json, call: &Call, principal: Option<&str>) -> Result<bool, String> {
    for unsupported in ["NotResource", "NotPrincipal"] {
        if stmt.get(unsupported).is_some() {
            return Err(format!("{unsupported} is not read by this test"));
        }
    }
    let action_ok = match (stmt.get("Action"), stmt.get("NotAction")) {
        (Some(a), None) => strings(Some(a)).iter().any(|p| glob(p, &call.action, true)),
        (None, Some(a)) => !strings(Some(a)).iter().any(|p| glob(p, &call.action, true)),
        _ => return Err(format!("a statement needs Action or NotAction: {stmt}")),
    };
    if !action_ok {
        return Ok(false);
    }
    let resources = strings(stmt.get("Resource"));
    if !resources.iter().any(|r| glob(r, &call.resource, false)) {
        return Ok(false);
    }
    if let Some(principal) = principal {
        let p = stmt
            .get("Principal")
            .ok_or("a key policy statement without Principal")?;
        let named = match p {
            Json::String(s) if s == "*" => vec!["*".to_owned()],
            _ => strings(p.get("AWS")),
        };
        if !named.iter().any(|n| n == "*" || n == principal) {
            return Ok(false);
        }
    }
    if let Some(conds) = stmt.get("Condition") {
        let conds = conds.as_object().ok_or("Condition must be a map")?;
        for (op, pairs) in conds {
            let pairs = pairs
                .as_object()
                .ok_or("a condition must map keys to values")?;
            for (key, wanted) in pairs {
                if !condition_holds(op, key, &strings(Some(wanted)), call)? {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
    NotAllowed,
}

fn decide(stmts: &[Json], call: &Call, principal: Option<&str>) -> Result<Decision, String> {
    let mut allowed = false;
    for s in stmts {
        if statement_applies(s, call, principal)? {
            match s.get("Effect").and_then(Json::as_str) {
                Some("Deny") => return Ok(Decision::Deny),
                Some("Allow") => allowed = true,
                other => return Err(format!("Effect {other:?}")),
            }
        }
    }
    Ok(if allowed {
        Decision::Allow
    } else {
        Decision::NotAllowed
    })
}

/// One function's policies, ready to judge calls.
#[derive(Debug, Clone)]
pub struct FunctionPolicy {
    pub function: String,
    identity: Vec<Json>,
    key: Vec<Json>,
    key_arn: Option<String>,
    role_arn: String,
}

impl FunctionPolicy {
    pub fn from_template(
        template: &Template,
        function: &str,
        b: &Bindings,
    ) -> Result<Self, String> {
        Ok(Self {
            function: function.to_owned(),
            identity: template.function_statements(function, b)?,
            key: template.key_policy("TokenKey", b)?,
            key_arn: b.get("TokenKey.Arn").ok().map(str::to_owned),
            role_arn: b.get(&format!("{function}Role.Arn"))?.to_owned(),
        })
    }

    /// `Ok(())` when AWS would allow the call; `Err(why)` otherwise.
    pub fn allows(&self, call: &Call) -> Result<(), String> {
        let identity = decide(&self.identity, call, None)?;
        let is_our_key =
            call.action.starts_with("kms:") && self.key_arn.as_deref() == Some(&call.resource);
        if !is_our_key {
            return match identity {
                Decision::Allow => Ok(()),
                Decision::Deny => Err("denied by the function's policy".into()),
                Decision::NotAllowed => Err("not allowed by the function's policy".into()),
            };
        }
        let root = format!("arn:aws:iam::{ACCOUNT}:root");
        let direct = decide(&self.key, call, Some(&self.role_arn))?;
        let via_account = decide(&self.key, call, Some(&root))?;
        if direct == Decision::Deny || via_account == Decision::Deny || identity == Decision::Deny {
            return Err("denied by the key policy or the function's policy".into());
        }
        if direct == Decision::Allow
            || (via_account == Decision::Allow && identity == Decision::Allow)
        {
            Ok(())
        } else {
            Err("not allowed by the key policy for this role".into())
        }
    }

    /// Every call AWS would refuse, with why.
    pub fn refused(&self, calls: &[Call]) -> Vec<String> {
        calls
            .iter()
            .filter_map(|c| self.allows(c).err().map(|why| format!("{c}: {why}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(service: &str, target: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!(
                "AWS4-HMAC-SHA256 Credential=test/20261130/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00"
            )
            .parse()
            .unwrap(),
        );
        h.insert("x-amz-target", target.parse().unwrap());
        h
    }

    fn env() -> Vec<(String, String)> {
        [
            ("TABLE_NAME", "t1"),
            ("KMS_KEY_ID", "k-1"),
            ("SETUP_QUEUE_URL", "http://127.0.0.1:1/123456789012/q1"),
            ("EVENTS_QUEUE_URL", "http://127.0.0.1:1/123456789012/q2"),
            ("META_APP_SECRET_PARAMETER", "/pipes/secret"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
    }

    /// The signup-completion transaction: session, owner, number, WABA membership.
    fn completion_calls() -> Vec<Call> {
        let body = serde_json::json!({"TransactItems": [
            {"Update": {"TableName": "t1", "Key": {"pk": {"S": "SES#ses_1"}, "sk": {"S": "SES"}}}},
            {"Put": {"TableName": "t1", "Item": {"pk": {"S": "PHONE#1"}, "sk": {"S": "PHONE"}}}},
            {"Put": {"TableName": "t1", "Item": {"pk": {"S": "NUM#app_1"}, "sk": {"S": "NUM#1"}}}},
            {"Put": {"TableName": "t1", "Item": {"pk": {"S": "WABA#2"}, "sk": {"S": "NUM#1"}}}},
            {"Put": {"TableName": "t1", "Item": {"pk": {"S": "HIST#app_1"}, "sk": {"S": "HIST#1#0#a"}}}},
        ]});
        let keys = Template::parse(TEMPLATE).unwrap().key_schema();
        calls_of(
            &keys,
            &headers("dynamodb", "DynamoDB_20120810.TransactWriteItems"),
            body.to_string().as_bytes(),
        )
    }

    /// `SignupCallbackFunction`'s DynamoDB statements as they stood before this test
    /// existed: writes allowed under `SES#`, `APP#` and `PHONE#` only.
    const POLICY_BEFORE: &str = r#"
Resources:
  TokenKey:
    Type: AWS::KMS::Key
    Properties:
      KeyPolicy:
        Statement: []
  SignupCallbackFunction:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - Version: "2012-10-17"
          Statement:
            - Sid: CompleteSignups
              Effect: Allow
              Action: [dynamodb:PutItem, dynamodb:UpdateItem]
              Resource: !GetAtt Table.Arn
              Condition:
                ForAllValues:StringLike:
                  dynamodb:LeadingKeys: ["SES#*", "APP#*", "PHONE#*"]
"#;

    #[test]
    fn the_policy_before_the_fix_refuses_the_completion_transaction() {
        let t = Template::parse(POLICY_BEFORE).unwrap();
        let b = Bindings::for_env(&t, &env());
        let p = FunctionPolicy::from_template(&t, "SignupCallbackFunction", &b).unwrap();
        let refused = p.refused(&completion_calls());
        assert!(
            refused
                .iter()
                .any(|r| r.contains("dynamodb:PutItem") && r.contains("WABA#2")),
            "{refused:?}"
        );
        assert!(!refused.iter().any(|r| r.contains("SES#")), "{refused:?}");
    }

    #[test]
    fn the_template_allows_the_completion_transaction() {
        let t = Template::parse(TEMPLATE).unwrap();
        let b = Bindings::for_env(&t, &env());
        let p = FunctionPolicy::from_template(&t, "SignupCallbackFunction", &b).unwrap();
        assert_eq!(p.refused(&completion_calls()), Vec::<String>::new());
    }

    #[test]
    fn transactions_need_each_items_action() {
        let body = serde_json::json!({"TransactItems": [
            {"ConditionCheck": {"TableName": "t1", "Key": {"pk": {"S": "APP#a"}, "sk": {"S": "APP"}}}},
            {"Delete": {"TableName": "t1", "Key": {"pk": {"S": "KEY#h"}, "sk": {"S": "KEY"}}}},
        ]});
        let keys = Template::parse(TEMPLATE).unwrap().key_schema();
        let calls = calls_of(
            &keys,
            &headers("dynamodb", "DynamoDB_20120810.TransactWriteItems"),
            body.to_string().as_bytes(),
        );
        let actions: Vec<_> = calls.iter().map(|c| c.action.as_str()).collect();
        assert_eq!(
            actions,
            ["dynamodb:ConditionCheckItem", "dynamodb:DeleteItem"]
        );
        assert_eq!(calls[1].context["dynamodb:leadingkeys"], ["KEY#h"]);
    }

    #[test]
    fn queries_bind_the_partition_key_of_the_table_or_index() {
        let keys = Template::parse(TEMPLATE).unwrap().key_schema();
        let body = serde_json::json!({
            "TableName": "t1", "IndexName": "gsi1",
            "KeyConditionExpression": "#p = :shard AND #d <= :upper",
            "ExpressionAttributeNames": {"#p": "gsi1pk", "#d": "gsi1sk"},
            "ExpressionAttributeValues": {":shard": {"S": "DUE#03"}, ":upper": {"S": "9"}},
        });
        let calls = calls_of(
            &keys,
            &headers("dynamodb", "DynamoDB_20120810.Query"),
            body.to_string().as_bytes(),
        );
        assert!(calls[0].resource.ends_with(":table/t1/index/gsi1"));
        assert_eq!(calls[0].context["dynamodb:leadingkeys"], ["DUE#03"]);
    }

    #[test]
    fn what_cannot_be_read_is_refused_not_passed() {
        let keys = Template::parse(TEMPLATE).unwrap().key_schema();
        let put = serde_json::json!({"TableName": "t1", "Item": {"pk": {"B": "AAEC"}}});
        let query = serde_json::json!({"TableName": "t1", "KeyConditionExpression": "begins_with(#sk, :x)",
            "ExpressionAttributeNames": {"#sk": "sk"}, "ExpressionAttributeValues": {":x": {"S": "A"}}});
        let decrypt = serde_json::json!({"CiphertextBlob": "AAAA"});
        for (service, target, body) in [
            ("dynamodb", "DynamoDB_20120810.PutItem", put),
            ("dynamodb", "DynamoDB_20120810.Query", query),
            ("kms", "TrentService.Decrypt", decrypt),
        ] {
            let calls = calls_of(
                &keys,
                &headers(service, target),
                body.to_string().as_bytes(),
            );
            assert!(
                calls[0].action.starts_with("unreadable:"),
                "{target}: {calls:?}"
            );
            let t = Template::parse(TEMPLATE).unwrap();
            let b = Bindings::for_env(&t, &env());
            let p = FunctionPolicy::from_template(&t, "WebhookSetupFunction", &b).unwrap();
            assert_eq!(p.refused(&calls).len(), 1);
        }
    }

    #[test]
    fn condition_sets_follow_iam() {
        let call = Call::new("dynamodb:Scan", "arn").with("dynamodb:LeadingKeys", vec![]);
        let wanted = vec!["SES#*".to_owned()];
        // ForAllValues over an empty set holds: a Scan passes a LeadingKeys condition.
        assert!(
            condition_holds(
                "ForAllValues:StringLike",
                "dynamodb:LeadingKeys",
                &wanted,
                &call
            )
            .unwrap()
        );
        assert!(
            !condition_holds(
                "ForAnyValue:StringLike",
                "dynamodb:LeadingKeys",
                &wanted,
                &call
            )
            .unwrap()
        );
        let call = Call::new("kms:Decrypt", "arn")
            .with("kms:EncryptionContext:purpose", vec!["other".into()]);
        assert!(
            !condition_holds(
                "StringEquals",
                "kms:EncryptionContext:purpose",
                &["pipes-secret".to_owned()],
                &call
            )
            .unwrap()
        );
        assert!(condition_holds("NumericLessThan", "k", &wanted, &call).is_err());
        assert!(glob("SES#*", "SES#ses_1", false) && !glob("SES#*", "SESSION", false));
        assert!(glob("dynamodb:*Item", "dynamodb:PutItem", true));
    }

    #[test]
    fn kms_needs_the_key_policy_as_well() {
        let t = Template::parse(TEMPLATE).unwrap();
        let b = Bindings::for_env(&t, &env());
        let key = b.get("TokenKey.Arn").unwrap().to_owned();
        let seal = |purpose: &str| {
            Call::new("kms:GenerateDataKey", key.clone())
                .with("kms:EncryptionContext:purpose", vec![purpose.to_owned()])
        };
        let signup = FunctionPolicy::from_template(&t, "SignupCallbackFunction", &b).unwrap();
        assert!(signup.allows(&seal("pipes-secret")).is_ok());
        assert!(signup.allows(&seal("something-else")).is_err());
        let decrypt = Call::new("kms:Decrypt", key.clone())
            .with("kms:EncryptionContext:purpose", vec!["pipes-secret".into()]);
        let sweep = FunctionPolicy::from_template(&t, "HealthSweepFunction", &b).unwrap();
        assert!(sweep.allows(&decrypt).is_ok());
        assert!(
            sweep.allows(&seal("pipes-secret")).is_err(),
            "the sweep never seals"
        );
        let issuer = FunctionPolicy::from_template(&t, "TokenIssuerFunction", &b).unwrap();
        assert!(issuer.allows(&seal("pipes-secret")).is_err());
        assert!(
            signup.allows(&decrypt).is_err(),
            "signup never opens a business token"
        );
        let open_endpoint = Call::new("kms:Decrypt", key.clone()).with(
            "kms:EncryptionContext:purpose",
            vec!["pipes-endpoint-secret".into()],
        );
        assert!(signup.allows(&open_endpoint).is_ok(), "it signs redirects");
        let api = FunctionPolicy::from_template(&t, "NumbersApiFunction", &b).unwrap();
        assert!(api.allows(&seal("pipes-endpoint-secret")).is_ok());
        assert!(api.allows(&seal("pipes-secret")).is_err());
    }
}
