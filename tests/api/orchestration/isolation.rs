//! Roles and workspace isolation for runs, task runs, logs and claiming: a VIEWER reads but
//! never writes, a stranger sees nothing, ids from another workspace never work — and a
//! refused mutation writes nothing at all.
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

/// Every table a run mutation may write to.
const TABLES: [&str; 9] = [
    "flow_runs",
    "flow_run_states",
    "task_runs",
    "task_run_states",
    "task_run_dependencies",
    "logs",
    "run_alerts",
    "events",
    "flows",
];

async fn row_counts(app: &TestApp) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for table in TABLES {
        out.push((table.to_owned(), app.count_rows(table, "").await));
    }
    out
}

/// One workspace's orchestration objects.
#[derive(Clone, Copy)]
struct Objects {
    ws: Uuid,
    flow: Uuid,
    deployment: Uuid,
    queue: Uuid,
    run: Uuid,
    task: Uuid,
}

async fn fill(app: &TestApp, user: &TestUser, ws: Uuid, tag: &str) -> Objects {
    let flow = create_flow(app, user, ws, &format!("flow-{tag}")).await;
    let deployment = create_deployment(
        app,
        user,
        ws,
        json!({ "flowId": flow, "name": "d", "workQueueName": "q" }),
    )
    .await;
    let queue = create_queue(app, user, ws, json!({ "name": "q" })).await;
    let run = uuid_at(
        &create_run(
            app,
            user,
            ws,
            flow,
            json!({ "deploymentId": deployment,
                "state": scheduled_at(Utc::now() - Duration::minutes(1)) }),
        )
        .await["id"],
    );
    // A running run with a task run, so that every write below could succeed.
    let running = uuid_at(
        &create_run(
            app,
            user,
            ws,
            flow,
            json!({ "state": state("RUNNING"), "name": "running" }),
        )
        .await["id"],
    );
    let task = uuid_at(&create_task_run(app, user, running, json!({ "taskKey": "t" })).await["id"]);
    Objects {
        ws,
        flow,
        deployment,
        queue,
        run,
        task,
    }
}

fn log_line(run: Uuid, task: Option<Uuid>) -> Value {
    json!({ "flowRunId": run, "taskRunId": task, "level": "INFO", "name": "l",
        "message": "m", "timestamp": rfc3339(Utc::now()) })
}

/// Every write that takes an id, aimed at `target` (with `home` for the workspace-level ones).
fn writes(home: &Objects, target: &Objects) -> Vec<(String, &'static str, Value)> {
    let m = |q: &'static str| q;
    let mut out: Vec<(String, &'static str, Value)> = vec![
        (
            "createFlowRun".into(),
            m("mutation($ws: UUID!, $input: CreateFlowRunInput!) {
                createFlowRun(workspaceId: $ws, input: $input) { id } }"),
            json!({ "ws": home.ws, "input": { "flowId": target.flow } }),
        ),
        (
            "createFlowRunFromDeployment".into(),
            m("mutation($id: UUID!) { createFlowRunFromDeployment(deploymentId: $id) { id } }"),
            json!({ "id": target.deployment }),
        ),
        (
            "setFlowRunState".into(),
            m("mutation($id: UUID!) { setFlowRunState(flowRunId: $id, state: { type: PENDING }) { status } }"),
            json!({ "id": target.run }),
        ),
        (
            "setFlowRunState(force)".into(),
            m("mutation($id: UUID!) {
                setFlowRunState(flowRunId: $id, state: { type: CRASHED }, force: true) { status } }"),
            json!({ "id": target.run }),
        ),
        (
            "createTaskRun".into(),
            m("mutation($id: UUID!) { createTaskRun(flowRunId: $id, input: { taskKey: \"new\" }) { id } }"),
            json!({ "id": target.run }),
        ),
        (
            "setTaskRunState".into(),
            m("mutation($id: UUID!) { setTaskRunState(taskRunId: $id, state: { type: FAILED }) { status } }"),
            json!({ "id": target.task }),
        ),
        (
            "setTaskRunState(force)".into(),
            m("mutation($id: UUID!) {
                setTaskRunState(taskRunId: $id, state: { type: CRASHED }, force: true) { status } }"),
            json!({ "id": target.task }),
        ),
        (
            "createLogs".into(),
            m("mutation($ws: UUID!, $logs: [LogInput!]!) { createLogs(workspaceId: $ws, logs: $logs) }"),
            json!({ "ws": home.ws, "logs": [log_line(target.run, None)] }),
        ),
        (
            "claimFlowRuns".into(),
            m("mutation($id: UUID!) { claimFlowRuns(workQueueId: $id) { id } }"),
            json!({ "id": target.queue }),
        ),
    ];
    if home.ws != target.ws {
        // Ids nested in inputs of an otherwise valid call in the home workspace.
        out.extend([
            (
                "createFlowRun(deploymentId)".into(),
                m("mutation($ws: UUID!, $input: CreateFlowRunInput!) {
                    createFlowRun(workspaceId: $ws, input: $input) { id } }"),
                json!({ "ws": home.ws, "input": { "flowId": home.flow, "deploymentId": target.deployment } }),
            ),
            (
                "createFlowRun(workspaceId)".into(),
                m("mutation($ws: UUID!, $input: CreateFlowRunInput!) {
                    createFlowRun(workspaceId: $ws, input: $input) { id } }"),
                json!({ "ws": target.ws, "input": { "flowId": home.flow } }),
            ),
            (
                "createTaskRun(upstreamTaskRunIds)".into(),
                m("mutation($id: UUID!, $up: [UUID!]) {
                    createTaskRun(flowRunId: $id, input: { taskKey: \"x\", upstreamTaskRunIds: $up }) { id } }"),
                json!({ "id": home.run, "up": [target.task] }),
            ),
            (
                "createLogs(taskRunId)".into(),
                m("mutation($ws: UUID!, $logs: [LogInput!]!) { createLogs(workspaceId: $ws, logs: $logs) }"),
                json!({ "ws": home.ws, "logs": [log_line(home.run, None), log_line(home.run, Some(target.task))] }),
            ),
            (
                "createLogs(workspaceId)".into(),
                m("mutation($ws: UUID!, $logs: [LogInput!]!) { createLogs(workspaceId: $ws, logs: $logs) }"),
                json!({ "ws": target.ws, "logs": [log_line(home.run, None)] }),
            ),
        ]);
    }
    out
}

/// Reads that take an id: each must come back empty / null for `target` objects.
const READS: &str = "query($ws: UUID!, $run: UUID!, $task: UUID!, $dep: UUID!, $flow: UUID!,
    $since: DateTime!, $until: DateTime!) {
    flowRun(id: $run) { id } taskRun(id: $task) { id } deployment(id: $dep) { id }
    workspace(id: $ws) {
        byRun: flowRuns(filter: { flowRunIds: [$run] }) { totalCount nodes { id } }
        byFlow: flowRuns(filter: { flowIds: [$flow] }) { totalCount nodes { id } }
        byDeployment: flowRuns(filter: { deploymentIds: [$dep] }) { totalCount nodes { id } }
        taskRuns(flowRunId: $run) { totalCount nodes { id } }
        upcomingFlowRuns(deploymentId: $dep) { id }
        flowRunSummary(since: $since, until: $until, filter: { flowIds: [$flow] }) { total }
        flow(id: $flow) { id }
    } }";

fn read_vars(ws: Uuid, target: &Objects) -> Value {
    json!({ "ws": ws, "run": target.run, "task": target.task, "dep": target.deployment,
        "flow": target.flow, "since": rfc3339(Utc::now() - Duration::days(1)),
        "until": rfc3339(Utc::now() + Duration::days(1)) })
}

#[tokio::test]
async fn ids_from_another_workspace_never_work_and_nothing_is_written() {
    let app = spawn_app().await;
    let alice = app.sign_up("iso-alice").await;
    let bob = app.sign_up("iso-bob").await;
    let a_ws = app.create_workspace(&alice, "iso-a").await;
    let b_ws = app.create_workspace(&bob, "iso-b").await;
    let a = fill(&app, &alice, a_ws, "a").await;
    let b = fill(&app, &bob, b_ws, "b").await;
    // Bob's run has logs that must stay invisible.
    data(
        &app.gql_as(
            &bob.token,
            "mutation($ws: UUID!, $logs: [LogInput!]!) { createLogs(workspaceId: $ws, logs: $logs) }",
            json!({ "ws": b_ws, "logs": [log_line(b.run, None)] }),
        )
        .await,
    );

    let before = row_counts(&app).await;
    for (what, query, vars) in writes(&a, &b) {
        let response = app.gql_as(&alice.token, query, vars).await;
        assert_error_code(&response, "NOT_FOUND");
        assert_eq!(row_counts(&app).await, before, "{what} wrote something");
    }
    // Reads with Bob's ids, in Alice's workspace.
    let response = app.gql_as(&alice.token, READS, read_vars(a_ws, &b)).await;
    let d = data(&response);
    assert!(
        d["flowRun"].is_null() && d["taskRun"].is_null() && d["deployment"].is_null(),
        "{d}"
    );
    let ws = &d["workspace"];
    for field in ["byRun", "byFlow", "byDeployment", "taskRuns"] {
        assert_eq!(
            ws[field],
            json!({ "totalCount": 0, "nodes": [] }),
            "{field}"
        );
    }
    assert_eq!(ws["upcomingFlowRuns"], json!([]));
    assert_eq!(ws["flowRunSummary"]["total"], 0);
    assert!(ws["flow"].is_null());
    // A log filter with Bob's task run on Alice's run finds nothing.
    let response = app
        .gql_as(
            &alice.token,
            "query($id: UUID!, $task: UUID!) { flowRun(id: $id) {
                logs(taskRunId: $task) { totalCount } } }",
            json!({ "id": a.run, "task": b.task }),
        )
        .await;
    assert_eq!(data(&response)["flowRun"]["logs"]["totalCount"], 0);
    // Alice's own ids still work in every read above.
    let response = app.gql_as(&alice.token, READS, read_vars(a_ws, &a)).await;
    let d = data(&response);
    assert_eq!(d["flowRun"]["id"], json!(a.run));
    assert_eq!(d["taskRun"]["id"], json!(a.task));
    assert_eq!(d["deployment"]["id"], json!(a.deployment));
    assert_eq!(d["workspace"]["byFlow"]["totalCount"], 2);
    assert_eq!(d["workspace"]["byDeployment"]["totalCount"], 1);
    // Bob's run is untouched, his queue never polled.
    let response = app
        .gql_as(
            &bob.token,
            "query($id: UUID!, $ws: UUID!) { flowRun(id: $id) { state { type } stateHistory { type } }
                workspace(id: $ws) { workQueues { lastPolledAt } } }",
            json!({ "id": b.run, "ws": b_ws }),
        )
        .await;
    let d = data(&response);
    assert_eq!(d["flowRun"]["state"]["type"], "SCHEDULED");
    assert_eq!(d["flowRun"]["stateHistory"].as_array().unwrap().len(), 1);
    assert_eq!(
        d["workspace"]["workQueues"],
        json!([{ "lastPolledAt": null }])
    );
}

#[tokio::test]
async fn a_viewer_reads_runs_but_every_write_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.sign_up("roles-owner").await;
    let viewer = app.sign_up("roles-viewer").await;
    let editor = app.sign_up("roles-editor").await;
    let stranger = app.sign_up("roles-stranger").await;
    let ws = app.create_workspace(&owner, "roles-ws").await;
    app.add_collaborator(&owner, ws, &viewer, "VIEWER").await;
    app.add_collaborator(&owner, ws, &editor, "EDITOR").await;
    let objects = fill(&app, &owner, ws, "x").await;

    // The viewer reads everything.
    let response = app
        .gql_as(&viewer.token, READS, read_vars(ws, &objects))
        .await;
    let d = data(&response);
    assert_eq!(d["flowRun"]["id"], json!(objects.run));
    assert_eq!(d["taskRun"]["id"], json!(objects.task));
    assert_eq!(d["deployment"]["id"], json!(objects.deployment));
    assert_eq!(d["workspace"]["byFlow"]["totalCount"], 2);
    let response = app
        .gql_as(
            &viewer.token,
            "query($ws: UUID!, $id: UUID!) { workspace(id: $ws) { runAlerts { id }
                taskRuns { totalCount } upcomingFlowRuns { id } }
                flowRun(id: $id) { logs { totalCount } graph { nodes { id } } } }",
            json!({ "ws": ws, "id": objects.run }),
        )
        .await;
    data(&response);

    // Every write: FORBIDDEN for the viewer, NOT_FOUND (null for reads) for a stranger.
    let before = row_counts(&app).await;
    for (what, query, vars) in writes(&objects, &objects) {
        let response = app.gql_as(&viewer.token, query, vars.clone()).await;
        assert_error_code(&response, "FORBIDDEN");
        assert_eq!(
            row_counts(&app).await,
            before,
            "{what} by a viewer wrote something"
        );
        let response = app.gql_as(&stranger.token, query, vars).await;
        assert_error_code(&response, "NOT_FOUND");
        assert_eq!(
            row_counts(&app).await,
            before,
            "{what} by a stranger wrote something"
        );
    }
    let response = app
        .gql_as(&stranger.token, READS, read_vars(ws, &objects))
        .await;
    let d = data(&response);
    assert!(d["flowRun"].is_null() && d["taskRun"].is_null() && d["deployment"].is_null());
    assert!(d["workspace"].is_null());
    let response = app
        .gql_as(
            &viewer.token,
            "query($ws: UUID!) { workspace(id: $ws) { workQueues { lastPolledAt } } }",
            json!({ "ws": ws }),
        )
        .await;
    assert_eq!(
        data(&response)["workspace"]["workQueues"],
        json!([{ "lastPolledAt": null }])
    );

    // An editor writes.
    for (what, query, vars) in writes(&objects, &objects) {
        let response = app.gql_as(&editor.token, query, vars).await;
        assert!(
            response.get("errors").is_none(),
            "{what} by an editor: {response:#}"
        );
    }
}

#[tokio::test]
async fn a_refused_mutation_leaves_nothing_behind() {
    let w = world("atomic").await;
    let run = w.run_id(json!({ "state": state("RUNNING") })).await;
    let a = uuid_at(&w.task(run, json!({ "taskKey": "a" })).await["id"]);
    let other_run = w.run_id(json!({ "state": state("RUNNING") })).await;
    let elsewhere = uuid_at(&w.task(other_run, json!({ "taskKey": "x" })).await["id"]);
    let other_flow = create_flow(&w.app, &w.owner, w.ws, "other").await;
    let before = row_counts(&w.app).await;

    // One good upstream and one bad: no task run, no dependency, no state, no event.
    for bad in [Uuid::new_v4(), elsewhere] {
        let response = try_create_task_run(
            &w.app,
            &w.owner,
            run,
            json!({ "taskKey": "b", "upstreamTaskRunIds": [a, bad] }),
        )
        .await;
        assert_error_code(&response, "NOT_FOUND");
        assert_eq!(row_counts(&w.app).await, before);
    }
    // A deployment of another flow.
    let response = try_create_run(
        &w.app,
        &w.owner,
        w.ws,
        json!({ "flowId": other_flow, "deploymentId": w.deployment }),
    )
    .await;
    assert_bad_input(&response, "deploymentId");
    // Bad input of every kind.
    let bad_runs = [
        (json!({ "flowId": w.flow, "parameters": [1] }), "parameters"),
        (json!({ "flowId": w.flow, "retries": -1 }), "retries"),
        (json!({ "flowId": w.flow, "tags": [""] }), "tags"),
        (
            json!({ "flowId": w.flow, "state": { "type": "RUNNING", "name": "" } }),
            "state.name",
        ),
        (
            json!({ "flowId": w.flow, "idempotencyKey": "" }),
            "idempotencyKey",
        ),
    ];
    for (input, field) in bad_runs {
        assert_bad_input(&try_create_run(&w.app, &w.owner, w.ws, input).await, field);
    }
    let response = try_set_flow_run_state(
        &w.app,
        &w.owner,
        run,
        json!({ "type": "COMPLETED", "transitionId": "" }),
        false,
    )
    .await;
    assert_bad_input(&response, "state.transitionId");
    let response = try_create_task_run(&w.app, &w.owner, run, json!({ "taskKey": "" })).await;
    assert_bad_input(&response, "taskKey");
    assert_eq!(row_counts(&w.app).await, before);
    assert_eq!(w.read_run(run).await["state"]["type"], "RUNNING");
}
