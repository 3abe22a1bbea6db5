//! Log lines: batches stored whole or not at all, and read page by page both ways.
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

fn line(run: Uuid, task: Option<Uuid>, level: &str, message: &str, at: DateTime<Utc>) -> Value {
    json!({ "flowRunId": run, "taskRunId": task, "level": level, "name": "l",
        "message": message, "timestamp": rfc3339(at) })
}

async fn create_logs(app: &TestApp, user: &TestUser, ws: Uuid, lines: &[Value]) -> Value {
    app.gql_as(
        &user.token,
        "mutation($ws: UUID!, $logs: [LogInput!]!) { createLogs(workspaceId: $ws, logs: $logs) }",
        json!({ "ws": ws, "logs": lines }),
    )
    .await
}

#[tokio::test]
async fn a_log_batch_is_stored_whole_or_not_at_all() {
    let w = world("logs-batch").await;
    let run = w.run_id(json!({ "state": state("RUNNING") })).await;
    let task = uuid_at(&w.task(run, json!({ "taskKey": "t" })).await["id"]);
    let other_run = w.run_id(json!({ "state": state("RUNNING") })).await;
    let other_task = uuid_at(&w.task(other_run, json!({ "taskKey": "t" })).await["id"]);
    let stranger = w.app.sign_up("logs-stranger").await;
    let foreign_ws = w.app.create_workspace(&stranger, "logs-foreign").await;
    let foreign_flow = create_flow(&w.app, &stranger, foreign_ws, "f").await;
    let foreign_run =
        uuid_at(&create_run(&w.app, &stranger, foreign_ws, foreign_flow, json!({})).await["id"]);
    let now = Utc::now();
    let ok = line(run, Some(task), "INFO", "fine", now);

    // 10,000 lines in one call.
    let batch: Vec<Value> = (0..10_000)
        .map(|i| line(run, None, "INFO", "m", now + Duration::microseconds(i)))
        .collect();
    let response = create_logs(&w.app, &w.owner, w.ws, &batch).await;
    assert_eq!(data(&response)["createLogs"], 10_000);
    assert_eq!(w.app.count_rows("logs", "").await, 10_000);

    let mut too_many = batch;
    too_many.push(ok.clone());
    let refused: Vec<(Vec<Value>, &str, Option<&str>)> = vec![
        (too_many, "BAD_USER_INPUT", Some("logs")),
        // A run of another workspace, a task run of another run, an unknown task run.
        (
            vec![ok.clone(), line(foreign_run, None, "INFO", "x", now)],
            "NOT_FOUND",
            None,
        ),
        (
            vec![ok.clone(), line(run, Some(other_task), "INFO", "x", now)],
            "NOT_FOUND",
            None,
        ),
        (
            vec![
                ok.clone(),
                line(run, Some(Uuid::new_v4()), "INFO", "x", now),
            ],
            "NOT_FOUND",
            None,
        ),
        (
            vec![ok.clone(), line(Uuid::new_v4(), None, "INFO", "x", now)],
            "NOT_FOUND",
            None,
        ),
        // Messages: empty, or over 64 KiB.
        (
            vec![ok.clone(), ok.clone(), line(run, None, "INFO", "", now)],
            "BAD_USER_INPUT",
            Some("logs[2].message"),
        ),
        (
            vec![
                ok.clone(),
                line(run, None, "INFO", &"x".repeat(64 * 1024 + 1), now),
            ],
            "BAD_USER_INPUT",
            Some("logs[1].message"),
        ),
    ];
    for (lines, code, field) in refused {
        let response = create_logs(&w.app, &w.owner, w.ws, &lines).await;
        match field {
            Some(field) => assert_bad_input(&response, field),
            None => assert_error_code(&response, code),
        }
        assert_eq!(w.app.count_rows("logs", "").await, 10_000, "nothing stored");
    }
    // Lines of the foreign run are refused in its own workspace's stead, too.
    let response = create_logs(
        &w.app,
        &stranger,
        foreign_ws,
        &[line(run, None, "INFO", "x", now)],
    )
    .await;
    assert_error_code(&response, "NOT_FOUND");

    // Exactly 64 KiB is fine, and an empty batch stores nothing.
    let big = "é".repeat(32 * 1024);
    let response = create_logs(
        &w.app,
        &w.owner,
        w.ws,
        &[line(run, Some(task), "ERROR", &big, now)],
    )
    .await;
    assert_eq!(data(&response)["createLogs"], 1);
    let response = create_logs(&w.app, &w.owner, w.ws, &[]).await;
    assert_eq!(data(&response)["createLogs"], 0);
    assert_eq!(w.app.count_rows("logs", "").await, 10_001);
    let read = w
        .query(
            "query($id: UUID!) { taskRun(id: $id) { logs { totalCount nodes { message level } } } }",
            json!({ "id": task }),
        )
        .await;
    assert_eq!(read["taskRun"]["logs"]["totalCount"], 1);
    assert_eq!(read["taskRun"]["logs"]["nodes"][0]["message"], big.as_str());
}

const LOG_PAGE: &str = "query($id: UUID!, $first: Int, $after: String, $newest: Boolean,
    $min: LogLevel, $task: UUID) { flowRun(id: $id) {
    logs(first: $first, after: $after, newestFirst: $newest, minLevel: $min, taskRunId: $task) {
        totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
        edges { cursor node { id flowRunId taskRunId level name message timestamp cursor } } } } }";

async fn log_pages(w: &World, run: Uuid, first: i64, newest: bool, filter: Value) -> Vec<Value> {
    let mut after: Option<String> = None;
    let mut nodes = Vec::new();
    loop {
        let mut vars = json!({ "id": run, "first": first, "after": after, "newest": newest });
        if let Value::Object(extra) = &filter {
            for (k, v) in extra {
                vars[k] = v.clone();
            }
        }
        let page = w.query(LOG_PAGE, vars).await;
        let conn = &page["flowRun"]["logs"];
        let edges = conn["edges"].as_array().unwrap();
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], after.is_some());
        nodes.extend(edges.iter().map(|e| e["node"].clone()));
        if conn["pageInfo"]["hasNextPage"] != true {
            return nodes;
        }
        after = Some(conn["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
    }
}

#[tokio::test]
async fn logs_page_on_stable_cursors_both_ways_and_filter_by_level_and_task_run() {
    let w = world("logs-pages").await;
    let run = w.run_id(json!({ "state": state("RUNNING") })).await;
    let t1 = uuid_at(&w.task(run, json!({ "taskKey": "one" })).await["id"]);
    let t2 = uuid_at(&w.task(run, json!({ "taskKey": "two" })).await["id"]);
    let other_run = w.run_id(json!({ "state": state("RUNNING") })).await;
    let base = Utc.with_ymd_and_hms(2031, 5, 1, 12, 0, 0).unwrap();
    // 30 lines, three to a timestamp, sent out of order in two batches.
    let lines: Vec<Value> = (0..30i64)
        .rev()
        .map(|i| {
            let task = [None, Some(t1), Some(t2)][(i % 3) as usize];
            let level = LEVELS[(i % 5) as usize];
            line(
                run,
                task,
                level,
                &format!("line {i}"),
                base + Duration::seconds(i / 3),
            )
        })
        .collect();
    for chunk in lines.chunks(17) {
        data(&create_logs(&w.app, &w.owner, w.ws, chunk).await);
    }
    data(
        &create_logs(
            &w.app,
            &w.owner,
            w.ws,
            &[line(other_run, None, "INFO", "elsewhere", base)],
        )
        .await,
    );

    let whole = log_pages(&w, run, 200, false, json!({})).await;
    assert_eq!(whole.len(), 30);
    let times: Vec<_> = whole.iter().map(|n| time_at(&n["timestamp"])).collect();
    assert!(times.windows(2).all(|p| p[0] <= p[1]), "oldest first");
    assert!(whole.iter().all(|n| n["flowRunId"] == json!(run)));
    let newest = log_pages(&w, run, 200, true, json!({})).await;
    let mut reversed = whole.clone();
    reversed.reverse();
    assert_eq!(newest, reversed, "newest first is the exact reverse");
    for first in [1, 4, 7] {
        assert_eq!(
            log_pages(&w, run, first, false, json!({})).await,
            whole,
            "{first}"
        );
        assert_eq!(
            log_pages(&w, run, first, true, json!({})).await,
            reversed,
            "{first}"
        );
    }

    // minLevel, taskRunId, and both.
    let warning = log_pages(&w, run, 4, false, json!({ "min": "WARNING" })).await;
    assert_eq!(warning.len(), 18);
    assert!(warning
        .iter()
        .all(|n| ["WARNING", "ERROR", "CRITICAL"].contains(&n["level"].as_str().unwrap())));
    let of_t1 = log_pages(&w, run, 3, true, json!({ "task": t1 })).await;
    assert_eq!(of_t1.len(), 10);
    assert!(of_t1.iter().all(|n| n["taskRunId"] == json!(t1)));
    let both = log_pages(&w, run, 3, false, json!({ "task": t2, "min": "ERROR" })).await;
    let want = (0..30).filter(|i| i % 3 == 2 && i % 5 >= 3).count();
    assert_eq!(both.len(), want);
    let page = w
        .query(
            "query($id: UUID!) { flowRun(id: $id) {
                logs(first: 1, minLevel: CRITICAL) { totalCount } } }",
            json!({ "id": run }),
        )
        .await;
    assert_eq!(page["flowRun"]["logs"]["totalCount"], 6);

    // TaskRun.logs: the task run's lines, with the same cursors and filters.
    let page = w
        .query(
            "query($id: UUID!) { taskRun(id: $id) {
                all: logs(first: 200) { totalCount nodes { id } }
                newest: logs(first: 2, newestFirst: true, minLevel: INFO) {
                    totalCount nodes { id level } pageInfo { hasNextPage } } } }",
            json!({ "id": t1 }),
        )
        .await;
    let t = &page["taskRun"];
    assert_eq!(t["all"]["totalCount"], 10);
    assert_eq!(
        ids(&t["all"]["nodes"]),
        ids(&Value::Array(of_t1.iter().rev().cloned().collect()))
    );
    let info_up = (0..30).filter(|i| i % 3 == 1 && i % 5 >= 1).count();
    assert_eq!(t["newest"]["totalCount"], info_up);
    assert_eq!(t["newest"]["pageInfo"]["hasNextPage"], true);

    // Bad page arguments.
    let response = w
        .app
        .gql_as(
            &w.owner.token,
            "query($id: UUID!) { flowRun(id: $id) { logs(first: 201) { totalCount } } }",
            json!({ "id": run }),
        )
        .await;
    assert_bad_input(&response, "first");
}
