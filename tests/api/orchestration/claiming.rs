//! Claiming runs from work queues: exactly once under concurrent agents, and the queue's
//! pause switch, concurrency limit, filters and time window.
use std::collections::HashSet;

use chrono::{Duration, Utc};
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

use super::*;

#[tokio::test]
async fn concurrent_claimers_hand_out_every_run_exactly_once() {
    let w = world("claim-race").await;
    let queue = create_queue(&w.app, &w.owner, w.ws, json!({ "name": "q" })).await;
    let due = Utc::now() - Duration::minutes(1);
    let created: Vec<Uuid> = futures_util::stream::iter(0..200)
        .map(|i| {
            let w = &w;
            async move {
                let at = due - Duration::milliseconds(i);
                w.run_id(json!({ "workQueueName": "q", "state": scheduled_at(at) }))
                    .await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(created.len(), 200);

    let claimers = (0..8).map(|_| {
        let w = &w;
        async move {
            let mut mine = Vec::new();
            loop {
                let got = claim(&w.app, &w.owner, queue, 7, None).await;
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got);
            }
        }
    });
    let claimed: Vec<Uuid> = futures_util::future::join_all(claimers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let unique: HashSet<Uuid> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 200, "no run handed out twice");
    assert_eq!(unique, created.iter().copied().collect::<HashSet<_>>());

    // Every run went SCHEDULED -> PENDING exactly once.
    let page = w
        .query(
            "query($ws: UUID!) { workspace(id: $ws) {
                pending: flowRuns(first: 200, filter: { stateTypes: [PENDING] }) {
                    totalCount nodes { stateHistory { type } } } } }",
            json!({ "ws": w.ws }),
        )
        .await;
    let pending = &page["workspace"]["pending"];
    assert_eq!(pending["totalCount"], 200);
    for node in pending["nodes"].as_array().unwrap() {
        assert_eq!(
            node["stateHistory"],
            json!([{ "type": "SCHEDULED" }, { "type": "PENDING" }])
        );
    }
}

#[tokio::test]
async fn claiming_follows_the_queue_settings() {
    let w = world("claim-rules").await;
    let past = Utc::now() - Duration::minutes(1);
    let due = |queue: &str| json!({ "workQueueName": queue, "state": scheduled_at(past) });

    // Limits of the call.
    let q = create_queue(&w.app, &w.owner, w.ws, json!({ "name": "plain" })).await;
    for limit in [0, 201] {
        assert_bad_input(&try_claim(&w.app, &w.owner, q, limit, None).await, "limit");
    }

    // A paused queue hands out nothing, but is still polled.
    let paused = create_queue(
        &w.app,
        &w.owner,
        w.ws,
        json!({ "name": "paused", "isPaused": true }),
    )
    .await;
    let run = w.run_id(due("paused")).await;
    assert!(claim(&w.app, &w.owner, paused, 10, None).await.is_empty());
    assert_eq!(w.read_run(run).await["state"]["type"], "SCHEDULED");
    let queues = w
        .query(
            "query($ws: UUID!) { workspace(id: $ws) { workQueues { name lastPolledAt } } }",
            json!({ "ws": w.ws }),
        )
        .await;
    let polled = queues["workspace"]["workQueues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "paused")
        .unwrap()["lastPolledAt"]
        .clone();
    assert_near(time_at(&polled), Utc::now(), Duration::seconds(10));

    // The concurrency limit counts the queue's PENDING and RUNNING runs.
    let limited = create_queue(
        &w.app,
        &w.owner,
        w.ws,
        json!({ "name": "limited", "concurrencyLimit": 3 }),
    )
    .await;
    let running = w
        .run_id(json!({ "workQueueName": "limited", "state": state("RUNNING") }))
        .await;
    w.run_id(json!({ "workQueueName": "limited", "state": state("PENDING") }))
        .await;
    // Busy runs elsewhere do not count.
    w.run_id(json!({ "workQueueName": "plain", "state": state("RUNNING") }))
        .await;
    for _ in 0..4 {
        w.run_id(due("limited")).await;
    }
    assert_eq!(claim(&w.app, &w.owner, limited, 10, None).await.len(), 1);
    assert!(claim(&w.app, &w.owner, limited, 10, None).await.is_empty());
    w.set_state(running, state("COMPLETED")).await;
    assert_eq!(claim(&w.app, &w.owner, limited, 10, None).await.len(), 1);

    // Tag filter: a run needs every tag of the queue.
    let tagged = create_queue(
        &w.app,
        &w.owner,
        w.ws,
        json!({ "name": "tagged", "tags": ["gpu", "prod"] }),
    )
    .await;
    let both = w
        .run_id(
            json!({ "workQueueName": "tagged", "tags": ["prod", "x", "gpu"],
            "state": scheduled_at(past) }),
        )
        .await;
    w.run_id(json!({ "workQueueName": "tagged", "tags": ["gpu"], "state": scheduled_at(past) }))
        .await;
    w.run_id(due("tagged")).await;
    assert_eq!(claim(&w.app, &w.owner, tagged, 10, None).await, [both]);

    // Deployment filter.
    let other = create_deployment(
        &w.app,
        &w.owner,
        w.ws,
        json!({ "flowId": w.flow, "name": "other" }),
    )
    .await;
    let by_dep = create_queue(
        &w.app,
        &w.owner,
        w.ws,
        json!({ "name": "by-dep", "deploymentIds": [w.deployment] }),
    )
    .await;
    let mut input = due("by-dep");
    input["deploymentId"] = json!(w.deployment);
    let wanted = w.run_id(input.clone()).await;
    input["deploymentId"] = json!(other);
    w.run_id(input).await;
    w.run_id(due("by-dep")).await;
    assert_eq!(claim(&w.app, &w.owner, by_dep, 10, None).await, [wanted]);

    // The time window: due by scheduledBefore, by default now + 10 s; earliest first.
    let timed = create_queue(&w.app, &w.owner, w.ws, json!({ "name": "timed" })).await;
    let at = |offset: Duration| json!({ "workQueueName": "timed", "state": scheduled_at(Utc::now() + offset) });
    let older = w.run_id(at(Duration::minutes(-3))).await;
    let old = w.run_id(at(Duration::minutes(-1))).await;
    let soon = w.run_id(at(Duration::seconds(5))).await;
    let later = w.run_id(at(Duration::seconds(60))).await;
    w.run_id(at(Duration::hours(1))).await;
    assert_eq!(claim(&w.app, &w.owner, timed, 1, None).await, [older]);
    assert_eq!(claim(&w.app, &w.owner, timed, 10, None).await, [old, soon]);
    let before = Some(Utc::now() + Duration::minutes(2));
    assert_eq!(claim(&w.app, &w.owner, timed, 10, before).await, [later]);

    // Only SCHEDULED runs named Scheduled or Late.
    let named = create_queue(&w.app, &w.owner, w.ws, json!({ "name": "named" })).await;
    let scheduled = w.run_id(due("named")).await;
    let late = w.run_id(due("named")).await;
    assert_eq!(
        w.set_state(late, json!({ "type": "SCHEDULED", "name": "Late" }))
            .await["status"],
        "ACCEPT"
    );
    w.run_id(json!({ "workQueueName": "named", "state": {
        "type": "SCHEDULED", "name": "AwaitingRetry", "scheduledTime": rfc3339(past) } }))
        .await;
    w.run_id(json!({ "workQueueName": "named", "state": state("PENDING") }))
        .await;
    w.run_id(json!({ "workQueueName": "named", "state": state("PAUSED") }))
        .await;
    let got: HashSet<Uuid> = claim(&w.app, &w.owner, named, 10, None)
        .await
        .into_iter()
        .collect();
    assert_eq!(got, HashSet::from([scheduled, late]));
}
