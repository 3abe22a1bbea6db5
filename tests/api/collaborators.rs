//! Collaborators: invitations, acceptance, expiry, revocation, roles, removal and the limit.
use chrono::{Duration, Utc};
use entity::invitations;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

const INVITE: &str = "mutation($ws: UUID!, $email: String!, $role: WorkspaceRole!) {
    inviteCollaborator(workspaceId: $ws, email: $email, role: $role) {
        id email role status createdAt expiresAt workspace { id handle } } }";
const ACCEPT: &str =
    "mutation($id: UUID!) { acceptInvitation(id: $id) { role joinedAt account { id } } }";
const REVOKE: &str = "mutation($id: UUID!) { revokeInvitation(id: $id) { id status } }";
const SET_ROLE: &str = "mutation($ws: UUID!, $account: UUID!, $role: WorkspaceRole!) {
    setCollaboratorRole(workspaceId: $ws, accountId: $account, role: $role) { role account { id } } }";
const REMOVE: &str = "mutation($ws: UUID!, $account: UUID!) {
    removeCollaborator(workspaceId: $ws, accountId: $account) }";
const MY_INVITATIONS: &str =
    "{ invitations { id email role status workspace { id handle name } } }";
const ROLE_IN: &str = "query($id: UUID!) { workspace(id: $id) { viewerRole } }";

#[tokio::test]
async fn an_invited_account_sees_the_invitation_accepts_it_and_becomes_a_collaborator() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let grace = app.sign_up("grace").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;

    let response = app
        .gql_as(
            &ada.token,
            INVITE,
            json!({ "ws": ws, "email": "  Grace@Example.COM", "role": "EDITOR" }),
        )
        .await;
    let invitation = data(&response)["inviteCollaborator"].clone();
    assert_eq!(invitation["email"], "grace@example.com");
    assert_eq!(invitation["role"], "EDITOR");
    assert_eq!(invitation["status"], "PENDING");
    assert_eq!(uuid_at(&invitation["workspace"]["id"]), ws);
    let created: chrono::DateTime<Utc> = invitation["createdAt"].as_str().unwrap().parse().unwrap();
    let expires: chrono::DateTime<Utc> = invitation["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!((expires - created).num_days(), 7);
    let id = uuid_at(&invitation["id"]);

    // Before accepting, grace sees the invitation (and the workspace's name), not the workspace.
    let pending = app.gql_as(&grace.token, MY_INVITATIONS, json!(null)).await;
    assert_eq!(
        data(&pending)["invitations"],
        json!([{ "id": id, "email": "grace@example.com", "role": "EDITOR", "status": "PENDING",
                 "workspace": { "id": ws, "handle": "ada-prod", "name": "ada-prod" } }])
    );
    let response = app.gql_as(&grace.token, ROLE_IN, json!({ "id": ws })).await;
    assert_eq!(data(&response)["workspace"], json!(null));
    let response = app
        .gql_as(
            &grace.token,
            "{ invitations { workspace { collaborators { role } } } }",
            json!(null),
        )
        .await;
    assert_error_code(&response, "NOT_FOUND");
    // The inviter's own invitations list is for invitations addressed to them.
    let response = app.gql_as(&ada.token, MY_INVITATIONS, json!(null)).await;
    assert_eq!(data(&response)["invitations"], json!([]));

    let response = app.gql_as(&grace.token, ACCEPT, json!({ "id": id })).await;
    let member = &data(&response)["acceptInvitation"];
    assert_eq!(member["role"], "EDITOR");
    assert_eq!(uuid_at(&member["account"]["id"]), grace.id);

    let response = app.gql_as(&grace.token, ROLE_IN, json!({ "id": ws })).await;
    assert_eq!(data(&response)["workspace"]["viewerRole"], "EDITOR");
    let pending = app.gql_as(&grace.token, MY_INVITATIONS, json!(null)).await;
    assert_eq!(data(&pending)["invitations"], json!([]));
    let response = app
        .gql_as(
            &ada.token,
            "query($id: UUID!) { workspace(id: $id) { collaborators { role account { id } } invitations { id status } } }",
            json!({ "id": ws }),
        )
        .await;
    let workspace = &data(&response)["workspace"];
    assert_eq!(
        workspace["collaborators"],
        json!([{ "role": "OWNER", "account": { "id": ada.id } },
               { "role": "EDITOR", "account": { "id": grace.id } }])
    );
    assert_eq!(
        workspace["invitations"],
        json!([{ "id": id, "status": "ACCEPTED" }])
    );

    // Accepting twice, or inviting a member again, is a conflict.
    let response = app.gql_as(&grace.token, ACCEPT, json!({ "id": id })).await;
    assert_error_code(&response, "CONFLICT");
    let response = app
        .gql_as(
            &ada.token,
            INVITE,
            json!({ "ws": ws, "email": grace.email, "role": "VIEWER" }),
        )
        .await;
    assert_error_code(&response, "CONFLICT");
}

#[tokio::test]
async fn an_invitation_for_an_email_without_an_account_can_be_accepted_after_signing_up() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;
    let id = app.invite(&ada, ws, "newcomer@example.com", "VIEWER").await;
    let response = app
        .gql_as(
            &ada.token,
            INVITE,
            json!({ "ws": ws, "email": "NEWCOMER@example.com", "role": "EDITOR" }),
        )
        .await;
    assert_error_code(&response, "CONFLICT");
    let newcomer = app.sign_up("newcomer").await;
    let response = app
        .gql_as(&newcomer.token, ACCEPT, json!({ "id": id }))
        .await;
    assert_eq!(data(&response)["acceptInvitation"]["role"], "VIEWER");
    let response = app
        .gql_as(&newcomer.token, ROLE_IN, json!({ "id": ws }))
        .await;
    assert_eq!(data(&response)["workspace"]["viewerRole"], "VIEWER");
}

#[tokio::test]
async fn only_the_owner_may_invite() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let ed = app.sign_up("ed").await;
    let vi = app.sign_up("vi").await;
    let eve = app.sign_up("eve").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;
    app.add_collaborator(&ada, ws, &ed, "EDITOR").await;
    app.add_collaborator(&ada, ws, &vi, "VIEWER").await;
    let vars = json!({ "ws": ws, "email": "someone@example.com", "role": "VIEWER" });
    assert_error_code(
        &app.gql_as(&ed.token, INVITE, vars.clone()).await,
        "FORBIDDEN",
    );
    assert_error_code(
        &app.gql_as(&vi.token, INVITE, vars.clone()).await,
        "FORBIDDEN",
    );
    assert_error_code(
        &app.gql_as(&eve.token, INVITE, vars.clone()).await,
        "NOT_FOUND",
    );
    assert_error_code(&app.gql(INVITE, vars).await, "UNAUTHENTICATED");
    let response = app
        .gql_as(
            &ada.token,
            INVITE,
            json!({ "ws": ws, "email": "not an email", "role": "VIEWER" }),
        )
        .await;
    assert_bad_input(&response, "email");
    let response = app
        .gql_as(
            &ada.token,
            INVITE,
            json!({ "ws": ws, "email": "x@example.com", "role": "ADMIN" }),
        )
        .await;
    assert_error_code(&response, "BAD_USER_INPUT");
    // None of those made an invitation.
    let response = app
        .gql_as(
            &ada.token,
            "query($id: UUID!) { workspace(id: $id) { invitations { status } } }",
            json!({ "id": ws }),
        )
        .await;
    assert_eq!(
        data(&response)["workspace"]["invitations"],
        json!([{ "status": "ACCEPTED" }, { "status": "ACCEPTED" }])
    );
}

#[tokio::test]
async fn only_the_invited_email_may_accept_an_invitation() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let grace = app.sign_up("grace").await;
    let eve = app.sign_up("eve").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;
    let id = app.invite(&ada, ws, &grace.email, "EDITOR").await;
    // Not even the owner can accept on grace's behalf; to others it does not exist.
    for user in [&eve, &ada] {
        let response = app.gql_as(&user.token, ACCEPT, json!({ "id": id })).await;
        assert_error_code(&response, "NOT_FOUND");
    }
    let unknown = app
        .gql_as(&eve.token, ACCEPT, json!({ "id": Uuid::now_v7() }))
        .await;
    assert_eq!(
        app.gql_as(&eve.token, ACCEPT, json!({ "id": id })).await,
        unknown
    );
    let response = app.gql_as(&eve.token, ROLE_IN, json!({ "id": ws })).await;
    assert_eq!(data(&response)["workspace"], json!(null));
    let pending = app.gql_as(&eve.token, MY_INVITATIONS, json!(null)).await;
    assert_eq!(data(&pending)["invitations"], json!([]));
    assert_error_code(
        &app.gql(ACCEPT, json!({ "id": id })).await,
        "UNAUTHENTICATED",
    );
    // Still acceptable by grace.
    let response = app.gql_as(&grace.token, ACCEPT, json!({ "id": id })).await;
    assert_eq!(data(&response)["acceptInvitation"]["role"], "EDITOR");
}

#[tokio::test]
async fn an_expired_invitation_cannot_be_accepted_and_frees_its_slot() {
    let app = spawn_app_with(|c| c.max_collaborators_per_workspace = 1).await;
    let ada = app.sign_up("ada").await;
    let grace = app.sign_up("grace").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;
    let id = app.invite(&ada, ws, &grace.email, "EDITOR").await;

    // Time travel: the seven days are over.
    invitations::Entity::update_many()
        .set(invitations::ActiveModel {
            expires_at: Set(Utc::now() - Duration::seconds(1)),
            ..Default::default()
        })
        .filter(invitations::Column::Id.eq(id))
        .exec(&app.db)
        .await
        .unwrap();

    let response = app.gql_as(&grace.token, ACCEPT, json!({ "id": id })).await;
    assert!(response["errors"].is_array(), "{response:#}");
    assert!(response["data"].is_null(), "{response:#}");
    let response = app.gql_as(&grace.token, ROLE_IN, json!({ "id": ws })).await;
    assert_eq!(data(&response)["workspace"], json!(null));
    let pending = app.gql_as(&grace.token, MY_INVITATIONS, json!(null)).await;
    assert_eq!(data(&pending)["invitations"], json!([]));
    let response = app
        .gql_as(
            &ada.token,
            "query($id: UUID!) { workspace(id: $id) { invitations { id status } } }",
            json!({ "id": ws }),
        )
        .await;
    assert_eq!(
        data(&response)["workspace"]["invitations"],
        json!([{ "id": id, "status": "EXPIRED" }])
    );
    // It no longer counts against the limit of one: a new invitation may be sent.
    let again = app.invite(&ada, ws, &grace.email, "VIEWER").await;
    let response = app
        .gql_as(&grace.token, ACCEPT, json!({ "id": again }))
        .await;
    assert_eq!(data(&response)["acceptInvitation"]["role"], "VIEWER");
}

#[tokio::test]
async fn a_revoked_invitation_cannot_be_accepted() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let ed = app.sign_up("ed").await;
    let grace = app.sign_up("grace").await;
    let eve = app.sign_up("eve").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;
    app.add_collaborator(&ada, ws, &ed, "EDITOR").await;
    let id = app.invite(&ada, ws, &grace.email, "VIEWER").await;

    assert_error_code(
        &app.gql_as(&ed.token, REVOKE, json!({ "id": id })).await,
        "FORBIDDEN",
    );
    assert_error_code(
        &app.gql_as(&eve.token, REVOKE, json!({ "id": id })).await,
        "NOT_FOUND",
    );
    // The invitee cannot revoke (or see) through this door either.
    assert_error_code(
        &app.gql_as(&grace.token, REVOKE, json!({ "id": id })).await,
        "NOT_FOUND",
    );

    let response = app.gql_as(&ada.token, REVOKE, json!({ "id": id })).await;
    assert_eq!(data(&response)["revokeInvitation"]["status"], "REVOKED");
    let response = app.gql_as(&grace.token, ACCEPT, json!({ "id": id })).await;
    assert!(
        response["errors"].is_array() && response["data"].is_null(),
        "{response:#}"
    );
    let pending = app.gql_as(&grace.token, MY_INVITATIONS, json!(null)).await;
    assert_eq!(data(&pending)["invitations"], json!([]));
    let response = app.gql_as(&grace.token, ROLE_IN, json!({ "id": ws })).await;
    assert_eq!(data(&response)["workspace"], json!(null));
}

#[tokio::test]
async fn the_owner_sets_collaborator_roles_and_nobody_else_can() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let ed = app.sign_up("ed").await;
    let vi = app.sign_up("vi").await;
    let eve = app.sign_up("eve").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;
    app.add_collaborator(&ada, ws, &ed, "EDITOR").await;
    app.add_collaborator(&ada, ws, &vi, "VIEWER").await;

    let response = app
        .gql_as(
            &ada.token,
            SET_ROLE,
            json!({ "ws": ws, "account": ed.id, "role": "VIEWER" }),
        )
        .await;
    assert_eq!(
        data(&response)["setCollaboratorRole"],
        json!({ "role": "VIEWER", "account": { "id": ed.id } })
    );
    let response = app.gql_as(&ed.token, ROLE_IN, json!({ "id": ws })).await;
    assert_eq!(data(&response)["workspace"]["viewerRole"], "VIEWER");

    let response = app
        .gql_as(
            &vi.token,
            SET_ROLE,
            json!({ "ws": ws, "account": vi.id, "role": "EDITOR" }),
        )
        .await;
    assert_error_code(&response, "FORBIDDEN");
    let response = app
        .gql_as(
            &ed.token,
            SET_ROLE,
            json!({ "ws": ws, "account": vi.id, "role": "EDITOR" }),
        )
        .await;
    assert_error_code(&response, "FORBIDDEN");
    let response = app
        .gql_as(
            &eve.token,
            SET_ROLE,
            json!({ "ws": ws, "account": vi.id, "role": "EDITOR" }),
        )
        .await;
    assert_error_code(&response, "NOT_FOUND");
    // Someone who is not a member cannot be given a role.
    let response = app
        .gql_as(
            &ada.token,
            SET_ROLE,
            json!({ "ws": ws, "account": eve.id, "role": "EDITOR" }),
        )
        .await;
    assert_error_code(&response, "NOT_FOUND");
    // The owner stays OWNER.
    let response = app
        .gql_as(
            &ada.token,
            SET_ROLE,
            json!({ "ws": ws, "account": ada.id, "role": "VIEWER" }),
        )
        .await;
    assert_bad_input(&response, "accountId");
    let response = app.gql_as(&vi.token, ROLE_IN, json!({ "id": ws })).await;
    assert_eq!(data(&response)["workspace"]["viewerRole"], "VIEWER");
}

#[tokio::test]
async fn a_removed_collaborator_loses_access_at_once() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let ed = app.sign_up("ed").await;
    let vi = app.sign_up("vi").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;
    app.add_collaborator(&ada, ws, &ed, "EDITOR").await;
    app.add_collaborator(&ada, ws, &vi, "VIEWER").await;

    // Only the owner removes others.
    let response = app
        .gql_as(&vi.token, REMOVE, json!({ "ws": ws, "account": ed.id }))
        .await;
    assert_error_code(&response, "FORBIDDEN");
    let response = app
        .gql_as(&ed.token, REMOVE, json!({ "ws": ws, "account": vi.id }))
        .await;
    assert_error_code(&response, "FORBIDDEN");
    let response = app
        .gql_as(&ada.token, REMOVE, json!({ "ws": ws, "account": ada.id }))
        .await;
    assert_bad_input(&response, "accountId");

    let response = app
        .gql_as(&ada.token, REMOVE, json!({ "ws": ws, "account": ed.id }))
        .await;
    assert_eq!(uuid_at(&data(&response)["removeCollaborator"]), ed.id);
    let response = app.gql_as(&ed.token, ROLE_IN, json!({ "id": ws })).await;
    assert_eq!(data(&response)["workspace"], json!(null));
    let listed = app
        .gql_as(&ed.token, "{ workspaces { id } }", json!(null))
        .await;
    assert_eq!(data(&listed)["workspaces"], json!([]));
    let response = app
        .gql_as(
            &ed.token,
            "mutation($id: UUID!) { updateWorkspace(id: $id, input: { name: \"x\" }) { id } }",
            json!({ "id": ws }),
        )
        .await;
    assert_error_code(&response, "NOT_FOUND");
    let response = app
        .gql_as(&ed.token, REMOVE, json!({ "ws": ws, "account": ed.id }))
        .await;
    assert_error_code(&response, "NOT_FOUND");
    let response = app
        .gql_as(&ada.token, REMOVE, json!({ "ws": ws, "account": ed.id }))
        .await;
    assert_error_code(&response, "NOT_FOUND");

    // A member may leave on their own.
    let response = app
        .gql_as(&vi.token, REMOVE, json!({ "ws": ws, "account": vi.id }))
        .await;
    assert_eq!(uuid_at(&data(&response)["removeCollaborator"]), vi.id);
    let response = app.gql_as(&vi.token, ROLE_IN, json!({ "id": ws })).await;
    assert_eq!(data(&response)["workspace"], json!(null));
    let response = app
        .gql_as(
            &ada.token,
            "query($id: UUID!) { workspace(id: $id) { collaborators { role } } }",
            json!({ "id": ws }),
        )
        .await;
    assert_eq!(
        data(&response)["workspace"]["collaborators"],
        json!([{ "role": "OWNER" }])
    );
}

#[tokio::test]
async fn the_collaborator_limit_counts_pending_invitations() {
    let app = spawn_app().await; // default: 3
    let ada = app.sign_up("ada").await;
    let grace = app.sign_up("grace").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;
    app.add_collaborator(&ada, ws, &grace, "EDITOR").await;
    app.invite(&ada, ws, "two@example.com", "VIEWER").await;
    let third = app.invite(&ada, ws, "three@example.com", "VIEWER").await;
    let response = app
        .gql_as(
            &ada.token,
            INVITE,
            json!({ "ws": ws, "email": "four@example.com", "role": "VIEWER" }),
        )
        .await;
    assert_error_code(&response, "LIMIT_EXCEEDED");

    // Revoking a pending invitation frees its slot.
    data(&app.gql_as(&ada.token, REVOKE, json!({ "id": third })).await);
    let fourth = app.invite(&ada, ws, "four@example.com", "VIEWER").await;
    let response = app
        .gql_as(
            &ada.token,
            INVITE,
            json!({ "ws": ws, "email": "five@example.com", "role": "VIEWER" }),
        )
        .await;
    assert_error_code(&response, "LIMIT_EXCEEDED");
    assert_ne!(fourth, third);

    // Removing a collaborator frees one too.
    data(
        &app.gql_as(&ada.token, REMOVE, json!({ "ws": ws, "account": grace.id }))
            .await,
    );
    app.invite(&ada, ws, "five@example.com", "VIEWER").await;
}
