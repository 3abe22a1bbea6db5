//! Every error code from API.md, end to end, and the depth / complexity limits.
use entity::workspace_members;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;

use crate::helpers::*;

/// The introspection query GraphiQL sends (graphql-js 16 `getIntrospectionQuery` with
/// `inputValueDeprecation: true`).
const GRAPHIQL_INTROSPECTION: &str = r#"
    query IntrospectionQuery {
      __schema {
        queryType { name }
        mutationType { name }
        subscriptionType { name }
        types { ...FullType }
        directives {
          name
          description
          locations
          args(includeDeprecated: true) { ...InputValue }
        }
      }
    }
    fragment FullType on __Type {
      kind
      name
      description
      fields(includeDeprecated: true) {
        name
        description
        args(includeDeprecated: true) { ...InputValue }
        type { ...TypeRef }
        isDeprecated
        deprecationReason
      }
      inputFields(includeDeprecated: true) { ...InputValue }
      interfaces { ...TypeRef }
      enumValues(includeDeprecated: true) {
        name
        description
        isDeprecated
        deprecationReason
      }
      possibleTypes { ...TypeRef }
    }
    fragment InputValue on __InputValue {
      name
      description
      type { ...TypeRef }
      defaultValue
      isDeprecated
      deprecationReason
    }
    fragment TypeRef on __Type {
      kind
      name
      ofType {
        kind
        name
        ofType {
          kind
          name
          ofType {
            kind
            name
            ofType {
              kind
              name
              ofType {
                kind
                name
                ofType {
                  kind
                  name
                  ofType {
                    kind
                    name
                    ofType {
                      kind
                      name
                      ofType {
                        kind
                        name
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
"#;

#[tokio::test]
async fn graphiqls_introspection_query_runs_under_the_limits() {
    let app = spawn_app().await;
    let response = app.gql(GRAPHIQL_INTROSPECTION, json!(null)).await;
    let schema = &data(&response)["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    assert_eq!(schema["mutationType"]["name"], "Mutation");
    let types = schema["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Workspace"));
    // With every graphql-js option on (schema description, specifiedByURL, isRepeatable) too.
    let full = GRAPHIQL_INTROSPECTION
        .replacen("__schema {", "__schema {\n description", 1)
        .replacen(
            "      description\n      fields",
            "      description\n      specifiedByURL\n      fields",
            1,
        )
        .replacen(
            "          locations",
            "          locations\n          isRepeatable",
            1,
        );
    let response = app.gql(&full, json!(null)).await;
    data(&response);
}

#[tokio::test]
async fn a_query_nested_too_deep_is_query_too_complex() {
    let app = spawn_app().await;
    let deep = "{__schema{types{fields{type{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{name}}}}}}}}}}}}}}}}}";
    let response = app.gql(deep, json!(null)).await;
    assert_error_code(&response, "QUERY_TOO_COMPLEX");
    assert!(response["data"].is_null(), "{response:#}");
}

#[tokio::test]
async fn a_query_over_the_complexity_limit_is_query_too_complex() {
    let app = spawn_app().await;
    // Each `aN: me { id }` costs 2 (`__typename` is not counted by async-graphql).
    let fields: String = (0..2600).map(|i| format!("a{i}: me {{ id }} ")).collect();
    let response = app.gql(&format!("{{ {fields} }}"), json!(null)).await;
    assert_error_code(&response, "QUERY_TOO_COMPLEX");
    assert!(response["data"].is_null(), "{response:#}");
}

#[tokio::test]
async fn documents_that_do_not_parse_or_validate_are_bad_user_input() {
    let app = spawn_app().await;
    for (what, query, variables) in [
        ("unparsable", "{ me { id }", json!(null)),
        ("unknown field", "{ me { password } }", json!(null)),
        ("unknown argument", "{ workspace(slug: \"x\") { id } }", json!(null)),
        ("wrong literal type", "{ workspace(handle: 42) { id } }", json!(null)),
        ("unknown enum value", "mutation { inviteCollaborator(workspaceId: \"00000000-0000-0000-0000-000000000000\", email: \"a@b.co\", role: GOD) { id } }", json!(null)),
        ("ill-typed variable", "query($h: String) { workspace(handle: $h) { id } }", json!({ "h": [1, 2] })),
        ("missing variable", "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }", json!({ "e": "x@example.com" })),
        ("subscription on an empty root", "subscription { nothing }", json!(null)),
    ] {
        let response = app.gql(query, variables).await;
        assert!(
            response["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT",
            "{what}: {response:#}"
        );
        // Every error carries a code.
        for error in response["errors"].as_array().unwrap() {
            assert!(error["extensions"]["code"].is_string(), "{what}: {response:#}");
        }
    }
}

#[tokio::test]
async fn an_internal_error_reaches_the_client_masked() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;
    // Corrupt the row behind viewerRole: the server cannot make sense of it.
    workspace_members::Entity::update_many()
        .set(workspace_members::ActiveModel {
            role: Set("SUPREME-LEADER".into()),
            ..Default::default()
        })
        .filter(workspace_members::Column::WorkspaceId.eq(ws))
        .exec(&app.db)
        .await
        .unwrap();
    let response = app
        .gql_as(&ada.token, "{ workspaces { id viewerRole } }", json!(null))
        .await;
    assert_error_code(&response, "INTERNAL_SERVER_ERROR");
    let text = response.to_string();
    assert!(!text.contains("SUPREME-LEADER"), "{text}");
    assert_eq!(response["errors"][0]["message"], "internal server error");
}

/// One place that shows each code of API.md arriving at a client (the modules above test
/// each rule in depth).
#[tokio::test]
async fn every_error_code_of_the_api_reaches_the_client() {
    let app = spawn_app_with(|c| c.login_max_failures = 1).await;
    let ada = app.sign_up("ada").await;
    let vi = app.sign_up("vi").await;
    let eve = app.sign_up("eve").await;
    let ws = app.create_workspace(&ada, "ada-prod").await;
    app.add_collaborator(&ada, ws, &vi, "VIEWER").await;
    let update = "mutation($id: UUID!) { updateWorkspace(id: $id, input: { name: \"x\" }) { id } }";
    let create =
        "mutation($h: String!) { createWorkspace(input: { handle: $h, name: \"x\" }) { id } }";

    assert_error_code(
        &app.gql("{ me { id } }", json!(null)).await,
        "UNAUTHENTICATED",
    );
    assert_error_code(
        &app.gql_as(&vi.token, update, json!({ "id": ws })).await,
        "FORBIDDEN",
    );
    assert_error_code(
        &app.gql_as(&eve.token, update, json!({ "id": ws })).await,
        "NOT_FOUND",
    );
    assert_error_code(
        &app.gql_as(&eve.token, create, json!({ "h": "a" })).await,
        "BAD_USER_INPUT",
    );
    assert_error_code(&app.gql("{ me { id }", json!(null)).await, "BAD_USER_INPUT");
    assert_error_code(
        &app.gql_as(&eve.token, create, json!({ "h": "ada-prod" }))
            .await,
        "CONFLICT",
    );
    assert_error_code(
        &app.gql_as(&ada.token, create, json!({ "h": "second" }))
            .await,
        "LIMIT_EXCEEDED",
    );
    let deep = "{__schema{types{fields{type{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{name}}}}}}}}}}}}}}}}}";
    assert_error_code(&app.gql(deep, json!(null)).await, "QUERY_TOO_COMPLEX");
    let log_in =
        "mutation { logIn(email: \"eve@example.com\", password: \"wrong-password\") { token } }";
    assert_error_code(&app.gql(log_in, json!(null)).await, "UNAUTHENTICATED");
    assert_error_code(&app.gql(log_in, json!(null)).await, "RATE_LIMITED");
}
