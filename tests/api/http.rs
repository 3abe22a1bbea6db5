//! GraphQL over HTTP: body limits, batches, GET, content types, media types and status codes,
//! GraphiQL, health checks and CORS.
use entity::accounts;
use reqwest::{Method, StatusCode};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{json, Value};

use crate::helpers::*;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const SIGN_UP_DOC: &str = r#"mutation { signUp(input: { email: "csrf@example.com", password: "correct-horse-battery", handle: "csrf", name: "CSRF" }) { token } }"#;

async fn account_count(app: &TestApp) -> u64 {
    accounts::Entity::find().count(&app.db).await.unwrap()
}

async fn body_json(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
    (status, content_type, value)
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = spawn_app_with(|c| c.max_body_bytes = 2 * 1024 * 1024).await;
    let padding = " ".repeat(2 * 1024 * 1024 + 1);
    let response = app
        .client
        .post(app.graphql_url())
        .json(&json!({ "query": format!("{{ __typename {padding}}}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Just under the limit is served.
    let padding = " ".repeat(2 * 1024 * 1024 - 100);
    let response = app
        .client
        .post(app.graphql_url())
        .json(&json!({ "query": format!("{{ __typename {padding}}}") }))
        .send()
        .await
        .unwrap();
    let (status, _, body) = body_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(data(&body)["__typename"], "Query");
}

#[tokio::test]
async fn a_batched_request_is_refused_with_400() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.graphql_url())
        .json(&json!([{ "query": "{ __typename }" }, { "query": SIGN_UP_DOC }]))
        .send()
        .await
        .unwrap();
    let (status, _, body) = body_json(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_code(&body, "BAD_USER_INPUT");
    assert_eq!(account_count(&app).await, 0);
}

#[tokio::test]
async fn a_mutation_over_get_is_refused_with_405_and_changes_nothing() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.graphql_url())
        .query(&[("query", SIGN_UP_DOC)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Hidden among several operations and picked by name: still refused.
    let document = format!(
        "query Q {{ __typename }} {}",
        SIGN_UP_DOC.replacen("mutation", "mutation M", 1)
    );
    let response = app
        .client
        .get(app.graphql_url())
        .query(&[("query", document.as_str()), ("operationName", "M")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Without an operation name the document is ambiguous: an error, not a mutation.
    let response = app
        .client
        .get(app.graphql_url())
        .query(&[("query", document.as_str())])
        .send()
        .await
        .unwrap();
    let (_, _, body) = body_json(response).await;
    assert!(body["errors"].is_array(), "{body:#}");
    assert_eq!(account_count(&app).await, 0);

    // The query in the same document runs over GET.
    let response = app
        .client
        .get(app.graphql_url())
        .query(&[("query", document.as_str()), ("operationName", "Q")])
        .send()
        .await
        .unwrap();
    let (status, content_type, body) = body_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(data(&body)["__typename"], "Query");
    assert_eq!(account_count(&app).await, 0);
}

#[tokio::test]
async fn get_runs_queries_with_variables_and_the_bearer_token() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let response = app
        .client
        .get(app.graphql_url())
        .query(&[
            (
                "query",
                "query($h: String!) { workspace(handle: $h) { id } me { handle } }",
            ),
            ("variables", r#"{"h":"none"}"#),
        ])
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    let (status, _, body) = body_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        data(&body),
        &json!({ "workspace": null, "me": { "handle": "ada" } })
    );
}

#[tokio::test]
async fn text_plain_form_encoded_and_unpreflighted_multipart_posts_are_refused() {
    let app = spawn_app().await;
    let body = json!({ "query": SIGN_UP_DOC }).to_string();
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
    ] {
        let response = app
            .client
            .post(app.graphql_url())
            .header("Content-Type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
    }
    let response = app
        .client
        .post(app.graphql_url())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "no content type"
    );

    // A cross-site HTML form can send multipart without a preflight: it needs a custom header.
    let boundary = "XyZ";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{body}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{}}\r\n--{boundary}--\r\n"
    );
    let response = app
        .client
        .post(app.graphql_url())
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(multipart)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(account_count(&app).await, 0);
}

async fn post_with_accept(app: &TestApp, accept: &str, body: Value) -> (StatusCode, String, Value) {
    let response = app
        .client
        .post(app.graphql_url())
        .header("Accept", accept)
        .json(&body)
        .send()
        .await
        .unwrap();
    body_json(response).await
}

#[tokio::test]
async fn graphql_response_json_gets_that_media_type_and_400_for_documents_that_do_not_run() {
    let app = spawn_app().await;
    let ok = post_with_accept(
        &app,
        GRAPHQL_RESPONSE_JSON,
        json!({ "query": "{ __typename }" }),
    )
    .await;
    assert_eq!(ok.0, StatusCode::OK);
    assert!(ok.1.starts_with(GRAPHQL_RESPONSE_JSON), "{}", ok.1);
    assert_eq!(data(&ok.2)["__typename"], "Query");

    for (what, body) in [
        ("unparsable", json!({ "query": "{ __typename" })),
        ("invalid", json!({ "query": "{ noSuchField }" })),
        (
            "ill-typed variable",
            json!({ "query": "query($h: String!) { workspace(handle: $h) { id } }", "variables": { "h": 42 } }),
        ),
        (
            "malformed UUID variable",
            json!({ "query": "query($id: UUID!) { workspace(id: $id) { id } }", "variables": { "id": "nope" } }),
        ),
        (
            "malformed DateTime variable",
            json!({ "query": "mutation($at: DateTime) { createApiKey(input: { name: \"k\", expiresAt: $at }) { secret } }", "variables": { "at": "yesterday" } }),
        ),
        (
            "null for a required variable",
            json!({ "query": "query($id: UUID!) { workspace(id: $id) { id } }", "variables": { "id": null } }),
        ),
        (
            "missing variable",
            json!({ "query": "query($id: UUID!) { workspace(id: $id) { id } }" }),
        ),
        ("no query", json!({ "variables": {} })),
        ("query not a string", json!({ "query": 7 })),
        (
            "variables not an object",
            json!({ "query": "{ __typename }", "variables": [1] }),
        ),
    ] {
        let (status, content_type, body) =
            post_with_accept(&app, GRAPHQL_RESPONSE_JSON, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body:#}");
        assert!(
            content_type.starts_with(GRAPHQL_RESPONSE_JSON),
            "{what}: {content_type}"
        );
        assert_error_code(&body, "BAD_USER_INPUT");
        assert!(
            body.get("data").is_none_or(Value::is_null),
            "{what}: {body:#}"
        );
    }

    // A document that runs and fails in a field is a 200 with the error.
    let (status, _, body) = post_with_accept(
        &app,
        GRAPHQL_RESPONSE_JSON,
        json!({ "query": "{ me { id } }" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_error_code(&body, "UNAUTHENTICATED");

    // Unparsable JSON.
    let response = app
        .client
        .post(app.graphql_url())
        .header("Accept", GRAPHQL_RESPONSE_JSON)
        .header("Content-Type", "application/json")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn application_json_gets_200_with_the_errors() {
    let app = spawn_app().await;
    for accept in ["application/json", "*/*"] {
        for query in ["{ __typename", "{ noSuchField }"] {
            let (status, content_type, body) =
                post_with_accept(&app, accept, json!({ "query": query })).await;
            assert_eq!(status, StatusCode::OK, "{accept} {query}");
            assert!(
                content_type.starts_with("application/json"),
                "{content_type}"
            );
            assert_error_code(&body, "BAD_USER_INPUT");
        }
    }
    // The preferred type by q-value wins.
    let (_, content_type, _) = post_with_accept(
        &app,
        "application/json;q=0.5, application/graphql-response+json",
        json!({ "query": "{ __typename }" }),
    )
    .await;
    assert!(
        content_type.starts_with(GRAPHQL_RESPONSE_JSON),
        "{content_type}"
    );
    // Nothing we can serve.
    let response = app
        .client
        .post(app.graphql_url())
        .header("Accept", "text/xml")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn get_graphql_from_a_browser_serves_graphiql_with_the_playground_operations() {
    let app =
        spawn_app_with(|c| c.graphiql_assets_url = "https://assets.example.org/static".into())
            .await;
    let response = app
        .client
        .get(app.graphql_url())
        .header(
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("GraphiQL"));
    assert!(
        page.contains("https://assets.example.org/static/graphiql"),
        "the asset base URL is configurable"
    );
    assert!(!page.contains("unpkg.com"));
    for (name, query) in flowcloud::http::graphiql::PLAYGROUND {
        let encoded = serde_json::to_string(query).unwrap();
        let encoded = encoded.trim_matches('"');
        assert!(page.contains(encoded), "the page lacks the {name} tab");
    }
    assert!(page.contains("mutation SignUp"));
}

#[tokio::test]
async fn health_and_readiness_answer_200() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn cors_preflight_allows_any_origin_and_the_authorization_header() {
    let app = spawn_app().await;
    let response = app
        .client
        .request(Method::OPTIONS, app.graphql_url())
        .header("Origin", "https://dashboard.example.org")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert!(allowed.contains("content-type"), "{allowed}");
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");

    // The actual request carries the header too.
    let response = app
        .client
        .post(app.graphql_url())
        .header("Origin", "https://dashboard.example.org")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn cors_origins_are_configurable() {
    let app = spawn_app_with(|c| c.cors_origins = "https://allowed.example.org".into()).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.graphql_url())
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let allowed = preflight("https://allowed.example.org").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://allowed.example.org"
    );
    let refused = preflight("https://evil.example.org").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}
