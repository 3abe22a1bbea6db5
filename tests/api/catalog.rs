//! The orchestration catalog: flows, deployments (with schedules), storage blocks and work
//! queues — create / read / update / delete, validation, roles and workspace isolation.
use sea_orm::EntityTrait;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

const DEPLOYMENT_FIELDS: &str = "id name description isScheduleActive parameters tags entrypoint
    workQueueName createdAt updatedAt flow { id name }
    schedule { cron interval anchorDate rrule timezone }
    storageBlock { id name }";

async fn owner_with_workspace(handle: &str) -> (TestApp, TestUser, Uuid) {
    let app = spawn_app().await;
    let owner = app.sign_up(handle).await;
    let ws = app.create_workspace(&owner, &format!("{handle}-ws")).await;
    (app, owner, ws)
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

/// `createDeployment` with `input` (flowId and name included by the caller).
async fn try_create_deployment(app: &TestApp, user: &TestUser, ws: Uuid, input: Value) -> Value {
    app.gql_as(
        &user.token,
        &format!(
            "mutation($ws: UUID!, $input: CreateDeploymentInput!) {{
                createDeployment(workspaceId: $ws, input: $input) {{ {DEPLOYMENT_FIELDS} }} }}"
        ),
        json!({ "ws": ws, "input": input }),
    )
    .await
}

async fn create_deployment(
    app: &TestApp,
    user: &TestUser,
    ws: Uuid,
    flow: Uuid,
    name: &str,
) -> Uuid {
    let response =
        try_create_deployment(app, user, ws, json!({ "flowId": flow, "name": name })).await;
    uuid_at(&data(&response)["createDeployment"]["id"])
}

async fn update_deployment(app: &TestApp, user: &TestUser, id: Uuid, input: Value) -> Value {
    app.gql_as(
        &user.token,
        &format!(
            "mutation($id: UUID!, $input: UpdateDeploymentInput!) {{
                updateDeployment(id: $id, input: $input) {{ {DEPLOYMENT_FIELDS} }} }}"
        ),
        json!({ "id": id, "input": input }),
    )
    .await
}

async fn try_create_storage(app: &TestApp, user: &TestUser, ws: Uuid, input: Value) -> Value {
    app.gql_as(
        &user.token,
        "mutation($ws: UUID!, $input: StorageBlockInput!) {
            createStorageBlock(workspaceId: $ws, input: $input) { id name kind settings isDefault createdAt } }",
        json!({ "ws": ws, "input": input }),
    )
    .await
}

async fn create_storage(app: &TestApp, user: &TestUser, ws: Uuid, name: &str) -> Uuid {
    let response = try_create_storage(
        app,
        user,
        ws,
        json!({ "name": name, "kind": "local-file-system", "settings": { "basepath": "/tmp" } }),
    )
    .await;
    uuid_at(&data(&response)["createStorageBlock"]["id"])
}

async fn try_create_queue(app: &TestApp, user: &TestUser, ws: Uuid, input: Value) -> Value {
    app.gql_as(
        &user.token,
        "mutation($ws: UUID!, $input: WorkQueueInput!) {
            createWorkQueue(workspaceId: $ws, input: $input) {
                id name description isPaused concurrencyLimit tags deploymentIds lastPolledAt } }",
        json!({ "ws": ws, "input": input }),
    )
    .await
}

async fn workspace_lists(app: &TestApp, user: &TestUser, ws: Uuid) -> Value {
    let response = app
        .gql_as(
            &user.token,
            "query($ws: UUID!) { workspace(id: $ws) {
                flows { totalCount nodes { id name } }
                deployments { totalCount nodes { id name } }
                storageBlocks { id name isDefault }
                workQueues { id name deploymentIds } } }",
            json!({ "ws": ws }),
        )
        .await;
    data(&response)["workspace"].clone()
}

// ------------------------------------------------------------------------------------ flows

#[tokio::test]
async fn creating_an_existing_flow_name_returns_the_existing_flow() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let query = "mutation($ws: UUID!, $input: CreateFlowInput!) {
        createFlow(workspaceId: $ws, input: $input) { id name tags createdAt deployments { id } } }";
    let first = app
        .gql_as(
            &owner.token,
            query,
            json!({ "ws": ws, "input": { "name": " etl ", "tags": ["a", "b", "a"] } }),
        )
        .await;
    let first = &data(&first)["createFlow"];
    assert_eq!(first["name"], "etl");
    assert_eq!(first["tags"], json!(["a", "b"]));
    assert_eq!(first["deployments"], json!([]));
    let again = app
        .gql_as(
            &owner.token,
            query,
            json!({ "ws": ws, "input": { "name": "etl", "tags": ["c"] } }),
        )
        .await;
    let again = &data(&again)["createFlow"];
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["tags"], json!(["a", "b"]));

    let lookup = app
        .gql_as(
            &owner.token,
            "query($ws: UUID!, $id: UUID!) { workspace(id: $ws) {
                byId: flow(id: $id) { name } byName: flow(name: \"etl\") { id }
                missing: flow(name: \"nope\") { id } flows { totalCount } } }",
            json!({ "ws": ws, "id": first["id"] }),
        )
        .await;
    let workspace = &data(&lookup)["workspace"];
    assert_eq!(workspace["byId"]["name"], "etl");
    assert_eq!(workspace["byName"]["id"], first["id"]);
    assert_eq!(workspace["missing"], json!(null));
    assert_eq!(workspace["flows"]["totalCount"], 1);

    let neither = app
        .gql_as(
            &owner.token,
            "query($ws: UUID!) { workspace(id: $ws) { flow { id } } }",
            json!({ "ws": ws }),
        )
        .await;
    assert_bad_input(&neither, "id");
}

#[tokio::test]
async fn concurrent_creations_of_one_flow_name_give_one_flow() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let calls = (0..8).map(|_| create_flow(&app, &owner, ws, "racy"));
    let ids = futures_util::future::join_all(calls).await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(
        workspace_lists(&app, &owner, ws).await["flows"]["totalCount"],
        1
    );
}

#[tokio::test]
async fn flow_input_is_validated_by_field() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let query = "mutation($ws: UUID!, $input: CreateFlowInput!) {
        createFlow(workspaceId: $ws, input: $input) { id } }";
    let blank = app
        .gql_as(
            &owner.token,
            query,
            json!({ "ws": ws, "input": { "name": "  " } }),
        )
        .await;
    assert_bad_input(&blank, "name");
    let long_tag = "x".repeat(101);
    let tags = app
        .gql_as(
            &owner.token,
            query,
            json!({ "ws": ws, "input": { "name": "f", "tags": [long_tag] } }),
        )
        .await;
    assert_bad_input(&tags, "tags");
}

// ------------------------------------------------------------------------------ deployments

#[tokio::test]
async fn a_deployment_is_created_read_updated_and_deleted() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let flow = create_flow(&app, &owner, ws, "etl").await;
    let storage = create_storage(&app, &owner, ws, "local").await;
    let created = try_create_deployment(
        &app,
        &owner,
        ws,
        json!({
            "flowId": flow, "name": "nightly", "description": "every night",
            "schedule": { "cron": "0 2 * * *", "timezone": "Europe/Berlin" },
            "parameters": { "limit": 10, "nested": { "a": [1, 2] } },
            "tags": ["prod"], "entrypoint": "flows/etl.py:main",
            "workQueueName": "default", "storageBlockId": storage
        }),
    )
    .await;
    let created = data(&created)["createDeployment"].clone();
    assert_eq!(created["name"], "nightly");
    assert_eq!(created["description"], "every night");
    assert_eq!(created["isScheduleActive"], true);
    assert_eq!(
        created["parameters"],
        json!({ "limit": 10, "nested": { "a": [1, 2] } })
    );
    assert_eq!(created["tags"], json!(["prod"]));
    assert_eq!(created["entrypoint"], "flows/etl.py:main");
    assert_eq!(created["workQueueName"], "default");
    assert_eq!(created["flow"]["id"], json!(flow));
    assert_eq!(created["storageBlock"]["id"], json!(storage));
    assert_eq!(
        created["schedule"],
        json!({ "cron": "0 2 * * *", "interval": null, "anchorDate": null, "rrule": null, "timezone": "Europe/Berlin" })
    );
    let id = uuid_at(&created["id"]);

    // Read back through Query.deployment and Flow.deployments.
    let read = app
        .gql_as(
            &owner.token,
            &format!(
                "query($id: UUID!, $ws: UUID!) {{ deployment(id: $id) {{ {DEPLOYMENT_FIELDS} }}
                    workspace(id: $ws) {{ flow(name: \"etl\") {{ deployments {{ id name }} }} }} }}"
            ),
            json!({ "id": id, "ws": ws }),
        )
        .await;
    let read = data(&read);
    assert_eq!(read["deployment"], created);
    assert_eq!(
        read["workspace"]["flow"]["deployments"],
        json!([{ "id": id, "name": "nightly" }])
    );

    // A partial update: left out keeps, null clears.
    let updated = update_deployment(
        &app,
        &owner,
        id,
        json!({ "name": "hourly", "description": null, "schedule": { "interval": 3600,
                "anchorDate": "2025-01-01T00:00:00Z" }, "storageBlockId": null, "tags": [] }),
    )
    .await;
    let updated = &data(&updated)["updateDeployment"];
    assert_eq!(updated["name"], "hourly");
    assert_eq!(updated["description"], json!(null));
    assert_eq!(updated["storageBlock"], json!(null));
    assert_eq!(updated["tags"], json!([]));
    assert_eq!(updated["entrypoint"], "flows/etl.py:main");
    assert_eq!(updated["parameters"], created["parameters"]);
    assert_eq!(
        updated["schedule"],
        json!({ "cron": null, "interval": 3600, "anchorDate": "2025-01-01T00:00:00+00:00",
                "rrule": null, "timezone": "UTC" })
    );
    assert_eq!(updated["createdAt"], created["createdAt"]);

    let paused = app
        .gql_as(
            &owner.token,
            "mutation($id: UUID!) { setDeploymentScheduleActive(id: $id, active: false) { isScheduleActive schedule { interval } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data(&paused)["setDeploymentScheduleActive"],
        json!({ "isScheduleActive": false, "schedule": { "interval": 3600 } })
    );

    let cleared = update_deployment(&app, &owner, id, json!({ "schedule": null })).await;
    assert_eq!(data(&cleared)["updateDeployment"]["schedule"], json!(null));

    let deleted = app
        .gql_as(
            &owner.token,
            "mutation($id: UUID!) { deleteDeployment(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data(&deleted)["deleteDeployment"], json!(id));
    let gone = app
        .gql_as(
            &owner.token,
            "query($id: UUID!) { deployment(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data(&gone)["deployment"], json!(null));
    let again = app
        .gql_as(
            &owner.token,
            "mutation($id: UUID!) { deleteDeployment(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_error_code(&again, "NOT_FOUND");
}

#[tokio::test]
async fn deployment_names_are_unique_per_flow() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let etl = create_flow(&app, &owner, ws, "etl").await;
    let other = create_flow(&app, &owner, ws, "other").await;
    create_deployment(&app, &owner, ws, etl, "prod").await;
    let taken =
        try_create_deployment(&app, &owner, ws, json!({ "flowId": etl, "name": "prod" })).await;
    assert_error_code(&taken, "CONFLICT");
    // The same name on another flow is fine.
    create_deployment(&app, &owner, ws, other, "prod").await;
    let dev = create_deployment(&app, &owner, ws, etl, "dev").await;
    let rename = update_deployment(&app, &owner, dev, json!({ "name": "prod" })).await;
    assert_error_code(&rename, "CONFLICT");
}

#[tokio::test]
async fn deployment_input_is_validated_by_field_and_nothing_is_written() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let flow = create_flow(&app, &owner, ws, "etl").await;
    let cases = [
        (json!({ "name": "" }), "name"),
        (json!({ "name": "d", "parameters": [1, 2] }), "parameters"),
        (json!({ "name": "d", "parameters": "text" }), "parameters"),
        (json!({ "name": "d", "schedule": {} }), "schedule"),
        (
            json!({ "name": "d", "schedule": { "cron": "0 * * * *", "interval": 60 } }),
            "schedule",
        ),
        (
            json!({ "name": "d", "schedule": { "interval": 60, "rrule": "FREQ=DAILY" } }),
            "schedule",
        ),
        (
            json!({ "name": "d", "schedule": { "cron": "0 * * * * *" } }),
            "schedule.cron",
        ),
        (
            json!({ "name": "d", "schedule": { "cron": "* * *" } }),
            "schedule.cron",
        ),
        (
            json!({ "name": "d", "schedule": { "cron": "99 * * * *" } }),
            "schedule.cron",
        ),
        (
            json!({ "name": "d", "schedule": { "cron": "@hourly" } }),
            "schedule.cron",
        ),
        (
            json!({ "name": "d", "schedule": { "cron": "0 * * * *", "timezone": "Nowhere/City" } }),
            "schedule.timezone",
        ),
        (
            json!({ "name": "d", "schedule": { "interval": 0 } }),
            "schedule.interval",
        ),
        (
            json!({ "name": "d", "schedule": { "interval": -5 } }),
            "schedule.interval",
        ),
        (
            json!({ "name": "d", "schedule": { "interval": 60, "timezone": "Bad/Zone" } }),
            "schedule.timezone",
        ),
        (
            json!({ "name": "d", "schedule": { "rrule": "FREQ=FORTNIGHTLY" } }),
            "schedule.rrule",
        ),
        (
            json!({ "name": "d", "schedule": { "cron": "0 * * * *", "anchorDate": "2025-01-01T00:00:00Z" } }),
            "schedule.anchorDate",
        ),
    ];
    for (mut input, field) in cases {
        input["flowId"] = json!(flow);
        let response = try_create_deployment(&app, &owner, ws, input.clone()).await;
        assert_bad_input(&response, field);
    }
    assert_eq!(
        workspace_lists(&app, &owner, ws).await["deployments"]["totalCount"],
        0
    );

    // The same rules apply on update, and a rejected update changes nothing.
    let id = create_deployment(&app, &owner, ws, flow, "d").await;
    let response = update_deployment(
        &app,
        &owner,
        id,
        json!({ "description": "x", "schedule": { "cron": "bad" } }),
    )
    .await;
    assert_bad_input(&response, "schedule.cron");
    let read = app
        .gql_as(
            &owner.token,
            "query($id: UUID!) { deployment(id: $id) { description schedule { cron } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data(&read)["deployment"],
        json!({ "description": null, "schedule": null })
    );
}

#[tokio::test]
async fn each_schedule_kind_is_stored_and_read_back() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let flow = create_flow(&app, &owner, ws, "etl").await;
    let cases = [
        (
            json!({ "cron": "*/15 9-17 * * 1-5", "timezone": "America/New_York" }),
            json!({ "cron": "*/15 9-17 * * 1-5", "interval": null, "anchorDate": null, "rrule": null, "timezone": "America/New_York" }),
        ),
        (
            json!({ "cron": "0 0 * * *" }),
            json!({ "cron": "0 0 * * *", "interval": null, "anchorDate": null, "rrule": null, "timezone": "UTC" }),
        ),
        (
            json!({ "interval": 90, "anchorDate": "2030-05-01T12:00:00Z", "timezone": "Asia/Tokyo" }),
            json!({ "cron": null, "interval": 90, "anchorDate": "2030-05-01T12:00:00+00:00", "rrule": null, "timezone": "Asia/Tokyo" }),
        ),
        (
            json!({ "rrule": "DTSTART:20250101T090000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO,FR" }),
            json!({ "cron": null, "interval": null, "anchorDate": null,
                    "rrule": "DTSTART:20250101T090000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO,FR", "timezone": "UTC" }),
        ),
    ];
    for (i, (schedule, expected)) in cases.into_iter().enumerate() {
        let response = try_create_deployment(
            &app,
            &owner,
            ws,
            json!({ "flowId": flow, "name": format!("d{i}"), "schedule": schedule }),
        )
        .await;
        assert_eq!(data(&response)["createDeployment"]["schedule"], expected);
    }

    // An interval without an anchor is anchored at creation; an RRULE without DTSTART gets one.
    let response = try_create_deployment(
        &app,
        &owner,
        ws,
        json!({ "flowId": flow, "name": "anchored", "schedule": { "interval": 60 } }),
    )
    .await;
    assert!(data(&response)["createDeployment"]["schedule"]["anchorDate"].is_string());
    let response = try_create_deployment(
        &app,
        &owner,
        ws,
        json!({ "flowId": flow, "name": "rrule", "isScheduleActive": false,
                "schedule": { "rrule": "FREQ=DAILY", "timezone": "Europe/Berlin" } }),
    )
    .await;
    let created = &data(&response)["createDeployment"];
    assert_eq!(created["isScheduleActive"], false);
    let rule = created["schedule"]["rrule"].as_str().unwrap();
    assert!(rule.starts_with("DTSTART;TZID=Europe/Berlin:"), "{rule}");
    assert!(rule.ends_with("\nRRULE:FREQ=DAILY"), "{rule}");
    assert_eq!(created["schedule"]["timezone"], "Europe/Berlin");
}

// ----------------------------------------------------------------------------------- storage

#[tokio::test]
async fn secret_settings_are_masked_and_kept_when_sent_back() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let response = try_create_storage(
        &app,
        &owner,
        ws,
        json!({ "name": "s3", "kind": "s3", "settings": {
            "bucket": "data", "aws_secret_access_key": "SECRET1", "Password": "pw",
            "session_token": "tok", "credentials": { "api_key": "k1", "region": "eu-west-1" }
        } }),
    )
    .await;
    let created = &data(&response)["createStorageBlock"];
    let masked = json!({
        "bucket": "data", "aws_secret_access_key": "********", "Password": "********",
        "session_token": "********", "credentials": { "api_key": "********", "region": "eu-west-1" }
    });
    assert_eq!(created["settings"], masked);
    assert_eq!(created["isDefault"], false);
    let id = uuid_at(&created["id"]);

    // Send back what was read, changing one secret and one plain value.
    let mut settings = masked.clone();
    settings["Password"] = json!("new-pw");
    settings["bucket"] = json!("data2");
    let response = app
        .gql_as(
            &owner.token,
            "mutation($id: UUID!, $input: StorageBlockInput!) {
                updateStorageBlock(id: $id, input: $input) { name kind settings } }",
            json!({ "id": id, "input": { "name": "s3-main", "kind": "s3", "settings": settings } }),
        )
        .await;
    let updated = &data(&response)["updateStorageBlock"];
    assert_eq!(updated["name"], "s3-main");
    assert_eq!(updated["settings"]["bucket"], "data2");
    assert_eq!(updated["settings"]["Password"], "********");

    // The stored values: kept where "********" came back, replaced where a value came.
    let stored = entity::storage_blocks::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .settings;
    assert_eq!(
        stored,
        json!({
            "bucket": "data2", "aws_secret_access_key": "SECRET1", "Password": "new-pw",
            "session_token": "tok", "credentials": { "api_key": "k1", "region": "eu-west-1" }
        })
    );

    // "********" where nothing is stored is refused, naming the field.
    let response = try_create_storage(
        &app,
        &owner,
        ws,
        json!({ "name": "other", "kind": "gcs", "settings": { "token": "********" } }),
    )
    .await;
    assert_bad_input(&response, "settings.token");
    let response = try_create_storage(
        &app,
        &owner,
        ws,
        json!({ "name": "other", "kind": "gcs", "settings": ["not", "an", "object"] }),
    )
    .await;
    assert_bad_input(&response, "settings");
    let response = try_create_storage(
        &app,
        &owner,
        ws,
        json!({ "name": "s3-main", "kind": "gcs", "settings": {} }),
    )
    .await;
    assert_error_code(&response, "CONFLICT");
}

#[tokio::test]
async fn a_workspace_has_at_most_one_default_storage_block() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let default_of = |ws| {
        let app = &app;
        let owner = &owner;
        async move {
            let lists = workspace_lists(app, owner, ws).await;
            lists["storageBlocks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["isDefault"] == true)
                .map(|b| b["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let a = try_create_storage(
        &app,
        &owner,
        ws,
        json!({ "name": "a", "kind": "local", "settings": {}, "isDefault": true }),
    )
    .await;
    let a = uuid_at(&data(&a)["createStorageBlock"]["id"]);
    assert_eq!(default_of(ws).await, ["a"]);
    let b = try_create_storage(
        &app,
        &owner,
        ws,
        json!({ "name": "b", "kind": "local", "settings": {}, "isDefault": true }),
    )
    .await;
    assert_eq!(data(&b)["createStorageBlock"]["isDefault"], true);
    assert_eq!(default_of(ws).await, ["b"]);
    let update = "mutation($id: UUID!, $input: StorageBlockInput!) { updateStorageBlock(id: $id, input: $input) { isDefault } }";
    let response = app
        .gql_as(&owner.token, update, json!({ "id": a, "input": { "name": "a", "kind": "local", "settings": {}, "isDefault": true } }))
        .await;
    assert_eq!(data(&response)["updateStorageBlock"]["isDefault"], true);
    assert_eq!(default_of(ws).await, ["a"]);
    // Left out on update: unchanged.
    let response = app
        .gql_as(
            &owner.token,
            update,
            json!({ "id": a, "input": { "name": "a", "kind": "local", "settings": { "x": 1 } } }),
        )
        .await;
    assert_eq!(data(&response)["updateStorageBlock"]["isDefault"], true);

    let deleted = app
        .gql_as(
            &owner.token,
            "mutation($id: UUID!) { deleteStorageBlock(id: $id) }",
            json!({ "id": a }),
        )
        .await;
    assert_eq!(data(&deleted)["deleteStorageBlock"], json!(a));
    assert!(default_of(ws).await.is_empty());
}

#[tokio::test]
async fn deleting_a_storage_block_leaves_its_deployments_without_storage() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let flow = create_flow(&app, &owner, ws, "etl").await;
    let storage = create_storage(&app, &owner, ws, "local").await;
    let response = try_create_deployment(
        &app,
        &owner,
        ws,
        json!({ "flowId": flow, "name": "d", "storageBlockId": storage }),
    )
    .await;
    let id = uuid_at(&data(&response)["createDeployment"]["id"]);
    let deleted = app
        .gql_as(
            &owner.token,
            "mutation($id: UUID!) { deleteStorageBlock(id: $id) }",
            json!({ "id": storage }),
        )
        .await;
    data(&deleted);
    let read = app
        .gql_as(
            &owner.token,
            "query($id: UUID!) { deployment(id: $id) { storageBlock { id } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data(&read)["deployment"]["storageBlock"], json!(null));
}

// ------------------------------------------------------------------------------- work queues

#[tokio::test]
async fn a_work_queue_is_created_updated_and_deleted() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let flow = create_flow(&app, &owner, ws, "etl").await;
    let deployment = create_deployment(&app, &owner, ws, flow, "prod").await;
    let response = try_create_queue(
        &app,
        &owner,
        ws,
        json!({ "name": "gpu", "description": "big boxes", "concurrencyLimit": 2,
                "tags": ["gpu"], "deploymentIds": [deployment, deployment] }),
    )
    .await;
    let queue = data(&response)["createWorkQueue"].clone();
    assert_eq!(
        queue,
        json!({ "id": queue["id"], "name": "gpu", "description": "big boxes", "isPaused": false,
                "concurrencyLimit": 2, "tags": ["gpu"], "deploymentIds": [deployment],
                "lastPolledAt": null })
    );
    let id = uuid_at(&queue["id"]);

    let update = "mutation($id: UUID!, $input: WorkQueueInput!) {
        updateWorkQueue(id: $id, input: $input) { name description isPaused concurrencyLimit tags deploymentIds } }";
    let response = app
        .gql_as(&owner.token, update, json!({ "id": id, "input": { "name": "gpu-2", "isPaused": true, "concurrencyLimit": null } }))
        .await;
    assert_eq!(
        data(&response)["updateWorkQueue"],
        json!({ "name": "gpu-2", "description": "big boxes", "isPaused": true,
                "concurrencyLimit": null, "tags": ["gpu"], "deploymentIds": [deployment] })
    );
    let response = app
        .gql_as(
            &owner.token,
            update,
            json!({ "id": id, "input": { "name": "gpu-2", "concurrencyLimit": -1 } }),
        )
        .await;
    assert_bad_input(&response, "concurrencyLimit");
    let response = app
        .gql_as(&owner.token, update, json!({ "id": id, "input": { "name": "gpu-2", "concurrencyLimit": 0, "description": null } }))
        .await;
    assert_eq!(data(&response)["updateWorkQueue"]["concurrencyLimit"], 0);
    assert_eq!(
        data(&response)["updateWorkQueue"]["description"],
        json!(null)
    );

    let duplicate = try_create_queue(&app, &owner, ws, json!({ "name": "gpu-2" })).await;
    assert_error_code(&duplicate, "CONFLICT");
    let blank = try_create_queue(&app, &owner, ws, json!({ "name": " " })).await;
    assert_bad_input(&blank, "name");
    let unknown = try_create_queue(
        &app,
        &owner,
        ws,
        json!({ "name": "x", "deploymentIds": [Uuid::new_v4()] }),
    )
    .await;
    assert_error_code(&unknown, "NOT_FOUND");

    // Deleting a deployment drops it from the queue's filter.
    let deleted = app
        .gql_as(
            &owner.token,
            "mutation($id: UUID!) { deleteDeployment(id: $id) }",
            json!({ "id": deployment }),
        )
        .await;
    data(&deleted);
    let lists = workspace_lists(&app, &owner, ws).await;
    assert_eq!(
        lists["workQueues"],
        json!([{ "id": id, "name": "gpu-2", "deploymentIds": [] }])
    );

    let deleted = app
        .gql_as(
            &owner.token,
            "mutation($id: UUID!) { deleteWorkQueue(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data(&deleted)["deleteWorkQueue"], json!(id));
    assert_eq!(
        workspace_lists(&app, &owner, ws).await["workQueues"],
        json!([])
    );
}

// ------------------------------------------------------------------------ roles and isolation

struct Catalog {
    flow: Uuid,
    deployment: Uuid,
    storage: Uuid,
    queue: Uuid,
}

async fn fill_catalog(app: &TestApp, owner: &TestUser, ws: Uuid) -> Catalog {
    let flow = create_flow(app, owner, ws, "etl").await;
    let deployment = create_deployment(app, owner, ws, flow, "prod").await;
    let storage = create_storage(app, owner, ws, "local").await;
    let response = try_create_queue(app, owner, ws, json!({ "name": "q" })).await;
    let queue = uuid_at(&data(&response)["createWorkQueue"]["id"]);
    Catalog {
        flow,
        deployment,
        storage,
        queue,
    }
}

/// Every catalog mutation, aimed at `ws` and the objects of `c`.
fn writes(ws: Uuid, c: &Catalog) -> Vec<(&'static str, Value)> {
    vec![
        ("mutation($ws: UUID!) { createFlow(workspaceId: $ws, input: { name: \"new\" }) { id } }", json!({ "ws": ws })),
        ("mutation($ws: UUID!, $flow: UUID!) { createDeployment(workspaceId: $ws, input: { flowId: $flow, name: \"new\" }) { id } }", json!({ "ws": ws, "flow": c.flow })),
        ("mutation($id: UUID!) { updateDeployment(id: $id, input: { description: \"x\" }) { id } }", json!({ "id": c.deployment })),
        ("mutation($id: UUID!) { setDeploymentScheduleActive(id: $id, active: false) { id } }", json!({ "id": c.deployment })),
        ("mutation($id: UUID!) { deleteDeployment(id: $id) }", json!({ "id": c.deployment })),
        ("mutation($ws: UUID!) { createStorageBlock(workspaceId: $ws, input: { name: \"n\", kind: \"k\", settings: {} }) { id } }", json!({ "ws": ws })),
        ("mutation($id: UUID!) { updateStorageBlock(id: $id, input: { name: \"n2\", kind: \"k\", settings: {} }) { id } }", json!({ "id": c.storage })),
        ("mutation($id: UUID!) { deleteStorageBlock(id: $id) }", json!({ "id": c.storage })),
        ("mutation($ws: UUID!) { createWorkQueue(workspaceId: $ws, input: { name: \"n\" }) { id } }", json!({ "ws": ws })),
        ("mutation($id: UUID!) { updateWorkQueue(id: $id, input: { name: \"n2\" }) { id } }", json!({ "id": c.queue })),
        ("mutation($id: UUID!) { deleteWorkQueue(id: $id) }", json!({ "id": c.queue })),
    ]
}

#[tokio::test]
async fn viewers_read_the_catalog_but_cannot_change_it() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let catalog = fill_catalog(&app, &owner, ws).await;
    let viewer = app.sign_up("vic").await;
    app.add_collaborator(&owner, ws, &viewer, "VIEWER").await;

    let lists = workspace_lists(&app, &viewer, ws).await;
    assert_eq!(lists["flows"]["totalCount"], 1);
    assert_eq!(lists["deployments"]["totalCount"], 1);
    assert_eq!(lists["storageBlocks"].as_array().unwrap().len(), 1);
    assert_eq!(lists["workQueues"].as_array().unwrap().len(), 1);
    let read = app
        .gql_as(
            &viewer.token,
            "query($id: UUID!) { deployment(id: $id) { name flow { name } } }",
            json!({ "id": catalog.deployment }),
        )
        .await;
    assert_eq!(
        data(&read)["deployment"],
        json!({ "name": "prod", "flow": { "name": "etl" } })
    );

    for (query, variables) in writes(ws, &catalog) {
        let response = app.gql_as(&viewer.token, query, variables).await;
        assert_error_code(&response, "FORBIDDEN");
    }
    // Nothing changed.
    assert_eq!(workspace_lists(&app, &owner, ws).await, lists);

    // An EDITOR may write.
    let editor = app.sign_up("eddie").await;
    app.add_collaborator(&owner, ws, &editor, "EDITOR").await;
    for (query, variables) in writes(ws, &catalog) {
        let response = app.gql_as(&editor.token, query, variables).await;
        data(&response);
    }
}

#[tokio::test]
async fn strangers_can_neither_see_nor_change_the_catalog() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let catalog = fill_catalog(&app, &owner, ws).await;
    let stranger = app.sign_up("eve").await;
    let before = workspace_lists(&app, &owner, ws).await;
    for (query, variables) in writes(ws, &catalog) {
        let response = app.gql_as(&stranger.token, query, variables).await;
        assert_error_code(&response, "NOT_FOUND");
    }
    let read = app
        .gql_as(
            &stranger.token,
            "query($id: UUID!) { deployment(id: $id) { id } }",
            json!({ "id": catalog.deployment }),
        )
        .await;
    assert_eq!(data(&read)["deployment"], json!(null));
    assert_eq!(workspace_lists(&app, &owner, ws).await, before);
}

#[tokio::test]
async fn ids_from_another_workspace_are_not_found_and_nothing_is_written() {
    let (app, ada, ada_ws) = owner_with_workspace("ada").await;
    let theirs = fill_catalog(&app, &ada, ada_ws).await;
    let bob = app.sign_up("bob").await;
    let bob_ws = app.create_workspace(&bob, "bob-ws").await;
    let bob_flow = create_flow(&app, &bob, bob_ws, "mine").await;
    let bob_deployment = create_deployment(&app, &bob, bob_ws, bob_flow, "mine").await;
    let before = workspace_lists(&app, &bob, bob_ws).await;

    let foreign_flow = try_create_deployment(
        &app,
        &bob,
        bob_ws,
        json!({ "flowId": theirs.flow, "name": "x" }),
    )
    .await;
    assert_error_code(&foreign_flow, "NOT_FOUND");
    let foreign_storage = try_create_deployment(
        &app,
        &bob,
        bob_ws,
        json!({ "flowId": bob_flow, "name": "x", "storageBlockId": theirs.storage }),
    )
    .await;
    assert_error_code(&foreign_storage, "NOT_FOUND");
    let update = update_deployment(
        &app,
        &bob,
        bob_deployment,
        json!({ "storageBlockId": theirs.storage, "description": "x" }),
    )
    .await;
    assert_error_code(&update, "NOT_FOUND");
    let foreign_queue = try_create_queue(
        &app,
        &bob,
        bob_ws,
        json!({ "name": "q", "deploymentIds": [bob_deployment, theirs.deployment] }),
    )
    .await;
    assert_error_code(&foreign_queue, "NOT_FOUND");
    let response = try_create_queue(&app, &bob, bob_ws, json!({ "name": "q" })).await;
    let bob_queue = uuid_at(&data(&response)["createWorkQueue"]["id"]);
    let response = app
        .gql_as(
            &bob.token,
            "mutation($id: UUID!, $ids: [UUID!]) { updateWorkQueue(id: $id, input: { name: \"q\", deploymentIds: $ids }) { id } }",
            json!({ "id": bob_queue, "ids": [theirs.deployment] }),
        )
        .await;
    assert_error_code(&response, "NOT_FOUND");

    let after = workspace_lists(&app, &bob, bob_ws).await;
    assert_eq!(after["flows"], before["flows"]);
    assert_eq!(after["deployments"], before["deployments"]);
    assert_eq!(
        after["workQueues"],
        json!([{ "id": bob_queue, "name": "q", "deploymentIds": [] }])
    );
    let read = app
        .gql_as(
            &bob.token,
            "query($id: UUID!) { deployment(id: $id) { description storageBlock { id } } }",
            json!({ "id": bob_deployment }),
        )
        .await;
    assert_eq!(
        data(&read)["deployment"],
        json!({ "description": null, "storageBlock": null })
    );
    // Bob's workspace field never lists Ada's flow by id.
    let response = app
        .gql_as(
            &bob.token,
            "query($ws: UUID!, $id: UUID!) { workspace(id: $ws) { flow(id: $id) { id } } }",
            json!({ "ws": bob_ws, "id": theirs.flow }),
        )
        .await;
    assert_eq!(data(&response)["workspace"]["flow"], json!(null));
}

// -------------------------------------------------------------------------------- pagination

async fn page(
    app: &TestApp,
    user: &TestUser,
    ws: Uuid,
    field: &str,
    first: Option<i64>,
    after: Option<&str>,
) -> Value {
    app.gql_as(
        &user.token,
        &format!(
            "query($ws: UUID!, $first: Int, $after: String) {{ workspace(id: $ws) {{
                {field}(first: $first, after: $after) {{ totalCount
                    edges {{ cursor node {{ name }} }} nodes {{ name }}
                    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} }} }} }}"
        ),
        json!({ "ws": ws, "first": first, "after": after }),
    )
    .await
}

fn names(connection: &Value) -> Vec<String> {
    connection["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn flows_page_by_name_with_stable_cursors() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    for i in 0..55 {
        create_flow(&app, &owner, ws, &format!("flow-{i:02}")).await;
    }
    let response = page(&app, &owner, ws, "flows", None, None).await;
    let all = &data(&response)["workspace"]["flows"];
    assert_eq!(all["totalCount"], 55);
    assert_eq!(names(all).len(), 50, "first defaults to 50");
    assert_eq!(all["pageInfo"]["hasNextPage"], true);

    let response = page(&app, &owner, ws, "flows", Some(3), None).await;
    let first = data(&response)["workspace"]["flows"].clone();
    assert_eq!(names(&first), ["flow-00", "flow-01", "flow-02"]);
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(first["edges"][2]["cursor"], first["pageInfo"]["endCursor"]);
    // A flow that sorts before the cursor does not shift the next page.
    create_flow(&app, &owner, ws, "aaa").await;
    let cursor = first["pageInfo"]["endCursor"].as_str().unwrap();
    let response = page(&app, &owner, ws, "flows", Some(3), Some(cursor)).await;
    let second = &data(&response)["workspace"]["flows"];
    assert_eq!(names(second), ["flow-03", "flow-04", "flow-05"]);
    assert_eq!(second["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(second["totalCount"], 56);
    let last = page(&app, &owner, ws, "flows", Some(200), Some(cursor)).await;
    let last = &data(&last)["workspace"]["flows"];
    assert_eq!(names(last).len(), 52);
    assert_eq!(last["pageInfo"]["hasNextPage"], false);

    assert_bad_input(
        &page(&app, &owner, ws, "flows", Some(201), None).await,
        "first",
    );
    assert_bad_input(
        &page(&app, &owner, ws, "flows", Some(-1), None).await,
        "first",
    );
    assert_bad_input(
        &page(&app, &owner, ws, "flows", Some(3), Some("garbage!")).await,
        "after",
    );
}

#[tokio::test]
async fn deployments_page_oldest_first_with_stable_cursors() {
    let (app, owner, ws) = owner_with_workspace("ada").await;
    let flow = create_flow(&app, &owner, ws, "etl").await;
    for i in 0..5 {
        create_deployment(&app, &owner, ws, flow, &format!("d{i}")).await;
    }
    let response = page(&app, &owner, ws, "deployments", Some(2), None).await;
    let first = data(&response)["workspace"]["deployments"].clone();
    assert_eq!(names(&first), ["d0", "d1"]);
    assert_eq!(first["totalCount"], 5);
    let cursor = first["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    create_deployment(&app, &owner, ws, flow, "d5").await;
    let response = page(&app, &owner, ws, "deployments", Some(2), Some(&cursor)).await;
    assert_eq!(
        names(&data(&response)["workspace"]["deployments"]),
        ["d2", "d3"]
    );
    let response = page(&app, &owner, ws, "deployments", Some(10), Some(&cursor)).await;
    let rest = &data(&response)["workspace"]["deployments"];
    assert_eq!(names(rest), ["d2", "d3", "d4", "d5"]);
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);
    let empty = page(&app, &owner, ws, "deployments", Some(0), None).await;
    assert_eq!(names(&data(&empty)["workspace"]["deployments"]).len(), 0);
    assert_bad_input(
        &page(&app, &owner, ws, "deployments", Some(500), None).await,
        "first",
    );
}
