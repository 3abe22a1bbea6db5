//! The dashboard queries: run summaries, upcoming runs, deployment details, task run details,
//! the run graph and alerts.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

const SUMMARY: &str = "query($ws: UUID!, $since: DateTime!, $until: DateTime!, $buckets: Int!,
    $filter: FlowRunFilter) { workspace(id: $ws) {
    flowRunSummary(since: $since, until: $until, buckets: $buckets, filter: $filter) {
        total byStateType { stateType count }
        history { start end byStateType { stateType count } } } } }";

/// `{ state type: count }` without the zeros; every state type must be listed.
fn counts(list: &Value) -> HashMap<String, i64> {
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 9, "every state type is listed: {list:?}");
    list.iter()
        .filter(|c| c["count"] != 0)
        .map(|c| {
            (
                c["stateType"].as_str().unwrap().to_owned(),
                c["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn map(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

async fn summary(
    w: &World,
    ws: Uuid,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    buckets: i64,
    filter: Value,
) -> Value {
    w.app
        .gql_as(
            &w.owner.token,
            SUMMARY,
            json!({ "ws": ws, "since": rfc3339(since), "until": rfc3339(until),
                "buckets": buckets, "filter": filter }),
        )
        .await
}

/// Buckets are contiguous and together span `[since, until)`.
fn check_buckets(history: &Value, since: DateTime<Utc>, until: DateTime<Utc>, n: usize) {
    let buckets = history.as_array().unwrap();
    assert_eq!(buckets.len(), n);
    assert_eq!(time_at(&buckets[0]["start"]), since);
    assert_eq!(time_at(&buckets[n - 1]["end"]), until);
    for pair in buckets.windows(2) {
        assert_eq!(pair[0]["end"], pair[1]["start"], "contiguous");
    }
    for b in buckets {
        assert!(time_at(&b["start"]) < time_at(&b["end"]), "{b}");
    }
}

#[tokio::test]
async fn the_run_summary_counts_each_run_once_by_state_and_by_bucket() {
    let w = world("summary").await;
    let t0 = Utc.with_ymd_and_hms(2032, 1, 1, 0, 0, 0).unwrap();
    let h = Duration::hours(1);
    let second_flow = create_flow(&w.app, &w.owner, w.ws, "second").await;
    let runs: Vec<(DateTime<Utc>, &str, Uuid)> = vec![
        (t0, "COMPLETED", w.flow),
        (t0 + h - Duration::milliseconds(1), "FAILED", w.flow),
        (t0 + h, "SCHEDULED", w.flow),
        (t0 + h + h / 2, "RUNNING", second_flow),
        (t0 + h * 4 - Duration::seconds(1), "COMPLETED", second_flow),
        // Outside [since, until).
        (t0 + h * 4, "COMPLETED", w.flow),
        (t0 - Duration::milliseconds(1), "CRASHED", w.flow),
    ];
    for (at, final_state, flow) in &runs {
        let run = create_run(
            &w.app,
            &w.owner,
            w.ws,
            *flow,
            json!({ "state": scheduled_at(*at) }),
        )
        .await;
        if *final_state != "SCHEDULED" {
            w.force_state(uuid_at(&run["id"]), state(final_state)).await;
        }
    }
    let until = t0 + h * 4;
    let response = summary(&w, w.ws, t0, until, 4, Value::Null).await;
    let s = &data(&response)["workspace"]["flowRunSummary"];
    assert_eq!(s["total"], 5);
    assert_eq!(
        counts(&s["byStateType"]),
        map(&[
            ("COMPLETED", 2),
            ("FAILED", 1),
            ("SCHEDULED", 1),
            ("RUNNING", 1)
        ])
    );
    check_buckets(&s["history"], t0, until, 4);
    let per_bucket: Vec<_> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| counts(&b["byStateType"]))
        .collect();
    assert_eq!(
        per_bucket,
        [
            map(&[("COMPLETED", 1), ("FAILED", 1)]),
            map(&[("SCHEDULED", 1), ("RUNNING", 1)]),
            map(&[]),
            map(&[("COMPLETED", 1)]),
        ]
    );

    // Per flow.
    let response = summary(&w, w.ws, t0, until, 2, json!({ "flowIds": [second_flow] })).await;
    let s = &data(&response)["workspace"]["flowRunSummary"];
    assert_eq!(s["total"], 2);
    let per_bucket: Vec<_> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| counts(&b["byStateType"]))
        .collect();
    assert_eq!(
        per_bucket,
        [map(&[("RUNNING", 1)]), map(&[("COMPLETED", 1)])]
    );

    // Buckets whose width is not a whole number of milliseconds: every run lands in the
    // bucket whose [start, end) holds its time.
    let since = t0 + Duration::days(1);
    let until = since + Duration::seconds(1);
    let offsets = [0, 1, 332, 333, 334, 666, 667, 998, 999];
    for ms in offsets {
        create_run(
            &w.app,
            &w.owner,
            w.ws,
            w.flow,
            json!({ "state": scheduled_at(since + Duration::milliseconds(ms)) }),
        )
        .await;
    }
    for n in [3, 7, 100] {
        let response = summary(&w, w.ws, since, until, n, Value::Null).await;
        let s = &data(&response)["workspace"]["flowRunSummary"];
        assert_eq!(s["total"], offsets.len());
        check_buckets(&s["history"], since, until, n as usize);
        for b in s["history"].as_array().unwrap() {
            let (start, end) = (time_at(&b["start"]), time_at(&b["end"]));
            let inside = offsets
                .iter()
                .filter(|ms| {
                    let at = since + Duration::milliseconds(**ms);
                    start <= at && at < end
                })
                .count() as i64;
            let got = counts(&b["byStateType"])
                .get("SCHEDULED")
                .copied()
                .unwrap_or(0);
            assert_eq!(got, inside, "{n} buckets, bucket [{start}, {end})");
        }
    }

    // Bucket count and window are validated.
    for n in [0, 101] {
        assert_bad_input(
            &summary(&w, w.ws, t0, until, n, Value::Null).await,
            "buckets",
        );
    }
    assert_error_code(
        &summary(&w, w.ws, until, t0, 4, Value::Null).await,
        "BAD_USER_INPUT",
    );

    // An empty workspace: zeros everywhere.
    let other = w.app.sign_up("summary-other").await;
    let empty = w.app.create_workspace(&other, "summary-empty").await;
    let response = w
        .app
        .gql_as(
            &other.token,
            "query($ws: UUID!, $since: DateTime!, $until: DateTime!) { workspace(id: $ws) {
                flowRunSummary(since: $since, until: $until) {
                    total byStateType { count } history { byStateType { count } } }
                upcomingFlowRuns { id } runAlerts { id }
                flowRuns { totalCount nodes { id } } taskRuns { totalCount } } }",
            json!({ "ws": empty, "since": rfc3339(t0), "until": rfc3339(until) }),
        )
        .await;
    let ws = &data(&response)["workspace"];
    let s = &ws["flowRunSummary"];
    assert_eq!(s["total"], 0);
    assert!(s["byStateType"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["count"] == 0));
    let history = s["history"].as_array().unwrap();
    assert_eq!(history.len(), 24, "24 buckets by default");
    assert!(history.iter().all(|b| b["byStateType"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["count"] == 0)));
    assert_eq!(ws["upcomingFlowRuns"], json!([]));
    assert_eq!(ws["runAlerts"], json!([]));
    assert_eq!(ws["flowRuns"], json!({ "totalCount": 0, "nodes": [] }));
    assert_eq!(ws["taskRuns"]["totalCount"], 0);
}

#[tokio::test]
async fn upcoming_runs_come_earliest_first_per_workspace_and_deployment() {
    let w = world("upcoming").await;
    let now = Utc::now();
    let in_hours = |n: i64| scheduled_at(now + Duration::hours(n));
    let third = w
        .run_id(json!({ "deploymentId": w.deployment, "state": in_hours(3) }))
        .await;
    let first = w.run_id(json!({ "state": in_hours(1) })).await;
    let second = w
        .run_id(json!({ "deploymentId": w.deployment, "state": in_hours(2) }))
        .await;
    // Not upcoming: past, or not SCHEDULED.
    w.run_id(json!({ "deploymentId": w.deployment, "state": in_hours(-1) }))
        .await;
    let moved = w
        .run_id(json!({ "deploymentId": w.deployment, "state": in_hours(4) }))
        .await;
    w.force_state(moved, state("CANCELLED")).await;
    let done = w
        .run_id(json!({ "deploymentId": w.deployment, "state": state("COMPLETED") }))
        .await;

    let page = w
        .query(
            "query($ws: UUID!, $d: UUID!) { workspace(id: $ws) {
                all: upcomingFlowRuns { id }
                two: upcomingFlowRuns(first: 2) { id }
                mine: upcomingFlowRuns(deploymentId: $d) { id } } }",
            json!({ "ws": w.ws, "d": w.deployment }),
        )
        .await;
    let ws = &page["workspace"];
    assert_eq!(ids(&ws["all"]), [first, second, third]);
    assert_eq!(ids(&ws["two"]), [first, second]);
    assert_eq!(ids(&ws["mine"]), [second, third]);

    // Deployment details: its settings, upcoming and recent runs.
    let page = w
        .query(
            "query($d: UUID!) { deployment(id: $d) {
                name workQueueName parameters flow { id }
                upcomingFlowRuns(first: 10) { id }
                flowRuns(first: 10) { totalCount nodes { id deployment { id } } } } }",
            json!({ "d": w.deployment }),
        )
        .await;
    let d = &page["deployment"];
    assert_eq!(d["name"], "nightly");
    assert_eq!(d["flow"]["id"], json!(w.flow));
    assert_eq!(ids(&d["upcomingFlowRuns"]), [second, third]);
    assert_eq!(d["flowRuns"]["totalCount"], 5);
    let recent: HashSet<Uuid> = ids(&d["flowRuns"]["nodes"]).into_iter().collect();
    assert!(recent.contains(&done) && recent.contains(&third) && !recent.contains(&first));
    for node in d["flowRuns"]["nodes"].as_array().unwrap() {
        assert_eq!(node["deployment"]["id"], json!(w.deployment));
    }
}

#[tokio::test]
async fn task_run_details_and_the_run_graph_show_states_dependencies_and_logs() {
    let w = world("graph").await;
    let run = w.run_id(json!({ "state": state("RUNNING") })).await;
    let a = uuid_at(&w.task(run, json!({ "taskKey": "a", "tags": ["t"] })).await["id"]);
    let b = uuid_at(
        &w.task(run, json!({ "taskKey": "b", "upstreamTaskRunIds": [a] }))
            .await["id"],
    );
    let c = w
        .task(
            run,
            json!({ "taskKey": "c", "dynamicKey": "7", "name": "see",
                "upstreamTaskRunIds": [a, b, a] }),
        )
        .await;
    let c_id = uuid_at(&c["id"]);
    assert_eq!(c["name"], "see");
    let d = uuid_at(&w.task(run, json!({ "taskKey": "d" })).await["id"]);
    // The same task key and dynamic key give the same task run.
    let again = w
        .task(run, json!({ "taskKey": "c", "dynamicKey": "7" }))
        .await;
    assert_eq!(again["id"], c["id"]);
    w.set_task_state(a, state("RUNNING"), false).await;
    w.set_task_state(a, state("COMPLETED"), false).await;
    w.set_task_state(c_id, state("RUNNING"), false).await;
    data(
        &w.app
            .gql_as(
                &w.owner.token,
                "mutation($ws: UUID!, $logs: [LogInput!]!) { createLogs(workspaceId: $ws, logs: $logs) }",
                json!({ "ws": w.ws, "logs": [
                    { "flowRunId": run, "taskRunId": c_id, "level": "INFO", "name": "c",
                      "message": "working", "timestamp": rfc3339(Utc::now()) },
                    { "flowRunId": run, "level": "INFO", "name": "flow",
                      "message": "flow level", "timestamp": rfc3339(Utc::now()) } ] }),
            )
            .await,
    );

    let page = w
        .query(
            "query($id: UUID!) { taskRun(id: $id) {
                id name taskKey dynamicKey tags runCount startTime endTime totalRunTime
                flowRun { id } state { type name } stateHistory { type name }
                upstream { id name state { type } }
                logs { totalCount nodes { message taskRunId } } } }",
            json!({ "id": c_id }),
        )
        .await;
    let t = &page["taskRun"];
    assert_eq!(t["taskKey"], "c");
    assert_eq!(t["dynamicKey"], "7");
    assert_eq!(t["flowRun"]["id"], json!(run));
    assert_eq!(t["state"], json!({ "type": "RUNNING", "name": "Running" }));
    assert_eq!(t["stateHistory"].as_array().unwrap().len(), 2);
    assert_eq!(t["runCount"], 1);
    assert!(t["startTime"].is_string() && t["endTime"].is_null());
    let upstream: HashSet<Uuid> = ids(&t["upstream"]).into_iter().collect();
    assert_eq!(upstream, HashSet::from([a, b]));
    assert_eq!(t["logs"]["totalCount"], 1);
    assert_eq!(t["logs"]["nodes"][0]["message"], "working");

    let page = w
        .query(
            "query($id: UUID!) { flowRun(id: $id) {
                taskRuns { totalCount nodes { id } }
                graph { nodes { id name state { type } startTime endTime } edges { from to } } } }",
            json!({ "id": run }),
        )
        .await;
    let r = &page["flowRun"];
    assert_eq!(r["taskRuns"]["totalCount"], 4);
    assert_eq!(
        ids(&r["taskRuns"]["nodes"]),
        [a, b, c_id, d],
        "oldest first"
    );
    let graph = &r["graph"];
    let nodes: HashMap<Uuid, &Value> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (uuid_at(&n["id"]), n))
        .collect();
    assert_eq!(nodes.len(), 4);
    assert_eq!(nodes[&a]["state"]["type"], "COMPLETED");
    assert!(nodes[&a]["startTime"].is_string() && nodes[&a]["endTime"].is_string());
    assert_eq!(nodes[&d]["state"]["type"], "PENDING");
    let edges: HashSet<(Uuid, Uuid)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (uuid_at(&e["from"]), uuid_at(&e["to"])))
        .collect();
    assert_eq!(
        edges,
        HashSet::from([(a, b), (a, c_id), (b, c_id)]),
        "from = upstream"
    );
}

#[tokio::test]
async fn entering_failed_or_crashed_raises_an_alert_listed_newest_first() {
    let w = world("alerts").await;
    let mut runs = Vec::new();
    for (name, end) in [
        ("one", "FAILED"),
        ("two", "CRASHED"),
        ("three", "COMPLETED"),
        ("four", "FAILED"),
    ] {
        let run = w
            .run_id(json!({ "name": name, "state": state("RUNNING") }))
            .await;
        let result = w
            .set_state(
                run,
                json!({ "type": end, "message": format!("{name} ended") }),
            )
            .await;
        assert_eq!(result["status"], "ACCEPT");
        runs.push(run);
    }
    // Leaving a terminal state is refused: no second alert.
    w.set_state(runs[0], state("FAILED")).await;

    let page = w
        .query(
            "query($ws: UUID!) { workspace(id: $ws) {
                all: runAlerts { id kind message occurredAt cursor flowRun { id name } }
                crashed: runAlerts(kinds: [CRASHED]) { flowRun { id } }
                late: runAlerts(kinds: [LATE]) { id }
                newest: runAlerts(first: 1) { flowRun { id } } } }",
            json!({ "ws": w.ws }),
        )
        .await;
    let ws = &page["workspace"];
    let all = ws["all"].as_array().unwrap();
    let kinds: Vec<(&str, Value)> = all
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["flowRun"]["id"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("FAILED", json!(runs[3])),
            ("CRASHED", json!(runs[1])),
            ("FAILED", json!(runs[0])),
        ]
    );
    assert!(
        all[0]["message"].as_str().unwrap().contains("four"),
        "{}",
        all[0]
    );
    let times: Vec<_> = all.iter().map(|a| time_at(&a["occurredAt"])).collect();
    assert!(times.windows(2).all(|p| p[0] >= p[1]), "newest first");
    let cursors: HashSet<&str> = all.iter().map(|a| a["cursor"].as_str().unwrap()).collect();
    assert_eq!(cursors.len(), 3);
    assert_eq!(ws["crashed"], json!([{ "flowRun": { "id": runs[1] } }]));
    assert_eq!(ws["late"], json!([]));
    assert_eq!(ws["newest"], json!([{ "flowRun": { "id": runs[3] } }]));
}
