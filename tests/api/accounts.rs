//! Accounts: sign-up, log-in, profile, profile images, sessions and API keys.
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{Duration as ChronoDuration, Utc};
use entity::{api_keys, settings};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};

use crate::helpers::*;

const ME: &str = "{ me { id email handle name } }";
const SIGN_UP: &str =
    "mutation($input: SignUpInput!) { signUp(input: $input) { token account { id } } }";
const LOG_IN: &str = "mutation($email: String!, $password: String!) {
    logIn(email: $email, password: $password) { token account { id email } } }";
const UPDATE_PROFILE: &str = "mutation($input: UpdateProfileInput!) {
    updateProfile(input: $input) { id handle name } }";
const CREATE_KEY: &str = "mutation($input: CreateApiKeyInput!) {
    createApiKey(input: $input) { secret apiKey { id name createdAt expiresAt lastUsedAt revoked } } }";
const SECRET: &str = "a-known-test-secret-that-is-long-enough-0123456789";

fn sign_up_vars(email: &str, password: &str, handle: &str, name: &str) -> Value {
    json!({ "input": { "email": email, "password": password, "handle": handle, "name": name } })
}

#[tokio::test]
async fn signing_up_returns_a_token_that_identifies_the_new_account() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let response = app
        .gql_as(
            &ada.token,
            "{ me { id email handle name imageUrl createdAt apiKeys { id } } }",
            json!(null),
        )
        .await;
    let me = &data(&response)["me"];
    assert_eq!(uuid_at(&me["id"]), ada.id);
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["handle"], "ada");
    assert_eq!(me["name"], "ada");
    assert_eq!(me["imageUrl"], json!(null));
    assert_eq!(me["apiKeys"], json!([]));
    assert!(
        me["createdAt"].as_str().unwrap().ends_with('Z')
            || me["createdAt"].as_str().unwrap().contains("+00:00")
    );
}

#[tokio::test]
async fn me_without_a_token_is_unauthenticated() {
    let app = spawn_app().await;
    assert_error_code(&app.gql(ME, json!(null)).await, "UNAUTHENTICATED");
    assert_error_code(
        &app.gql("{ workspaces { id } }", json!(null)).await,
        "UNAUTHENTICATED",
    );
    assert_error_code(
        &app.gql("{ invitations { id } }", json!(null)).await,
        "UNAUTHENTICATED",
    );
}

#[tokio::test]
async fn log_in_accepts_the_email_in_any_case_and_returns_a_working_session() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let response = app
        .gql(
            LOG_IN,
            json!({ "email": "  ADA@Example.COM ", "password": PASSWORD }),
        )
        .await;
    let payload = &data(&response)["logIn"];
    assert_eq!(uuid_at(&payload["account"]["id"]), ada.id);
    assert_eq!(payload["account"]["email"], "ada@example.com");
    let token = payload["token"].as_str().unwrap();
    let me = app.gql_as(token, ME, json!(null)).await;
    assert_eq!(uuid_at(&data(&me)["me"]["id"]), ada.id);
}

#[tokio::test]
async fn update_profile_changes_only_the_fields_given() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let grace = app.sign_up("grace").await;

    let response = app
        .gql_as(
            &ada.token,
            UPDATE_PROFILE,
            json!({ "input": { "name": "Ada Lovelace" } }),
        )
        .await;
    assert_eq!(data(&response)["updateProfile"]["name"], "Ada Lovelace");
    assert_eq!(data(&response)["updateProfile"]["handle"], "ada");

    let response = app
        .gql_as(
            &ada.token,
            UPDATE_PROFILE,
            json!({ "input": { "handle": "Countess" } }),
        )
        .await;
    assert_eq!(data(&response)["updateProfile"]["handle"], "countess");
    assert_eq!(data(&response)["updateProfile"]["name"], "Ada Lovelace");

    // Keeping one's own handle is not a conflict; taking another's is.
    let response = app
        .gql_as(
            &ada.token,
            UPDATE_PROFILE,
            json!({ "input": { "handle": "countess" } }),
        )
        .await;
    data(&response);
    let response = app
        .gql_as(
            &ada.token,
            UPDATE_PROFILE,
            json!({ "input": { "handle": "GRACE" } }),
        )
        .await;
    assert_error_code(&response, "CONFLICT");
    let response = app
        .gql_as(
            &grace.token,
            UPDATE_PROFILE,
            json!({ "input": { "handle": "countess" } }),
        )
        .await;
    assert_error_code(&response, "CONFLICT");

    let response = app
        .gql_as(
            &ada.token,
            UPDATE_PROFILE,
            json!({ "input": { "handle": "no spaces" } }),
        )
        .await;
    assert_bad_input(&response, "handle");
    let response = app
        .gql_as(
            &ada.token,
            UPDATE_PROFILE,
            json!({ "input": { "name": "   " } }),
        )
        .await;
    assert_bad_input(&response, "name");
    let response = app
        .gql(UPDATE_PROFILE, json!({ "input": { "name": "Anon" } }))
        .await;
    assert_error_code(&response, "UNAUTHENTICATED");

    let me = app.gql_as(&ada.token, ME, json!(null)).await;
    assert_eq!(data(&me)["me"]["handle"], "countess");
    assert_eq!(data(&me)["me"]["name"], "Ada Lovelace");
}

#[tokio::test]
async fn sign_up_input_rules_answer_bad_user_input_naming_the_field() {
    let app = spawn_app().await;
    let long_name = "n".repeat(101);
    let cases = [
        (
            sign_up_vars("not-an-email", PASSWORD, "ada", "Ada"),
            "email",
        ),
        (sign_up_vars("ada@", PASSWORD, "ada", "Ada"), "email"),
        (
            sign_up_vars("a b@example.com", PASSWORD, "ada", "Ada"),
            "email",
        ),
        (
            sign_up_vars("ada@example.com", "short", "ada", "Ada"),
            "password",
        ),
        (
            sign_up_vars("ada@example.com", "1234567", "ada", "Ada"),
            "password",
        ),
        (
            sign_up_vars("ada@example.com", PASSWORD, "a", "Ada"),
            "handle",
        ),
        (
            sign_up_vars("ada@example.com", PASSWORD, "ada lovelace", "Ada"),
            "handle",
        ),
        (
            sign_up_vars("ada@example.com", PASSWORD, "ada/../x", "Ada"),
            "handle",
        ),
        (
            sign_up_vars("ada@example.com", PASSWORD, "-ada", "Ada"),
            "handle",
        ),
        (
            sign_up_vars("ada@example.com", PASSWORD, &"h".repeat(40), "Ada"),
            "handle",
        ),
        (sign_up_vars("ada@example.com", PASSWORD, "ada", ""), "name"),
        (
            sign_up_vars("ada@example.com", PASSWORD, "ada", &long_name),
            "name",
        ),
    ];
    for (variables, field) in cases {
        let response = app.gql(SIGN_UP, variables.clone()).await;
        assert_bad_input(&response, field);
    }
    // Nothing was created by the refused attempts: the boundary values are accepted.
    let response = app
        .gql(
            SIGN_UP,
            sign_up_vars("ada@example.com", "12345678", "a_-9", &"n".repeat(100)),
        )
        .await;
    data(&response);
}

#[tokio::test]
async fn a_duplicate_email_in_any_case_or_a_duplicate_handle_is_a_conflict() {
    let app = spawn_app().await;
    app.sign_up("ada").await;
    let response = app
        .gql(
            SIGN_UP,
            sign_up_vars("ADA@example.com", PASSWORD, "ada2", "Ada"),
        )
        .await;
    assert_error_code(&response, "CONFLICT");
    let response = app
        .gql(
            SIGN_UP,
            sign_up_vars("other@example.com", PASSWORD, "ADA", "Ada"),
        )
        .await;
    assert_error_code(&response, "CONFLICT");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    app.sign_up("ada").await;
    let wrong_password = app
        .gql(
            LOG_IN,
            json!({ "email": "ada@example.com", "password": "not-the-password" }),
        )
        .await;
    let unknown_email = app
        .gql(
            LOG_IN,
            json!({ "email": "nobody@example.com", "password": "not-the-password" }),
        )
        .await;
    assert_error_code(&wrong_password, "UNAUTHENTICATED");
    assert_eq!(wrong_password, unknown_email);
}

#[tokio::test]
async fn repeated_failed_log_ins_are_rate_limited_and_the_right_password_works_after_the_window() {
    let app = spawn_app_with(|c| {
        c.login_max_failures = 2;
        c.login_throttle_seconds = 1;
    })
    .await;
    app.sign_up("ada").await;
    let wrong = json!({ "email": "ada@example.com", "password": "not-the-password" });
    let right = json!({ "email": "ada@example.com", "password": PASSWORD });
    for _ in 0..2 {
        assert_error_code(&app.gql(LOG_IN, wrong.clone()).await, "UNAUTHENTICATED");
    }
    // Throttled now, even with the right password.
    let response = app.gql(LOG_IN, right.clone()).await;
    assert_error_code(&response, "RATE_LIMITED");
    assert!(
        response["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            >= 1
    );
    // An unknown email is throttled just the same (it does not reveal which emails exist)...
    let unknown = json!({ "email": "nobody@example.com", "password": "x-x-x-x-x" });
    assert_error_code(&app.gql(LOG_IN, unknown).await, "RATE_LIMITED");

    // The one wait in the suite: the throttle window is wall-clock time (1 s here).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = app.gql(LOG_IN, right).await;
    assert!(data(&response)["logIn"]["token"].is_string());
}

#[tokio::test]
async fn failed_log_ins_from_one_address_are_throttled_across_emails() {
    let app = spawn_app_with(|c| c.login_max_failures = 3).await;
    for i in 0..3 {
        let response = app
            .gql(
                LOG_IN,
                json!({ "email": format!("probe{i}@example.com"), "password": "wrong-wrong" }),
            )
            .await;
        assert_error_code(&response, "UNAUTHENTICATED");
    }
    let response = app
        .gql(
            LOG_IN,
            json!({ "email": "probe-next@example.com", "password": "wrong-wrong" }),
        )
        .await;
    assert_error_code(&response, "RATE_LIMITED");
}

fn jwt(secret: &str, algorithm: Algorithm, sub: uuid::Uuid, iat: i64, exp: i64) -> String {
    encode(
        &Header::new(algorithm),
        &json!({ "sub": sub, "iat": iat, "exp": exp }),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn tampered_expired_or_foreign_session_tokens_are_unauthenticated() {
    let app = spawn_app_with(|c| c.jwt_secret = Some(SECRET.into())).await;
    let ada = app.sign_up("ada").await;
    let now = Utc::now().timestamp();

    // Sanity: a token we craft with the server's secret works, so the refusals below are
    // about what was tampered with, not about how we craft tokens.
    let good = jwt(SECRET, Algorithm::HS256, ada.id, now, now + 600);
    assert_eq!(
        uuid_at(&data(&app.gql_as(&good, ME, json!(null)).await)["me"]["id"]),
        ada.id
    );
    // The server's own token has the claims the issue names.
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(ada.token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(uuid_at(&claims["sub"]), ada.id);
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 86_400);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(ada.token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "HS256");

    let expired = jwt(SECRET, Algorithm::HS256, ada.id, now - 7200, now - 10);
    let other_secret = jwt(
        "another-secret-entirely-another-secret-0123",
        Algorithm::HS256,
        ada.id,
        now,
        now + 600,
    );
    let other_algorithm = jwt(SECRET, Algorithm::HS512, ada.id, now, now + 600);
    let encode_part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let payload = encode_part(json!({ "sub": ada.id, "iat": now, "exp": now + 600 }));
    let alg_none = format!(
        "{}.{payload}.",
        encode_part(json!({ "alg": "none", "typ": "JWT" }))
    );
    // A valid header and signature with someone else's payload swapped in.
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_payload =
        encode_part(json!({ "sub": uuid::Uuid::new_v4(), "iat": now, "exp": now + 600 }));
    parts[1] = &forged_payload;
    let swapped_payload = parts.join(".");
    let mut bad_signature = good.clone();
    let last = bad_signature.pop().unwrap();
    bad_signature.push(if last == 'A' { 'B' } else { 'A' });

    for (what, token) in [
        ("expired", expired.as_str()),
        ("another secret", &other_secret),
        ("another algorithm", &other_algorithm),
        ("alg none", &alg_none),
        ("swapped payload", &swapped_payload),
        ("bad signature", &bad_signature),
        ("garbage", "not.a.token"),
        ("not an API key", "fc_nope"),
    ] {
        let response = app.gql_as(token, ME, json!(null)).await;
        assert!(
            response["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED",
            "{what}: {response:#}"
        );
        assert!(response["data"].is_null(), "{what}: {response:#}");
    }
    // A token for an account that does not exist is refused too.
    let ghost = jwt(
        SECRET,
        Algorithm::HS256,
        uuid::Uuid::new_v4(),
        now,
        now + 600,
    );
    assert_error_code(
        &app.gql_as(&ghost, ME, json!(null)).await,
        "UNAUTHENTICATED",
    );
    // Sessions are not looked up per request, so what else such a token can do is checked
    // where it acts: it sees no workspace (not even one that exists), is invited to nothing,
    // and cannot create anything for the missing account.
    let workspace = app.create_workspace(&ada, "ada-ws").await;
    let reads = app
        .gql_as(
            &ghost,
            "query($ws: UUID!) { workspaces { id } invitations { id } workspace(id: $ws) { id } }",
            json!({ "ws": workspace }),
        )
        .await;
    assert_eq!(reads["data"]["workspaces"], json!([]), "{reads:#}");
    assert_eq!(reads["data"]["invitations"], json!([]), "{reads:#}");
    assert_eq!(reads["data"]["workspace"], Value::Null, "{reads:#}");
    for (what, mutation, input) in [
        (
            "createWorkspace",
            "mutation($input: CreateWorkspaceInput!) { createWorkspace(input: $input) { id } }",
            json!({ "handle": "ghost-ws", "name": "Ghost" }),
        ),
        (
            "createApiKey",
            "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }",
            json!({ "name": "ghost key" }),
        ),
    ] {
        let response = app
            .gql_as(&ghost, mutation, json!({ "input": input }))
            .await;
        assert_eq!(
            response["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{what}: {response:#}"
        );
    }
    assert_eq!(app.count_rows("workspaces", "").await, 1);
    assert_eq!(app.count_rows("api_keys", "").await, 0);
}

#[tokio::test]
async fn the_generated_jwt_secret_is_kept_in_the_database_and_survives_a_restart() {
    let mut first = spawn_app().await;
    assert!(first.config.jwt_secret.is_none());
    let ada = first.sign_up("ada").await;
    let stored = settings::Entity::find_by_id("jwt_secret".to_owned())
        .one(&first.db)
        .await
        .unwrap()
        .expect("the generated secret is stored");
    assert!(stored.value.len() >= 32);
    first.stop();

    let second = first.spawn_sibling_with(|_| {}).await;
    let me = second.gql_as(&ada.token, ME, json!(null)).await;
    assert_eq!(uuid_at(&data(&me)["me"]["id"]), ada.id);

    // Another database has another secret: the token means nothing there.
    let elsewhere = spawn_app().await;
    assert_error_code(
        &elsewhere.gql_as(&ada.token, ME, json!(null)).await,
        "UNAUTHENTICATED",
    );
}

#[tokio::test]
async fn an_api_key_works_as_a_bearer_token_and_records_its_last_use() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let response = app
        .gql_as(
            &ada.token,
            CREATE_KEY,
            json!({ "input": { "name": "laptop agent" } }),
        )
        .await;
    let created = &data(&response)["createApiKey"];
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("fc_"), "{secret}");
    assert!(secret.len() >= 40, "{secret}");
    assert_eq!(created["apiKey"]["name"], "laptop agent");
    assert_eq!(created["apiKey"]["lastUsedAt"], json!(null));
    assert_eq!(created["apiKey"]["expiresAt"], json!(null));
    assert_eq!(created["apiKey"]["revoked"], false);
    let key_id = uuid_at(&created["apiKey"]["id"]);

    let me = app.gql_as(&secret, ME, json!(null)).await;
    assert_eq!(uuid_at(&data(&me)["me"]["id"]), ada.id);

    let listed = app
        .gql_as(
            &ada.token,
            "{ me { apiKeys { id name lastUsedAt revoked } } }",
            json!(null),
        )
        .await;
    let keys = data(&listed)["me"]["apiKeys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(uuid_at(&keys[0]["id"]), key_id);
    assert!(keys[0]["lastUsedAt"].is_string(), "{listed:#}");

    // Stored only as a hash.
    let row = api_keys::Entity::find_by_id(key_id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(!row.secret_hash.contains(&secret));
    assert!(!secret.contains(&row.secret_hash));
}

#[tokio::test]
async fn an_api_key_secret_is_shown_once_and_cannot_be_read_back() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let response = app
        .gql_as(&ada.token, CREATE_KEY, json!({ "input": { "name": "ci" } }))
        .await;
    let secret = data(&response)["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // No field of ApiKey carries the secret.
    let response = app
        .gql_as(&ada.token, "{ me { apiKeys { secret } } }", json!(null))
        .await;
    assert_error_code(&response, "BAD_USER_INPUT");
    let introspection = app
        .gql(
            r#"{ __type(name: "ApiKey") { fields { name } } }"#,
            json!(null),
        )
        .await;
    let fields = data(&introspection)["__type"]["fields"].to_string();
    assert!(!fields.contains("secret"), "{fields}");
    let listed = app
        .gql_as(
            &ada.token,
            "{ me { apiKeys { id name createdAt expiresAt lastUsedAt revoked } } }",
            json!(null),
        )
        .await;
    assert!(!listed.to_string().contains(&secret));
}

#[tokio::test]
async fn a_revoked_api_key_stops_working_at_once() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let grace = app.sign_up("grace").await;
    let response = app
        .gql_as(
            &ada.token,
            CREATE_KEY,
            json!({ "input": { "name": "agent" } }),
        )
        .await;
    let secret = data(&response)["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_id = data(&response)["createApiKey"]["apiKey"]["id"].clone();
    data(&app.gql_as(&secret, ME, json!(null)).await);

    let revoke = "mutation($id: UUID!) { revokeApiKey(id: $id) { id revoked } }";
    // Someone else cannot revoke it, nor learn that it exists.
    let response = app
        .gql_as(&grace.token, revoke, json!({ "id": key_id }))
        .await;
    assert_error_code(&response, "NOT_FOUND");
    data(&app.gql_as(&secret, ME, json!(null)).await);

    let response = app
        .gql_as(&ada.token, revoke, json!({ "id": key_id }))
        .await;
    assert_eq!(data(&response)["revokeApiKey"]["revoked"], true);
    assert_error_code(
        &app.gql_as(&secret, ME, json!(null)).await,
        "UNAUTHENTICATED",
    );
    let listed = app
        .gql_as(&ada.token, "{ me { apiKeys { revoked } } }", json!(null))
        .await;
    assert_eq!(data(&listed)["me"]["apiKeys"][0]["revoked"], true);
}

#[tokio::test]
async fn an_expired_api_key_stops_working_at_once() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let in_an_hour = (Utc::now() + ChronoDuration::hours(1)).to_rfc3339();
    let response = app
        .gql_as(
            &ada.token,
            CREATE_KEY,
            json!({ "input": { "name": "short-lived", "expiresAt": in_an_hour } }),
        )
        .await;
    let created = &data(&response)["createApiKey"];
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(created["apiKey"]["expiresAt"].is_string());
    let key_id = uuid_at(&created["apiKey"]["id"]);
    data(&app.gql_as(&secret, ME, json!(null)).await);

    // Time travel: the key expired a second ago.
    api_keys::Entity::update_many()
        .set(api_keys::ActiveModel {
            expires_at: Set(Some(Utc::now() - ChronoDuration::seconds(1))),
            ..Default::default()
        })
        .filter(api_keys::Column::Id.eq(key_id))
        .exec(&app.db)
        .await
        .unwrap();
    assert_error_code(
        &app.gql_as(&secret, ME, json!(null)).await,
        "UNAUTHENTICATED",
    );

    // A key cannot be created already expired.
    let an_hour_ago = (Utc::now() - ChronoDuration::hours(1)).to_rfc3339();
    let response = app
        .gql_as(
            &ada.token,
            CREATE_KEY,
            json!({ "input": { "name": "stale", "expiresAt": an_hour_ago } }),
        )
        .await;
    assert_bad_input(&response, "expiresAt");
    let response = app
        .gql_as(&ada.token, CREATE_KEY, json!({ "input": { "name": " " } }))
        .await;
    assert_bad_input(&response, "name");
    assert_error_code(
        &app.gql(CREATE_KEY, json!({ "input": { "name": "anon" } }))
            .await,
        "UNAUTHENTICATED",
    );
}

fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(len, 0x42);
    bytes
}

#[tokio::test]
async fn profile_images_of_each_accepted_type_are_served_back_with_their_content_type() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let mut webp = b"RIFF\x24\0\0\0WEBPVP8 ".to_vec();
    webp.resize(64, 1);
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    jpeg.resize(64, 2);
    let mut gif = b"GIF89a".to_vec();
    gif.resize(64, 3);
    let cases = [
        // The declared type and name are ignored: the bytes decide.
        ("a.png", "image/png", png(64), "image/png"),
        ("photo.jpg", "application/octet-stream", jpeg, "image/jpeg"),
        ("x.webp", "image/webp", webp, "image/webp"),
        ("anim.gif", "image/png", gif, "image/gif"),
    ];
    let mut previous_url: Option<String> = None;
    for (filename, declared, bytes, expected_type) in cases {
        let (status, response) =
            upload_profile_image(&app, Some(&ada.token), filename, declared, &bytes).await;
        assert_eq!(status, StatusCode::OK, "{response:#}");
        let url = data(&response)["uploadProfileImage"]["imageUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        let served = app.client.get(app.url(&url)).send().await.unwrap();
        assert_eq!(served.status(), StatusCode::OK);
        assert_eq!(served.headers()["content-type"], expected_type);
        assert_eq!(served.bytes().await.unwrap().as_ref(), bytes.as_slice());
        // The previous image is replaced.
        if let Some(previous) = previous_url.replace(url.clone()) {
            assert_ne!(previous, url);
            let old = app.client.get(app.url(&previous)).send().await.unwrap();
            assert_eq!(old.status(), StatusCode::NOT_FOUND);
        }
        let me = app
            .gql_as(&ada.token, "{ me { imageUrl } }", json!(null))
            .await;
        assert_eq!(data(&me)["me"]["imageUrl"], url.as_str());
    }
}

#[tokio::test]
async fn a_profile_image_that_is_not_an_image_or_too_large_is_refused() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let (_, response) = upload_profile_image(
        &app,
        Some(&ada.token),
        "evil.png",
        "image/png",
        b"<svg onload=alert(1)>not an image</svg>",
    )
    .await;
    assert_bad_input(&response, "image");

    // Exactly 1 MiB is fine; one byte more is not.
    let (status, response) = upload_profile_image(
        &app,
        Some(&ada.token),
        "max.png",
        "image/png",
        &png(1024 * 1024),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{response:#}");
    let accepted_url = data(&response)["uploadProfileImage"]["imageUrl"].clone();
    let (status, response) = upload_profile_image(
        &app,
        Some(&ada.token),
        "big.png",
        "image/png",
        &png(1024 * 1024 + 1),
    )
    .await;
    assert!(
        status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::OK,
        "{status}"
    );
    assert_error_code(&response, "BAD_USER_INPUT");
    let (status, response) = upload_profile_image(
        &app,
        Some(&ada.token),
        "huge.png",
        "image/png",
        &png(3 * 1024 * 1024),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_code(&response, "BAD_USER_INPUT");

    // Nothing changed.
    let me = app
        .gql_as(&ada.token, "{ me { imageUrl } }", json!(null))
        .await;
    assert_eq!(data(&me)["me"]["imageUrl"], accepted_url);

    let (_, response) = upload_profile_image(&app, None, "a.png", "image/png", &png(64)).await;
    assert_error_code(&response, "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_unknown_profile_image_is_not_found() {
    let app = spawn_app().await;
    for path in [
        "/profile-images/not-a-uuid",
        &format!("/profile-images/{}", uuid::Uuid::new_v4()),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// A session token is checked by its signature alone: a request that reads nothing else runs
/// no SQL at all (an API key, whose revocation must apply at once, is looked up each time).
#[tokio::test]
async fn a_session_is_checked_without_a_statement() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let before = app.statement_count();
    let response = app.gql_as(&ada.token, "{ __typename }", json!(null)).await;
    assert_eq!(data(&response)["__typename"], "Query");
    assert_eq!(app.statement_count() - before, 0);
    let me = app.gql_as(&ada.token, ME, json!(null)).await;
    assert_eq!(uuid_at(&data(&me)["me"]["id"]), ada.id);
    assert_eq!(
        app.statement_count() - before,
        1,
        "`me` reads the account once"
    );
}
