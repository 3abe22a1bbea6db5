//! The reference agent end to end: a real server, a real API key, real `sh -c` commands. The
//! agent runs in-process through `flowcloud::agent::run`, so a test can stop it; waiting is done
//! by polling the API for an observable outcome with a deadline.
use std::time::Duration;

use flowcloud::agent::{self, AgentArgs};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::helpers::*;

const DEADLINE: Duration = Duration::from_secs(30);
const TERMINAL: [&str; 4] = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"];

/// A server with an owner, a workspace `handle`, an API key, a flow and a work queue `local`.
struct Setup {
    app: TestApp,
    owner: TestUser,
    ws: Uuid,
    handle: String,
    api_key: String,
    flow: Uuid,
}

async fn setup(handle: &str) -> Setup {
    let app = spawn_app().await;
    let owner = app.sign_up("agent-owner").await;
    let ws = app.create_workspace(&owner, handle).await;
    let key = app
        .gql_as(
            &owner.token,
            "mutation { createApiKey(input: { name: \"agent\" }) { secret } }",
            Value::Null,
        )
        .await;
    let api_key = data(&key)["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let flow = app
        .gql_as(
            &owner.token,
            "mutation($ws: UUID!) { createFlow(workspaceId: $ws, input: { name: \"shell\" }) { id } }",
            json!({ "ws": ws }),
        )
        .await;
    let flow = uuid_at(&data(&flow)["createFlow"]["id"]);
    let queue = app
        .gql_as(
            &owner.token,
            "mutation($ws: UUID!) { createWorkQueue(workspaceId: $ws, input: { name: \"local\" }) { id } }",
            json!({ "ws": ws }),
        )
        .await;
    data(&queue);
    Setup {
        app,
        owner,
        ws,
        handle: handle.to_owned(),
        api_key,
        flow,
    }
}

impl Setup {
    async fn deployment(&self, name: &str, entrypoint: Option<&str>, parameters: Value) -> Uuid {
        let response = self
            .app
            .gql_as(
                &self.owner.token,
                "mutation($ws: UUID!, $input: CreateDeploymentInput!) {
                    createDeployment(workspaceId: $ws, input: $input) { id } }",
                json!({ "ws": self.ws, "input": {
                    "flowId": self.flow, "name": name, "entrypoint": entrypoint,
                    "workQueueName": "local", "parameters": parameters
                }}),
            )
            .await;
        uuid_at(&data(&response)["createDeployment"]["id"])
    }

    async fn run_of(&self, deployment: Uuid, parameters: Value) -> Uuid {
        let response = self
            .app
            .gql_as(
                &self.owner.token,
                "mutation($id: UUID!, $input: CreateFlowRunFromDeploymentInput) {
                    createFlowRunFromDeployment(deploymentId: $id, input: $input) { id } }",
                json!({ "id": deployment, "input": { "parameters": parameters } }),
            )
            .await;
        uuid_at(&data(&response)["createFlowRunFromDeployment"]["id"])
    }

    fn args(&self) -> AgentArgs {
        let mut args = AgentArgs::new(&self.app.address, &self.api_key, &self.handle, "local");
        args.poll_interval_seconds = 1;
        args
    }

    /// Starts the agent in-process; send on the returned sender to stop it.
    fn start_agent(
        &self,
        args: AgentArgs,
    ) -> (oneshot::Sender<()>, JoinHandle<Result<(), String>>) {
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(agent::run(args, async {
            let _ = rx.await;
        }));
        (tx, handle)
    }

    async fn flow_run(&self, id: Uuid) -> Value {
        let response = self
            .app
            .gql_as(
                &self.owner.token,
                "query($id: UUID!) { flowRun(id: $id) {
                    state { type name message }
                    stateHistory { type }
                    logs(first: 200) { nodes { level name message timestamp } } } }",
                json!({ "id": id }),
            )
            .await;
        data(&response)["flowRun"].clone()
    }

    /// Polls the run until its state type is one of `types`, or panics at the deadline.
    async fn wait_for(&self, id: Uuid, types: &[&str]) -> Value {
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let run = self.flow_run(id).await;
            let state = run["state"]["type"].as_str().unwrap_or_default().to_owned();
            if types.contains(&state.as_str()) {
                return run;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "run {id} never reached {types:?}; it is {:#}",
                run["state"]
            );
        }
    }
}

impl Setup {
    /// Polls the run until it has log lines (the command is running and its output arrives).
    async fn wait_for_logs(&self, id: Uuid) -> Value {
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let run = self.flow_run(id).await;
            if run["logs"]["nodes"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
            {
                return run;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "run {id} never logged: {run:#}"
            );
        }
    }
}

fn history(run: &Value) -> Vec<String> {
    run["stateHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_history_ends(run: &Value, tail: &[&str]) {
    let types = history(run);
    assert!(
        types.len() >= tail.len() && types[types.len() - tail.len()..] == *tail,
        "expected the history to end with {tail:?}: {types:?}"
    );
}

fn log_lines(run: &Value) -> Vec<(String, String, String)> {
    run["logs"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert!(
                l["timestamp"].as_str().is_some_and(|t| !t.is_empty()),
                "{l}"
            );
            (
                l["level"].as_str().unwrap().to_owned(),
                l["name"].as_str().unwrap().to_owned(),
                l["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn line(level: &str, name: &str, message: &str) -> (String, String, String) {
    (level.to_owned(), name.to_owned(), message.to_owned())
}

fn assert_parameters(line: &(String, String, String)) {
    assert_eq!(line.0, "INFO", "{line:?}");
    let parameters: Value = serde_json::from_str(&line.2)
        .unwrap_or_else(|e| panic!("not the parameters JSON ({e}): {line:?}"));
    // The run's own parameters over the deployment's defaults.
    assert_eq!(parameters, json!({ "greeting": "hi", "n": 7 }));
}

// Multi-threaded like the real binary, so the agent reads output as it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_commands_and_reports_their_output_and_outcome() {
    let s = setup("agent-ws").await;
    let hello = s
        .deployment(
            "hello",
            Some(r#"echo hello; echo oops 1>&2; echo "$FLOWCLOUD_PARAMETERS""#),
            json!({ "greeting": "hi" }),
        )
        .await;
    // stdout and stderr are two pipes: lines written within microseconds of each other on
    // different pipes may be read in either order (no reader can tell), so the test of the
    // interleaving leaves the command a moment between them.
    let paced = s
        .deployment(
            "paced",
            Some(
                r#"echo hello; sleep 0.2; echo oops 1>&2; sleep 0.2; echo "$FLOWCLOUD_PARAMETERS""#,
            ),
            json!({ "greeting": "hi" }),
        )
        .await;
    let boom = s.deployment("boom", Some("exit 3"), json!({})).await;
    let nothing = s.deployment("nothing", None, json!({})).await;
    let ok_run = s.run_of(hello, json!({ "n": 7 })).await;
    let paced_run = s.run_of(paced, json!({ "n": 7 })).await;
    let failing_run = s.run_of(boom, json!({})).await;
    let empty_run = s.run_of(nothing, json!({})).await;

    let (stop, agent) = s.start_agent(s.args());

    let ok = s.wait_for(ok_run, &TERMINAL).await;
    assert_eq!(ok["state"]["type"], "COMPLETED", "{ok:#}");
    assert_history_ends(&ok, &["PENDING", "RUNNING", "COMPLETED"]);
    let logs = log_lines(&ok);
    assert_eq!(logs.len(), 3, "{logs:#?}");
    let stdout: Vec<_> = logs.iter().filter(|l| l.1 == "agent.stdout").collect();
    let stderr: Vec<_> = logs.iter().filter(|l| l.1 == "agent.stderr").collect();
    assert_eq!(
        stderr,
        [&line("ERROR", "agent.stderr", "oops")],
        "{logs:#?}"
    );
    assert_eq!(stdout.len(), 2, "{logs:#?}");
    assert_eq!(*stdout[0], line("INFO", "agent.stdout", "hello"));
    assert_parameters(stdout[1]);

    let paced = s.wait_for(paced_run, &TERMINAL).await;
    assert_eq!(paced["state"]["type"], "COMPLETED", "{paced:#}");
    let logs = log_lines(&paced);
    assert_eq!(logs.len(), 3, "{logs:#?}");
    assert_eq!(logs[0], line("INFO", "agent.stdout", "hello"));
    assert_eq!(logs[1], line("ERROR", "agent.stderr", "oops"));
    assert_parameters(&logs[2]);

    let failed = s.wait_for(failing_run, &TERMINAL).await;
    assert_eq!(failed["state"]["type"], "FAILED", "{failed:#}");
    let message = failed["state"]["message"].as_str().unwrap();
    assert!(message.contains('3'), "{message}");
    assert_history_ends(&failed, &["PENDING", "RUNNING", "FAILED"]);

    let empty = s.wait_for(empty_run, &TERMINAL).await;
    assert_eq!(empty["state"]["type"], "FAILED", "{empty:#}");
    let message = empty["state"]["message"].as_str().unwrap();
    assert!(message.contains("entrypoint"), "{message}");

    stop.send(()).unwrap();
    let stopped = tokio::time::timeout(DEADLINE, agent).await;
    assert_eq!(stopped.expect("the agent did not stop").unwrap(), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_execute_concurrently_up_to_the_limit() {
    let s = setup("agent-par").await;
    // Each run waits until all three have started: only possible if they run at once.
    let dir = tempfile::tempdir().unwrap();
    let entrypoint = format!(
        "touch {dir}/$FLOWCLOUD_FLOW_RUN_ID; while [ $(ls {dir} | wc -l) -lt 3 ]; do sleep 0.05; done; echo together",
        dir = dir.path().display()
    );
    let deployment = s.deployment("together", Some(&entrypoint), json!({})).await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(s.run_of(deployment, json!({})).await);
    }
    let mut args = s.args();
    args.concurrency = 3;
    let (stop, agent) = s.start_agent(args);
    for run in runs {
        let done = s.wait_for(run, &TERMINAL).await;
        assert_eq!(done["state"]["type"], "COMPLETED", "{done:#}");
    }
    stop.send(()).unwrap();
    assert_eq!(agent.await.unwrap(), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_a_command_past_the_grace_period_is_killed_and_its_run_crashed() {
    let s = setup("agent-stop").await;
    let deployment = s
        .deployment("sleepy", Some("echo going to sleep; sleep 30"), json!({}))
        .await;
    let run = s.run_of(deployment, json!({})).await;
    let mut args = s.args();
    args.grace_period_seconds = 0;
    let (stop, agent) = s.start_agent(args);

    s.wait_for(run, &["RUNNING"]).await;
    s.wait_for_logs(run).await;
    let asked = tokio::time::Instant::now();
    stop.send(()).unwrap();
    let stopped = tokio::time::timeout(DEADLINE, agent).await;
    assert_eq!(stopped.expect("the agent did not stop").unwrap(), Ok(()));
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the agent took {:?} to stop",
        asked.elapsed()
    );

    let crashed = s.flow_run(run).await;
    assert_eq!(crashed["state"]["type"], "CRASHED", "{crashed:#}");
    let message = crashed["state"]["message"].as_str().unwrap();
    assert!(message.contains("grace period"), "{message}");
    assert_history_ends(&crashed, &["PENDING", "RUNNING", "CRASHED"]);
    assert_eq!(
        crashed["logs"]["nodes"][0]["message"], "going to sleep",
        "{crashed:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_ends_within_the_grace_period_completes() {
    let s = setup("agent-grace").await;
    let deployment = s
        .deployment("short", Some("sleep 1; echo done"), json!({}))
        .await;
    let run = s.run_of(deployment, json!({})).await;
    let (stop, agent) = s.start_agent(s.args());
    s.wait_for(run, &["RUNNING"]).await;
    stop.send(()).unwrap();
    assert_eq!(agent.await.unwrap(), Ok(()));
    let done = s.flow_run(run).await;
    assert_eq!(done["state"]["type"], "COMPLETED", "{done:#}");
    assert_eq!(done["logs"]["nodes"][0]["message"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_workspace_or_queue_stops_the_agent_with_a_clear_error() {
    let s = setup("agent-miss").await;
    let mut args = s.args();
    args.workspace = "no-such-workspace".into();
    let error = agent::run(args, std::future::pending()).await.unwrap_err();
    assert!(error.contains("no-such-workspace"), "{error}");

    let mut args = s.args();
    args.api_key = "fc_not-a-key".into();
    let error = agent::run(args, std::future::pending()).await.unwrap_err();
    assert!(error.contains("API key"), "{error}");

    let mut args = s.args();
    args.work_queue = "nope".into();
    let error = agent::run(args, std::future::pending()).await.unwrap_err();
    assert!(error.contains("nope") && error.contains("local"), "{error}");

    // The binary says so in one line and exits non-zero.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowcloud"))
        .arg("agent")
        .env("FLOWCLOUD_URL", &s.app.address)
        .env("FLOWCLOUD_API_KEY", &s.api_key)
        .env("FLOWCLOUD_WORKSPACE", &s.handle)
        .env("FLOWCLOUD_WORK_QUEUE", "nope")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("flowcloud: workspace `agent-miss` has no work queue named `nope`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_rides_out_a_server_restart() {
    let mut s = setup("agent-restart").await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("go");
    // The command ends only when the test says so: while the server is down.
    let entrypoint = format!(
        "echo started; while [ ! -e {m} ]; do sleep 0.05; done; echo finished",
        m = marker.display()
    );
    let deployment = s.deployment("survivor", Some(&entrypoint), json!({})).await;
    let run = s.run_of(deployment, json!({})).await;
    let (stop, agent) = s.start_agent(s.args());
    s.wait_for_logs(run).await;

    // Take the server down and hold its port with a listener that hangs up on everyone, so the
    // agent's next requests (logs, the final state, polls) certainly fail.
    let port = s.app.port;
    s.app.stop();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let started = tokio::time::Instant::now();
    let interceptor = loop {
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => break listener,
            Err(e) => {
                assert!(started.elapsed() < DEADLINE, "port {port} never freed: {e}");
                tokio::task::yield_now().await;
            }
        }
    };
    std::fs::write(&marker, b"").unwrap();
    let (refused, _) = tokio::time::timeout(DEADLINE, interceptor.accept())
        .await
        .expect("the agent never called while the server was down")
        .unwrap();
    drop(refused);
    drop(interceptor);

    // The server comes back on the same port and database.
    let restarted = s.app.spawn_sibling_with(|c| c.listen = address).await;
    s.app = restarted;
    let done = s.wait_for(run, &TERMINAL).await;
    assert_eq!(done["state"]["type"], "COMPLETED", "{done:#}");
    assert_history_ends(&done, &["PENDING", "RUNNING", "COMPLETED"]);
    let messages: Vec<String> = log_lines(&done).into_iter().map(|l| l.2).collect();
    assert_eq!(messages, ["started", "finished"]);

    // And it keeps claiming.
    let quick = s.deployment("quick", Some("echo again"), json!({})).await;
    let next = s.run_of(quick, json!({})).await;
    let done = s.wait_for(next, &TERMINAL).await;
    assert_eq!(done["state"]["type"], "COMPLETED", "{done:#}");

    stop.send(()).unwrap();
    assert_eq!(agent.await.unwrap(), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_a_claimed_run_that_has_not_started_is_handed_back() {
    let s = setup("agent-back").await;
    let deployment = s.deployment("later", Some("echo never"), json!({})).await;
    // Due in 8 s: inside the claim look-ahead, so it is claimed now and told to WAIT.
    let at = (chrono::Utc::now() + chrono::Duration::seconds(8))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let response = s
        .app
        .gql_as(
            &s.owner.token,
            "mutation($id: UUID!, $input: CreateFlowRunFromDeploymentInput) {
                createFlowRunFromDeployment(deploymentId: $id, input: $input) { id } }",
            json!({ "id": deployment, "input": { "state": { "type": "SCHEDULED", "scheduledTime": at } } }),
        )
        .await;
    let run = uuid_at(&data(&response)["createFlowRunFromDeployment"]["id"]);
    let (stop, agent) = s.start_agent(s.args());
    s.wait_for(run, &["PENDING"]).await;
    stop.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), agent).await;
    assert_eq!(stopped.expect("the agent did not stop").unwrap(), Ok(()));

    let response = s
        .app
        .gql_as(
            &s.owner.token,
            "query($id: UUID!) { flowRun(id: $id) { state { type name scheduledTime } stateHistory { type } } }",
            json!({ "id": run }),
        )
        .await;
    let back = &data(&response)["flowRun"];
    assert_eq!(back["state"]["type"], "SCHEDULED", "{back:#}");
    assert_eq!(back["state"]["name"], "Scheduled", "{back:#}");
    let scheduled: chrono::DateTime<chrono::Utc> = back["state"]["scheduledTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at,
        "{back:#}"
    );
    assert_history_ends(back, &["SCHEDULED", "PENDING", "SCHEDULED"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_run_stops_its_command_and_ends_the_run_cancelled() {
    let s = setup("agent-cancel").await;
    let deployment = s
        .deployment(
            "long",
            Some("echo started; sleep 30; echo never"),
            json!({}),
        )
        .await;
    let run = s.run_of(deployment, json!({})).await;
    let (stop, agent) = s.start_agent(s.args());
    s.wait_for(run, &["RUNNING"]).await;
    s.wait_for_logs(run).await;

    let asked = tokio::time::Instant::now();
    let response = s
        .app
        .gql_as(
            &s.owner.token,
            "mutation($id: UUID!) { setFlowRunState(flowRunId: $id, state: { type: CANCELLING }) { status } }",
            json!({ "id": run }),
        )
        .await;
    assert_eq!(data(&response)["setFlowRunState"]["status"], "ACCEPT");
    let cancelled = s.wait_for(run, &["CANCELLED"]).await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the command was stopped {:?} after the request",
        asked.elapsed()
    );
    let message = cancelled["state"]["message"].as_str().unwrap();
    assert!(message.contains("cancelled"), "{message}");
    assert_history_ends(&cancelled, &["RUNNING", "CANCELLING", "CANCELLED"]);
    let messages: Vec<String> = log_lines(&cancelled).into_iter().map(|l| l.2).collect();
    assert!(messages.contains(&"started".to_owned()), "{messages:?}");
    assert!(!messages.contains(&"never".to_owned()), "{messages:?}");

    stop.send(()).unwrap();
    let stopped = tokio::time::timeout(DEADLINE, agent).await;
    assert_eq!(stopped.expect("the agent did not stop").unwrap(), Ok(()));
}
