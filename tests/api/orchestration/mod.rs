//! Orchestration end to end: runs and their states (the rules), claiming, ad-hoc runs, logs,
//! connections, the dashboard queries, roles and workspace isolation — through the API only.
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

mod claiming;
mod dashboard;
mod isolation;
mod logs;
mod rules;
mod runs;

/// The fields most tests read back from a flow run.
pub const RUN_FIELDS: &str = "id name workQueueName parameters tags idempotencyKey
    expectedStartTime startTime endTime totalRunTime runCount retries retryDelaySeconds
    flow { id name } deployment { id name }
    state { id type name message timestamp scheduledTime }
    stateHistory { type name timestamp scheduledTime }";

pub const RESULT_FIELDS: &str =
    "status reason delaySeconds state { id type name message timestamp scheduledTime }";

/// A server, an owner and their workspace, with one flow and one deployment of it.
pub struct World {
    pub app: TestApp,
    pub owner: TestUser,
    pub ws: Uuid,
    pub flow: Uuid,
    pub deployment: Uuid,
}

pub async fn world(handle: &str) -> World {
    let app = spawn_app().await;
    let owner = app.sign_up(handle).await;
    let ws = app.create_workspace(&owner, &format!("{handle}-ws")).await;
    let flow = create_flow(&app, &owner, ws, "etl").await;
    let deployment = create_deployment(
        &app,
        &owner,
        ws,
        json!({ "flowId": flow, "name": "nightly", "workQueueName": "default" }),
    )
    .await;
    World {
        app,
        owner,
        ws,
        flow,
        deployment,
    }
}

impl World {
    /// Creates a flow run of the world's flow; `input` adds to / overrides `flowId`.
    pub async fn run(&self, input: Value) -> Value {
        create_run(&self.app, &self.owner, self.ws, self.flow, input).await
    }

    pub async fn run_id(&self, input: Value) -> Uuid {
        uuid_at(&self.run(input).await["id"])
    }

    pub async fn set_state(&self, run: Uuid, state: Value) -> Value {
        set_flow_run_state(&self.app, &self.owner, run, state, false).await
    }

    pub async fn force_state(&self, run: Uuid, state: Value) -> Value {
        set_flow_run_state(&self.app, &self.owner, run, state, true).await
    }

    pub async fn task(&self, run: Uuid, input: Value) -> Value {
        create_task_run(&self.app, &self.owner, run, input).await
    }

    pub async fn set_task_state(&self, task: Uuid, state: Value, force: bool) -> Value {
        set_task_run_state(&self.app, &self.owner, task, state, force).await
    }

    /// `flowRun(id)` with [`RUN_FIELDS`].
    pub async fn read_run(&self, run: Uuid) -> Value {
        let response = self
            .app
            .gql_as(
                &self.owner.token,
                &format!("query($id: UUID!) {{ flowRun(id: $id) {{ {RUN_FIELDS} }} }}"),
                json!({ "id": run }),
            )
            .await;
        data(&response)["flowRun"].clone()
    }

    pub async fn query(&self, query: &str, variables: Value) -> Value {
        let response = self.app.gql_as(&self.owner.token, query, variables).await;
        data(&response).clone()
    }
}

pub async fn create_flow(app: &TestApp, user: &TestUser, ws: Uuid, name: &str) -> Uuid {
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

pub async fn create_deployment(app: &TestApp, user: &TestUser, ws: Uuid, input: Value) -> Uuid {
    let response = app
        .gql_as(
            &user.token,
            "mutation($ws: UUID!, $input: CreateDeploymentInput!) {
                createDeployment(workspaceId: $ws, input: $input) { id } }",
            json!({ "ws": ws, "input": input }),
        )
        .await;
    uuid_at(&data(&response)["createDeployment"]["id"])
}

pub async fn create_queue(app: &TestApp, user: &TestUser, ws: Uuid, input: Value) -> Uuid {
    let response = app
        .gql_as(
            &user.token,
            "mutation($ws: UUID!, $input: WorkQueueInput!) {
                createWorkQueue(workspaceId: $ws, input: $input) { id } }",
            json!({ "ws": ws, "input": input }),
        )
        .await;
    uuid_at(&data(&response)["createWorkQueue"]["id"])
}

pub async fn try_create_run(app: &TestApp, user: &TestUser, ws: Uuid, input: Value) -> Value {
    app.gql_as(
        &user.token,
        &format!(
            "mutation($ws: UUID!, $input: CreateFlowRunInput!) {{
                createFlowRun(workspaceId: $ws, input: $input) {{ {RUN_FIELDS} }} }}"
        ),
        json!({ "ws": ws, "input": input }),
    )
    .await
}

/// Creates a run of `flow`; the fields of `input` are added to `{ flowId }`.
pub async fn create_run(
    app: &TestApp,
    user: &TestUser,
    ws: Uuid,
    flow: Uuid,
    input: Value,
) -> Value {
    let mut full = json!({ "flowId": flow });
    if let Value::Object(extra) = input {
        for (k, v) in extra {
            full[k] = v;
        }
    }
    let response = try_create_run(app, user, ws, full).await;
    data(&response)["createFlowRun"].clone()
}

pub async fn try_set_flow_run_state(
    app: &TestApp,
    user: &TestUser,
    run: Uuid,
    state: Value,
    force: bool,
) -> Value {
    app.gql_as(
        &user.token,
        &format!(
            "mutation($id: UUID!, $state: StateInput!, $force: Boolean) {{
                setFlowRunState(flowRunId: $id, state: $state, force: $force) {{ {RESULT_FIELDS} }} }}"
        ),
        json!({ "id": run, "state": state, "force": force }),
    )
    .await
}

pub async fn set_flow_run_state(
    app: &TestApp,
    user: &TestUser,
    run: Uuid,
    state: Value,
    force: bool,
) -> Value {
    let response = try_set_flow_run_state(app, user, run, state, force).await;
    data(&response)["setFlowRunState"].clone()
}

pub async fn try_create_task_run(app: &TestApp, user: &TestUser, run: Uuid, input: Value) -> Value {
    app.gql_as(
        &user.token,
        "mutation($id: UUID!, $input: CreateTaskRunInput!) {
            createTaskRun(flowRunId: $id, input: $input) {
                id name taskKey dynamicKey runCount startTime endTime
                state { type name } upstream { id } } }",
        json!({ "id": run, "input": input }),
    )
    .await
}

pub async fn create_task_run(app: &TestApp, user: &TestUser, run: Uuid, input: Value) -> Value {
    let response = try_create_task_run(app, user, run, input).await;
    data(&response)["createTaskRun"].clone()
}

pub async fn try_set_task_run_state(
    app: &TestApp,
    user: &TestUser,
    task: Uuid,
    state: Value,
    force: bool,
) -> Value {
    app.gql_as(
        &user.token,
        &format!(
            "mutation($id: UUID!, $state: StateInput!, $force: Boolean) {{
                setTaskRunState(taskRunId: $id, state: $state, force: $force) {{ {RESULT_FIELDS} }} }}"
        ),
        json!({ "id": task, "state": state, "force": force }),
    )
    .await
}

pub async fn set_task_run_state(
    app: &TestApp,
    user: &TestUser,
    task: Uuid,
    state: Value,
    force: bool,
) -> Value {
    let response = try_set_task_run_state(app, user, task, state, force).await;
    data(&response)["setTaskRunState"].clone()
}

pub async fn try_claim(
    app: &TestApp,
    user: &TestUser,
    queue: Uuid,
    limit: i32,
    scheduled_before: Option<DateTime<Utc>>,
) -> Value {
    app.gql_as(
        &user.token,
        "mutation($q: UUID!, $limit: Int!, $before: DateTime) {
            claimFlowRuns(workQueueId: $q, limit: $limit, scheduledBefore: $before) {
                id name state { type name } } }",
        json!({ "q": queue, "limit": limit, "before": scheduled_before.map(rfc3339) }),
    )
    .await
}

/// The ids `claimFlowRuns` handed out.
pub async fn claim(
    app: &TestApp,
    user: &TestUser,
    queue: Uuid,
    limit: i32,
    scheduled_before: Option<DateTime<Utc>>,
) -> Vec<Uuid> {
    let response = try_claim(app, user, queue, limit, scheduled_before).await;
    data(&response)["claimFlowRuns"]
        .as_array()
        .expect("claimed runs")
        .iter()
        .map(|r| {
            assert_eq!(
                r["state"]["type"], "PENDING",
                "a claimed run is PENDING: {r}"
            );
            uuid_at(&r["id"])
        })
        .collect()
}

/// A scheduled state at `at`.
pub fn scheduled_at(at: DateTime<Utc>) -> Value {
    json!({ "type": "SCHEDULED", "scheduledTime": rfc3339(at) })
}

pub fn state(state_type: &str) -> Value {
    json!({ "type": state_type })
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `at` to the microsecond, the precision the server keeps.
pub fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(at, 6)
}

pub fn time_at(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("expected a DateTime string, got {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad DateTime {text}: {e}"))
        .with_timezone(&Utc)
}

/// Asserts that `actual` lies within `slack` of `expected`.
pub fn assert_near(actual: DateTime<Utc>, expected: DateTime<Utc>, slack: Duration) {
    assert!(
        (actual - expected).abs() <= slack,
        "{actual} is not within {slack} of {expected}"
    );
}

/// The `id`s of a list of nodes.
pub fn ids(nodes: &Value) -> Vec<Uuid> {
    nodes
        .as_array()
        .unwrap_or_else(|| panic!("expected a list, got {nodes}"))
        .iter()
        .map(|n| uuid_at(&n["id"]))
        .collect()
}

/// `(type, name)` of each state in a list.
pub fn state_names(states: &Value) -> Vec<(String, String)> {
    states
        .as_array()
        .unwrap_or_else(|| panic!("expected a list of states, got {states}"))
        .iter()
        .map(|s| {
            (
                s["type"].as_str().unwrap_or_default().to_owned(),
                s["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
