//! Workspaces: CRUD, handles, the per-account limit, roles and the access rule.
use entity::{invitations, workspace_members};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

const CREATE: &str = "mutation($input: CreateWorkspaceInput!) {
    createWorkspace(input: $input) { id handle name description createdAt viewerRole owner { id } } }";
const UPDATE: &str = "mutation($id: UUID!, $input: UpdateWorkspaceInput!) {
    updateWorkspace(id: $id, input: $input) { id handle name description viewerRole } }";
const DELETE: &str = "mutation($id: UUID!) { deleteWorkspace(id: $id) }";
const BY_ID: &str = "query($id: UUID!) { workspace(id: $id) { id handle name viewerRole } }";
const BY_HANDLE: &str =
    "query($handle: String!) { workspace(handle: $handle) { id handle viewerRole } }";

#[tokio::test]
async fn a_created_workspace_is_owned_listed_and_found_by_id_or_handle() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let response = app
        .gql_as(
            &ada.token,
            CREATE,
            json!({ "input": { "handle": "Ada-Prod", "name": "Production", "description": "Real work" } }),
        )
        .await;
    let created = data(&response)["createWorkspace"].clone();
    assert_eq!(created["handle"], "ada-prod");
    assert_eq!(created["name"], "Production");
    assert_eq!(created["description"], "Real work");
    assert_eq!(created["viewerRole"], "OWNER");
    assert_eq!(uuid_at(&created["owner"]["id"]), ada.id);
    let id = uuid_at(&created["id"]);

    let listed = app
        .gql_as(&ada.token, "{ workspaces { id viewerRole } }", json!(null))
        .await;
    assert_eq!(
        data(&listed)["workspaces"],
        json!([{ "id": id, "viewerRole": "OWNER" }])
    );
    let by_id = app.gql_as(&ada.token, BY_ID, json!({ "id": id })).await;
    assert_eq!(data(&by_id)["workspace"]["handle"], "ada-prod");
    let by_handle = app
        .gql_as(&ada.token, BY_HANDLE, json!({ "handle": "ADA-PROD" }))
        .await;
    assert_eq!(uuid_at(&data(&by_handle)["workspace"]["id"]), id);
    assert_eq!(data(&by_handle)["workspace"]["viewerRole"], "OWNER");
    let missing = app
        .gql_as(&ada.token, BY_HANDLE, json!({ "handle": "nope" }))
        .await;
    assert_eq!(data(&missing)["workspace"], json!(null));
    let response = app
        .gql_as(&ada.token, "{ workspace { id } }", json!(null))
        .await;
    assert_error_code(&response, "BAD_USER_INPUT");

    // The owner is its first collaborator.
    let members = app
        .gql_as(
            &ada.token,
            "query($id: UUID!) { workspace(id: $id) { collaborators { role account { id } } invitations { id } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data(&members)["workspace"],
        json!({ "collaborators": [{ "role": "OWNER", "account": { "id": ada.id } }], "invitations": [] })
    );
}

#[tokio::test]
async fn update_workspace_changes_only_the_fields_given_and_null_clears_the_description() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let id = app.create_workspace(&ada, "ada-prod").await;
    let response = app
        .gql_as(
            &ada.token,
            UPDATE,
            json!({ "id": id, "input": { "name": "Prod", "description": "Main" } }),
        )
        .await;
    let updated = &data(&response)["updateWorkspace"];
    assert_eq!(updated["handle"], "ada-prod");
    assert_eq!(updated["name"], "Prod");
    assert_eq!(updated["description"], "Main");
    assert_eq!(updated["viewerRole"], "OWNER");

    let response = app
        .gql_as(
            &ada.token,
            UPDATE,
            json!({ "id": id, "input": { "handle": "ada-main" } }),
        )
        .await;
    let updated = &data(&response)["updateWorkspace"];
    assert_eq!(updated["handle"], "ada-main");
    assert_eq!(updated["description"], "Main");

    let response = app
        .gql_as(
            &ada.token,
            UPDATE,
            json!({ "id": id, "input": { "description": null } }),
        )
        .await;
    let updated = &data(&response)["updateWorkspace"];
    assert_eq!(updated["description"], json!(null));
    assert_eq!(updated["name"], "Prod");

    let long = "d".repeat(2001);
    for (input, field) in [
        (json!({ "handle": "bad handle" }), "handle"),
        (json!({ "name": "" }), "name"),
        (json!({ "description": long }), "description"),
    ] {
        let response = app
            .gql_as(&ada.token, UPDATE, json!({ "id": id, "input": input }))
            .await;
        assert_bad_input(&response, field);
    }
}

#[tokio::test]
async fn workspace_handles_are_unique_across_the_server_and_validated() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let grace = app.sign_up("grace").await;
    app.create_workspace(&ada, "shared-name").await;
    let response = app
        .gql_as(
            &grace.token,
            CREATE,
            json!({ "input": { "handle": "SHARED-name", "name": "Mine" } }),
        )
        .await;
    assert_error_code(&response, "CONFLICT");
    let graces = app.create_workspace(&grace, "grace-ws").await;
    let response = app
        .gql_as(
            &grace.token,
            UPDATE,
            json!({ "id": graces, "input": { "handle": "shared-name" } }),
        )
        .await;
    assert_error_code(&response, "CONFLICT");
    // Renaming to its own handle is fine.
    let response = app
        .gql_as(
            &grace.token,
            UPDATE,
            json!({ "id": graces, "input": { "handle": "grace-ws" } }),
        )
        .await;
    data(&response);

    let stranger = app.sign_up("stranger").await;
    for (input, field) in [
        (json!({ "handle": "x", "name": "X" }), "handle"),
        (json!({ "handle": "has/slash", "name": "X" }), "handle"),
        (json!({ "handle": "ok-handle", "name": "  " }), "name"),
        (
            json!({ "handle": "ok-handle", "name": "X", "description": "d".repeat(2001) }),
            "description",
        ),
    ] {
        let response = app
            .gql_as(&stranger.token, CREATE, json!({ "input": input }))
            .await;
        assert_bad_input(&response, field);
    }
    let response = app
        .gql(
            CREATE,
            json!({ "input": { "handle": "anon", "name": "Anon" } }),
        )
        .await;
    assert_error_code(&response, "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_account_may_own_one_workspace_by_default() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    app.create_workspace(&ada, "first").await;
    let response = app
        .gql_as(
            &ada.token,
            CREATE,
            json!({ "input": { "handle": "second", "name": "Second" } }),
        )
        .await;
    assert_error_code(&response, "LIMIT_EXCEEDED");
    assert!(response["data"].is_null());
    // Nothing was created.
    let by_handle = app
        .gql_as(&ada.token, BY_HANDLE, json!({ "handle": "second" }))
        .await;
    assert_eq!(data(&by_handle)["workspace"], json!(null));
}

#[tokio::test]
async fn the_workspace_limit_is_configurable_and_collaborating_does_not_count() {
    let app = spawn_app_with(|c| c.max_workspaces_per_account = 2).await;
    let ada = app.sign_up("ada").await;
    let grace = app.sign_up("grace").await;
    let graces = app.create_workspace(&grace, "grace-ws").await;
    app.add_collaborator(&grace, graces, &ada, "EDITOR").await;
    app.create_workspace(&ada, "one").await;
    app.create_workspace(&ada, "two").await;
    let response = app
        .gql_as(
            &ada.token,
            CREATE,
            json!({ "input": { "handle": "three", "name": "Three" } }),
        )
        .await;
    assert_error_code(&response, "LIMIT_EXCEEDED");
    let listed = app
        .gql_as(
            &ada.token,
            "{ workspaces { handle viewerRole } }",
            json!(null),
        )
        .await;
    let mut roles: Vec<String> = data(&listed)["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            format!(
                "{}:{}",
                w["handle"].as_str().unwrap(),
                w["viewerRole"].as_str().unwrap()
            )
        })
        .collect();
    roles.sort();
    assert_eq!(roles, ["grace-ws:EDITOR", "one:OWNER", "two:OWNER"]);
}

#[tokio::test]
async fn a_stranger_sees_null_and_gets_not_found_exactly_as_for_a_missing_workspace() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let eve = app.sign_up("eve").await;
    let id = app.create_workspace(&ada, "ada-prod").await;
    let missing = Uuid::now_v7();

    assert_eq!(
        data(&app.gql_as(&eve.token, BY_ID, json!({ "id": id })).await)["workspace"],
        json!(null)
    );
    let by_handle = app
        .gql_as(&eve.token, BY_HANDLE, json!({ "handle": "ada-prod" }))
        .await;
    assert_eq!(data(&by_handle)["workspace"], json!(null));
    let listed = app
        .gql_as(&eve.token, "{ workspaces { id } }", json!(null))
        .await;
    assert_eq!(data(&listed)["workspaces"], json!([]));

    let operations = [
        (UPDATE, json!({ "input": { "name": "Mine now" } })),
        (DELETE, json!({})),
        (
            "mutation($id: UUID!) { inviteCollaborator(workspaceId: $id, email: \"eve2@example.com\", role: VIEWER) { id } }",
            json!({}),
        ),
        (
            "mutation($id: UUID!, $account: UUID!) { setCollaboratorRole(workspaceId: $id, accountId: $account, role: VIEWER) { role } }",
            json!({ "account": ada.id }),
        ),
        (
            "mutation($id: UUID!, $account: UUID!) { removeCollaborator(workspaceId: $id, accountId: $account) }",
            json!({ "account": ada.id }),
        ),
    ];
    for (operation, extra) in operations {
        let mut existing = extra.clone();
        existing["id"] = json!(id);
        let mut absent = extra;
        absent["id"] = json!(missing);
        let on_existing = app.gql_as(&eve.token, operation, existing).await;
        let on_absent = app.gql_as(&eve.token, operation, absent).await;
        assert_error_code(&on_existing, "NOT_FOUND");
        // Same answer: the workspace's existence is not revealed.
        assert_eq!(on_existing, on_absent, "{operation}");
    }
    // Untouched.
    let by_id = app.gql_as(&ada.token, BY_ID, json!({ "id": id })).await;
    assert_eq!(data(&by_id)["workspace"]["name"], "ada-prod");
}

#[tokio::test]
async fn editors_and_viewers_see_their_role_and_cannot_administer_the_workspace() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let ed = app.sign_up("ed").await;
    let vi = app.sign_up("vi").await;
    let id = app.create_workspace(&ada, "ada-prod").await;
    app.add_collaborator(&ada, id, &ed, "EDITOR").await;
    app.add_collaborator(&ada, id, &vi, "VIEWER").await;

    for (user, role) in [(&ed, "EDITOR"), (&vi, "VIEWER")] {
        let response = app.gql_as(&user.token, BY_ID, json!({ "id": id })).await;
        assert_eq!(data(&response)["workspace"]["viewerRole"], role);
        let listed = app
            .gql_as(&user.token, "{ workspaces { id viewerRole } }", json!(null))
            .await;
        assert_eq!(
            data(&listed)["workspaces"],
            json!([{ "id": id, "viewerRole": role }])
        );
        // Members may read the collaborators, but invitations are for the OWNER.
        let response = app
            .gql_as(
                &user.token,
                "query($id: UUID!) { workspace(id: $id) { collaborators { role } } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(
            data(&response)["workspace"]["collaborators"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        let response = app
            .gql_as(
                &user.token,
                "query($id: UUID!) { workspace(id: $id) { invitations { id } } }",
                json!({ "id": id }),
            )
            .await;
        assert_error_code(&response, "FORBIDDEN");

        let response = app
            .gql_as(
                &user.token,
                UPDATE,
                json!({ "id": id, "input": { "name": "Taken over" } }),
            )
            .await;
        assert_error_code(&response, "FORBIDDEN");
        let response = app.gql_as(&user.token, DELETE, json!({ "id": id })).await;
        assert_error_code(&response, "FORBIDDEN");
    }
    let response = app.gql_as(&ada.token, BY_ID, json!({ "id": id })).await;
    assert_eq!(data(&response)["workspace"]["name"], "ada-prod");
}

#[tokio::test]
async fn deleting_a_workspace_removes_its_members_and_invitations() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let ed = app.sign_up("ed").await;
    let invitee = app.sign_up("invitee").await;
    let id = app.create_workspace(&ada, "ada-prod").await;
    app.add_collaborator(&ada, id, &ed, "EDITOR").await;
    app.invite(&ada, id, &invitee.email, "VIEWER").await;

    let response = app.gql_as(&ada.token, DELETE, json!({ "id": id })).await;
    assert_eq!(uuid_at(&data(&response)["deleteWorkspace"]), id);

    for user in [&ada, &ed] {
        let response = app.gql_as(&user.token, BY_ID, json!({ "id": id })).await;
        assert_eq!(data(&response)["workspace"], json!(null));
        let listed = app
            .gql_as(&user.token, "{ workspaces { id } }", json!(null))
            .await;
        assert_eq!(data(&listed)["workspaces"], json!([]));
    }
    let pending = app
        .gql_as(&invitee.token, "{ invitations { id } }", json!(null))
        .await;
    assert_eq!(data(&pending)["invitations"], json!([]));
    let members = workspace_members::Entity::find()
        .filter(workspace_members::Column::WorkspaceId.eq(id))
        .count(&app.db)
        .await
        .unwrap();
    let invitations = invitations::Entity::find()
        .filter(invitations::Column::WorkspaceId.eq(id))
        .count(&app.db)
        .await
        .unwrap();
    assert_eq!((members, invitations), (0, 0));

    // Deleting again: it is gone. And the owner's slot is free again.
    let response = app.gql_as(&ada.token, DELETE, json!({ "id": id })).await;
    assert_error_code(&response, "NOT_FOUND");
    app.create_workspace(&ada, "ada-prod").await;
}
