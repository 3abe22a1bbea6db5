//! Creating runs (ad hoc from a deployment, idempotent), listing them page by page with
//! filters and sorts, and the cost of a nested page in SQL statements.
use std::collections::HashSet;

use chrono::{Duration, TimeZone, Utc};
use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

fn is_generated_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
}

async fn from_deployment(w: &World, deployment: Uuid, input: Option<Value>) -> Value {
    w.app
        .gql_as(
            &w.owner.token,
            &format!(
                "mutation($id: UUID!, $input: CreateFlowRunFromDeploymentInput) {{
                    createFlowRunFromDeployment(deploymentId: $id, input: $input) {{ {RUN_FIELDS} }} }}"
            ),
            json!({ "id": deployment, "input": input }),
        )
        .await
}

#[tokio::test]
async fn an_ad_hoc_run_takes_the_deployment_settings_with_overrides() {
    let w = world("adhoc").await;
    let deployment = create_deployment(
        &w.app,
        &w.owner,
        w.ws,
        json!({ "flowId": w.flow, "name": "reporting", "workQueueName": "reports",
            "parameters": { "a": 1, "b": { "deep": true } }, "tags": ["x", "y"] }),
    )
    .await;
    let response = from_deployment(
        &w,
        deployment,
        Some(json!({ "parameters": { "b": 2, "c": "new" }, "tags": ["y", "z"] })),
    )
    .await;
    let run = &data(&response)["createFlowRunFromDeployment"];
    assert_eq!(run["parameters"], json!({ "a": 1, "b": 2, "c": "new" }));
    assert_eq!(run["tags"], json!(["x", "y", "z"]));
    assert_eq!(run["workQueueName"], "reports");
    assert_eq!(run["deployment"]["id"], json!(deployment));
    assert_eq!(run["flow"]["id"], json!(w.flow));
    assert_eq!(run["state"]["type"], "SCHEDULED");
    assert_eq!(run["state"]["name"], "Scheduled");
    assert_near(
        time_at(&run["expectedStartTime"]),
        Utc::now(),
        Duration::seconds(10),
    );
    assert!(
        is_generated_name(run["name"].as_str().unwrap()),
        "{}",
        run["name"]
    );

    // No input at all: the deployment's parameters and tags, now.
    let response = from_deployment(&w, deployment, None).await;
    let run = &data(&response)["createFlowRunFromDeployment"];
    assert_eq!(run["parameters"], json!({ "a": 1, "b": { "deep": true } }));
    assert_eq!(run["tags"], json!(["x", "y"]));
    assert_near(
        time_at(&run["state"]["scheduledTime"]),
        Utc::now(),
        Duration::seconds(10),
    );

    // At a given time, with a name.
    let at = micros(Utc::now() + Duration::hours(2));
    let response = from_deployment(
        &w,
        deployment,
        Some(json!({ "name": "backfill", "state": scheduled_at(at) })),
    )
    .await;
    let run = &data(&response)["createFlowRunFromDeployment"];
    assert_eq!(run["name"], "backfill");
    assert_eq!(time_at(&run["expectedStartTime"]), at);
    assert_eq!(time_at(&run["state"]["scheduledTime"]), at);

    // Bad overrides are refused and nothing is written.
    let before = w.app.count_rows("flow_runs", "").await;
    let response = from_deployment(&w, deployment, Some(json!({ "parameters": [1, 2] }))).await;
    assert_bad_input(&response, "parameters");
    let response = from_deployment(&w, Uuid::new_v4(), None).await;
    assert_error_code(&response, "NOT_FOUND");
    assert_eq!(w.app.count_rows("flow_runs", "").await, before);

    // A run created directly with a deployment takes its queue unless it names another.
    let run = w.run(json!({ "deploymentId": deployment })).await;
    assert_eq!(run["workQueueName"], "reports");
    let run = w
        .run(json!({ "deploymentId": deployment, "workQueueName": "mine" }))
        .await;
    assert_eq!(run["workQueueName"], "mine");
    // Generated names are readable and vary.
    let mut names = HashSet::new();
    for _ in 0..10 {
        let name = w.run(json!({})).await["name"].as_str().unwrap().to_owned();
        assert!(is_generated_name(&name), "{name}");
        names.insert(name);
    }
    assert!(names.len() > 1, "{names:?}");
}

#[tokio::test]
async fn an_idempotency_key_already_used_for_the_flow_returns_the_same_run() {
    let w = world("idempotent").await;
    let first = w
        .run(json!({ "idempotencyKey": "k-1", "name": "one" }))
        .await;
    let again = w
        .run(json!({ "idempotencyKey": "k-1", "name": "two" }))
        .await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["name"], "one");
    assert_eq!(again["idempotencyKey"], "k-1");
    // The key is per flow.
    let other_flow = create_flow(&w.app, &w.owner, w.ws, "other").await;
    let other = create_run(
        &w.app,
        &w.owner,
        w.ws,
        other_flow,
        json!({ "idempotencyKey": "k-1" }),
    )
    .await;
    assert_ne!(other["id"], first["id"]);
    // From a deployment, too.
    let response =
        from_deployment(&w, w.deployment, Some(json!({ "idempotencyKey": "k-1" }))).await;
    assert_eq!(
        data(&response)["createFlowRunFromDeployment"]["id"],
        first["id"]
    );

    // Concurrent creations with one key give one run.
    let results: Vec<Value> = futures_util::stream::iter(0..16)
        .map(|_| w.run(json!({ "idempotencyKey": "k-race" })))
        .buffer_unordered(16)
        .collect()
        .await;
    let ids: HashSet<&Value> = results.iter().map(|r| &r["id"]).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let page = w
        .query(
            "query($ws: UUID!) { workspace(id: $ws) { flowRuns { totalCount } } }",
            json!({ "ws": w.ws }),
        )
        .await;
    assert_eq!(page["workspace"]["flowRuns"]["totalCount"], 3);
}

/// A run the paging test created: id, index, expected start, flow.
type Created = (Uuid, i64, chrono::DateTime<Utc>, Uuid);

/// Every page of `workspace.flowRuns` with `args`, `first` at a time: the nodes in order.
async fn all_pages(w: &World, first: i64, sort: &str, filter: Value) -> Vec<Value> {
    let mut after: Option<String> = None;
    let mut nodes = Vec::new();
    loop {
        let page = w
            .query(
                "query($ws: UUID!, $first: Int, $after: String, $sort: FlowRunSort,
                    $filter: FlowRunFilter) { workspace(id: $ws) {
                    flowRuns(first: $first, after: $after, sort: $sort, filter: $filter) {
                        totalCount
                        pageInfo { hasNextPage hasPreviousPage endCursor }
                        edges { cursor node { id name expectedStartTime } } } } }",
                json!({ "ws": w.ws, "first": first, "after": after, "sort": sort,
                    "filter": filter }),
            )
            .await;
        let conn = &page["workspace"]["flowRuns"];
        let edges = conn["edges"].as_array().unwrap();
        assert!(edges.len() as i64 <= first);
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], after.is_some());
        if let Some(last) = edges.last() {
            assert_eq!(conn["pageInfo"]["endCursor"], last["cursor"]);
        }
        nodes.extend(edges.iter().map(|e| e["node"].clone()));
        if conn["pageInfo"]["hasNextPage"] != true {
            return nodes;
        }
        after = Some(conn["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
    }
}

#[tokio::test]
async fn flow_run_pages_have_stable_cursors_for_every_sort_and_filter() {
    let w = world("run-pages").await;
    let second_flow = create_flow(&w.app, &w.owner, w.ws, "second").await;
    let base = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    // 55 runs; expected start times repeat (ties broken by id), names repeat too.
    let mut expected_runs: Vec<Created> = Vec::new();
    for i in 0..55i64 {
        let at = base + Duration::minutes(i % 7);
        let flow = if i % 5 == 0 { second_flow } else { w.flow };
        let mut input = json!({
            "name": format!("run-{}", i % 4),
            "tags": if i % 3 == 0 { json!(["even3", "all"]) } else { json!(["all"]) },
            "workQueueName": if i % 2 == 0 { "q-even" } else { "q-odd" },
            "state": scheduled_at(at),
        });
        if flow == w.flow && i % 4 == 1 {
            input["deploymentId"] = json!(w.deployment);
        }
        let run = create_run(&w.app, &w.owner, w.ws, flow, input).await;
        expected_runs.push((uuid_at(&run["id"]), i, at, flow));
    }
    let all: HashSet<Uuid> = expected_runs.iter().map(|r| r.0).collect();

    // `first`: 50 by default, at most 200.
    let page = w
        .query(
            "query($ws: UUID!) { workspace(id: $ws) { flowRuns {
                totalCount nodes { id } pageInfo { hasNextPage } } } }",
            json!({ "ws": w.ws }),
        )
        .await;
    let conn = &page["workspace"]["flowRuns"];
    assert_eq!(conn["nodes"].as_array().unwrap().len(), 50);
    assert_eq!(conn["totalCount"], 55);
    assert_eq!(conn["pageInfo"]["hasNextPage"], true);
    for first in [201, -1] {
        let response = w
            .app
            .gql_as(
                &w.owner.token,
                "query($ws: UUID!, $first: Int) { workspace(id: $ws) {
                    flowRuns(first: $first) { totalCount } } }",
                json!({ "ws": w.ws, "first": first }),
            )
            .await;
        assert_bad_input(&response, "first");
    }
    let response = w
        .app
        .gql_as(
            &w.owner.token,
            "query($ws: UUID!) { workspace(id: $ws) { flowRuns(after: \"garbage!\") { totalCount } } }",
            json!({ "ws": w.ws }),
        )
        .await;
    assert_bad_input(&response, "after");

    for sort in [
        "EXPECTED_START_TIME_ASC",
        "EXPECTED_START_TIME_DESC",
        "CREATED_DESC",
        "NAME_ASC",
    ] {
        let whole = all_pages(&w, 200, sort, Value::Null).await;
        assert_eq!(whole.len(), 55, "{sort}");
        for first in [1, 7, 50] {
            let paged = all_pages(&w, first, sort, Value::Null).await;
            assert_eq!(
                paged, whole,
                "{sort}, {first} at a time: same order, no gap, no duplicate"
            );
        }
        let got: HashSet<Uuid> = whole.iter().map(|n| uuid_at(&n["id"])).collect();
        assert_eq!(got, all, "{sort}");
        // The order is the one asked for.
        let keys: Vec<String> = whole
            .iter()
            .map(|n| match sort {
                "NAME_ASC" => n["name"].as_str().unwrap().to_owned(),
                _ => rfc3339(time_at(&n["expectedStartTime"])),
            })
            .collect();
        match sort {
            "EXPECTED_START_TIME_DESC" => assert!(keys.windows(2).all(|p| p[0] >= p[1])),
            "CREATED_DESC" => {
                let order: Vec<Uuid> = expected_runs.iter().rev().map(|r| r.0).collect();
                assert_eq!(ids(&Value::Array(whole.clone())), order, "{sort}");
            }
            _ => assert!(keys.windows(2).all(|p| p[0] <= p[1]), "{sort}: {keys:?}"),
        }
    }

    // Filters, alone and together; totalCount counts the filtered runs.
    let count = |pred: &dyn Fn(&Created) -> bool| expected_runs.iter().filter(|r| pred(r)).count();
    let cases: Vec<(Value, usize)> = vec![
        (
            json!({ "flowIds": [second_flow] }),
            count(&|r| r.3 == second_flow),
        ),
        (
            json!({ "deploymentIds": [w.deployment] }),
            count(&|r| r.3 == w.flow && r.1 % 4 == 1),
        ),
        (json!({ "stateTypes": ["SCHEDULED"] }), 55),
        (json!({ "stateTypes": ["RUNNING", "COMPLETED"] }), 0),
        (json!({ "stateNames": ["Scheduled"] }), 55),
        (json!({ "stateNames": ["Late"] }), 0),
        (json!({ "tags": ["even3"] }), count(&|r| r.1 % 3 == 0)),
        (
            json!({ "tags": ["even3", "all"] }),
            count(&|r| r.1 % 3 == 0),
        ),
        (json!({ "tags": ["nope"] }), 0),
        (
            json!({ "workQueueNames": ["q-odd"] }),
            count(&|r| r.1 % 2 == 1),
        ),
        (
            json!({ "expectedStartTimeAfter": rfc3339(base + Duration::minutes(2)),
                "expectedStartTimeBefore": rfc3339(base + Duration::minutes(4)) }),
            count(&|r| (2..4).contains(&(r.1 % 7))),
        ),
        (
            json!({ "flowIds": [w.flow], "workQueueNames": ["q-even"], "tags": ["even3"] }),
            count(&|r| r.3 == w.flow && r.1 % 2 == 0 && r.1 % 3 == 0),
        ),
        (
            json!({ "flowRunIds": [expected_runs[3].0, expected_runs[9].0] }),
            2,
        ),
    ];
    for (filter, expected) in cases {
        let nodes = all_pages(&w, 4, "EXPECTED_START_TIME_ASC", filter.clone()).await;
        assert_eq!(nodes.len(), expected, "{filter}");
        let unique: HashSet<Uuid> = nodes.iter().map(|n| uuid_at(&n["id"])).collect();
        assert_eq!(unique.len(), expected, "{filter}");
        let page = w
            .query(
                "query($ws: UUID!, $filter: FlowRunFilter) { workspace(id: $ws) {
                    flowRuns(first: 1, filter: $filter) { totalCount } } }",
                json!({ "ws": w.ws, "filter": filter }),
            )
            .await;
        assert_eq!(
            page["workspace"]["flowRuns"]["totalCount"], expected,
            "{filter}"
        );
    }
}

const NESTED_PAGE: &str = "query($ws: UUID!, $first: Int) { workspace(id: $ws) {
    flowRuns(first: $first) { totalCount nodes {
        id name flow { name } deployment { name } state { type } stateHistory { type }
        taskRuns(first: 5) { totalCount nodes { name upstream { id } stateHistory { type } } }
    } } } }";

#[tokio::test]
async fn a_page_of_fifty_runs_costs_as_many_statements_as_a_page_of_five() {
    let w = world("n-plus-one").await;
    let flows = [w.flow, create_flow(&w.app, &w.owner, w.ws, "second").await];
    let deployments = [
        w.deployment,
        create_deployment(
            &w.app,
            &w.owner,
            w.ws,
            json!({ "flowId": flows[1], "name": "second" }),
        )
        .await,
    ];
    futures_util::stream::iter(0..50usize)
        .for_each_concurrent(4, |i| {
            let w = &w;
            async move {
                let run = uuid_at(
                    &create_run(
                        &w.app,
                        &w.owner,
                        w.ws,
                        flows[i % 2],
                        json!({ "deploymentId": deployments[i % 2], "state": state("PENDING") }),
                    )
                    .await["id"],
                );
                w.set_state(run, state("RUNNING")).await;
                let a = uuid_at(&w.task(run, json!({ "taskKey": "a" })).await["id"]);
                let b = uuid_at(
                    &w.task(run, json!({ "taskKey": "b", "upstreamTaskRunIds": [a] }))
                        .await["id"],
                );
                w.task(run, json!({ "taskKey": "c", "upstreamTaskRunIds": [a, b] }))
                    .await;
                w.set_task_state(a, state("RUNNING"), false).await;
            }
        })
        .await;

    // Loaders batch the keys that arrive within a 1 ms window; on a busy machine a page may
    // miss it once and cost a statement more. The structural cost is the least of a few tries.
    // A list of more than 32 items is resolved in two turns (futures' FuturesUnordered yields
    // after 32 polls), and a slow debug build under load can let the window close between them:
    // then the 50-run page consistently costs one statement more than the 5-run page (seen on
    // PostgreSQL in CI: [12, 13, 12, 13, 12, 13]). An N+1 would cost 45 more.
    let mut costs = Vec::new();
    for first in [5, 50, 5, 50, 5, 50] {
        let before = w.app.statement_count();
        let page = w
            .query(NESTED_PAGE, json!({ "ws": w.ws, "first": first }))
            .await;
        let cost = w.app.statement_count() - before;
        let runs = page["workspace"]["flowRuns"]["nodes"].as_array().unwrap();
        assert_eq!(runs.len(), first as usize);
        for run in runs {
            assert!(run["flow"]["name"].is_string() && run["deployment"]["name"].is_string());
            assert_eq!(
                run["stateHistory"],
                json!([{ "type": "PENDING" }, { "type": "RUNNING" }])
            );
            let tasks = &run["taskRuns"];
            assert_eq!(tasks["totalCount"], 3);
            let upstream: Vec<usize> = tasks["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["upstream"].as_array().unwrap().len())
                .collect();
            assert_eq!(upstream, [0, 1, 2], "{run}");
        }
        costs.push(cost);
    }
    let least = |n: usize| costs.iter().skip(n).step_by(2).min().copied().unwrap();
    assert!(
        least(1) == least(0) || least(1) == least(0) + 1,
        "statements for 5 and 50 runs: {costs:?}"
    );
    assert!(
        least(1) <= 15,
        "a nested page costs a handful of statements: {costs:?}"
    );
    assert!(
        costs.iter().all(|c| *c < least(0) + 5),
        "never a statement per run: {costs:?}"
    );
}

/// Nested task-run pages are fetched for all runs of a page in one statement; each run's page
/// must still be its own first N task runs (oldest first, as the flat list orders them), and its
/// cursors must lead on to exactly the rest.
#[tokio::test]
async fn nested_task_run_pages_are_each_runs_own_first_tasks_and_page_on() {
    let w = world("nested-tasks").await;
    let mut expected = Vec::new();
    for count in [7usize, 2, 0] {
        let run = w.run_id(json!({})).await;
        for i in 0..count {
            w.task(run, json!({ "taskKey": format!("t{i}") })).await;
        }
        let all = w
            .query(
                "query($ws: UUID!, $run: UUID!) { workspace(id: $ws) {
                    taskRuns(flowRunId: $run, first: 50) { nodes { id } } } }",
                json!({ "ws": w.ws, "run": run }),
            )
            .await;
        let ids: Vec<Value> = all["workspace"]["taskRuns"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].clone())
            .collect();
        assert_eq!(ids.len(), count);
        expected.push((run, ids));
    }
    let nested = "query($ws: UUID!, $after: String) { workspace(id: $ws) { flowRuns(first: 10) {
        nodes { id taskRuns(first: 3, after: $after) {
            nodes { id } pageInfo { hasNextPage hasPreviousPage endCursor } } } } } }";
    let ids_of = |page: &Value| -> Vec<Value> {
        page["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].clone())
            .collect()
    };
    let page = w.query(nested, json!({ "ws": w.ws })).await;
    let runs = page["workspace"]["flowRuns"]["nodes"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        let (_, all) = expected
            .iter()
            .find(|(id, _)| json!(id) == run["id"])
            .unwrap();
        let tasks = &run["taskRuns"];
        assert_eq!(ids_of(tasks), all[..all.len().min(3)], "{run}");
        assert_eq!(tasks["pageInfo"]["hasNextPage"], all.len() > 3, "{run}");
        assert_eq!(tasks["pageInfo"]["hasPreviousPage"], false);
    }
    // Following the seven-task run's cursor pages through the rest, two pages more.
    let (long_run, all) = &expected[0];
    let mut seen = all[..3].to_vec();
    let mut cursor = runs.iter().find(|r| r["id"] == json!(long_run)).unwrap()["taskRuns"]
        ["pageInfo"]["endCursor"]
        .clone();
    for _ in 0..2 {
        let page = w
            .query(nested, json!({ "ws": w.ws, "after": cursor }))
            .await;
        let run = page["workspace"]["flowRuns"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == json!(long_run))
            .unwrap()
            .clone();
        let tasks = &run["taskRuns"];
        assert_eq!(tasks["pageInfo"]["hasPreviousPage"], true);
        seen.extend(ids_of(tasks));
        cursor = tasks["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(&seen, all);
}

/// Three run pages of 200 in one request ask for the task runs of 510 runs (more than one
/// statement covers): every run gets exactly its own task runs.
#[tokio::test]
async fn nested_task_runs_of_three_full_run_pages_in_one_request_all_arrive() {
    let w = world("many-nested").await;
    futures_util::stream::iter(0..510usize)
        .for_each_concurrent(8, |i| {
            let w = &w;
            async move {
                let run = w.run_id(json!({ "name": format!("run-{i}") })).await;
                if i.is_multiple_of(5) {
                    w.task(run, json!({ "taskKey": "only" })).await;
                }
            }
        })
        .await;
    let end_cursor = |after: Value| {
        let w = &w;
        async move {
            w.query(
                "query($ws: UUID!, $after: String) { workspace(id: $ws) {
                    flowRuns(first: 200, sort: NAME_ASC, after: $after) { pageInfo { endCursor } } } }",
                json!({ "ws": w.ws, "after": after }),
            )
            .await["workspace"]["flowRuns"]["pageInfo"]["endCursor"]
                .clone()
        }
    };
    let after_200 = end_cursor(Value::Null).await;
    let after_400 = end_cursor(after_200.clone()).await;
    let page = w
        .query(
            "query($ws: UUID!, $p2: String, $p3: String) { workspace(id: $ws) {
                p1: flowRuns(first: 200, sort: NAME_ASC) { ...Runs }
                p2: flowRuns(first: 200, sort: NAME_ASC, after: $p2) { ...Runs }
                p3: flowRuns(first: 200, sort: NAME_ASC, after: $p3) { ...Runs } } }
            fragment Runs on FlowRunConnection { nodes { name taskRuns(first: 2) { nodes { name } } } }",
            json!({ "ws": w.ws, "p2": after_200, "p3": after_400 }),
        )
        .await;
    let mut names = HashSet::new();
    let mut with_task = 0;
    for alias in ["p1", "p2", "p3"] {
        for run in page["workspace"][alias]["nodes"].as_array().unwrap() {
            let name = run["name"].as_str().unwrap().to_owned();
            let index: usize = name.trim_start_matches("run-").parse().unwrap();
            let tasks = run["taskRuns"]["nodes"].as_array().unwrap();
            assert_eq!(tasks.len(), usize::from(index.is_multiple_of(5)), "{name}");
            with_task += tasks.len();
            names.insert(name);
        }
    }
    assert_eq!(names.len(), 510);
    assert_eq!(with_task, 102);
}

/// The rows of `E` (by id) read four ways: sea-orm's derived decoder, the positional decoder
/// `W` on sea-orm's rows, the page's own read path (rusqlite on a SQLite file, sqlx on
/// PostgreSQL), and that path again on the by-id loaders' statement (`select_by_ids`). The
/// decoders must all read the same models.
async fn read_four_ways<E, W>(
    w: &World,
    order_by: E::Column,
    model: fn(W) -> E::Model,
    id_of: fn(&E::Model) -> Uuid,
) -> Vec<E::Model>
where
    E: sea_orm::EntityTrait,
    E::Model: PartialEq + std::fmt::Debug,
    W: flowcloud::db::ByPosition,
{
    use sea_orm::{ConnectionTrait, QueryOrder, QueryTrait};
    let select = E::find().order_by_asc(order_by);
    let derived = select.clone().all(&w.app.db).await.unwrap();
    let by_position: Vec<E::Model> = select
        .clone()
        .into_model::<W>()
        .all(&w.app.db)
        .await
        .unwrap()
        .into_iter()
        .map(model)
        .collect();
    let statement = select.build(w.app.db.get_database_backend());
    let read_path: Vec<E::Model> = w
        .app
        .state
        .db
        .read_by_position::<W>(statement, derived.len() as u64)
        .await
        .unwrap()
        .into_iter()
        .map(model)
        .collect();
    assert_eq!(by_position, derived);
    assert_eq!(read_path, derived);
    // And as the by-id loaders select them (their own statement, not sea-query's).
    let ids: Vec<Uuid> = derived.iter().map(id_of).collect();
    let statement = flowcloud::db::select_by_ids::<E>(w.app.db.get_database_backend(), &ids);
    let mut by_ids: Vec<E::Model> = w
        .app
        .state
        .db
        .read_by_position::<W>(statement, ids.len() as u64)
        .await
        .unwrap()
        .into_iter()
        .map(model)
        .collect();
    by_ids.sort_by_key(|m| ids.iter().position(|id| *id == id_of(m)));
    assert_eq!(by_ids, derived);
    derived
}

/// The run page decodes rows by column position (cheaper than by name); on rows with every
/// column filled in, and with the optional ones empty, it must read exactly what the derived
/// decoder reads.
#[tokio::test]
async fn the_run_page_decoder_reads_rows_exactly_like_the_derived_one() {
    let w = world("pos").await;
    let bare = w.run_id(json!({})).await;
    let full = uuid_at(
        &from_deployment(
            &w,
            w.deployment,
            Some(json!({
                "name": "full-run",
                "parameters": { "day": "2026-11-27", "n": 3 },
                "tags": ["a", "b"],
                "idempotencyKey": "k-1",
            })),
        )
        .await["data"]["createFlowRunFromDeployment"]["id"],
    );
    w.set_state(full, json!({ "type": "PENDING" })).await;
    w.set_state(full, json!({ "type": "RUNNING" })).await;
    w.set_state(full, json!({ "type": "FAILED", "message": "exit 3" }))
        .await;
    let derived = read_four_ways::<entity::flow_runs::Entity, _>(
        &w,
        entity::flow_runs::Column::Id,
        |r: flowcloud::domain::flow_runs::RunByPosition| r.0,
        |m| m.id,
    )
    .await;
    assert_eq!(derived.len(), 2);
    let full_row = derived.iter().find(|r| r.id == full).unwrap();
    assert!(full_row.idempotency_key.is_some() && full_row.end_time.is_some());
    assert!(derived
        .iter()
        .any(|r| r.id == bare && r.deployment_id.is_none()));
}

/// The same for task runs, which nested task-run pages decode by position.
#[tokio::test]
async fn the_task_run_page_decoder_reads_rows_exactly_like_the_derived_one() {
    let w = world("tpos").await;
    let run = w.run_id(json!({})).await;
    let bare = uuid_at(&w.task(run, json!({ "taskKey": "bare" })).await["id"]);
    let full = uuid_at(
        &w.task(
            run,
            json!({ "taskKey": "full", "dynamicKey": "3", "name": "full-task", "tags": ["x"] }),
        )
        .await["id"],
    );
    w.set_task_state(full, json!({ "type": "RUNNING" }), false)
        .await;
    w.set_task_state(full, json!({ "type": "FAILED", "message": "boom" }), false)
        .await;
    let derived = read_four_ways::<entity::task_runs::Entity, _>(
        &w,
        entity::task_runs::Column::Id,
        |r: flowcloud::domain::task_runs::TaskRunByPosition| r.0,
        |m| m.id,
    )
    .await;
    assert_eq!(derived.len(), 2);
    assert!(derived
        .iter()
        .any(|r| r.id == full && r.end_time.is_some() && r.state_message.is_some()));
    assert!(derived
        .iter()
        .any(|r| r.id == bare && r.start_time.is_none()));
}

/// Flows, deployments, accounts and workspaces (the loaders and the per-request reads of a
/// page) decode by position too: with every optional column filled in and with none.
#[tokio::test]
async fn the_catalog_decoders_read_rows_exactly_like_the_derived_ones() {
    let w = world("cpos").await;
    let storage = w
        .query(
            "mutation($ws: UUID!) { createStorageBlock(workspaceId: $ws, input: {
            name: \"s3\", kind: \"s3\", settings: { bucket: \"b\" } }) { id } }",
            json!({ "ws": w.ws }),
        )
        .await["createStorageBlock"]["id"]
        .clone();
    let flow = create_flow(&w.app, &w.owner, w.ws, "reports").await;
    let full = create_deployment(
        &w.app,
        &w.owner,
        w.ws,
        json!({ "flowId": flow, "name": "full", "description": "every column",
            "schedule": { "cron": "0 3 * * *", "timezone": "Europe/Paris" },
            "isScheduleActive": false, "parameters": { "day": "mon", "n": [1, 2] },
            "tags": ["x", "y"], "entrypoint": "flows.py:reports", "workQueueName": "q1",
            "storageBlockId": storage }),
    )
    .await;
    let interval = create_deployment(
        &w.app,
        &w.owner,
        w.ws,
        json!({ "flowId": flow, "name": "every-minute",
            "schedule": { "interval": 60, "anchorDate": "2026-12-07T01:02:03.456789Z" } }),
    )
    .await;
    let flows = read_four_ways::<entity::flows::Entity, _>(
        &w,
        entity::flows::Column::Id,
        |r: flowcloud::domain::flows::FlowByPosition| r.0,
        |m| m.id,
    )
    .await;
    assert_eq!(flows.len(), 2);
    let deployments = read_four_ways::<entity::deployments::Entity, _>(
        &w,
        entity::deployments::Column::Id,
        |r: flowcloud::domain::deployments::DeploymentByPosition| r.0,
        |m| m.id,
    )
    .await;
    assert_eq!(deployments.len(), 3);
    let full = deployments.iter().find(|d| d.id == full).unwrap();
    assert!(full.storage_block_id.is_some() && full.schedule_timezone.is_some());
    assert!(!full.is_schedule_active);
    let interval = deployments.iter().find(|d| d.id == interval).unwrap();
    assert_eq!(interval.schedule_interval_seconds, Some(60));
    assert!(interval.schedule_anchor_date.is_some() && interval.description.is_none());
    let workspaces = read_four_ways::<entity::workspaces::Entity, _>(
        &w,
        entity::workspaces::Column::Id,
        |r: flowcloud::domain::workspaces::WorkspaceByPosition| r.0,
        |m| m.id,
    )
    .await;
    assert_eq!(workspaces.len(), 1);
}

/// Runs, task runs and states answer their plain fields without async-graphql's per-field
/// machinery unless a query uses fragments. The same fields through a fragment (the usual
/// path) must give exactly the same answer, in the same request.
#[tokio::test]
async fn plain_fields_answer_as_the_resolvers_do() {
    let w = world("plain-fields").await;
    let waiting = w
        .run_id(
            json!({ "tags": ["a", "b"], "state": scheduled_at(Utc::now() + Duration::hours(1)) }),
        )
        .await;
    let done = w
        .run_id(json!({ "idempotencyKey": "k-1", "state": scheduled_at(Utc::now() - Duration::seconds(5)) }))
        .await;
    for step in ["PENDING", "RUNNING"] {
        assert_eq!(w.set_state(done, state(step)).await["status"], "ACCEPT");
    }
    let task = uuid_at(
        &w.task(done, json!({ "taskKey": "extract", "tags": ["x"] }))
            .await["id"],
    );
    for step in ["RUNNING", "FAILED"] {
        let result = w
            .set_task_state(task, json!({ "type": step, "message": "boom" }), false)
            .await;
        assert_eq!(result["status"], "ACCEPT", "{result}");
    }
    w.task(waiting, json!({ "taskKey": "load" })).await;
    // In the future, as every run here that has not started: the delta of one that should
    // have started grows with the clock between the two halves of the request.
    let later = json!({ "state": scheduled_at(Utc::now() + Duration::hours(2)) });
    let response = from_deployment(&w, w.deployment, Some(later)).await;
    let deployed = uuid_at(&data(&response)["createFlowRunFromDeployment"]["id"]);
    assert_eq!(
        w.set_state(done, json!({ "type": "COMPLETED", "message": "ok" }))
            .await["status"],
        "ACCEPT"
    );

    // The usual path is taken at every level through fragments: `state` selects `...S`.
    const STATE: &str = "__typename id type name message timestamp scheduledTime";
    let task_fields = |state: &str| {
        format!(
            "__typename id name taskKey dynamicKey tags startTime endTime totalRunTime runCount
             createdAt state {{ {state} }} stateHistory {{ {state} }}"
        )
    };
    const FLOW: &str = "__typename id name tags createdAt";
    const DEPLOYMENT: &str = "__typename id name description isScheduleActive tags entrypoint
        workQueueName createdAt updatedAt";
    let run_fields = |state: &str, task: &str, flow: &str, deployment: &str| {
        format!(
            "__typename id name workQueueName tags idempotencyKey expectedStartTime startTime
             endTime totalRunTime runCount retries retryDelaySeconds estimatedStartTimeDelta
             autoScheduled createdAt updatedAt again: name
             state {{ {state} }} stateHistory {{ {state} }}
             flow {{ {flow} }} deployment {{ {deployment} }}
             taskRuns(first: 5) {{ nodes {{ {task} }} edges {{ node {{ {task} }} }} }}"
        )
    };
    let plain_run = run_fields(STATE, &task_fields(STATE), FLOW, DEPLOYMENT);
    let query = format!(
        "query($ws: UUID!) {{ workspace(id: $ws) {{
            plain: flowRuns(first: 10) {{ nodes {{ {plain_run} }} edges {{ node {{ {plain_run} }} }} }}
            usual: flowRuns(first: 10) {{ nodes {{ ...R }} edges {{ node {{ ...R }} }} }} }} }}
         fragment R on FlowRun {{ {} }}
         fragment T on TaskRun {{ {} }}
         fragment S on State {{ {STATE} }}
         fragment F on Flow {{ {FLOW} }}
         fragment D on Deployment {{ {DEPLOYMENT} }}",
        run_fields("...S", "...T", "...F", "...D"),
        task_fields("...S"),
    );
    let page = w.query(&query, json!({ "ws": w.ws })).await;
    let plain = &page["workspace"]["plain"];
    let node = |id: Uuid| {
        plain["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id.to_string())
            .unwrap_or_else(|| panic!("run {id} missing: {page:#}"))
            .clone()
    };
    assert_eq!(node(waiting)["tags"], json!(["a", "b"]));
    assert_eq!(node(done)["state"]["type"], "COMPLETED");
    assert_eq!(
        node(done)["taskRuns"]["nodes"][0]["state"]["message"],
        "boom"
    );
    assert_eq!(node(done)["taskRuns"]["nodes"][0]["tags"], json!(["x"]));
    assert_eq!(node(done)["flow"]["name"], "etl");
    assert_eq!(node(done)["deployment"], Value::Null);
    assert_eq!(node(deployed)["deployment"]["name"], "nightly");
    assert_eq!(plain, &page["workspace"]["usual"]);
}

/// A page of runs loads its runs' flows, deployments and task-run pages ahead, for all its runs
/// at once. Each run must read exactly what it reads alone (`flowRun(id)`, through the
/// loaders): with one set of task-run arguments, with a cursor, and with two sets at once
/// (which the page leaves to each run's own resolver).
#[tokio::test]
async fn a_page_of_runs_reads_its_relations_as_each_run_does_alone() {
    let w = world("page-relations").await;
    let other_flow = create_flow(&w.app, &w.owner, w.ws, "other").await;
    let response = from_deployment(&w, w.deployment, None).await;
    let deployed = uuid_at(&data(&response)["createFlowRunFromDeployment"]["id"]);
    let plain = w.run_id(json!({})).await;
    let other = uuid_at(&create_run(&w.app, &w.owner, w.ws, other_flow, json!({})).await["id"]);
    let mut first_task = None;
    for (run, tasks) in [(deployed, 3), (plain, 1), (other, 0)] {
        for i in 0..tasks {
            let task = w
                .task(
                    run,
                    json!({ "taskKey": format!("t{i}"), "name": format!("task-{i}") }),
                )
                .await;
            first_task.get_or_insert(task);
        }
    }
    for step in ["PENDING", "RUNNING"] {
        assert_eq!(w.set_state(deployed, state(step)).await["status"], "ACCEPT");
    }
    // One task run with every column filled in (times, run count, a state message, tags).
    let first_task = uuid_at(&first_task.unwrap()["id"]);
    for step in [
        state("RUNNING"),
        json!({ "type": "COMPLETED", "message": "done" }),
    ] {
        let result = w.set_task_state(first_task, step, false).await;
        assert_eq!(result["status"], "ACCEPT", "{result}");
    }
    w.task(
        deployed,
        json!({
            "taskKey": "tagged",
            "dynamicKey": "7",
            "name": "task-tagged",
            "tags": ["x", "y"],
            "upstreamTaskRunIds": [first_task],
        }),
    )
    .await;
    let edges = w
        .query(
            "query($id: UUID!) { flowRun(id: $id) { taskRuns { edges { cursor } } } }",
            json!({ "id": deployed }),
        )
        .await;
    let cursor = edges["flowRun"]["taskRuns"]["edges"][0]["cursor"]
        .as_str()
        .unwrap()
        .to_owned();

    let task_page = "nodes { id name state { type name } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }";
    let mut selections = vec![
        (format!("taskRuns(first: 2) {{ {task_page} }}"), None),
        (
            format!("taskRuns(first: 2, after: \"{cursor}\") {{ {task_page} }}"),
            None,
        ),
        (
            format!("two: taskRuns(first: 2) {{ {task_page} }} all: taskRuns {{ {task_page} }}"),
            None,
        ),
    ];
    // Each task-run field alone, so a page that reads only some columns of its task runs
    // must still read every column each field shows: as the run alone reads it, and as the
    // task run alone reads it (`taskRun(id)`, from its whole row).
    for field in [
        "__typename",
        "name",
        "taskKey",
        "dynamicKey",
        "tags",
        "startTime",
        "endTime",
        "totalRunTime",
        "runCount",
        "createdAt",
        "state { id type name message timestamp scheduledTime }",
        "flowRun { id name }",
        "stateHistory { type message }",
        "upstream { id name }",
        "logs { nodes { message } }",
    ] {
        selections.push((
            format!(
                "taskRuns {{ nodes {{ id {field} }} edges {{ cursor node {{ id {field} }} }}
                    pageInfo {{ endCursor }} }}"
            ),
            Some(field),
        ));
    }
    for (selection, task_field) in selections {
        let fields = format!(
            "id name flow {{ id name }} deployment {{ id name }} state {{ type }} {selection}"
        );
        let page = w
            .query(
                &format!(
                    "query($ws: UUID!) {{ workspace(id: $ws) {{
                        flowRuns {{ nodes {{ {fields} }} edges {{ node {{ {fields} }} }} }} }} }}"
                ),
                json!({ "ws": w.ws }),
            )
            .await;
        let runs = &page["workspace"]["flowRuns"];
        let nodes = runs["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3);
        for (i, node) in nodes.iter().enumerate() {
            let alone = w
                .query(
                    &format!("query($id: UUID!) {{ flowRun(id: $id) {{ {fields} }} }}"),
                    json!({ "id": node["id"] }),
                )
                .await;
            assert_eq!(node, &alone["flowRun"], "{selection}");
            assert_eq!(node, &runs["edges"][i]["node"], "{selection}");
            if let Some(field) = task_field {
                assert_nodes_read_as_alone(&w, &node["taskRuns"], "taskRun", field, |_| false)
                    .await;
            }
        }
    }
    // What the page read is what was written.
    let page = w
        .query(
            "query($ws: UUID!) { workspace(id: $ws) { flowRuns { nodes {
                id flow { name } deployment { name } taskRuns(first: 2) { nodes { name state { type } }
                pageInfo { hasNextPage } } } } } }",
            json!({ "ws": w.ws }),
        )
        .await;
    let nodes = page["workspace"]["flowRuns"]["nodes"].as_array().unwrap();
    let node = |id: Uuid| nodes.iter().find(|n| n["id"] == id.to_string()).unwrap();
    assert_eq!(node(deployed)["deployment"]["name"], "nightly");
    assert_eq!(node(deployed)["flow"]["name"], "etl");
    assert_eq!(node(deployed)["taskRuns"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(
        node(deployed)["taskRuns"]["nodes"],
        json!([{ "name": "task-0", "state": { "type": "COMPLETED" } },
                { "name": "task-1", "state": { "type": "PENDING" } }])
    );
    assert_eq!(node(plain)["deployment"], Value::Null);
    assert_eq!(node(other)["flow"]["name"], "other");
    assert_eq!(node(other)["taskRuns"]["nodes"], json!([]));
}

/// A page of runs decodes only the columns its selection reads. Each run field alone on a page
/// (through `nodes` and `edges`) must read what the run shows alone (`flowRun(id)`, whole rows),
/// on a run with every column filled and on runs with the optional ones empty.
#[tokio::test]
async fn a_page_of_runs_reads_each_run_field_as_the_run_alone() {
    let w = world("page-columns").await;
    let full = w
        .run_id(json!({
            "name": "every-column",
            "parameters": { "rows": 3, "source": "s3://bucket" },
            "tags": ["etl", "nightly"],
            "idempotencyKey": "full-1",
            "deploymentId": w.deployment,
            "workQueueName": "gpu",
            "retries": 2,
            "retryDelaySeconds": 30,
        }))
        .await;
    for step in [
        state("PENDING"),
        state("RUNNING"),
        json!({ "type": "COMPLETED", "name": "Done", "message": "all rows loaded" }),
    ] {
        let result = w.set_state(full, step).await;
        assert_eq!(result["status"], "ACCEPT", "{result}");
    }
    let empty = w.run_id(json!({})).await;
    let later = Utc::now() + Duration::hours(3);
    let scheduled = w
        .run_id(json!({ "state": scheduled_at(later), "tags": ["later"] }))
        .await;

    // Time-dependent while a run has not finished (the clock moves between the two reads), so
    // compared on the finished run only.
    let clock_fields = ["totalRunTime", "estimatedStartTimeDelta"];
    for field in [
        "__typename",
        "name",
        "workQueueName",
        "parameters",
        "tags",
        "idempotencyKey",
        "expectedStartTime",
        "startTime",
        "endTime",
        "runCount",
        "retries",
        "retryDelaySeconds",
        "autoScheduled",
        "createdAt",
        "updatedAt",
        "totalRunTime",
        "estimatedStartTimeDelta",
        "flow { id name }",
        "deployment { id name }",
        "state { type }",
        "state { id }",
        "state { name }",
        "state { message }",
        "state { timestamp }",
        "state { scheduledTime }",
        "state { __typename type name }",
        "stateHistory { type name }",
        "taskRuns { nodes { id } }",
    ] {
        let page = w
            .query(
                &format!(
                    "query($ws: UUID!) {{ workspace(id: $ws) {{ flowRuns {{
                        nodes {{ id {field} }} edges {{ cursor node {{ id {field} }} }}
                        pageInfo {{ endCursor }} }} }} }}"
                ),
                json!({ "ws": w.ws }),
            )
            .await;
        let runs = &page["workspace"]["flowRuns"];
        let nodes = runs["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3, "{field}");
        let changing =
            |node: &Value| clock_fields.contains(&field) && node["id"] != full.to_string();
        assert_nodes_read_as_alone(&w, runs, "flowRun", field, changing).await;
    }
    // What the page read is what was written.
    let page = w
        .query(
            "query($ws: UUID!) { workspace(id: $ws) { flowRuns { nodes {
                id name tags parameters workQueueName state { type message scheduledTime } } } } }",
            json!({ "ws": w.ws }),
        )
        .await;
    let nodes = page["workspace"]["flowRuns"]["nodes"].as_array().unwrap();
    let node = |id: Uuid| nodes.iter().find(|n| n["id"] == id.to_string()).unwrap();
    assert_eq!(node(full)["name"], "every-column");
    assert_eq!(node(full)["tags"], json!(["etl", "nightly"]));
    assert_eq!(node(full)["parameters"]["rows"], 3);
    assert_eq!(node(full)["workQueueName"], "gpu");
    assert_eq!(node(full)["state"]["message"], "all rows loaded");
    assert_eq!(node(empty)["tags"], json!([]));
    assert_eq!(node(scheduled)["state"]["type"], "SCHEDULED");
    let scheduled_time = node(scheduled)["state"]["scheduledTime"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(scheduled_time).unwrap(),
        micros(later)
    );
}

/// Each node of `connection` (selected as `id {field}` in its `nodes` and `edges`) is its edge's
/// node and reads as `{by_id}(id)` reads it alone; nodes `skip` accepts are left out.
async fn assert_nodes_read_as_alone(
    w: &World,
    connection: &Value,
    by_id: &str,
    field: &str,
    skip: impl Fn(&Value) -> bool,
) {
    for (i, node) in connection["nodes"].as_array().unwrap().iter().enumerate() {
        if skip(node) {
            continue;
        }
        assert_eq!(node, &connection["edges"][i]["node"], "{field}");
        let alone = w
            .query(
                &format!("query($id: UUID!) {{ {by_id}(id: $id) {{ id {field} }} }}"),
                json!({ "id": node["id"] }),
            )
            .await;
        assert_eq!(node, &alone[by_id], "{field}");
    }
}
