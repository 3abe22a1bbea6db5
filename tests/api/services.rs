//! Background services driven step by step: the scheduler's horizon and idempotency,
//! pause / resume / change / delete, DST, the late-run detector and leader election.
//!
//! The servers run their background loops as usual (with the real clock); the tests call each
//! service's `try_tick` with chosen times far in the future, so what they check never meets
//! what the loops do on their own.
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use entity::flow_runs;
use flowcloud::services::{late_runs, leader, scheduler};
use flowcloud::state::AppState;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

// ---------------------------------------------------------------------------------- helpers

struct Setup {
    app: TestApp,
    user: TestUser,
    ws: Uuid,
    flow: Uuid,
}

async fn setup_with(handle: &str, configure: impl FnOnce(&mut flowcloud::Config)) -> Setup {
    let app = spawn_app_with(|config| {
        config.background_services = true;
        configure(config);
    })
    .await;
    let user = app.sign_up(handle).await;
    let ws = app.create_workspace(&user, &format!("{handle}-ws")).await;
    let response = app
        .gql_as(
            &user.token,
            "mutation($ws: UUID!) { createFlow(workspaceId: $ws, input: { name: \"etl\" }) { id } }",
            json!({ "ws": ws }),
        )
        .await;
    let flow = uuid_at(&data(&response)["createFlow"]["id"]);
    Setup {
        app,
        user,
        ws,
        flow,
    }
}

async fn setup(handle: &str) -> Setup {
    setup_with(handle, |_| {}).await
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad time {text}: {e}"))
        .with_timezone(&Utc)
}

/// A fixed instant far after the real clock, so the background loops never reach it.
fn anchor() -> DateTime<Utc> {
    utc("2030-01-01T00:00:00Z")
}

impl Setup {
    async fn gql(&self, query: &str, variables: Value) -> Value {
        self.app.gql_as(&self.user.token, query, variables).await
    }

    /// Creates a deployment of the flow with `schedule` and the other `extra` input fields.
    async fn deployment(&self, name: &str, schedule: Value, extra: Value) -> Uuid {
        let mut input = json!({ "flowId": self.flow, "name": name, "schedule": schedule });
        if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
            input.extend(extra.clone());
        }
        let response = self
            .gql(
                "mutation($ws: UUID!, $input: CreateDeploymentInput!) {
                    createDeployment(workspaceId: $ws, input: $input) { id } }",
                json!({ "ws": self.ws, "input": input }),
            )
            .await;
        uuid_at(&data(&response)["createDeployment"]["id"])
    }

    /// A manual run (not auto-scheduled) in `state`.
    async fn manual_run(&self, extra: Value, state: Value) -> Uuid {
        let mut input = json!({ "flowId": self.flow, "state": state });
        if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
            input.extend(extra.clone());
        }
        let response = self
            .gql(
                "mutation($ws: UUID!, $input: CreateFlowRunInput!) {
                    createFlowRun(workspaceId: $ws, input: $input) { id } }",
                json!({ "ws": self.ws, "input": input }),
            )
            .await;
        uuid_at(&data(&response)["createFlowRun"]["id"])
    }

    async fn set_state(&self, run: Uuid, state: Value) -> Value {
        let response = self
            .gql(
                "mutation($id: UUID!, $state: StateInput!) {
                    setFlowRunState(flowRunId: $id, state: $state) { status state { type name } } }",
                json!({ "id": run, "state": state }),
            )
            .await;
        data(&response)["setFlowRunState"].clone()
    }

    async fn set_active(&self, deployment: Uuid, active: bool) {
        let response = self
            .gql(
                "mutation($id: UUID!, $active: Boolean!) {
                    setDeploymentScheduleActive(id: $id, active: $active) { isScheduleActive } }",
                json!({ "id": deployment, "active": active }),
            )
            .await;
        assert_eq!(
            data(&response)["setDeploymentScheduleActive"]["isScheduleActive"],
            active
        );
    }

    async fn flow_run(&self, id: Uuid) -> Value {
        let response = self
            .gql(
                "query($id: UUID!) { flowRun(id: $id) {
                    id autoScheduled parameters tags workQueueName idempotencyKey
                    expectedStartTime deployment { id }
                    state { type name scheduledTime message } } }",
                json!({ "id": id }),
            )
            .await;
        data(&response)["flowRun"].clone()
    }

    async fn late_alerts(&self) -> Vec<Value> {
        let response = self
            .gql(
                "query($ws: UUID!) { workspace(id: $ws) {
                    runAlerts(kinds: [LATE]) { kind message flowRun { id } } } }",
                json!({ "ws": self.ws }),
            )
            .await;
        data(&response)["workspace"]["runAlerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Every run of the deployment, earliest expected start first.
async fn runs_of(app: &TestApp, deployment: Uuid) -> Vec<flow_runs::Model> {
    flow_runs::Entity::find()
        .filter(flow_runs::Column::DeploymentId.eq(deployment))
        .order_by_asc(flow_runs::Column::ExpectedStartTime)
        .all(&app.db)
        .await
        .expect("reading flow runs")
}

/// The deployment's auto-scheduled runs expected after `after`, earliest first.
async fn auto_runs_after(
    app: &TestApp,
    deployment: Uuid,
    after: DateTime<Utc>,
) -> Vec<flow_runs::Model> {
    runs_of(app, deployment)
        .await
        .into_iter()
        .filter(|r| r.auto_scheduled && r.expected_start_time.is_some_and(|t| t > after))
        .collect()
}

fn times(runs: &[flow_runs::Model]) -> Vec<DateTime<Utc>> {
    runs.iter()
        .map(|r| r.expected_start_time.expect("expected start time"))
        .collect()
}

/// Asserts that no two runs share an idempotency key or a deployment and start time.
fn assert_no_duplicates(runs: &[flow_runs::Model]) {
    let keys: HashSet<_> = runs.iter().map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), runs.len(), "duplicate idempotency keys");
    let slots: HashSet<_> = runs
        .iter()
        .map(|r| (r.deployment_id, r.expected_start_time))
        .collect();
    assert_eq!(
        slots.len(),
        runs.len(),
        "two runs for one deployment and time"
    );
}

fn every(start: DateTime<Utc>, step: Duration, n: i32) -> Vec<DateTime<Utc>> {
    (0..n).map(|i| start + step * i).collect()
}

async fn tick(state: &AppState, now: DateTime<Utc>) -> usize {
    scheduler::try_tick(state, now)
        .await
        .unwrap_or_else(|e| panic!("scheduler step failed: {e:?}"))
}

async fn late_tick(state: &AppState, now: DateTime<Utc>) -> late_runs::Tick {
    late_runs::try_tick(state, now)
        .await
        .unwrap_or_else(|e| panic!("late-run step failed: {e:?}"))
}

/// Polls `check` every 20 ms until it gives a value or `deadline` passes.
async fn eventually<T, F, Fut>(deadline: StdDuration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------------- scheduler horizon

#[tokio::test]
async fn an_interval_schedule_is_filled_one_hour_ahead_with_runs_that_carry_the_deployment() {
    let s = setup("interval").await;
    let a = anchor();
    let deployment = s
        .deployment(
            "every-ten-minutes",
            json!({ "interval": 600, "anchorDate": a }),
            json!({ "parameters": { "x": 1 }, "tags": ["nightly", "etl"], "workQueueName": "q" }),
        )
        .await;

    // One second before an occurrence: A, A+10 min, …, A+50 min; A+60 min is 1 h 1 s away.
    assert_eq!(tick(&s.app.state, a - Duration::seconds(1)).await, 6);
    let runs = auto_runs_after(&s.app, deployment, a - Duration::seconds(1)).await;
    assert_eq!(times(&runs), every(a, Duration::minutes(10), 6));

    // At the occurrence itself the horizon ends exactly on A+60 min, which is included.
    assert_eq!(tick(&s.app.state, a).await, 1);
    let runs = auto_runs_after(&s.app, deployment, a).await;
    assert_eq!(
        times(&runs),
        every(a + Duration::minutes(10), Duration::minutes(10), 6)
    );

    for run in &runs {
        assert_eq!(run.state_type, "SCHEDULED");
        assert_eq!(run.state_name, "Scheduled");
        assert_eq!(run.state_scheduled_time, run.expected_start_time);
        let key = run.idempotency_key.clone().expect("an idempotency key");
        let at = run.expected_start_time.expect("time").timestamp_millis();
        assert!(
            key.starts_with(&format!("scheduled:{deployment}:"))
                && key.ends_with(&format!(":{at}")),
            "key {key}"
        );
    }
    let run = s.flow_run(runs[0].id).await;
    assert_eq!(run["autoScheduled"], true);
    assert_eq!(run["deployment"]["id"], deployment.to_string());
    assert_eq!(run["parameters"], json!({ "x": 1 }));
    let mut tags: Vec<String> = serde_json::from_value(run["tags"].clone()).expect("tags");
    tags.sort();
    assert_eq!(tags, ["etl", "nightly"]);
    assert_eq!(run["workQueueName"], "q");
    assert_eq!(run["state"]["type"], "SCHEDULED");
    assert_eq!(run["state"]["name"], "Scheduled");
    assert_eq!(
        utc(run["state"]["scheduledTime"].as_str().expect("time")),
        a + Duration::minutes(10)
    );
}

#[tokio::test]
async fn cron_schedules_get_at_least_three_runs_and_an_hour_and_at_most_one_hundred_runs() {
    let s = setup("crons").await;
    let hourly = s
        .deployment("hourly", json!({ "cron": "0 * * * *" }), json!({}))
        .await;
    let daily = s
        .deployment("daily", json!({ "cron": "0 9 * * *" }), json!({}))
        .await;
    let minutely = s
        .deployment("minutely", json!({ "cron": "* * * * *" }), json!({}))
        .await;
    let rapid = s
        .deployment(
            "every-ten-seconds",
            json!({ "interval": 10, "anchorDate": anchor() }),
            json!({}),
        )
        .await;
    let now = utc("2030-01-01T00:20:00Z");

    assert_eq!(tick(&s.app.state, now).await, 3 + 3 + 60 + 100);
    assert_eq!(
        times(&auto_runs_after(&s.app, hourly, now).await),
        every(utc("2030-01-01T01:00:00Z"), Duration::hours(1), 3)
    );
    // A daily cron reaches beyond the hour to have three runs.
    assert_eq!(
        times(&auto_runs_after(&s.app, daily, now).await),
        every(utc("2030-01-01T09:00:00Z"), Duration::days(1), 3)
    );
    // Every minute: the hour ahead, boundary included.
    assert_eq!(
        times(&auto_runs_after(&s.app, minutely, now).await),
        every(utc("2030-01-01T00:21:00Z"), Duration::minutes(1), 60)
    );
    // Every ten seconds: 360 in the hour, capped at 100 runs.
    assert_eq!(
        times(&auto_runs_after(&s.app, rapid, now).await),
        every(now + Duration::seconds(10), Duration::seconds(10), 100)
    );
}

#[tokio::test]
async fn the_horizon_ends_at_one_hundred_days_even_with_fewer_than_three_runs() {
    let s = setup("far").await;
    let a = anchor();
    let monthly = s
        .deployment(
            "thirty-days",
            json!({ "interval": 30 * 86_400, "anchorDate": a }),
            json!({}),
        )
        .await;
    let bimonthly = s
        .deployment(
            "sixty-days",
            json!({ "interval": 60 * 86_400, "anchorDate": a }),
            json!({}),
        )
        .await;
    let yearly = s
        .deployment("new-year", json!({ "cron": "0 0 1 1 *" }), json!({}))
        .await;

    tick(&s.app.state, a).await;
    assert_eq!(
        times(&auto_runs_after(&s.app, monthly, a).await),
        every(a + Duration::days(30), Duration::days(30), 3)
    );
    assert_eq!(
        times(&auto_runs_after(&s.app, bimonthly, a).await),
        [a + Duration::days(60)]
    );
    // The next New Year is 365 days away: nothing yet.
    assert!(auto_runs_after(&s.app, yearly, a).await.is_empty());

    // 61 days before New Year: exactly one run.
    let november = utc("2030-11-01T00:00:00Z");
    tick(&s.app.state, november).await;
    assert_eq!(
        times(&auto_runs_after(&s.app, yearly, a).await),
        [utc("2031-01-01T00:00:00Z")]
    );
}

// ------------------------------------------------------------------------------ idempotency

#[tokio::test]
async fn ticking_again_or_after_a_restart_creates_no_duplicates() {
    let mut s = setup("restart").await;
    let a = anchor();
    let deployment = s
        .deployment(
            "every-ten-minutes",
            json!({ "interval": 600, "anchorDate": a }),
            json!({}),
        )
        .await;
    assert_eq!(tick(&s.app.state, a).await, 6);
    assert_eq!(tick(&s.app.state, a).await, 0);

    s.app.stop();
    let restarted = s.app.spawn_sibling_with(|_| {}).await;
    assert_eq!(tick(&restarted.state, a).await, 0);
    assert_eq!(tick(&restarted.state, a + Duration::seconds(1)).await, 0);
    // Half an hour later the horizon moved by three runs, and only those are new.
    assert_eq!(tick(&restarted.state, a + Duration::minutes(30)).await, 3);
    let runs = auto_runs_after(&restarted, deployment, a).await;
    assert_eq!(
        times(&runs),
        every(a + Duration::minutes(10), Duration::minutes(10), 9)
    );
    assert_no_duplicates(&runs_of(&restarted, deployment).await);
}

/// Two schedulers at once: on PostgreSQL two servers (own pools) on one database; on SQLite,
/// where one process serves, two steps of one server at once (its writer funnel).
#[tokio::test]
async fn concurrent_ticks_create_each_run_once() {
    let s = setup("replicas").await;
    let sibling = if s.app.is_postgres() {
        Some(s.app.spawn_sibling_with(|_| {}).await)
    } else {
        None
    };
    let other = sibling.as_ref().map_or(&s.app.state, |app| &app.state);
    let mut deployments = Vec::new();
    for i in 0..3 {
        deployments.push(
            s.deployment(
                &format!("ten-seconds-{i}"),
                json!({ "interval": 10, "anchorDate": anchor() }),
                json!({}),
            )
            .await,
        );
    }
    let now = anchor();
    for round in 0..3 {
        let at = now + Duration::seconds(10 * round);
        let (a, b) = tokio::join!(
            scheduler::try_tick(&s.app.state, at),
            scheduler::try_tick(other, at)
        );
        let (a, b) = (a.expect("first scheduler"), b.expect("second scheduler"));
        let expected = if round == 0 { 300 } else { 3 };
        assert_eq!(a + b, expected, "round {round}: {a} + {b}");
    }
    for deployment in deployments {
        let runs = auto_runs_after(&s.app, deployment, now).await;
        assert_eq!(
            times(&runs),
            every(now + Duration::seconds(10), Duration::seconds(10), 102)
        );
        assert_no_duplicates(&runs_of(&s.app, deployment).await);
    }
}

// ------------------------------------------------------------- pause, resume, change, delete

#[tokio::test]
async fn pausing_removes_future_auto_runs_that_have_not_started_and_resuming_refills() {
    let s = setup("pause").await;
    let a = anchor();
    let deployment = s
        .deployment(
            "every-ten-minutes",
            json!({ "interval": 600, "anchorDate": a }),
            json!({}),
        )
        .await;
    assert_eq!(tick(&s.app.state, a).await, 6);
    let planned = auto_runs_after(&s.app, deployment, a).await;
    // One run started (claimed by hand), one run made by hand.
    let started = planned[0].id;
    assert_eq!(
        s.set_state(started, json!({ "type": "PENDING" })).await["status"],
        "ACCEPT"
    );
    let manual = s
        .manual_run(
            json!({ "deploymentId": deployment }),
            json!({ "type": "SCHEDULED", "scheduledTime": a + Duration::minutes(15) }),
        )
        .await;

    s.set_active(deployment, false).await;
    let left = runs_of(&s.app, deployment).await;
    let ids: HashSet<Uuid> = left.iter().map(|r| r.id).collect();
    assert_eq!(ids, HashSet::from([started, manual]), "{left:#?}");
    // Paused: the scheduler leaves it alone.
    assert_eq!(tick(&s.app.state, a).await, 0);

    s.set_active(deployment, true).await;
    assert_eq!(tick(&s.app.state, a).await, 5);
    let runs = auto_runs_after(&s.app, deployment, a).await;
    assert_eq!(times(&runs), times(&planned));
    assert_eq!(runs[0].id, started);
    assert_eq!(runs[0].state_type, "PENDING");
    assert!(runs[1..].iter().all(|r| r.state_type == "SCHEDULED"));
    assert_no_duplicates(
        &runs_of(&s.app, deployment)
            .await
            .into_iter()
            .filter(|r| r.auto_scheduled)
            .collect::<Vec<_>>(),
    );
}

#[tokio::test]
async fn changing_the_schedule_replaces_the_planned_runs_with_the_new_schedule() {
    let s = setup("change").await;
    let a = anchor();
    let deployment = s
        .deployment(
            "every-ten-minutes",
            json!({ "interval": 600, "anchorDate": a }),
            json!({}),
        )
        .await;
    assert_eq!(tick(&s.app.state, a).await, 6);
    let old_key = auto_runs_after(&s.app, deployment, a).await[0]
        .idempotency_key
        .clone()
        .expect("key");
    let old_fingerprint = old_key.split(':').nth(2).expect("fingerprint").to_owned();

    let response = s
        .gql(
            "mutation($id: UUID!, $input: UpdateDeploymentInput!) {
                updateDeployment(id: $id, input: $input) { id } }",
            json!({ "id": deployment, "input": { "schedule": {
                "interval": 1800, "anchorDate": a } } }),
        )
        .await;
    data(&response);
    let now = Utc::now();
    assert!(
        runs_of(&s.app, deployment)
            .await
            .iter()
            .filter(|r| r.expected_start_time.is_some_and(|t| t > now))
            .all(|r| !r
                .idempotency_key
                .as_deref()
                .unwrap_or_default()
                .contains(&old_fingerprint)),
        "runs of the old schedule are left"
    );
    assert_eq!(tick(&s.app.state, a).await, 3);
    let runs = auto_runs_after(&s.app, deployment, a).await;
    assert_eq!(
        times(&runs),
        every(a + Duration::minutes(30), Duration::minutes(30), 3)
    );
    assert!(runs.iter().all(|r| !r
        .idempotency_key
        .as_deref()
        .unwrap_or_default()
        .contains(&old_fingerprint)));
}

#[tokio::test]
async fn deleting_a_deployment_removes_its_future_auto_runs_but_not_started_ones() {
    let s = setup("delete").await;
    let a = anchor();
    let deployment = s
        .deployment(
            "every-ten-minutes",
            json!({ "interval": 600, "anchorDate": a }),
            json!({}),
        )
        .await;
    assert_eq!(tick(&s.app.state, a).await, 6);
    let started = auto_runs_after(&s.app, deployment, a).await[0].id;
    s.set_state(started, json!({ "type": "PENDING" })).await;

    let response = s
        .gql(
            "mutation($id: UUID!) { deleteDeployment(id: $id) }",
            json!({ "id": deployment }),
        )
        .await;
    data(&response);
    let left: Vec<Uuid> = flow_runs::Entity::find()
        .filter(flow_runs::Column::WorkspaceId.eq(s.ws))
        .all(&s.app.db)
        .await
        .expect("runs")
        .into_iter()
        .filter(|r| r.state_type == "SCHEDULED" || r.id == started)
        .filter(|r| r.expected_start_time.is_some_and(|t| t > Utc::now()))
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [started]);
    assert_eq!(tick(&s.app.state, a).await, 0);
}

#[tokio::test]
async fn creating_or_resuming_a_deployment_fills_its_schedule_within_seconds() {
    let s = setup("prompt").await;
    let upcoming = |deployment: Uuid| {
        let s = &s;
        async move {
            let response = s
                .gql(
                    "query($id: UUID!) { deployment(id: $id) { upcomingFlowRuns(first: 100) { id } } }",
                    json!({ "id": deployment }),
                )
                .await;
            let runs = data(&response)["deployment"]["upcomingFlowRuns"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (!runs.is_empty()).then_some(runs.len())
        }
    };
    let started = Instant::now();
    let deployment = s
        .deployment("every-minute", json!({ "interval": 60 }), json!({}))
        .await;
    let n = eventually(StdDuration::from_secs(5), "runs after creation", || {
        upcoming(deployment)
    })
    .await;
    println!("filled {n} runs {:?} after creating", started.elapsed());
    assert!(n >= 59, "{n} runs");

    s.set_active(deployment, false).await;
    assert_eq!(upcoming(deployment).await, None);
    let resumed = Instant::now();
    s.set_active(deployment, true).await;
    eventually(StdDuration::from_secs(5), "runs after resuming", || {
        upcoming(deployment)
    })
    .await;
    println!("refilled {:?} after resuming", resumed.elapsed());
}

// ------------------------------------------------------------------------------------- DST

/// The first three runs of each deployment, filled by the scheduler at `now`.
async fn first_three(s: &Setup, deployments: &[Uuid], now: DateTime<Utc>) -> Vec<Vec<String>> {
    tick(&s.app.state, now).await;
    let mut out = Vec::new();
    for deployment in deployments {
        let runs = auto_runs_after(&s.app, *deployment, now).await;
        out.push(
            times(&runs)
                .iter()
                .take(3)
                .map(|t| t.format("%Y-%m-%dT%H:%MZ").to_string())
                .collect(),
        );
    }
    out
}

#[tokio::test]
async fn a_berlin_cron_honours_the_spring_daylight_saving_change() {
    let s = setup("spring").await;
    let night = s
        .deployment(
            "night",
            json!({ "cron": "30 2 * * *", "timezone": "Europe/Berlin" }),
            json!({}),
        )
        .await;
    let morning = s
        .deployment(
            "morning",
            json!({ "cron": "0 9 * * *", "timezone": "Europe/Berlin" }),
            json!({}),
        )
        .await;
    // 28 March 2027, 02:00 CET → 03:00 CEST: 02:30 does not exist that night and the run
    // comes at the end of the gap (03:00 CEST).
    let got = first_three(&s, &[night, morning], utc("2027-03-26T12:00:00Z")).await;
    assert_eq!(
        got[0],
        [
            "2027-03-27T01:30Z",
            "2027-03-28T01:00Z",
            "2027-03-29T00:30Z"
        ]
    );
    assert_eq!(
        got[1],
        [
            "2027-03-27T08:00Z",
            "2027-03-28T07:00Z",
            "2027-03-29T07:00Z"
        ]
    );
}

#[tokio::test]
async fn a_berlin_cron_honours_the_autumn_daylight_saving_change() {
    let s = setup("autumn").await;
    let night = s
        .deployment(
            "night",
            json!({ "cron": "30 2 * * *", "timezone": "Europe/Berlin" }),
            json!({}),
        )
        .await;
    let morning = s
        .deployment(
            "morning",
            json!({ "cron": "0 9 * * *", "timezone": "Europe/Berlin" }),
            json!({}),
        )
        .await;
    // 31 October 2027, 03:00 CEST → 02:00 CET: 02:30 happens twice; the run comes once, at
    // the first (CEST).
    let got = first_three(&s, &[night, morning], utc("2027-10-29T12:00:00Z")).await;
    assert_eq!(
        got[0],
        [
            "2027-10-30T00:30Z",
            "2027-10-31T00:30Z",
            "2027-11-01T01:30Z"
        ]
    );
    assert_eq!(
        got[1],
        [
            "2027-10-30T07:00Z",
            "2027-10-31T08:00Z",
            "2027-11-01T08:00Z"
        ]
    );
    // Ticking across the change, after the first 02:30, does not add the second one.
    tick(&s.app.state, utc("2027-10-31T00:45:00Z")).await;
    let night_runs = times(&auto_runs_after(&s.app, night, utc("2027-10-29T12:00:00Z")).await);
    assert_eq!(
        night_runs
            .iter()
            .filter(|t| t.date_naive().to_string() == "2027-10-31")
            .count(),
        1,
        "{night_runs:?}"
    );
}

// ------------------------------------------------------------------------------ late runs

fn late_after_two_seconds(config: &mut flowcloud::Config) {
    config.late_after_seconds = 2;
}

/// A start time an hour ahead of the real clock, whole seconds.
fn an_hour_from_now() -> DateTime<Utc> {
    let t = Utc::now() + Duration::hours(1);
    t - Duration::nanoseconds(i64::from(chrono::Timelike::nanosecond(&t)))
}

#[tokio::test]
async fn a_scheduled_run_past_the_threshold_becomes_late_with_a_late_alert() {
    let s = setup_with("late", late_after_two_seconds).await;
    let at = an_hour_from_now();
    let run = s
        .manual_run(
            json!({}),
            json!({ "type": "SCHEDULED", "scheduledTime": at }),
        )
        .await;

    // Exactly at the threshold it is not late yet.
    let tick = late_tick(&s.app.state, at + Duration::seconds(2)).await;
    assert_eq!(tick.marked, 0);
    assert_eq!(tick.next_due, Some(at + Duration::seconds(2)));
    assert!(s.late_alerts().await.is_empty());

    let tick = late_tick(
        &s.app.state,
        at + Duration::seconds(2) + Duration::milliseconds(1),
    )
    .await;
    assert_eq!(tick.marked, 1);
    assert_eq!(tick.next_due, None);
    let view = s.flow_run(run).await;
    assert_eq!(view["state"]["type"], "SCHEDULED");
    assert_eq!(view["state"]["name"], "Late");
    assert_eq!(
        utc(view["state"]["scheduledTime"].as_str().expect("time")),
        at
    );
    assert_eq!(utc(view["expectedStartTime"].as_str().expect("time")), at);
    let alerts = s.late_alerts().await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["kind"], "LATE");
    assert_eq!(alerts[0]["flowRun"]["id"], run.to_string());

    // Once is enough.
    let tick = late_tick(&s.app.state, at + Duration::minutes(5)).await;
    assert_eq!(tick.marked, 0);
    assert_eq!(s.late_alerts().await.len(), 1);
}

#[tokio::test]
async fn a_run_claimed_before_the_threshold_is_never_marked_late() {
    let s = setup_with("claimed", late_after_two_seconds).await;
    let response = s
        .gql(
            "mutation($ws: UUID!) { createWorkQueue(workspaceId: $ws, input: { name: \"q\" }) { id } }",
            json!({ "ws": s.ws }),
        )
        .await;
    let queue = uuid_at(&data(&response)["createWorkQueue"]["id"]);
    let at = an_hour_from_now();
    let run = s
        .manual_run(
            json!({ "workQueueName": "q" }),
            json!({ "type": "SCHEDULED", "scheduledTime": at }),
        )
        .await;
    let response = s
        .gql(
            "mutation($q: UUID!, $before: DateTime!) {
                claimFlowRuns(workQueueId: $q, scheduledBefore: $before) { id state { type } } }",
            json!({ "q": queue, "before": at + Duration::seconds(1) }),
        )
        .await;
    assert_eq!(
        data(&response)["claimFlowRuns"],
        json!([{ "id": run, "state": { "type": "PENDING" } }])
    );

    let tick = late_tick(&s.app.state, at + Duration::minutes(10)).await;
    assert_eq!(tick.marked, 0);
    assert_eq!(tick.next_due, None);
    assert_eq!(s.flow_run(run).await["state"]["type"], "PENDING");
    assert!(s.late_alerts().await.is_empty());
}

#[tokio::test]
async fn awaiting_retry_and_other_named_scheduled_runs_are_not_marked_late() {
    let s = setup_with("named", late_after_two_seconds).await;
    let at = an_hour_from_now();
    let retrying = s
        .manual_run(
            json!({}),
            json!({ "type": "SCHEDULED", "name": "AwaitingRetry", "scheduledTime": at }),
        )
        .await;
    let custom = s
        .manual_run(
            json!({}),
            json!({ "type": "SCHEDULED", "name": "Parked", "scheduledTime": at }),
        )
        .await;
    let tick = late_tick(&s.app.state, at + Duration::minutes(10)).await;
    assert_eq!(tick.marked, 0);
    assert_eq!(tick.next_due, None);
    assert_eq!(s.flow_run(retrying).await["state"]["name"], "AwaitingRetry");
    assert_eq!(s.flow_run(custom).await["state"]["name"], "Parked");
    assert!(s.late_alerts().await.is_empty());
}

#[tokio::test]
async fn the_next_due_time_is_the_earliest_expected_start_plus_the_threshold() {
    let s = setup_with("due", late_after_two_seconds).await;
    let at = an_hour_from_now();
    for offset in [300, 50, 120] {
        s.manual_run(
            json!({}),
            json!({ "type": "SCHEDULED", "scheduledTime": at + Duration::seconds(offset) }),
        )
        .await;
    }
    // Runs that are never marked do not count.
    s.manual_run(
        json!({}),
        json!({ "type": "SCHEDULED", "name": "AwaitingRetry", "scheduledTime": at }),
    )
    .await;

    let tick = late_tick(&s.app.state, at).await;
    assert_eq!(tick.marked, 0);
    assert_eq!(tick.next_due, Some(at + Duration::seconds(52)));
    let tick = late_tick(&s.app.state, at + Duration::seconds(60)).await;
    assert_eq!(tick.marked, 1);
    assert_eq!(tick.next_due, Some(at + Duration::seconds(122)));
}

/// The late detector's next look (Unix ms) once it has looked at least once and sleeps.
async fn late_detector_asleep(app: &TestApp) -> i64 {
    let services = &app.state.services;
    eventually(StdDuration::from_secs(10), "the late detector to look and sleep", || {
        let looks_at = services.late_check_at_ms.load(Ordering::SeqCst);
        let looked = services.late_ticks.load(Ordering::SeqCst) > 0;
        async move { (looked && looks_at != i64::MAX && looks_at != i64::MIN).then_some(looks_at) }
    })
    .await
}

#[tokio::test]
async fn runs_due_after_the_late_detectors_next_look_leave_it_asleep_and_one_due_sooner_wakes_it() {
    let s = setup_with("quiet", late_after_two_seconds).await;
    let services = &s.app.state.services;
    let looks_at = late_detector_asleep(&s.app).await;
    let ticks = services.late_ticks.load(Ordering::SeqCst);

    // Due in an hour: the detector's next look (within 30 s) is soon enough for them.
    let at = an_hour_from_now();
    for offset in 0..20 {
        s.manual_run(
            json!({}),
            json!({ "type": "SCHEDULED", "scheduledTime": at + Duration::seconds(offset) }),
        )
        .await;
    }
    assert_eq!(
        services.late_ticks.load(Ordering::SeqCst),
        ticks,
        "woken needlessly"
    );
    assert_eq!(services.late_check_at_ms.load(Ordering::SeqCst), looks_at);

    // Due in two seconds, before the next look: it wakes, plans for it and marks it in time.
    let soon = s
        .manual_run(
            json!({}),
            json!({ "type": "SCHEDULED", "scheduledTime": Utc::now() }),
        )
        .await;
    eventually(StdDuration::from_secs(10), "the run to become Late", || {
        let s = &s;
        async move { (s.flow_run(soon).await["state"]["name"] == "Late").then_some(()) }
    })
    .await;
    assert!(services.late_ticks.load(Ordering::SeqCst) > ticks);
}

#[tokio::test]
async fn the_background_detector_marks_a_run_late_about_a_second_after_the_threshold() {
    let s = setup_with("timing", |c| c.late_after_seconds = 1).await;
    let scheduled = Utc::now() - Duration::milliseconds(500);
    let due = scheduled + Duration::seconds(1);
    let run = s
        .manual_run(
            json!({}),
            json!({ "type": "SCHEDULED", "scheduledTime": scheduled }),
        )
        .await;
    let seen = eventually(StdDuration::from_secs(10), "the run to become Late", || {
        let s = &s;
        async move { (s.flow_run(run).await["state"]["name"] == "Late").then(Utc::now) }
    })
    .await;
    let delay = (seen - due).num_milliseconds();
    println!("marked late {delay} ms after crossing the threshold");
    assert!(delay >= 0, "marked before the threshold ({delay} ms)");
    assert!(delay < 5_000, "marked {delay} ms after the threshold");
    assert_eq!(s.late_alerts().await.len(), 1);
}

// ------------------------------------------------------------------------ leader election

fn holder_id(app: &TestApp) -> String {
    app.state.services.instance_id.to_string()
}

async fn current_holder(app: &TestApp, now: DateTime<Utc>) -> Option<String> {
    leader::holder(&app.state, now)
        .await
        .unwrap_or_else(|e| panic!("reading the lease failed: {e:?}"))
}

fn is_leader(app: &TestApp) -> bool {
    flowcloud::services::is_leader(&app.state)
}

#[tokio::test]
async fn two_servers_on_one_database_have_one_leader_until_its_lease_expires() {
    // A long lease: the loops take it once and do not renew during the test.
    let first = spawn_app_with(|c| {
        c.background_services = true;
        c.leader_lease_seconds = 600;
    })
    .await;
    let second = first.spawn_sibling_with(|_| {}).await;
    let (a, b) = (holder_id(&first), holder_id(&second));
    let lease = Duration::seconds(600);
    let leader = eventually(StdDuration::from_secs(5), "a leader", || async {
        current_holder(&first, Utc::now()).await
    })
    .await;
    let (leader_app, other_app, other) = if leader == a {
        (&first, &second, b.clone())
    } else {
        assert_eq!(leader, b, "the holder is one of the two servers");
        (&second, &first, a.clone())
    };
    eventually(StdDuration::from_secs(5), "the leader flags", || async {
        (is_leader(leader_app) && !is_leader(other_app)).then_some(())
    })
    .await;

    let now = Utc::now();
    assert!(!leader::try_acquire(&other_app.state, &other, lease, now)
        .await
        .expect("acquire"));
    assert!(leader::try_acquire(&leader_app.state, &leader, lease, now)
        .await
        .expect("renew"));
    assert_eq!(current_holder(&first, now).await.as_deref(), Some(&*leader));

    // Past the expiry (the leader stopped renewing), the other takes over, and the old
    // leader cannot take it back while the new lease lasts.
    let later = now + lease + Duration::seconds(1);
    assert_eq!(current_holder(&first, later).await, None);
    assert!(leader::try_acquire(&other_app.state, &other, lease, later)
        .await
        .expect("take over"));
    assert_eq!(
        current_holder(&first, later).await.as_deref(),
        Some(&*other)
    );
    assert!(
        !leader::try_acquire(&leader_app.state, &leader, lease, later)
            .await
            .expect("acquire")
    );

    // Releasing hands it over at once.
    leader::release(&other_app.state, &other)
        .await
        .expect("release");
    assert_eq!(current_holder(&first, later).await, None);
    assert!(
        leader::try_acquire(&leader_app.state, &leader, lease, later)
            .await
            .expect("acquire after release")
    );
    // Releasing a lease one does not hold changes nothing.
    leader::release(&other_app.state, &other)
        .await
        .expect("release");
    assert_eq!(
        current_holder(&first, later).await.as_deref(),
        Some(&*leader)
    );
}

#[tokio::test]
async fn when_the_leader_stops_the_other_server_takes_over() {
    let mut first = spawn_app_with(|c| {
        c.background_services = true;
        c.leader_lease_seconds = 1;
    })
    .await;
    let mut second = first.spawn_sibling_with(|_| {}).await;
    let leader = eventually(StdDuration::from_secs(5), "a leader", || async {
        let (a, b) = (is_leader(&first), is_leader(&second));
        assert!(!(a && b), "two leaders at once");
        (a || b).then_some(a)
    })
    .await;
    let (stopping, staying) = if leader {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    let stopped_at = Instant::now();
    stopping.stop();
    let staying_id = holder_id(staying);
    eventually(
        StdDuration::from_secs(5),
        "the other to take over",
        || async {
            (current_holder(staying, Utc::now()).await.as_deref() == Some(&*staying_id)
                && is_leader(staying))
            .then_some(())
        },
    )
    .await;
    println!(
        "took over {:?} after the leader stopped",
        stopped_at.elapsed()
    );
    assert!(!is_leader(stopping));
}

// ------------------------------------------------------- replicas as processes (PostgreSQL)

/// A `flowcloud` server process on the test's database; its output is kept line by line.
struct Replica {
    child: tokio::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Replica {
    async fn start(database_url: &str) -> Replica {
        Self::start_with_lease(database_url, 1).await
    }

    async fn start_with_lease(database_url: &str, lease_seconds: u32) -> Replica {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowcloud"))
            .env("DATABASE_URL", database_url)
            .env("FLOWCLOUD_LISTEN", "127.0.0.1:0")
            .env("FLOWCLOUD_LEADER_LEASE_SECONDS", lease_seconds.to_string())
            .env("FLOWCLOUD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting flowcloud");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for stream in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut reader = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    lines.lock().expect("lines").push(line);
                }
            });
        }
        let replica = Replica { child, lines };
        eventually(StdDuration::from_secs(20), "the replica to listen", || {
            let found = replica.said("listening on http://");
            async move { found.then_some(()) }
        })
        .await;
        replica
    }

    fn said(&self, text: &str) -> bool {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.contains(text))
    }

    fn leads(&self) -> bool {
        self.said("this replica now runs the background services")
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_server_process_told_to_stop_gives_its_lease_up_before_it_exits() {
    let app = spawn_app().await;
    // Ten minutes: only giving the lease up frees it within the test.
    let mut replica = Replica::start_with_lease(&app.config.database_url, 600).await;
    eventually(StdDuration::from_secs(10), "the process to lead", || {
        let leads = replica.leads();
        async move { leads.then_some(()) }
    })
    .await;
    assert!(current_holder(&app, Utc::now()).await.is_some());

    // What a service manager sends to stop it.
    let pid = replica.child.id().expect("a running process") as libc::pid_t;
    // SAFETY: kill(2) with a child's pid and a signal number touches no memory of ours.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = replica.child.wait().await.expect("waiting for the process");
    assert!(status.success(), "exited with {status}");
    assert_eq!(
        current_holder(&app, Utc::now()).await,
        None,
        "the lease is still held after the process exited"
    );
    // Its output is read by tasks of the test's own, which may not have reached the end yet.
    eventually(
        StdDuration::from_secs(5),
        "the process to say it stopped",
        || {
            let said = replica.said("server stopped");
            async move { said.then_some(()) }
        },
    )
    .await;
}

/// mimalloc's arena in huge pages held ~17 MiB more than the heap of an idle server and cleared
/// 2 MiB at a time under load: the process turns transparent huge pages off for itself.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_server_process_runs_with_transparent_huge_pages_off() {
    let app = spawn_app().await;
    let replica = Replica::start(&app.config.database_url).await;
    let pid = replica.child.id().expect("a running process");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    let thp_enabled = status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
        .map(str::trim)
        .expect("a kernel that reports THP_enabled (Linux 5.0 and later)");
    assert_eq!(thp_enabled, "0", "{status}");
}

#[tokio::test]
async fn two_server_processes_on_postgresql_have_one_leader_fail_over_and_never_duplicate_runs() {
    let mut s = setup("processes").await;
    if !s.app.is_postgres() {
        println!("skipped: several server processes share a database only on PostgreSQL");
        return;
    }
    // Every second: each scheduler step of the leader adds runs as the horizon moves.
    let deployment = s
        .deployment("every-second", json!({ "interval": 1 }), json!({}))
        .await;
    s.app.stop();
    let database_url = s.app.config.database_url.clone();
    let first = Replica::start(&database_url).await;
    let second = Replica::start(&database_url).await;

    let first_leads = eventually(StdDuration::from_secs(10), "one leader", || {
        let (a, b) = (first.leads(), second.leads());
        async move {
            assert!(!(a && b), "two processes became leader");
            (a || b).then_some(a)
        }
    })
    .await;
    let holder = eventually(StdDuration::from_secs(5), "a lease holder", || async {
        current_holder(&s.app, Utc::now()).await
    })
    .await;
    assert_ne!(holder, holder_id(&s.app));

    // The leader dies without releasing: the other takes over once the lease expires.
    let (mut dead, survivor) = if first_leads {
        (first, second)
    } else {
        (second, first)
    };
    let killed_at = Instant::now();
    let killed_wall = Utc::now();
    dead.child.kill().await.expect("killing the leader");
    eventually(
        StdDuration::from_secs(10),
        "the other process to take over",
        || {
            let took = survivor.leads();
            async move { took.then_some(()) }
        },
    )
    .await;
    println!("took over {:?} after the leader died", killed_at.elapsed());
    let new_holder = eventually(
        StdDuration::from_secs(5),
        "the new lease holder",
        || async {
            current_holder(&s.app, Utc::now())
                .await
                .filter(|h| *h != holder)
        },
    )
    .await;
    assert_ne!(new_holder, holder);
    // The dead leader planned at most 100 s past its death (100 runs); later runs are the
    // new leader's, filled when it took over.
    eventually(
        StdDuration::from_secs(15),
        "runs from the new leader",
        || async {
            let runs =
                auto_runs_after(&s.app, deployment, killed_wall + Duration::seconds(100)).await;
            (!runs.is_empty()).then_some(())
        },
    )
    .await;
    let runs = runs_of(&s.app, deployment).await;
    assert!(runs.len() >= 100, "{} runs", runs.len());
    assert_no_duplicates(&runs);
}

#[tokio::test]
async fn a_rerun_is_due_at_its_new_time_not_at_the_first_runs_expected_start() {
    let s = setup_with("rerun", late_after_two_seconds).await;
    let deployment = s
        .deployment("manual", Value::Null, json!({ "workQueueName": "q" }))
        .await;
    let response = s
        .gql(
            "mutation($ws: UUID!) { createWorkQueue(workspaceId: $ws, input: { name: \"q\" }) { id } }",
            json!({ "ws": s.ws }),
        )
        .await;
    let queue = uuid_at(&data(&response)["createWorkQueue"]["id"]);
    let run = s
        .manual_run(
            json!({ "deploymentId": deployment, "workQueueName": "q" }),
            json!({ "type": "RUNNING" }),
        )
        .await;
    assert_eq!(
        s.set_state(run, json!({ "type": "COMPLETED" })).await["status"],
        "ACCEPT"
    );
    let again = an_hour_from_now() + Duration::hours(1);
    let rerun = s
        .set_state(run, json!({ "type": "SCHEDULED", "scheduledTime": again }))
        .await;
    assert_eq!(rerun["status"], "ACCEPT", "{rerun}");

    // Long past the first run's expected start, but before the re-run's time: neither late
    // nor claimable.
    let before = again - Duration::minutes(30);
    assert_eq!(late_tick(&s.app.state, before).await.marked, 0);
    let response = s
        .gql(
            "mutation($q: UUID!, $before: DateTime!) { claimFlowRuns(workQueueId: $q, scheduledBefore: $before) { id } }",
            json!({ "q": queue, "before": before }),
        )
        .await;
    assert_eq!(data(&response)["claimFlowRuns"], json!([]));

    // Past the re-run's own time and the threshold it is late.
    let tick = late_tick(&s.app.state, again + Duration::seconds(3)).await;
    assert_eq!(tick.marked, 1);
    assert_eq!(s.flow_run(run).await["state"]["name"], "Late");
}
