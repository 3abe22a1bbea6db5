//! The agent's side of the public GraphQL API: one HTTP client, a handful of typed operations,
//! and a retry loop with capped exponential backoff for the errors a restart or an outage causes.
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

use super::Signal;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Why a call did not give an answer.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The server could not be reached, timed out or answered 5xx / 429: worth retrying.
    Unavailable(String),
    /// The server answered with a GraphQL error.
    Graphql {
        code: Option<String>,
        message: String,
    },
    /// The answer was not what the API promises (wrong URL, incompatible server).
    Protocol(String),
}

impl CallError {
    /// Whether waiting and trying again may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Unavailable(_) => true,
            CallError::Graphql { code, .. } => matches!(
                code.as_deref(),
                Some("INTERNAL_SERVER_ERROR") | Some("RATE_LIMITED")
            ),
            CallError::Protocol(_) => false,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unavailable(message) => write!(f, "server unavailable: {message}"),
            CallError::Graphql {
                code: Some(code),
                message,
            } => write!(f, "{code}: {message}"),
            CallError::Graphql {
                code: None,
                message,
            } => write!(f, "{message}"),
            CallError::Protocol(message) => write!(f, "unexpected answer: {message}"),
        }
    }
}

/// Why a retried call ended without an answer.
#[derive(Debug)]
pub enum Failure {
    /// An error that retrying cannot fix.
    Fatal(CallError),
    /// The stop signal was raised while waiting to retry.
    Stopped,
    /// The deadline passed; the last error is given.
    GaveUp(CallError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Fatal(e) => write!(f, "{e}"),
            Failure::Stopped => write!(f, "stopped while retrying"),
            Failure::GaveUp(e) => write!(f, "gave up retrying: {e}"),
        }
    }
}

/// Capped exponential backoff with a little jitter, so restarted agents do not retry in step.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let delay = BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP);
        let jitter = rand::thread_rng().gen_range(0.0..0.2);
        delay.mul_f64(1.0 + jitter).min(BACKOFF_CAP)
    }
}

/// Runs `op` until it answers, retrying retryable errors with backoff. Stops early when `stop`
/// is raised (if given) or when `deadline` passes (if given).
pub async fn retrying<T, F, Fut>(
    what: &str,
    stop: Option<&Signal>,
    deadline: Option<Instant>,
    mut op: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut backoff = Backoff::new();
    loop {
        let error = match op().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() => error,
            Err(error) => return Err(Failure::Fatal(error)),
        };
        let delay = backoff.next_delay();
        if let Some(deadline) = deadline {
            if Instant::now() + delay > deadline {
                return Err(Failure::GaveUp(error));
            }
        }
        tracing::warn!(
            "{what} failed ({error}); retrying in {:.1} s",
            delay.as_secs_f64()
        );
        match stop {
            Some(stop) => tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait() => return Err(Failure::Stopped),
            },
            None => tokio::time::sleep(delay).await,
        }
    }
}

/// A work queue of a workspace.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkQueue {
    pub id: Uuid,
    pub name: String,
}

/// A workspace with its work queues.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub id: Uuid,
    pub work_queues: Vec<WorkQueue>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClaimedDeployment {
    pub name: String,
    pub entrypoint: Option<String>,
}

/// A run handed to this agent (now `PENDING`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedRun {
    pub id: Uuid,
    pub name: String,
    #[serde(default)]
    pub parameters: Value,
    pub deployment: Option<ClaimedDeployment>,
    pub expected_start_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StateView {
    #[serde(rename = "type")]
    pub state_type: String,
    pub name: String,
    pub message: Option<String>,
}

/// The answer to a proposed state.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrchestrationResult {
    pub status: String,
    pub state: StateView,
    pub reason: Option<String>,
    pub delay_seconds: Option<i64>,
}

/// A state to propose.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub state_type: &'static str,
    pub name: Option<String>,
    pub message: Option<String>,
    pub scheduled_time: Option<DateTime<Utc>>,
    /// Sent with every retry of one proposal, so a retry of an applied transition is recognised.
    pub transition_id: String,
}

impl Proposal {
    pub fn new(state_type: &'static str, message: Option<String>) -> Self {
        Self {
            state_type,
            name: None,
            message,
            scheduled_time: None,
            transition_id: Uuid::new_v4().to_string(),
        }
    }
}

/// One log line to send.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub flow_run_id: Uuid,
    pub level: &'static str,
    pub name: &'static str,
    pub message: String,
    pub timestamp: DateTime<Utc>,
}

/// The GraphQL endpoint and the credentials.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    api_key: String,
}

impl Client {
    /// `url` is the server's base URL or its `/graphql` endpoint.
    pub fn new(url: &str, api_key: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("flowcloud-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            endpoint: graphql_endpoint(url),
            api_key: api_key.to_owned(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One attempt: POSTs the operation and returns its `data`.
    pub async fn execute(&self, query: &str, variables: Value) -> Result<Value, CallError> {
        let response = self
            .http
            .post(&self.endpoint)
            .bearer_auth(&self.api_key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|e| CallError::Unavailable(describe_reqwest_error(&e)))?;
        let status = response.status();
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            return Err(CallError::Unavailable(format!("HTTP {status}")));
        }
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(e) if e.is_decode() => {
                return Err(CallError::Protocol(format!(
                    "HTTP {status} without a GraphQL answer (is {} a flowcloud server?)",
                    self.endpoint
                )))
            }
            Err(e) => return Err(CallError::Unavailable(describe_reqwest_error(&e))),
        };
        if let Some(error) = body
            .get("errors")
            .and_then(Value::as_array)
            .and_then(|errors| errors.first())
        {
            return Err(CallError::Graphql {
                code: error["extensions"]["code"].as_str().map(str::to_owned),
                message: error["message"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned(),
            });
        }
        match body.get("data") {
            Some(data) if !data.is_null() => Ok(data.clone()),
            _ => Err(CallError::Protocol(format!(
                "HTTP {status} without data or errors"
            ))),
        }
    }

    async fn field<T: DeserializeOwned>(
        &self,
        query: &str,
        variables: Value,
        field: &str,
    ) -> Result<T, CallError> {
        let mut data = self.execute(query, variables).await?;
        let value = data.get_mut(field).map(Value::take).unwrap_or(Value::Null);
        serde_json::from_value(value)
            .map_err(|e| CallError::Protocol(format!("`{field}` has an unexpected shape: {e}")))
    }

    /// The workspace with this handle and its work queues; `None` if absent or not accessible.
    pub async fn workspace(&self, handle: &str) -> Result<Option<Workspace>, CallError> {
        self.field(
            "query AgentWorkspace($handle: String!) {
                workspace(handle: $handle) { id workQueues { id name } } }",
            json!({ "handle": handle }),
            "workspace",
        )
        .await
    }

    /// Claims up to `limit` due runs of the queue (they become `PENDING`).
    pub async fn claim(
        &self,
        work_queue_id: Uuid,
        limit: usize,
    ) -> Result<Vec<ClaimedRun>, CallError> {
        self.field(
            "mutation AgentClaim($queue: UUID!, $limit: Int!) {
                claimFlowRuns(workQueueId: $queue, limit: $limit) {
                    id name parameters expectedStartTime deployment { name entrypoint } } }",
            json!({ "queue": work_queue_id, "limit": limit }),
            "claimFlowRuns",
        )
        .await
    }

    /// Proposes a state for a flow run.
    pub async fn set_state(
        &self,
        flow_run_id: Uuid,
        proposal: &Proposal,
    ) -> Result<OrchestrationResult, CallError> {
        self.field(
            "mutation AgentSetState($id: UUID!, $state: StateInput!) {
                setFlowRunState(flowRunId: $id, state: $state) {
                    status reason delaySeconds state { type name message } } }",
            json!({
                "id": flow_run_id,
                "state": {
                    "type": proposal.state_type,
                    "name": proposal.name,
                    "message": proposal.message,
                    "scheduledTime": proposal
                        .scheduled_time
                        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
                    "transitionId": proposal.transition_id,
                }
            }),
            "setFlowRunState",
        )
        .await
    }

    /// A flow run's current state; `None` if it no longer exists or is not visible.
    pub async fn run_state(&self, flow_run_id: Uuid) -> Result<Option<StateView>, CallError> {
        #[derive(Deserialize)]
        struct Run {
            state: StateView,
        }
        let run: Option<Run> = self
            .field(
                "query AgentRunState($id: UUID!) { flowRun(id: $id) { state { type name message } } }",
                json!({ "id": flow_run_id }),
                "flowRun",
            )
            .await?;
        Ok(run.map(|r| r.state))
    }

    /// Stores a batch of log lines; returns how many were stored.
    pub async fn create_logs(
        &self,
        workspace_id: Uuid,
        lines: &[LogLine],
    ) -> Result<i64, CallError> {
        let logs: Vec<Value> = lines
            .iter()
            .map(|line| {
                json!({
                    "flowRunId": line.flow_run_id,
                    "level": line.level,
                    "name": line.name,
                    "message": line.message,
                    "timestamp": line.timestamp.to_rfc3339_opts(SecondsFormat::Micros, true),
                })
            })
            .collect();
        self.field(
            "mutation AgentLogs($ws: UUID!, $logs: [LogInput!]!) {
                createLogs(workspaceId: $ws, logs: $logs) }",
            json!({ "ws": workspace_id, "logs": logs }),
            "createLogs",
        )
        .await
    }
}

/// `http://host:4200` → `http://host:4200/graphql`; a URL already ending in `/graphql` is kept.
pub fn graphql_endpoint(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/graphql") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/graphql")
    }
}

fn describe_reqwest_error(error: &reqwest::Error) -> String {
    // The source chain says *why* (connection refused, timed out…); the top error only says where.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_derived_from_the_base_url() {
        assert_eq!(graphql_endpoint("http://h:1"), "http://h:1/graphql");
        assert_eq!(graphql_endpoint("http://h:1/"), "http://h:1/graphql");
        assert_eq!(graphql_endpoint("http://h:1/graphql"), "http://h:1/graphql");
        assert_eq!(
            graphql_endpoint("http://h:1/x/graphql/"),
            "http://h:1/x/graphql"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(first >= BACKOFF_BASE && first <= BACKOFF_BASE.mul_f64(1.2));
        let delays: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] > first);
        assert!(delays.iter().all(|d| *d <= BACKOFF_CAP));
        assert!(delays[19] >= BACKOFF_CAP.mul_f64(0.99));
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_BASE.mul_f64(1.2));
    }

    #[test]
    fn only_transient_errors_are_retried() {
        assert!(CallError::Unavailable("x".into()).is_retryable());
        let graphql = |code: &str| CallError::Graphql {
            code: Some(code.into()),
            message: String::new(),
        };
        assert!(graphql("INTERNAL_SERVER_ERROR").is_retryable());
        assert!(graphql("RATE_LIMITED").is_retryable());
        assert!(!graphql("NOT_FOUND").is_retryable());
        assert!(!graphql("UNAUTHENTICATED").is_retryable());
        assert!(!CallError::Protocol("x".into()).is_retryable());
    }
}
