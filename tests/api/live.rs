//! Live: subscriptions over a real websocket (both sub-protocols) — run state changes, task run
//! state changes, log lines and alerts; filters; resuming from a cursor with no gap and no
//! duplicate; the protocol's close codes; access changes ending subscriptions; a slow
//! subscriber; graceful shutdown; retention; two replicas on PostgreSQL; the official
//! `graphql-ws` npm client.
//!
//! Subscriptions that must see a given change start from a cursor (`after: "0"` in a fresh
//! workspace is "from the beginning"), so no test depends on when the server set them up.
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;
use crate::ws_client::*;

const FLOW_SUB: &str = "subscription($ws: UUID!, $filter: FlowRunFilter, $after: String) {
    flowRunStateChanged(workspaceId: $ws, filter: $filter, after: $after) {
        cursor occurredAt flowRun { id name } fromState { id type } toState { id type name } } }";
const TASK_SUB: &str = "subscription($ws: UUID!, $run: UUID, $after: String) {
    taskRunStateChanged(workspaceId: $ws, flowRunId: $run, after: $after) {
        cursor occurredAt taskRun { id flowRun { id } } fromState { id type } toState { id type } } }";
const LOG_SUB: &str =
    "subscription($ws: UUID!, $run: UUID!, $task: UUID, $min: LogLevel, $after: String) {
    logs(workspaceId: $ws, flowRunId: $run, taskRunId: $task, minLevel: $min, after: $after) {
        id cursor flowRunId taskRunId level name message timestamp } }";
const ALERT_SUB: &str = "subscription($ws: UUID!, $kinds: [AlertKind!], $after: String) {
    runAlerts(workspaceId: $ws, kinds: $kinds, after: $after) {
        id cursor kind message occurredAt flowRun { id state { type } } } }";

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A server, an owner, their workspace and one flow.
struct World {
    app: TestApp,
    owner: TestUser,
    ws: Uuid,
    flow: Uuid,
}

async fn world(handle: &str) -> World {
    world_on(spawn_app().await, handle).await
}

async fn world_on(app: TestApp, handle: &str) -> World {
    let owner = app.sign_up(handle).await;
    let ws = app.create_workspace(&owner, &format!("{handle}-ws")).await;
    let flow = create_flow(&app, &owner, ws, "etl").await;
    World {
        app,
        owner,
        ws,
        flow,
    }
}

async fn create_flow(app: &TestApp, user: &TestUser, ws: Uuid, name: &str) -> Uuid {
    let response = app
        .gql_as(
            &user.token,
            "mutation($ws: UUID!, $input: CreateFlowInput!) {
                createFlow(workspaceId: $ws, input: $input) { id } }",
            json!({ "ws": ws, "input": { "name": name } }),
        )
        .await;
    uuid_at(&data(&response)["createFlow"]["id"])
}

/// Creates a flow run (SCHEDULED unless `input` says otherwise); `input` adds to `flowId`.
async fn create_run(app: &TestApp, user: &TestUser, ws: Uuid, flow: Uuid, input: Value) -> Uuid {
    let mut input = input;
    if input.is_null() {
        input = json!({});
    }
    input["flowId"] = json!(flow);
    let response = app
        .gql_as(
            &user.token,
            "mutation($ws: UUID!, $input: CreateFlowRunInput!) {
                createFlowRun(workspaceId: $ws, input: $input) { id } }",
            json!({ "ws": ws, "input": input }),
        )
        .await;
    uuid_at(&data(&response)["createFlowRun"]["id"])
}

/// Proposes a state for a flow run; returns the new state's id (it must be accepted).
async fn set_state(app: &TestApp, token: &str, run: Uuid, state_type: &str, force: bool) -> String {
    let response = app
        .gql_as(
            token,
            "mutation($run: UUID!, $type: StateType!, $force: Boolean) {
                setFlowRunState(flowRunId: $run, state: { type: $type }, force: $force) {
                    status state { id type } } }",
            json!({ "run": run, "type": state_type, "force": force }),
        )
        .await;
    let result = &data(&response)["setFlowRunState"];
    assert_eq!(
        result["status"], "ACCEPT",
        "{state_type} refused: {result:#}"
    );
    result["state"]["id"].as_str().expect("state id").to_owned()
}

/// Forces `count` state changes on `run`, alternating PENDING / RUNNING; returns the state ids.
async fn churn(app: &TestApp, token: &str, run: Uuid, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let state_type = if i % 2 == 0 { "PENDING" } else { "RUNNING" };
        ids.push(set_state(app, token, run, state_type, true).await);
    }
    ids
}

async fn create_task(app: &TestApp, user: &TestUser, run: Uuid, key: &str) -> (Uuid, String) {
    let response = app
        .gql_as(
            &user.token,
            "mutation($run: UUID!, $input: CreateTaskRunInput!) {
                createTaskRun(flowRunId: $run, input: $input) { id state { type } } }",
            json!({ "run": run, "input": { "taskKey": key } }),
        )
        .await;
    let task = &data(&response)["createTaskRun"];
    (
        uuid_at(&task["id"]),
        task["state"]["type"].as_str().expect("type").to_owned(),
    )
}

async fn set_task_state(app: &TestApp, user: &TestUser, task: Uuid, state_type: &str) {
    let response = app
        .gql_as(
            &user.token,
            "mutation($task: UUID!, $type: StateType!) {
                setTaskRunState(taskRunId: $task, state: { type: $type }) { status } }",
            json!({ "task": task, "type": state_type }),
        )
        .await;
    assert_eq!(
        data(&response)["setTaskRunState"]["status"],
        "ACCEPT",
        "{response:#}"
    );
}

fn log_line(run: Uuid, task: Option<Uuid>, level: &str, message: &str) -> Value {
    json!({
        "flowRunId": run, "taskRunId": task, "level": level, "name": "test",
        "message": message, "timestamp": chrono::Utc::now().to_rfc3339(),
    })
}

async fn create_logs(app: &TestApp, token: &str, ws: Uuid, lines: Vec<Value>) {
    let count = lines.len();
    let response = app
        .gql_as(
            token,
            "mutation($ws: UUID!, $logs: [LogInput!]!) { createLogs(workspaceId: $ws, logs: $logs) }",
            json!({ "ws": ws, "logs": lines }),
        )
        .await;
    assert_eq!(data(&response)["createLogs"], count, "{response:#}");
}

fn flow_vars(ws: Uuid, filter: Value, after: Option<&str>) -> Value {
    json!({ "ws": ws, "filter": filter, "after": after })
}

/// (run id, state type) of flow run state events.
fn run_states(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["flowRun"]["id"].as_str().unwrap_or_default().to_owned(),
                e["toState"]["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn state_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["toState"]["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn cursor_of(event: &Value) -> String {
    event["cursor"].as_str().expect("cursor").to_owned()
}

/// Cursors are opaque, but they must only grow: compare them as the server orders them.
fn assert_cursors_grow(events: &[Value]) {
    let cursors: Vec<i64> = events
        .iter()
        .map(|e| cursor_of(e).parse().expect("numeric cursor"))
        .collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "cursors must grow: {cursors:?}"
    );
}

fn error_code(error: &Value) -> &str {
    error["extensions"]["code"].as_str().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Delivery and filters

#[tokio::test]
async fn flow_run_state_changes_reach_subscribers_over_both_protocols() {
    let app = spawn_app().await;
    for (i, protocol) in BOTH.into_iter().enumerate() {
        let w = tenant(&app, &format!("ann{i}")).await;
        let mut client = connect_as(&app, protocol, &w.owner.token).await;
        client
            .subscribe("runs", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
            .await;
        let run = create_run(&app, &w.owner, w.ws, w.flow, json!({ "name": "nightly" })).await;
        let pending = set_state(&app, &w.owner.token, run, "PENDING", false).await;
        let running = set_state(&app, &w.owner.token, run, "RUNNING", false).await;

        let events = client.events("runs", "flowRunStateChanged", 3).await;
        assert_eq!(
            run_states(&events),
            vec![
                (run.to_string(), "SCHEDULED".to_owned()),
                (run.to_string(), "PENDING".to_owned()),
                (run.to_string(), "RUNNING".to_owned()),
            ],
            "{protocol:?}"
        );
        assert_eq!(events[0]["fromState"], Value::Null);
        assert_eq!(events[0]["flowRun"]["name"], "nightly");
        assert_eq!(events[1]["fromState"]["id"], events[0]["toState"]["id"]);
        assert_eq!(events[1]["toState"]["id"], pending.as_str());
        assert_eq!(events[2]["fromState"]["type"], "PENDING");
        assert_eq!(events[2]["toState"]["id"], running.as_str());
        assert_cursors_grow(&events);

        // Stopping the operation stops its events; the connection stays usable.
        client.unsubscribe("runs").await;
        if protocol == Protocol::Legacy {
            assert_eq!(client.expect_end("runs").await, End::Complete);
        }
        let last = cursor_of(&events[2]);
        set_state(&app, &w.owner.token, run, "COMPLETED", false).await;
        client
            .subscribe("again", FLOW_SUB, flow_vars(w.ws, Value::Null, Some(&last)))
            .await;
        let next = client.next_event("again", "flowRunStateChanged").await;
        assert_eq!(next["toState"]["type"], "COMPLETED", "{protocol:?}");
        client.close().await;
    }
}

/// A user, workspace and flow on a shared server.
struct Tenant {
    owner: TestUser,
    ws: Uuid,
    flow: Uuid,
}

async fn tenant(app: &TestApp, handle: &str) -> Tenant {
    let owner = app.sign_up(handle).await;
    let ws = app.create_workspace(&owner, &format!("{handle}-ws")).await;
    let flow = create_flow(app, &owner, ws, "etl").await;
    Tenant { owner, ws, flow }
}

#[tokio::test]
async fn a_subscription_without_a_cursor_starts_at_the_present() {
    let w = world("bea").await;
    let run = create_run(&w.app, &w.owner, w.ws, w.flow, Value::Null).await;
    let before = churn(&w.app, &w.owner.token, run, 2).await;
    let mut client = connect_as(&w.app, Protocol::Transport, &w.owner.token).await;
    client
        .subscribe("now", FLOW_SUB, flow_vars(w.ws, Value::Null, None))
        .await;
    // The subscription has no acknowledgement: change state until the first live event shows
    // up (each wait bounded), then every later change must follow with no gap.
    let mut first = None;
    let mut made = Vec::new();
    for _ in 0..40 {
        made.push(set_state(&w.app, &w.owner.token, run, "RUNNING", true).await);
        if let Some(Frame::Json(m)) = client.recv_within(Duration::from_millis(250)).await {
            assert_eq!(m["type"], "next", "{m:#}");
            first = Some(m["payload"]["data"]["flowRunStateChanged"].clone());
            break;
        }
    }
    let first = first.expect("the subscription never went live");
    let first_id = first["toState"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !before.contains(&first_id),
        "an event from before the subscription was replayed"
    );
    let at = made
        .iter()
        .position(|id| *id == first_id)
        .expect("the first live event is one of the changes made after subscribing");
    let later = churn(&w.app, &w.owner.token, run, 3).await;
    let mut expected: Vec<String> = made[at + 1..].to_vec();
    expected.extend(later);
    let events = client
        .events("now", "flowRunStateChanged", expected.len())
        .await;
    assert_eq!(state_ids(&events), expected);
}

#[tokio::test]
async fn flow_run_filters_select_by_flow_deployment_run_state_and_tag() {
    let w = world("cid").await;
    let (app, token) = (&w.app, w.owner.token.as_str());
    let other_flow = create_flow(app, &w.owner, w.ws, "other").await;
    let response = app
        .gql_as(
            token,
            "mutation($ws: UUID!, $input: CreateDeploymentInput!) {
                createDeployment(workspaceId: $ws, input: $input) { id } }",
            json!({ "ws": w.ws, "input": { "flowId": w.flow, "name": "prod" } }),
        )
        .await;
    let deployment = uuid_at(&data(&response)["createDeployment"]["id"]);

    let a = create_run(app, &w.owner, w.ws, w.flow, json!({ "tags": ["x"] })).await;
    let b = create_run(app, &w.owner, w.ws, other_flow, json!({ "tags": ["x"] })).await;
    let d = create_run(
        app,
        &w.owner,
        w.ws,
        w.flow,
        json!({ "tags": ["x", "y"], "deploymentId": deployment }),
    )
    .await;
    let filters = [
        ("flow", json!({ "flowIds": [w.flow] })),
        ("type", json!({ "stateTypes": ["RUNNING"] })),
        ("deployment", json!({ "deploymentIds": [deployment] })),
        ("run", json!({ "flowRunIds": [d] })),
        ("tags", json!({ "tags": ["x", "y"] })),
        (
            "combined",
            json!({ "flowIds": [w.flow], "stateTypes": ["PENDING", "RUNNING"] }),
        ),
        ("none", json!({})),
    ];
    let mut client = connect_as(app, Protocol::Transport, token).await;
    for (id, filter) in &filters {
        client
            .subscribe(id, FLOW_SUB, flow_vars(w.ws, filter.clone(), Some("0")))
            .await;
    }
    set_state(app, token, a, "PENDING", false).await;
    set_state(app, token, b, "PENDING", false).await;
    set_state(app, token, b, "RUNNING", false).await;
    set_state(app, token, a, "RUNNING", false).await;
    set_state(app, token, d, "PENDING", false).await;
    // The last change matches every filter, so reading each one's expected count and finding
    // exactly the expected events proves nothing else slipped through.
    set_state(app, token, d, "RUNNING", false).await;

    let e = |run: Uuid, t: &str| (run.to_string(), t.to_owned());
    let all = vec![
        e(a, "SCHEDULED"),
        e(b, "SCHEDULED"),
        e(d, "SCHEDULED"),
        e(a, "PENDING"),
        e(b, "PENDING"),
        e(b, "RUNNING"),
        e(a, "RUNNING"),
        e(d, "PENDING"),
        e(d, "RUNNING"),
    ];
    let expected = |id: &str| -> Vec<(String, String)> {
        all.iter()
            .filter(|(run, t)| {
                let run: Uuid = run.parse().expect("uuid");
                match id {
                    "flow" => run != b,
                    "type" => t == "RUNNING",
                    "deployment" | "run" | "tags" => run == d,
                    "combined" => run != b && (t == "PENDING" || t == "RUNNING"),
                    _ => true,
                }
            })
            .cloned()
            .collect()
    };
    // Operations on one connection interleave: collect per id.
    let mut received: std::collections::HashMap<String, Vec<Value>> = Default::default();
    let total: usize = filters.iter().map(|(id, _)| expected(id).len()).sum();
    for _ in 0..total {
        match client.recv_message().await {
            Frame::Json(m) if m["type"] == "next" => {
                assert!(m["payload"].get("errors").is_none(), "{m:#}");
                received
                    .entry(m["id"].as_str().unwrap_or_default().to_owned())
                    .or_default()
                    .push(m["payload"]["data"]["flowRunStateChanged"].clone());
            }
            other => panic!("expected an event, got {other:?}"),
        }
    }
    for (id, _) in &filters {
        let got = received.remove(*id).unwrap_or_default();
        assert_eq!(run_states(&got), expected(id), "filter {id}");
        assert_cursors_grow(&got);
    }
}

#[tokio::test]
async fn task_run_state_changes_arrive_per_workspace_or_per_flow_run() {
    let w = world("dan").await;
    let (app, token) = (&w.app, w.owner.token.as_str());
    for protocol in BOTH {
        let r1 = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
        let r2 = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
        // Task runs may only run inside a running flow run.
        for run in [r1, r2] {
            set_state(app, token, run, "PENDING", false).await;
            set_state(app, token, run, "RUNNING", false).await;
        }
        let mut client = connect_as(app, protocol, token).await;
        let head = {
            // Start after everything so far: r2's RUNNING is the newest event.
            client
                .subscribe(
                    "head",
                    FLOW_SUB,
                    flow_vars(w.ws, json!({ "flowRunIds": [r2] }), Some("0")),
                )
                .await;
            let e = client.events("head", "flowRunStateChanged", 3).await[2].clone();
            assert_eq!(e["toState"]["type"], "RUNNING");
            client.unsubscribe("head").await;
            if protocol == Protocol::Legacy {
                assert_eq!(client.expect_end("head").await, End::Complete);
            }
            cursor_of(&e)
        };
        client
            .subscribe("all", TASK_SUB, json!({ "ws": w.ws, "after": head }))
            .await;
        client
            .subscribe(
                "r1",
                TASK_SUB,
                json!({ "ws": w.ws, "run": r1, "after": head }),
            )
            .await;
        let (t1, t1_type) =
            create_task(app, &w.owner, r1, &format!("t1-{}", protocol.name())).await;
        let (t2, t2_type) =
            create_task(app, &w.owner, r2, &format!("t2-{}", protocol.name())).await;
        set_task_state(app, &w.owner, t2, "RUNNING").await;
        set_task_state(app, &w.owner, t1, "RUNNING").await;

        let mut all = Vec::new();
        let mut only_r1 = Vec::new();
        while all.len() < 4 || only_r1.len() < 2 {
            match client.recv_message().await {
                Frame::Json(m) if m["type"] == protocol_data(protocol) => {
                    let event = m["payload"]["data"]["taskRunStateChanged"].clone();
                    assert!(!event.is_null(), "{m:#}");
                    let entry = (
                        event["taskRun"]["id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        event["toState"]["type"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                    if m["id"] == "all" {
                        all.push(entry);
                    } else {
                        assert_eq!(event["taskRun"]["flowRun"]["id"], r1.to_string());
                        only_r1.push(entry);
                    }
                }
                other => panic!("expected a task run event, got {other:?}"),
            }
        }
        let e = |t: Uuid, s: &str| (t.to_string(), s.to_owned());
        assert_eq!(
            all,
            vec![
                e(t1, &t1_type),
                e(t2, &t2_type),
                e(t2, "RUNNING"),
                e(t1, "RUNNING")
            ],
            "{protocol:?}"
        );
        assert_eq!(
            only_r1,
            vec![e(t1, &t1_type), e(t1, "RUNNING")],
            "{protocol:?}"
        );
        client.close().await;
    }
}

fn protocol_data(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Transport => "next",
        Protocol::Legacy => "data",
    }
}

#[tokio::test]
async fn log_lines_stream_by_flow_run_task_run_and_minimum_level() {
    let w = world("eve").await;
    let (app, token) = (&w.app, w.owner.token.as_str());
    let run = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
    let other = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
    let (task, _) = create_task(app, &w.owner, run, "extract").await;
    for protocol in BOTH {
        let mut client = connect_as(app, protocol, token).await;
        let subs = [
            ("all", json!({ "ws": w.ws, "run": run })),
            ("task", json!({ "ws": w.ws, "run": run, "task": task })),
            ("warn", json!({ "ws": w.ws, "run": run, "min": "WARNING" })),
        ];
        for (id, vars) in &subs {
            let mut vars = vars.clone();
            vars["after"] = json!("0");
            client.subscribe(id, LOG_SUB, vars).await;
        }
        let tag = protocol.name();
        create_logs(
            app,
            token,
            w.ws,
            vec![
                log_line(run, None, "INFO", &format!("{tag} a")),
                log_line(other, None, "ERROR", &format!("{tag} b")),
                log_line(run, Some(task), "DEBUG", &format!("{tag} c")),
            ],
        )
        .await;
        create_logs(
            app,
            token,
            w.ws,
            vec![
                log_line(run, None, "WARNING", &format!("{tag} d")),
                log_line(run, Some(task), "ERROR", &format!("{tag} e")),
            ],
        )
        .await;
        let mut got: std::collections::HashMap<String, Vec<String>> = Default::default();
        // The first protocol's lines are replayed to the second protocol's subscriptions too.
        let round = if protocol == Protocol::Transport {
            1
        } else {
            2
        };
        let expected = |id: &str| -> Vec<String> {
            let mut out = Vec::new();
            for t in BOTH.iter().take(round).map(|p| p.name()) {
                let letters: &[&str] = match id {
                    "all" => &["a", "c", "d", "e"],
                    "task" => &["c", "e"],
                    _ => &["d", "e"],
                };
                out.extend(letters.iter().map(|l| format!("{t} {l}")));
            }
            out
        };
        let total: usize = subs.iter().map(|(id, _)| expected(id).len()).sum();
        for _ in 0..total {
            match client.recv_message().await {
                Frame::Json(m) if m["type"] == protocol_data(protocol) => {
                    let line = &m["payload"]["data"]["logs"];
                    assert_eq!(line["flowRunId"], run.to_string(), "{m:#}");
                    got.entry(m["id"].as_str().unwrap_or_default().to_owned())
                        .or_default()
                        .push(line["message"].as_str().unwrap_or_default().to_owned());
                }
                other => panic!("expected a log line, got {other:?}"),
            }
        }
        for (id, _) in &subs {
            assert_eq!(
                got.remove(*id).unwrap_or_default(),
                expected(id),
                "{protocol:?} {id}"
            );
        }
        client.close().await;
    }
}

#[tokio::test]
async fn a_failed_run_raises_an_alert_for_alert_subscribers() {
    let w = world("fay").await;
    let (app, token) = (&w.app, w.owner.token.as_str());
    let mut client = connect_as(app, Protocol::Transport, token).await;
    client
        .subscribe("all", ALERT_SUB, json!({ "ws": w.ws, "after": "0" }))
        .await;
    client
        .subscribe(
            "crashed",
            ALERT_SUB,
            json!({ "ws": w.ws, "kinds": ["CRASHED"], "after": "0" }),
        )
        .await;
    let failing = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
    let crashing = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
    for run in [failing, crashing] {
        set_state(app, token, run, "PENDING", false).await;
        set_state(app, token, run, "RUNNING", false).await;
    }
    set_state(app, token, failing, "FAILED", false).await;
    set_state(app, token, crashing, "CRASHED", false).await;

    let mut all = Vec::new();
    let mut crashed = Vec::new();
    while all.len() < 2 || crashed.is_empty() {
        match client.recv_message().await {
            Frame::Json(m) if m["type"] == "next" => {
                let alert = m["payload"]["data"]["runAlerts"].clone();
                assert!(!alert.is_null(), "{m:#}");
                if m["id"] == "all" {
                    all.push(alert);
                } else {
                    crashed.push(alert);
                }
            }
            other => panic!("expected an alert, got {other:?}"),
        }
    }
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["kind"], "FAILED");
    assert_eq!(all[0]["flowRun"]["id"], failing.to_string());
    assert_eq!(all[0]["flowRun"]["state"]["type"], "FAILED");
    assert!(all[0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("failed"));
    assert_eq!(all[1]["kind"], "CRASHED");
    assert_eq!(crashed.len(), 1);
    assert_eq!(crashed[0]["id"], all[1]["id"]);
    assert_cursors_grow(&all);
}

// ---------------------------------------------------------------------------------------------
// Resuming

#[tokio::test]
async fn resuming_after_a_disconnect_replays_exactly_the_missed_events_then_live_ones() {
    let w = world("gil").await;
    let (app, token) = (&w.app, w.owner.token.as_str());
    let run = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
    for protocol in BOTH {
        let mut client = connect_as(app, protocol, token).await;
        let seen_before = churn(app, token, run, 3).await;
        client
            .subscribe(
                "1",
                FLOW_SUB,
                flow_vars(w.ws, json!({ "flowRunIds": [run] }), Some("0")),
            )
            .await;
        // Everything so far: the creation plus the changes of earlier rounds and this one.
        let mut first = Vec::new();
        loop {
            let e = client.next_event("1", "flowRunStateChanged").await;
            let done = e["toState"]["id"] == seen_before[2].as_str();
            first.push(e);
            if done {
                break;
            }
        }
        let last = cursor_of(first.last().expect("events"));
        client.close().await;

        let missed = churn(app, token, run, 4).await;
        let mut client = connect_as(app, protocol, token).await;
        client
            .subscribe("2", FLOW_SUB, flow_vars(w.ws, Value::Null, Some(&last)))
            .await;
        let replayed = client.events("2", "flowRunStateChanged", 4).await;
        assert_eq!(state_ids(&replayed), missed, "{protocol:?}");
        let live = churn(app, token, run, 2).await;
        let followed = client.events("2", "flowRunStateChanged", 2).await;
        assert_eq!(state_ids(&followed), live, "{protocol:?}");
        let mut together = vec![first.last().cloned().expect("event")];
        together.extend(replayed);
        together.extend(followed);
        assert_cursors_grow(&together);
        client.close().await;
    }
}

/// Writers of one workspace commit concurrently; a subscriber reading the log by cursor must
/// still see every change exactly once, in cursor order. If a cursor could commit after a
/// larger one had been read, the feed would skip it.
#[tokio::test]
async fn concurrent_writers_changes_all_arrive_once_in_cursor_order() {
    const RUNS: usize = 8;
    const CHANGES: usize = 25;
    let w = world("cwr").await;
    let (app, token) = (&w.app, w.owner.token.clone());
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(create_run(app, &w.owner, w.ws, w.flow, Value::Null).await);
    }
    let mut client = connect_as(app, Protocol::Transport, &token).await;
    client
        .subscribe(
            "c",
            FLOW_SUB,
            flow_vars(w.ws, json!({ "flowRunIds": runs }), Some("0")),
        )
        .await;
    let created = client.events("c", "flowRunStateChanged", RUNS).await;
    let written: Vec<Vec<String>> =
        futures_util::future::join_all(runs.iter().map(|run| churn(app, &token, *run, CHANGES)))
            .await;
    let mut received = Vec::new();
    for _ in 0..RUNS * CHANGES {
        received.push(client.next_event("c", "flowRunStateChanged").await);
    }
    assert_cursors_grow(&created.iter().chain(&received).cloned().collect::<Vec<_>>());
    let mut expected: Vec<String> = written.iter().flatten().cloned().collect();
    let mut got = state_ids(&received);
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "every change once");
    // Each run's own changes arrive in the order they were made.
    for (run, made) in runs.iter().zip(&written) {
        let of_run: Vec<Value> = received
            .iter()
            .filter(|e| e["flowRun"]["id"].as_str() == Some(run.to_string().as_str()))
            .cloned()
            .collect();
        assert_eq!(&state_ids(&of_run), made);
    }
    client.close().await;
}

#[tokio::test]
async fn events_committed_while_a_resume_replays_are_delivered_once_in_order() {
    let w = world("hal").await;
    let (app, token) = (&w.app, w.owner.token.clone());
    let run = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
    let mut expected = vec![];
    expected.extend(churn(app, &token, run, 120).await);

    // Learn the cursor of the 20th change, then resume from it while a writer keeps going.
    let mut client = connect_as(app, Protocol::Transport, &token).await;
    client
        .subscribe(
            "a",
            FLOW_SUB,
            flow_vars(w.ws, json!({ "flowRunIds": [run] }), Some("0")),
        )
        .await;
    let head = client.events("a", "flowRunStateChanged", 21).await; // creation + 20 changes
    assert_eq!(state_ids(&head[1..]), expected[..20].to_vec());
    let from = cursor_of(&head[20]);
    client.close().await;

    let writer = {
        let app_url = app.graphql_url();
        let client = app.client.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..150 {
                let state_type = if i % 2 == 0 { "PENDING" } else { "RUNNING" };
                let response: Value = client
                    .post(&app_url)
                    .bearer_auth(&token)
                    .json(&json!({
                        "query": "mutation($run: UUID!, $type: StateType!) {
                            setFlowRunState(flowRunId: $run, state: { type: $type }, force: true) { state { id } } }",
                        "variables": { "run": run, "type": state_type },
                    }))
                    .send()
                    .await
                    .expect("mutation")
                    .json()
                    .await
                    .expect("json");
                ids.push(
                    response["data"]["setFlowRunState"]["state"]["id"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{response:#}"))
                        .to_owned(),
                );
            }
            ids
        })
    };
    let mut client = connect_as(app, Protocol::Transport, &token).await;
    client
        .subscribe("b", FLOW_SUB, flow_vars(w.ws, Value::Null, Some(&from)))
        .await;
    let mut received = Vec::new();
    for _ in 0..(100 + 150) {
        received.push(client.next_event("b", "flowRunStateChanged").await);
    }
    expected.extend(writer.await.expect("writer"));
    assert_eq!(state_ids(&received), expected[20..].to_vec());
    assert_cursors_grow(&received);
}

#[tokio::test]
async fn a_long_log_replay_spanning_several_reads_meets_live_lines_without_gap() {
    let w = world("ida").await;
    let (app, token) = (&w.app, w.owner.token.clone());
    let run = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
    let line = |i: usize| log_line(run, None, "INFO", &format!("line {i}"));
    // More than one read of the log (2,000 rows) behind, and more arriving during the replay.
    for chunk in 0..3 {
        create_logs(
            app,
            &token,
            w.ws,
            (chunk * 1000..(chunk + 1) * 1000).map(line).collect(),
        )
        .await;
    }
    let mut client = connect_as(app, Protocol::Transport, &token).await;
    client
        .subscribe(
            "a",
            LOG_SUB,
            json!({ "ws": w.ws, "run": run, "after": "0" }),
        )
        .await;
    let first = client.events("a", "logs", 10).await;
    let from = cursor_of(&first[9]);
    client.close().await;

    let writer = {
        let url = app.graphql_url();
        let http = app.client.clone();
        let token = token.clone();
        let ws = w.ws;
        tokio::spawn(async move {
            for chunk in 3..6 {
                let lines: Vec<Value> = (chunk * 1000..(chunk + 1) * 1000)
                    .map(|i| log_line(run, None, "INFO", &format!("line {i}")))
                    .collect();
                let response: Value = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({
                        "query": "mutation($ws: UUID!, $logs: [LogInput!]!) { createLogs(workspaceId: $ws, logs: $logs) }",
                        "variables": { "ws": ws, "logs": lines },
                    }))
                    .send()
                    .await
                    .expect("createLogs")
                    .json()
                    .await
                    .expect("json");
                assert_eq!(response["data"]["createLogs"], 1000, "{response:#}");
            }
        })
    };
    let mut client = connect_as(app, Protocol::Legacy, &token).await;
    client
        .subscribe(
            "b",
            LOG_SUB,
            json!({ "ws": w.ws, "run": run, "after": from }),
        )
        .await;
    let mut messages = Vec::with_capacity(5990);
    let mut previous: i64 = from.parse().expect("cursor");
    for _ in 10..6000 {
        let line = client.next_event("b", "logs").await;
        let cursor: i64 = cursor_of(&line).parse().expect("cursor");
        assert!(cursor > previous, "cursor {cursor} after {previous}");
        previous = cursor;
        messages.push(line["message"].as_str().unwrap_or_default().to_owned());
    }
    writer.await.expect("writer");
    let expected: Vec<String> = (10..6000).map(|i| format!("line {i}")).collect();
    assert_eq!(messages, expected);
}

// ---------------------------------------------------------------------------------------------
// The protocol: close codes, pings, errors

#[tokio::test]
async fn no_connection_init_within_the_timeout_closes_with_4408() {
    let app = spawn_app_with(|c| c.ws_init_timeout_ms = 200).await;
    for protocol in BOTH {
        let mut client = WsClient::connect(&app, protocol).await;
        let (code, _) = client.expect_close().await;
        assert_eq!(code, 4408, "{protocol:?}");
    }
}

#[tokio::test]
async fn subscribing_before_the_ack_closes_with_4401() {
    let w = world("jo").await;
    let mut client = WsClient::connect(&w.app, Protocol::Transport).await;
    client
        .subscribe("1", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
        .await;
    assert_eq!(client.expect_close().await.0, 4401);
}

#[tokio::test]
async fn invalid_messages_close_with_4400() {
    let w = world("kim").await;
    let token = w.owner.token.as_str();
    let cases = [
        ("not JSON", "{nope".to_owned()),
        ("unknown type", json!({ "type": "shout" }).to_string()),
        ("no type", json!({ "id": "1" }).to_string()),
        (
            "subscribe without payload",
            json!({ "type": "subscribe", "id": "1" }).to_string(),
        ),
        (
            "subscribe without id",
            json!({ "type": "subscribe", "payload": { "query": "subscription { x }" } })
                .to_string(),
        ),
    ];
    for (what, message) in &cases {
        let mut client = connect_as(&w.app, Protocol::Transport, token).await;
        client.send_raw(message).await;
        assert_eq!(client.expect_close().await.0, 4400, "{what}");
    }
    // Before init, too, and on the legacy protocol.
    for protocol in BOTH {
        let mut client = WsClient::connect(&w.app, protocol).await;
        client.send_raw("[]").await;
        assert_eq!(client.expect_close().await.0, 4400, "{protocol:?}");
    }
}

#[tokio::test]
async fn a_duplicate_operation_id_closes_with_4409() {
    let w = world("lea").await;
    let mut client = connect_as(&w.app, Protocol::Transport, &w.owner.token).await;
    let vars = flow_vars(w.ws, Value::Null, Some("0"));
    client.subscribe("same", FLOW_SUB, vars.clone()).await;
    client.subscribe("same", FLOW_SUB, vars).await;
    assert_eq!(client.expect_close().await.0, 4409);
}

#[tokio::test]
async fn a_bad_or_missing_token_closes_with_4403() {
    let w = world("max").await;
    for payload in [
        Value::Null,
        json!({}),
        json!({ "Authorization": "Bearer not-a-token" }),
        json!({ "authToken": "fc_bogus" }),
    ] {
        for protocol in BOTH {
            let mut client = WsClient::connect(&w.app, protocol).await;
            client.send_init(payload.clone()).await;
            if protocol == Protocol::Legacy {
                match client.recv_message().await {
                    Frame::Json(m) => assert_eq!(m["type"], "connection_error", "{m:#}"),
                    other => panic!("expected connection_error, got {other:?}"),
                }
            }
            assert_eq!(
                client.expect_close().await.0,
                4403,
                "{protocol:?} {payload}"
            );
        }
    }
    // `authToken` (without "Bearer") is accepted as well as `Authorization`.
    let mut client = WsClient::connect(&w.app, Protocol::Transport).await;
    client
        .send_init(json!({ "authToken": w.owner.token }))
        .await;
    client.expect_ack().await;
}

#[tokio::test]
async fn a_second_connection_init_closes_with_4429() {
    let w = world("ned").await;
    for protocol in BOTH {
        let mut client = connect_as(&w.app, protocol, &w.owner.token).await;
        client
            .send_init(json!({ "Authorization": format!("Bearer {}", w.owner.token) }))
            .await;
        assert_eq!(client.expect_close().await.0, 4429, "{protocol:?}");
    }
}

#[tokio::test]
async fn the_server_pings_idle_connections() {
    let app = spawn_app_with(|c| c.ws_ping_seconds = 1).await;
    let user = app.sign_up("oda").await;
    let mut client = connect_as(&app, Protocol::Transport, &user.token).await;
    match client.recv().await {
        Frame::Json(m) => assert_eq!(m["type"], "ping", "{m:#}"),
        other => panic!("expected a ping, got {other:?}"),
    }
    // Answering keeps the connection open; a client ping gets a pong with its payload.
    client.send(json!({ "type": "pong" })).await;
    client
        .send(json!({ "type": "ping", "payload": { "n": 1 } }))
        .await;
    loop {
        match client.recv().await {
            Frame::Json(m) if m["type"] == "ping" => continue,
            Frame::Json(m) => {
                assert_eq!(m, json!({ "type": "pong", "payload": { "n": 1 } }));
                break;
            }
            other => panic!("expected a pong, got {other:?}"),
        }
    }

    let mut legacy = connect_as(&app, Protocol::Legacy, &user.token).await;
    // The legacy protocol's keep-alive: one right after the ack, then one per interval.
    for _ in 0..2 {
        match legacy.recv().await {
            Frame::Json(m) => assert_eq!(m["type"], "ka", "{m:#}"),
            other => panic!("expected ka, got {other:?}"),
        }
    }
}

/// A workspace's feed starts when its first subscriber joins and reads where the log ends on
/// its own. A change committed between the subscriber's replay and that read once waited for
/// the workspace's next change to arrive. The window is narrow, so the race is run many times,
/// each on a workspace nobody watches yet. (From cursor 0: the subscribe message has no answer
/// to wait for, and a subscription from now may start after the change.)
#[tokio::test]
async fn a_change_made_while_a_workspace_feed_starts_reaches_its_first_subscriber() {
    let app = spawn_app_with(|config| config.max_workspaces_per_account = 50).await;
    let w = world_on(app, "feed-start").await;
    for round in 0..40 {
        let ws = w
            .app
            .create_workspace(&w.owner, &format!("feed-start-{round}"))
            .await;
        let flow = create_flow(&w.app, &w.owner, ws, "etl").await;
        let mut client = connect_as(&w.app, Protocol::Transport, &w.owner.token).await;
        client
            .subscribe("runs", FLOW_SUB, flow_vars(ws, Value::Null, Some("0")))
            .await;
        let run = create_run(&w.app, &w.owner, ws, flow, Value::Null).await;
        let event = client.next_event("runs", "flowRunStateChanged").await;
        assert_eq!(event["flowRun"]["id"], run.to_string(), "round {round}");
        assert_eq!(event["toState"]["type"], "SCHEDULED", "round {round}");
        client.close().await;
    }
}

#[tokio::test]
async fn an_invalid_subscription_is_answered_with_an_error_message() {
    let w = world("pia").await;
    for protocol in BOTH {
        let mut client = connect_as(&w.app, protocol, &w.owner.token).await;
        client
            .subscribe("bad", "subscription { noSuchField }", Value::Null)
            .await;
        let error = client.expect_error("bad").await;
        assert_eq!(error_code(&error), "BAD_USER_INPUT", "{error:#}");
        // A cursor the server never issued.
        client
            .subscribe(
                "cursor",
                FLOW_SUB,
                flow_vars(w.ws, Value::Null, Some("yesterday")),
            )
            .await;
        let error = client.expect_error("cursor").await;
        assert_eq!(error_code(&error), "BAD_USER_INPUT", "{error:#}");
        // The connection is still usable, and the failed ids can be used again.
        client
            .subscribe("bad", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
            .await;
        create_run(&w.app, &w.owner, w.ws, w.flow, Value::Null).await;
        let event = client.next_event("bad", "flowRunStateChanged").await;
        assert_eq!(event["toState"]["type"], "SCHEDULED");
        client.close().await;
    }
}

#[tokio::test]
async fn a_subscription_to_a_workspace_the_caller_cannot_read_gets_an_error_never_events() {
    let w = world("quin").await;
    let stranger = w.app.sign_up("rex").await;
    let run = create_run(&w.app, &w.owner, w.ws, w.flow, Value::Null).await;
    for protocol in BOTH {
        let mut client = connect_as(&w.app, protocol, &stranger.token).await;
        for (id, query, vars) in [
            ("runs", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0"))),
            ("tasks", TASK_SUB, json!({ "ws": w.ws, "after": "0" })),
            (
                "logs",
                LOG_SUB,
                json!({ "ws": w.ws, "run": run, "after": "0" }),
            ),
            ("alerts", ALERT_SUB, json!({ "ws": w.ws, "after": "0" })),
            ("live", FLOW_SUB, flow_vars(w.ws, Value::Null, None)),
        ] {
            client.subscribe(id, query, vars).await;
            let error = client.expect_error(id).await;
            assert_eq!(
                error_code(&error),
                "NOT_FOUND",
                "{protocol:?} {id}: {error:#}"
            );
        }
        set_state(&w.app, &w.owner.token, run, "PENDING", true).await;
        create_logs(
            &w.app,
            &w.owner.token,
            w.ws,
            vec![log_line(run, None, "INFO", "secret")],
        )
        .await;
        if protocol == Protocol::Transport {
            // Nothing is queued for the refused operations: the next message is our pong.
            client.send(json!({ "type": "ping" })).await;
            match client.recv().await {
                Frame::Json(m) => assert_eq!(m["type"], "pong", "{m:#}"),
                other => panic!("expected pong, got {other:?}"),
            }
        }
        client.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Access changes end subscriptions

#[tokio::test]
async fn removing_a_collaborator_ends_their_open_subscriptions() {
    let w = world("sam").await;
    let (app, token) = (&w.app, w.owner.token.as_str());
    let member = app.sign_up("tia").await;
    app.add_collaborator(&w.owner, w.ws, &member, "VIEWER")
        .await;
    let run = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;

    let mut theirs = connect_as(app, Protocol::Transport, &member.token).await;
    theirs
        .subscribe("runs", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
        .await;
    theirs
        .subscribe("quiet", ALERT_SUB, json!({ "ws": w.ws, "after": "0" }))
        .await;
    theirs.next_event("runs", "flowRunStateChanged").await;
    let mut mine = connect_as(app, Protocol::Legacy, token).await;
    mine.subscribe("runs", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
        .await;
    mine.next_event("runs", "flowRunStateChanged").await;

    let started = Instant::now();
    let response = app
        .gql_as(
            token,
            "mutation($ws: UUID!, $account: UUID!) { removeCollaborator(workspaceId: $ws, accountId: $account) }",
            json!({ "ws": w.ws, "account": member.id }),
        )
        .await;
    data(&response);
    let mut ended = std::collections::HashSet::new();
    while ended.len() < 2 {
        let (id, end) = match theirs.recv_message().await {
            Frame::Json(m) if m["type"] == "error" => (m["id"].clone(), "error"),
            Frame::Json(m) if m["type"] == "complete" => (m["id"].clone(), "complete"),
            Frame::Json(m) if m["type"] == "next" => {
                assert!(
                    m["payload"].get("errors").is_some(),
                    "a removed collaborator got an event: {m:#}"
                );
                continue;
            }
            other => panic!("expected the subscriptions to end, got {other:?}"),
        };
        let _ = end;
        ended.insert(id.as_str().unwrap_or_default().to_owned());
    }
    println!(
        "subscriptions ended {:?} after removeCollaborator",
        started.elapsed()
    );
    // The owner's subscription is unaffected.
    set_state(app, token, run, "PENDING", false).await;
    let event = mine.next_event("runs", "flowRunStateChanged").await;
    assert_eq!(event["toState"]["type"], "PENDING");
    // And the removed member cannot subscribe again.
    theirs
        .subscribe("again", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
        .await;
    assert_eq!(error_code(&theirs.expect_error("again").await), "NOT_FOUND");
}

#[tokio::test]
async fn revoking_an_api_key_ends_the_subscriptions_opened_with_it() {
    let w = world("uma").await;
    let (app, token) = (&w.app, w.owner.token.as_str());
    let response = app
        .gql_as(
            token,
            "mutation { createApiKey(input: { name: \"dashboard\" }) { secret apiKey { id } } }",
            Value::Null,
        )
        .await;
    let created = &data(&response)["createApiKey"];
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let key_id = created["apiKey"]["id"].clone();
    let run = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;

    let mut with_key = connect_as(app, Protocol::Transport, &secret).await;
    with_key
        .subscribe("runs", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
        .await;
    with_key.next_event("runs", "flowRunStateChanged").await;
    let mut with_session = connect_as(app, Protocol::Transport, token).await;
    with_session
        .subscribe("runs", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
        .await;
    with_session.next_event("runs", "flowRunStateChanged").await;

    let started = Instant::now();
    let response = app
        .gql_as(
            token,
            "mutation($id: UUID!) { revokeApiKey(id: $id) { revoked } }",
            json!({ "id": key_id }),
        )
        .await;
    assert_eq!(data(&response)["revokeApiKey"]["revoked"], true);
    match with_key.expect_end("runs").await {
        End::Error(payload) | End::ErrorThenComplete(payload) => {
            println!(
                "key subscription ended {:?} after revocation: {payload}",
                started.elapsed()
            );
        }
        End::Complete => {}
    }
    set_state(app, token, run, "PENDING", false).await;
    let event = with_session.next_event("runs", "flowRunStateChanged").await;
    assert_eq!(event["toState"]["type"], "PENDING");
}

// ---------------------------------------------------------------------------------------------
// A slow subscriber

#[tokio::test]
async fn a_slow_subscriber_slows_neither_the_others_nor_the_writers_and_misses_nothing() {
    let w = world("vic").await;
    let (app, token) = (&w.app, w.owner.token.clone());
    let run = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
    let vars = json!({ "ws": w.ws, "run": run, "after": "0" });
    // The slow one stops reading at once; its kernel buffer is tiny, so the server's writes
    // to it block after a few frames while events keep coming.
    let mut slow = WsClient::connect_small_buffer(app, Protocol::Transport).await;
    slow.init(&token).await;
    slow.subscribe("slow", LOG_SUB, vars.clone()).await;
    let mut fast = connect_as(app, Protocol::Transport, &token).await;
    fast.subscribe("fast", LOG_SUB, vars).await;

    // Many separate commits (more than the feed keeps for laggards), each a large line.
    const COMMITS: usize = 1_200;
    let filler = "x".repeat(4_000);
    let fast_reader = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let mut lines = Vec::with_capacity(COMMITS);
        for _ in 0..COMMITS {
            let waited = Instant::now();
            let line = fast.next_event("fast", "logs").await;
            worst = worst.max(waited.elapsed());
            lines.push(line["name"].as_str().unwrap_or_default().to_owned());
        }
        (lines, worst)
    });
    let started = Instant::now();
    let mut slowest_write = Duration::ZERO;
    for i in 0..COMMITS {
        let mut line = log_line(run, None, "INFO", &filler);
        line["name"] = json!(format!("n{i}"));
        let t = Instant::now();
        create_logs(app, &token, w.ws, vec![line]).await;
        slowest_write = slowest_write.max(t.elapsed());
    }
    let writing = started.elapsed();
    let (fast_lines, fast_worst) = tokio::time::timeout(WAIT * 3, fast_reader)
        .await
        .expect("the fast subscriber fell behind")
        .expect("fast reader");
    println!(
        "{COMMITS} commits in {writing:?} (slowest {slowest_write:?}); fast subscriber: \
         longest wait for a line {fast_worst:?}, all in {:?}",
        started.elapsed()
    );
    let expected: Vec<String> = (0..COMMITS).map(|i| format!("n{i}")).collect();
    assert_eq!(fast_lines, expected);

    // The slow one reads again: every line, in order, no gap.
    let mut slow_lines = Vec::with_capacity(COMMITS);
    for _ in 0..COMMITS {
        let line = slow.next_event("slow", "logs").await;
        slow_lines.push(line["name"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(slow_lines, expected);
}

// ---------------------------------------------------------------------------------------------
// Shutdown, retention, replicas

#[tokio::test]
async fn shutting_down_closes_websockets_with_1001() {
    let mut w = world("wes").await;
    let mut clients = Vec::new();
    for protocol in BOTH {
        let mut client = connect_as(&w.app, protocol, &w.owner.token).await;
        client
            .subscribe("runs", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
            .await;
        clients.push(client);
    }
    // One not yet initialised, too.
    clients.push(WsClient::connect(&w.app, Protocol::Transport).await);
    w.app.stop();
    for mut client in clients {
        let (code, _) = client.expect_close().await;
        assert_eq!(code, 1001, "{:?}", client.protocol);
    }
}

#[tokio::test]
async fn retention_deletes_old_events_and_a_resume_from_before_them_is_told_so() {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let w = world("xia").await;
    let (app, token) = (&w.app, w.owner.token.as_str());
    let run = create_run(app, &w.owner, w.ws, w.flow, Value::Null).await;
    churn(app, token, run, 4).await;
    let old_day = chrono::Utc::now() - chrono::Duration::days(40);
    create_logs(
        app,
        token,
        w.ws,
        vec![
            json!({ "flowRunId": run, "level": "INFO", "name": "t", "message": "ancient",
                    "timestamp": old_day.to_rfc3339() }),
        ],
    )
    .await;
    create_logs(
        app,
        token,
        w.ws,
        vec![log_line(run, None, "INFO", "recent")],
    )
    .await;
    let kept = churn(app, token, run, 2).await;

    let mut client = connect_as(app, Protocol::Transport, token).await;
    client
        .subscribe("all", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
        .await;
    let before = client.events("all", "flowRunStateChanged", 7).await;
    client.close().await;
    // The creation and the first four changes happened "8 days ago".
    let cutoff: i64 = cursor_of(&before[4]).parse().expect("cursor");
    entity::events::Entity::update_many()
        .col_expr(
            entity::events::Column::OccurredAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::days(8)),
        )
        .filter(entity::events::Column::WorkspaceId.eq(w.ws))
        .filter(entity::events::Column::Seq.lte(cutoff))
        .exec(&app.db)
        .await
        .expect("time travel");

    // Drive the retention service directly, as the server's loop would.
    let driver = flowcloud::Application::build(app.config.clone())
        .await
        .expect("a second application on the same database");
    let mut deleted = flowcloud::services::retention::Pruned::default();
    loop {
        let step = flowcloud::services::retention::try_tick(driver.state())
            .await
            .expect("retention step");
        if step.events + step.logs == 0 {
            break;
        }
        deleted.events += step.events;
        deleted.logs += step.logs;
    }
    assert_eq!(deleted.events, 5);
    assert_eq!(deleted.logs, 1);

    let mut client = connect_as(app, Protocol::Transport, token).await;
    // From before the deleted events: a clear error, no events.
    for (id, after) in [("old", "0"), ("older", "2")] {
        client
            .subscribe(id, FLOW_SUB, flow_vars(w.ws, Value::Null, Some(after)))
            .await;
        let error = client.expect_error(id).await;
        assert_eq!(error_code(&error), "BAD_USER_INPUT", "{error:#}");
        assert!(
            error["message"]
                .as_str()
                .unwrap_or_default()
                .contains("retention"),
            "{error:#}"
        );
    }
    // Logs have their own retention: the old line is gone, the recent one is still replayed.
    client
        .subscribe(
            "logs",
            LOG_SUB,
            json!({ "ws": w.ws, "run": run, "after": "0" }),
        )
        .await;
    let error = client.expect_error("logs").await;
    assert_eq!(error_code(&error), "BAD_USER_INPUT", "{error:#}");
    // From the newest deleted event on, the rest is replayed.
    client
        .subscribe(
            "kept",
            FLOW_SUB,
            flow_vars(w.ws, Value::Null, Some(&cutoff.to_string())),
        )
        .await;
    let rest = client.events("kept", "flowRunStateChanged", 2).await;
    assert_eq!(state_ids(&rest), kept);
}

#[tokio::test]
async fn two_replicas_on_postgres_deliver_each_others_events() {
    let a = spawn_app().await;
    if !a.is_postgres() {
        println!("skipped: two replicas need PostgreSQL (set TEST_DATABASE_URL)");
        return;
    }
    let b = a.spawn_sibling_with(|_| {}).await;
    let w = world_on(a, "yan").await;
    let run = create_run(&w.app, &w.owner, w.ws, w.flow, Value::Null).await;
    let mut on_a = connect_as(&w.app, Protocol::Transport, &w.owner.token).await;
    on_a.subscribe("runs", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
        .await;
    let first = on_a.next_event("runs", "flowRunStateChanged").await;
    assert_eq!(first["toState"]["type"], "SCHEDULED");
    let mut on_b = connect_as(&b, Protocol::Legacy, &w.owner.token).await;
    on_b.subscribe("runs", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
        .await;
    on_b.next_event("runs", "flowRunStateChanged").await;

    // Changes made through B reach A's subscriber, and A's through A reach B's — once each.
    let mut expected = Vec::new();
    for (i, server) in [&b, &w.app, &b].into_iter().enumerate() {
        let started = Instant::now();
        let state_type = ["PENDING", "RUNNING", "COMPLETED"][i];
        expected.push(set_state(server, &w.owner.token, run, state_type, false).await);
        let event = on_a.next_event("runs", "flowRunStateChanged").await;
        println!(
            "replica event reached the other process in {:?}",
            started.elapsed()
        );
        assert_eq!(event["toState"]["id"], expected[i].as_str());
    }
    let on_b_events = on_b.events("runs", "flowRunStateChanged", 3).await;
    assert_eq!(state_ids(&on_b_events), expected);
}

/// Each committed change tells other processes where the workspace's log now ends, in the
/// payload they decode (`c:<workspace>:<last cursor>`), so they wake at once instead of at
/// their next poll of the log.
#[tokio::test]
async fn a_committed_state_change_notifies_other_processes_with_its_cursor() {
    let w = world("zed").await;
    if !w.app.is_postgres() {
        println!("skipped: notifications between processes need PostgreSQL");
        return;
    }
    let mut listener = sqlx::postgres::PgListener::connect(&w.app.config.database_url)
        .await
        .unwrap();
    listener.listen("flowcloud_events").await.unwrap();
    let run = create_run(&w.app, &w.owner, w.ws, w.flow, Value::Null).await;
    let mut on_a = connect_as(&w.app, Protocol::Transport, &w.owner.token).await;
    on_a.subscribe("runs", FLOW_SUB, flow_vars(w.ws, Value::Null, Some("0")))
        .await;
    let created = on_a.next_event("runs", "flowRunStateChanged").await;
    set_state(&w.app, &w.owner.token, run, "PENDING", false).await;
    let pending = on_a.next_event("runs", "flowRunStateChanged").await;
    let mut payloads = Vec::new();
    while payloads.len() < 2 {
        let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("no notification within 10 s")
            .unwrap();
        if notification.payload().starts_with("c:") {
            payloads.push(notification.payload().to_owned());
        }
    }
    let expected: Vec<String> = [&created, &pending]
        .iter()
        .map(|e| format!("c:{}:{}", w.ws, e["cursor"].as_str().unwrap()))
        .collect();
    assert_eq!(payloads, expected);
}

// ---------------------------------------------------------------------------------------------
// The official graphql-ws client

#[tokio::test]
async fn the_official_graphql_ws_client_receives_events() {
    let client_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/live-client");
    let installed = client_dir
        .join("node_modules/graphql-ws/package.json")
        .exists()
        && client_dir.join("node_modules/ws/package.json").exists();
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !node || !installed {
        // CI installs the client and sets this, so a broken install fails instead of skipping.
        assert!(
            std::env::var_os("FLOWCLOUD_REQUIRE_LIVE_CLIENT").is_none(),
            "FLOWCLOUD_REQUIRE_LIVE_CLIENT is set but node or tests/live-client/node_modules is missing"
        );
        println!(
            "skipped: needs node and `npm ci` in tests/live-client (node found: {node}, modules installed: {installed})"
        );
        return;
    }
    let w = world("zed").await;
    let run = create_run(&w.app, &w.owner, w.ws, w.flow, Value::Null).await;
    let url = format!("{}/graphql/ws", w.app.address.replacen("http", "ws", 1));
    let variables = json!({ "ws": w.ws, "after": "0" }).to_string();
    let mut child = tokio::process::Command::new("node")
        .arg(client_dir.join("subscribe.mjs"))
        .args([&url, &w.owner.token, FLOW_SUB, &variables, "4"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    assert_eq!(next_line(&mut lines).await, json!({ "connected": true }));
    let mut expected = vec![];
    for state_type in ["PENDING", "RUNNING", "COMPLETED"] {
        expected.push(set_state(&w.app, &w.owner.token, run, state_type, false).await);
    }
    let mut events = Vec::new();
    for _ in 0..4 {
        let line = next_line(&mut lines).await;
        assert!(line.get("errors").is_none(), "{line:#}");
        events.push(line["data"]["flowRunStateChanged"].clone());
    }
    assert_eq!(events[0]["toState"]["type"], "SCHEDULED");
    assert_eq!(state_ids(&events[1..]), expected);
    assert_eq!(next_line(&mut lines).await, json!({ "complete": true }));
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the graphql-ws client did not exit")
        .expect("wait");
    assert!(status.success());
}

async fn next_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Value {
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("no output from the graphql-ws client")
        .expect("read")
        .expect("the graphql-ws client exited early");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}
