//! The orchestration rules of PRODUCT.md, through `setFlowRunState` / `setTaskRunState`.
use std::collections::HashMap;

use chrono::{Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

const TYPES: [&str; 9] = [
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLING",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
];

fn is_terminal(t: &str) -> bool {
    matches!(t, "COMPLETED" | "FAILED" | "CANCELLED" | "CRASHED")
}

fn default_name(t: &str) -> String {
    let lower = t.to_lowercase();
    let mut chars = lower.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    first.into_iter().chain(chars).collect()
}

/// What PRODUCT.md says a proposal `from` → `to` comes to (no retries, no schedule ahead):
/// the status and the run's state afterwards.
fn expected(from: &str, to: &str, has_deployment: bool) -> (&'static str, String, String) {
    let stay = |status| (status, from.to_owned(), default_name(from));
    if is_terminal(from) {
        if to == "SCHEDULED" && has_deployment {
            return ("ACCEPT", to.to_owned(), default_name(to));
        }
        return stay("ABORT");
    }
    if to == "PENDING" && matches!(from, "PENDING" | "RUNNING" | "CANCELLING" | "CANCELLED") {
        return stay("ABORT");
    }
    if from == "CANCELLING" && !(to == "CANCELLED" || is_terminal(to)) {
        return stay("REJECT");
    }
    ("ACCEPT", to.to_owned(), default_name(to))
}

/// The initial state of a run that starts in `from` (a scheduled time in the past, so that
/// RUNNING is not told to wait).
fn initial(from: &str) -> Value {
    if from == "SCHEDULED" {
        scheduled_at(Utc::now() - Duration::minutes(5))
    } else {
        state(from)
    }
}

fn check_result(result: &Value, expected: &(&str, String, String), what: &str) {
    let (status, t, name) = expected;
    assert_eq!(result["status"], *status, "{what}: {result:#}");
    assert_eq!(result["state"]["type"], t.as_str(), "{what}: {result:#}");
    assert_eq!(result["state"]["name"], name.as_str(), "{what}: {result:#}");
    if *status == "ACCEPT" {
        assert!(result["reason"].is_null(), "{what}: {result:#}");
    } else {
        let reason = result["reason"].as_str().unwrap_or_default();
        assert!(
            !reason.is_empty(),
            "{what}: a refusal gives a reason: {result:#}"
        );
    }
}

#[tokio::test]
async fn every_flow_run_transition_follows_the_rules() {
    let w = world("rules-flow").await;
    // (run, expected type, expected name, expected history length)
    let mut cells: HashMap<Uuid, (String, String, usize, String)> = HashMap::new();
    for has_deployment in [false, true] {
        // A deployment only matters when leaving a terminal state.
        for from in TYPES
            .into_iter()
            .filter(|f| !has_deployment || is_terminal(f))
        {
            for to in TYPES {
                let mut input = json!({ "state": initial(from) });
                if has_deployment {
                    input["deploymentId"] = json!(w.deployment);
                }
                let run = w.run(input).await;
                let id = uuid_at(&run["id"]);
                let before = run["state"]["id"].clone();
                let what = format!("{from} -> {to} (deployment: {has_deployment})");
                let result = w.set_state(id, state(to)).await;
                let want = expected(from, to, has_deployment);
                check_result(&result, &want, &what);
                if want.0 != "ACCEPT" {
                    assert_eq!(result["state"]["id"], before, "{what}: the current state");
                }
                let history = if want.0 == "ACCEPT" { 2 } else { 1 };
                cells.insert(id, (want.1, want.2, history, what));
            }
        }
    }
    // What was (not) written: every run's current state and history, read back in one page.
    let page = w
        .query(
            "query($ws: UUID!) { workspace(id: $ws) { flowRuns(first: 200) {
                totalCount nodes { id state { type name } stateHistory { type name } } } } }",
            json!({ "ws": w.ws }),
        )
        .await;
    let runs = &page["workspace"]["flowRuns"];
    assert_eq!(runs["totalCount"], cells.len());
    for node in runs["nodes"].as_array().unwrap() {
        let (t, name, history, what) = &cells[&uuid_at(&node["id"])];
        assert_eq!(node["state"]["type"], t.as_str(), "{what}: {node}");
        assert_eq!(node["state"]["name"], name.as_str(), "{what}: {node}");
        let states = state_names(&node["stateHistory"]);
        assert_eq!(states.len(), *history, "{what}: {node}");
        assert_eq!(states.last().unwrap(), &(t.clone(), name.clone()), "{what}");
    }
}

#[tokio::test]
async fn every_task_run_transition_follows_the_rules() {
    let w = world("rules-task").await;
    let run = w.run_id(json!({ "state": state("RUNNING") })).await;
    for from in TYPES {
        for to in TYPES {
            let task = w
                .task(
                    run,
                    json!({ "taskKey": format!("{from}-{to}"), "state": initial(from) }),
                )
                .await;
            let result = w
                .set_task_state(uuid_at(&task["id"]), state(to), false)
                .await;
            check_result(
                &result,
                &expected(from, to, false),
                &format!("{from} -> {to}"),
            );
        }
    }
}

#[tokio::test]
async fn a_task_run_runs_only_while_its_flow_run_runs() {
    let w = world("task-running").await;
    for flow_state in TYPES {
        let run = w.run_id(json!({ "state": initial(flow_state) })).await;
        let task = w.task(run, json!({ "taskKey": "t" })).await;
        assert_eq!(task["state"]["type"], "PENDING");
        let result = w
            .set_task_state(uuid_at(&task["id"]), state("RUNNING"), false)
            .await;
        if flow_state == "RUNNING" {
            assert_eq!(result["status"], "ACCEPT", "{flow_state}: {result}");
            assert_eq!(result["state"]["type"], "RUNNING");
        } else {
            assert_eq!(result["status"], "ABORT", "flow run {flow_state}: {result}");
            assert_eq!(result["state"]["type"], "PENDING");
            assert!(result["reason"].as_str().is_some());
        }
        // force skips the rule.
        if flow_state != "RUNNING" {
            let forced = w
                .set_task_state(uuid_at(&task["id"]), state("RUNNING"), true)
                .await;
            assert_eq!(forced["status"], "ACCEPT", "{flow_state}: {forced}");
        }
    }
}

#[tokio::test]
async fn running_before_the_scheduled_time_waits_the_seconds_left() {
    let w = world("rules-wait").await;
    let at = Utc::now() + Duration::seconds(120);
    let run = w.run_id(json!({ "state": scheduled_at(at) })).await;
    let result = w.set_state(run, state("RUNNING")).await;
    assert_eq!(result["status"], "WAIT", "{result}");
    let delay = result["delaySeconds"].as_i64().unwrap();
    assert!((115..=120).contains(&delay), "{delay}");
    assert_eq!(result["state"]["type"], "SCHEDULED");
    assert!(result["reason"].as_str().is_some());
    // Claimed early (PENDING), the run still waits for its time.
    let pending = w.set_state(run, state("PENDING")).await;
    assert_eq!(pending["status"], "ACCEPT");
    let result = w.set_state(run, state("RUNNING")).await;
    assert_eq!(result["status"], "WAIT", "{result}");
    assert!((115..=120).contains(&result["delaySeconds"].as_i64().unwrap()));
    assert_eq!(result["state"]["type"], "PENDING");
    let read = w.read_run(run).await;
    assert_eq!(read["runCount"], 0);
    assert!(read["startTime"].is_null());
    // A run due now is not told to wait.
    let due = w
        .run_id(json!({ "state": scheduled_at(Utc::now() - Duration::seconds(1)) }))
        .await;
    let result = w.set_state(due, state("RUNNING")).await;
    assert_eq!(result["status"], "ACCEPT", "{result}");
    assert!(result["delaySeconds"].is_null());
}

#[tokio::test]
async fn a_failed_attempt_with_retries_left_is_rescheduled_and_retried() {
    let w = world("rules-retry").await;
    // A delay: AwaitingRetry at now + retryDelaySeconds, and RUNNING waits for it.
    let run = w
        .run_id(json!({ "retries": 1, "retryDelaySeconds": 60, "state": state("PENDING") }))
        .await;
    assert_eq!(w.set_state(run, state("RUNNING")).await["status"], "ACCEPT");
    let before = Utc::now();
    let result = w
        .set_state(run, json!({ "type": "FAILED", "message": "boom" }))
        .await;
    assert_eq!(result["status"], "REJECT", "{result}");
    assert!(result["reason"].as_str().is_some());
    assert_eq!(result["state"]["type"], "SCHEDULED");
    assert_eq!(result["state"]["name"], "AwaitingRetry");
    assert_near(
        time_at(&result["state"]["scheduledTime"]),
        before + Duration::seconds(60),
        Duration::seconds(5),
    );
    let waiting = w.set_state(run, state("RUNNING")).await;
    assert_eq!(waiting["status"], "WAIT", "{waiting}");
    assert!(waiting["delaySeconds"].as_i64().unwrap() >= 55);

    // No delay: the whole cycle, until the retries are used up.
    let run = w
        .run_id(json!({ "retries": 1, "retryDelaySeconds": 0, "state": state("PENDING") }))
        .await;
    let first = w.set_state(run, state("RUNNING")).await;
    assert_eq!(
        (&first["status"], &first["state"]["name"]),
        (&json!("ACCEPT"), &json!("Running"))
    );
    let failed = w.set_state(run, state("FAILED")).await;
    assert_eq!(failed["status"], "REJECT", "{failed}");
    assert_eq!(failed["state"]["name"], "AwaitingRetry");
    let retry = w.set_state(run, state("RUNNING")).await;
    assert_eq!(retry["status"], "ACCEPT", "{retry}");
    assert_eq!(retry["state"]["name"], "Retrying");
    let last = w.set_state(run, state("FAILED")).await;
    assert_eq!(last["status"], "ACCEPT", "out of retries: {last}");
    assert_eq!(last["state"]["type"], "FAILED");
    let read = w.read_run(run).await;
    assert_eq!(read["runCount"], 2);
    assert_eq!(
        state_names(&read["stateHistory"]),
        [
            ("PENDING", "Pending"),
            ("RUNNING", "Running"),
            ("SCHEDULED", "AwaitingRetry"),
            ("RUNNING", "Retrying"),
            ("FAILED", "Failed"),
        ]
        .map(|(t, n)| (t.to_owned(), n.to_owned()))
    );
    // Only the accepted failure raised an alert.
    let alerts = w
        .query(
            "query($ws: UUID!) { workspace(id: $ws) { runAlerts { kind flowRun { id } } } }",
            json!({ "ws": w.ws }),
        )
        .await;
    let alerts = alerts["workspace"]["runAlerts"].as_array().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["flowRun"]["id"], json!(run));
}

#[tokio::test]
async fn resuming_a_run_is_neither_a_retry_nor_a_new_attempt() {
    let w = world("rules-resume").await;
    let run = w.run_id(json!({ "state": state("PENDING") })).await;
    assert_eq!(w.set_state(run, state("RUNNING")).await["status"], "ACCEPT");
    // A RUNNING reported again (e.g. a heartbeat) stays Running, in the same attempt.
    let again = w.set_state(run, state("RUNNING")).await;
    assert_eq!(again["status"], "ACCEPT", "{again}");
    assert_eq!(again["state"]["name"], "Running");
    assert_eq!(
        w.read_run(run).await["runCount"],
        1,
        "still the first attempt"
    );
    let paused = w.set_state(run, state("PAUSED")).await;
    assert_eq!(paused["status"], "ACCEPT", "{paused}");
    let resumed = w.set_state(run, state("RUNNING")).await;
    assert_eq!(resumed["status"], "ACCEPT", "{resumed}");
    assert_eq!(resumed["state"]["name"], "Running");
}

#[tokio::test]
async fn the_same_transition_id_is_rejected_with_the_current_state() {
    let w = world("rules-transition").await;
    let run = w.run_id(json!({ "state": state("PENDING") })).await;
    let running = json!({ "type": "RUNNING", "transitionId": "t-1" });
    let first = w.set_state(run, running.clone()).await;
    assert_eq!(first["status"], "ACCEPT");
    let again = w.set_state(run, running).await;
    assert_eq!(again["status"], "REJECT", "{again}");
    assert_eq!(again["state"]["id"], first["state"]["id"]);
    assert!(again["reason"].as_str().is_some());
    let done = json!({ "type": "COMPLETED", "transitionId": "t-2" });
    let completed = w.set_state(run, done.clone()).await;
    assert_eq!(completed["status"], "ACCEPT");
    // A client retrying its COMPLETED after a lost response is told REJECT, not ABORT.
    let retried = w.set_state(run, done).await;
    assert_eq!(retried["status"], "REJECT", "{retried}");
    assert_eq!(retried["state"]["id"], completed["state"]["id"]);
    assert_eq!(
        w.read_run(run).await["stateHistory"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // The same for task runs.
    let run = w.run_id(json!({ "state": state("RUNNING") })).await;
    let task = uuid_at(&w.task(run, json!({ "taskKey": "t" })).await["id"]);
    let running = json!({ "type": "RUNNING", "transitionId": "x" });
    assert_eq!(
        w.set_task_state(task, running.clone(), false).await["status"],
        "ACCEPT"
    );
    let again = w.set_task_state(task, running, false).await;
    assert_eq!(again["status"], "REJECT", "{again}");
    assert_eq!(again["state"]["type"], "RUNNING");
}

#[tokio::test]
async fn late_is_only_given_to_a_scheduled_run_named_scheduled() {
    let w = world("rules-late").await;
    let late = json!({ "type": "SCHEDULED", "name": "Late" });
    let past = Utc::now() - Duration::minutes(1);
    let run = w.run_id(json!({ "state": scheduled_at(past) })).await;
    let result = w.set_state(run, late.clone()).await;
    assert_eq!(result["status"], "ACCEPT", "{result}");
    assert_eq!(result["state"]["name"], "Late");
    let refused = [
        json!({ "type": "SCHEDULED", "name": "Late", "scheduledTime": rfc3339(past) }),
        json!({ "type": "SCHEDULED", "name": "AwaitingRetry", "scheduledTime": rfc3339(past) }),
        state("PENDING"),
        state("RUNNING"),
        state("PAUSED"),
    ];
    for initial in refused {
        let run = w.run_id(json!({ "state": initial.clone() })).await;
        let result = w.set_state(run, late.clone()).await;
        assert_ne!(result["status"], "ACCEPT", "{initial} -> Late: {result}");
        assert!(result["reason"].as_str().is_some(), "{result}");
        if initial["name"] == "Late" {
            // Already late: stays as it is.
            assert_eq!(result["state"]["name"], "Late");
        } else {
            assert_ne!(result["state"]["name"], "Late", "{initial}: {result}");
        }
        assert_eq!(
            w.read_run(run).await["stateHistory"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn force_skips_every_rule() {
    let w = world("rules-force").await;
    let run = w.run_id(json!({ "state": state("COMPLETED") })).await;
    assert_eq!(w.set_state(run, state("RUNNING")).await["status"], "ABORT");
    let forced = w.force_state(run, state("RUNNING")).await;
    assert_eq!(forced["status"], "ACCEPT", "{forced}");
    assert_eq!(forced["state"]["type"], "RUNNING");
    let run = w.run_id(json!({ "state": state("CANCELLING") })).await;
    let forced = w.force_state(run, state("PENDING")).await;
    assert_eq!(forced["status"], "ACCEPT", "{forced}");
    let at = Utc::now() + Duration::hours(1);
    let run = w.run_id(json!({ "state": scheduled_at(at) })).await;
    let forced = w.force_state(run, state("RUNNING")).await;
    assert_eq!(forced["status"], "ACCEPT", "no WAIT when forced: {forced}");
}

#[tokio::test]
async fn the_server_keeps_the_bookkeeping_fields() {
    let w = world("rules-books").await;
    let first_time = micros(Utc::now() - Duration::seconds(30));
    let run = w
        .run(json!({ "deploymentId": w.deployment, "state": scheduled_at(first_time) }))
        .await;
    let id = uuid_at(&run["id"]);
    assert_eq!(time_at(&run["expectedStartTime"]), first_time);
    assert_eq!(run["runCount"], 0);
    assert_eq!(run["totalRunTime"], 0.0);
    assert!(run["startTime"].is_null() && run["endTime"].is_null());

    w.set_state(id, state("PENDING")).await;
    let started = w.set_state(id, state("RUNNING")).await;
    assert_eq!(started["status"], "ACCEPT");
    let start_time = time_at(&started["state"]["timestamp"]);
    let read = w.read_run(id).await;
    assert_eq!(read["runCount"], 1);
    assert_eq!(time_at(&read["startTime"]), start_time);
    assert!(read["endTime"].is_null());

    let done = w.set_state(id, state("COMPLETED")).await;
    assert_eq!(done["status"], "ACCEPT");
    let end_time = time_at(&done["state"]["timestamp"]);
    let read = w.read_run(id).await;
    assert_eq!(time_at(&read["endTime"]), end_time);
    let ran = (end_time - start_time).num_microseconds().unwrap() as f64 / 1e6;
    let total = read["totalRunTime"].as_f64().unwrap();
    assert!((total - ran).abs() < 0.01, "totalRunTime {total} vs {ran}");

    // A manual re-run (terminal -> SCHEDULED, the run has a deployment) clears endTime and
    // keeps the first expected start time; a second attempt counts.
    let again = Utc::now() - Duration::seconds(1);
    let rerun = w.set_state(id, scheduled_at(again)).await;
    assert_eq!(rerun["status"], "ACCEPT", "{rerun}");
    let read = w.read_run(id).await;
    assert!(read["endTime"].is_null(), "{read}");
    assert_eq!(time_at(&read["expectedStartTime"]), first_time);
    w.set_state(id, state("RUNNING")).await;
    let finished = w.set_state(id, state("FAILED")).await;
    assert_eq!(finished["status"], "ACCEPT");
    let read = w.read_run(id).await;
    assert_eq!(read["runCount"], 2);
    assert_eq!(
        time_at(&read["startTime"]),
        start_time,
        "startTime is the first RUNNING"
    );
    assert!(read["totalRunTime"].as_f64().unwrap() >= total);
    // History oldest first, timestamps in order.
    let history = read["stateHistory"].as_array().unwrap();
    let types: Vec<&str> = history
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "SCHEDULED",
            "PENDING",
            "RUNNING",
            "COMPLETED",
            "SCHEDULED",
            "RUNNING",
            "FAILED"
        ]
    );
    let times: Vec<_> = history.iter().map(|s| time_at(&s["timestamp"])).collect();
    assert!(times.windows(2).all(|p| p[0] <= p[1]), "{times:?}");
    assert_eq!(read["state"]["type"], "FAILED");

    // Task runs keep the same fields.
    let run = w.run_id(json!({ "state": state("RUNNING") })).await;
    let task = uuid_at(&w.task(run, json!({ "taskKey": "t" })).await["id"]);
    w.set_task_state(task, state("RUNNING"), false).await;
    w.set_task_state(task, state("COMPLETED"), false).await;
    let read = w
        .query(
            "query($id: UUID!) { taskRun(id: $id) { runCount startTime endTime totalRunTime
                stateHistory { type } } }",
            json!({ "id": task }),
        )
        .await;
    let t = &read["taskRun"];
    assert_eq!(t["runCount"], 1);
    assert!(time_at(&t["startTime"]) <= time_at(&t["endTime"]));
    assert!(t["totalRunTime"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        t["stateHistory"],
        json!([{ "type": "PENDING" }, { "type": "RUNNING" }, { "type": "COMPLETED" }])
    );
}

#[tokio::test]
async fn concurrent_pending_proposals_accept_exactly_one() {
    let w = world("rules-race").await;
    for _ in 0..3 {
        let run = w
            .run_id(json!({ "state": scheduled_at(Utc::now() - Duration::seconds(1)) }))
            .await;
        let results = futures_util::future::join_all(
            (0..16).map(|_| try_set_flow_run_state(&w.app, &w.owner, run, state("PENDING"), false)),
        )
        .await;
        let statuses: Vec<String> = results
            .iter()
            .map(|r| {
                data(r)["setFlowRunState"]["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| *s == "ACCEPT").count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| *s == "ABORT").count(),
            15,
            "{statuses:?}"
        );
        let history = w.read_run(run).await["stateHistory"].clone();
        assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
    }
}

/// On SQLite another process may be writing (a server still draining after a restart, an
/// admin command). A state change reads the run before it writes; it must wait for the write
/// lock, not fail at once with "database is locked".
#[tokio::test]
async fn a_state_change_waits_while_another_process_holds_the_sqlite_write_lock() {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let w = world("rules-busy").await;
    if w.app.is_postgres() {
        return;
    }
    let run = w
        .run_id(json!({ "state": scheduled_at(Utc::now() - Duration::seconds(1)) }))
        .await;
    // The test's own connection stands in for the other process, mid-write.
    let other_process = w.app.db.begin().await.unwrap();
    other_process
        .execute_unprepared("UPDATE flows SET name = name")
        .await
        .unwrap();

    let change = try_set_flow_run_state(&w.app, &w.owner, run, state("PENDING"), false);
    tokio::pin!(change);
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut change).await;
    assert!(
        early.is_err(),
        "the change should wait for the lock, it answered {early:?}"
    );
    other_process.commit().await.unwrap();

    let response = change.await;
    assert_eq!(
        data(&response)["setFlowRunState"]["status"],
        "ACCEPT",
        "{response}"
    );
    assert_eq!(w.read_run(run).await["state"]["type"], "PENDING");
}
