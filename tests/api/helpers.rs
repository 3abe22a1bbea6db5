//! zero2prod-style test harness: every test gets its own server on port 0 and its own fresh
//! database — a temporary SQLite file by default, or a new PostgreSQL database when
//! `TEST_DATABASE_URL` (a `postgres://…` URL) is set.
//!
//! The API here is shared with other test modules (and other branches): keep it stable.
#![allow(dead_code)]

use std::sync::Arc;

use flowcloud::state::AppState;
use flowcloud::{Application, Config};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;
use uuid::Uuid;

/// The password every test user signs up with.
pub const PASSWORD: &str = "correct-horse-battery";

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The port the server listens on.
    pub port: u16,
    pub client: reqwest::Client,
    /// A connection of the test's own to the server's database (for time travel and checks).
    pub db: DatabaseConnection,
    /// The configuration the server was built with (its `database_url` included).
    pub config: Config,
    /// The server's own state, for driving background services step by step (`try_tick`).
    pub state: AppState,
    /// Keeps the SQLite file alive for as long as any app built on it.
    temp_dir: Option<Arc<TempDir>>,
    /// For PostgreSQL: the admin URL and the name of the database to drop afterwards.
    pg_cleanup: Option<Arc<PgDatabase>>,
    shutdown: Option<oneshot::Sender<()>>,
}

/// A signed-up account with a session token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub handle: String,
    pub password: String,
    pub token: String,
}

/// Spawns a server with the default test configuration on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns a server on a fresh database, after letting the test adjust the configuration.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let (database_url, temp_dir, pg_cleanup) = fresh_database().await;
    let mut config = Config::for_database(database_url);
    // Background services act on their own clock; tests drive them with `try_tick` instead,
    // and the tests that need the real loops turn them back on.
    config.background_services = false;
    configure(&mut config);
    start(config, temp_dir.map(Arc::new), pg_cleanup.map(Arc::new)).await
}

impl TestApp {
    /// A second server on the *same* database (as after a restart), with the configuration
    /// adjusted by `configure` (its `database_url` is kept).
    pub async fn spawn_sibling_with(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config.clone();
        configure(&mut config);
        config.database_url = self.config.database_url.clone();
        start(config, self.temp_dir.clone(), self.pg_cleanup.clone()).await
    }

    /// Stops serving (in-flight requests finish). The database stays.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn graphql_url(&self) -> String {
        self.url("/graphql")
    }

    /// Runs an operation anonymously. `variables` may be `Value::Null`.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_request(None, query, variables).await
    }

    /// Runs an operation with `Authorization: Bearer <token>` (a session JWT or an API key).
    pub async fn gql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        self.gql_request(Some(token), query, variables).await
    }

    async fn gql_request(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(self.graphql_url())
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("POST /graphql failed");
        let status = response.status();
        let text = response.text().await.expect("reading the response failed");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("response ({status}) is not JSON ({e}): {text}"))
    }

    /// Signs up `handle` with email `<handle>@example.com` and the password [`PASSWORD`].
    pub async fn sign_up(&self, handle: &str) -> TestUser {
        let email = format!("{handle}@example.com");
        let response = self
            .gql(
                "mutation($input: SignUpInput!) { signUp(input: $input) { token account { id } } }",
                json!({ "input": {
                    "email": email, "password": PASSWORD, "handle": handle, "name": handle
                }}),
            )
            .await;
        let payload = &data(&response)["signUp"];
        TestUser {
            id: uuid_at(&payload["account"]["id"]),
            email,
            handle: handle.to_owned(),
            password: PASSWORD.to_owned(),
            token: payload["token"].as_str().expect("token").to_owned(),
        }
    }

    /// Creates a workspace owned by `user` and returns its id.
    pub async fn create_workspace(&self, user: &TestUser, handle: &str) -> Uuid {
        let response = self
            .gql_as(
                &user.token,
                "mutation($input: CreateWorkspaceInput!) { createWorkspace(input: $input) { id } }",
                json!({ "input": { "handle": handle, "name": handle } }),
            )
            .await;
        uuid_at(&data(&response)["createWorkspace"]["id"])
    }

    /// Invites `email` into `workspace_id` as `owner` and returns the invitation id.
    pub async fn invite(
        &self,
        owner: &TestUser,
        workspace_id: Uuid,
        email: &str,
        role: &str,
    ) -> Uuid {
        let response = self
            .gql_as(
                &owner.token,
                "mutation($ws: UUID!, $email: String!, $role: WorkspaceRole!) {
                    inviteCollaborator(workspaceId: $ws, email: $email, role: $role) { id } }",
                json!({ "ws": workspace_id, "email": email, "role": role }),
            )
            .await;
        uuid_at(&data(&response)["inviteCollaborator"]["id"])
    }

    /// Invites `member` with `role` and has them accept: a collaborator in one call.
    pub async fn add_collaborator(
        &self,
        owner: &TestUser,
        workspace_id: Uuid,
        member: &TestUser,
        role: &str,
    ) {
        let invitation = self.invite(owner, workspace_id, &member.email, role).await;
        let response = self
            .gql_as(
                &member.token,
                "mutation($id: UUID!) { acceptInvitation(id: $id) { role } }",
                json!({ "id": invitation }),
            )
            .await;
        assert_eq!(data(&response)["acceptInvitation"]["role"], role);
    }

    /// Runs raw SQL on the test's own connection (write the SQL for both backends).
    pub async fn execute_sql(&self, sql: &str) {
        self.db
            .execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("SQL failed: {sql}: {e}"));
    }

    pub fn is_postgres(&self) -> bool {
        self.config.database_url.starts_with("postgres")
    }

    /// SQL statements this server process has run so far (take it before and after a request).
    pub fn statement_count(&self) -> u64 {
        self.state.db.statement_count()
    }

    /// `SELECT COUNT(*) FROM table [WHERE …]` on the test's own connection.
    pub async fn count_rows(&self, table: &str, filter: &str) -> i64 {
        let sql = if filter.is_empty() {
            format!("SELECT COUNT(*) AS n FROM {table}")
        } else {
            format!("SELECT COUNT(*) AS n FROM {table} WHERE {filter}")
        };
        let row = self
            .db
            .query_one(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                sql.clone(),
            ))
            .await
            .unwrap_or_else(|e| panic!("SQL failed: {sql}: {e}"))
            .unwrap_or_else(|| panic!("no row: {sql}"));
        row.try_get::<i64>("", "n")
            .unwrap_or_else(|e| panic!("no count: {sql}: {e}"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `data` of a response that must have succeeded; panics with the errors otherwise.
pub fn data(response: &Value) -> &Value {
    if let Some(errors) = response.get("errors") {
        panic!("expected no errors, got {errors:#}\nfull response: {response:#}");
    }
    response
        .get("data")
        .unwrap_or_else(|| panic!("response has no data: {response:#}"))
}

/// Asserts that the response failed with `code` in its first error's `extensions.code`.
pub fn assert_error_code(response: &Value, code: &str) {
    let errors = response["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("expected an error {code}, got no errors: {response:#}"));
    assert!(!errors.is_empty(), "expected an error {code}: {response:#}");
    assert_eq!(
        errors[0]["extensions"]["code"], code,
        "expected extensions.code {code}: {response:#}"
    );
}

/// Asserts `BAD_USER_INPUT` naming `field` in `extensions.field`.
pub fn assert_bad_input(response: &Value, field: &str) {
    assert_error_code(response, "BAD_USER_INPUT");
    assert_eq!(
        response["errors"][0]["extensions"]["field"], field,
        "expected extensions.field {field}: {response:#}"
    );
}

/// Parses a UUID out of a JSON string value.
pub fn uuid_at(value: &Value) -> Uuid {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("expected a UUID string, got {value}"));
    Uuid::parse_str(text).unwrap_or_else(|e| panic!("bad UUID {text}: {e}"))
}

async fn start(
    config: Config,
    temp_dir: Option<Arc<TempDir>>,
    pg_cleanup: Option<Arc<PgDatabase>>,
) -> TestApp {
    let app = Application::build(config.clone())
        .await
        .unwrap_or_else(|e| panic!("the application failed to build: {e}"));
    let address = app.address();
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let db = Database::connect(&config.database_url)
        .await
        .expect("the test's own database connection failed");
    TestApp {
        address: format!("http://{address}"),
        port: address.port(),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client"),
        db,
        config,
        state,
        temp_dir,
        pg_cleanup,
        shutdown: Some(tx),
    }
}

/// A database URL nobody else uses, and what keeps it alive / drops it.
async fn fresh_database() -> (String, Option<TempDir>, Option<PgDatabase>) {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.trim().is_empty() => {
            let name = format!("fc_test_{}", Uuid::new_v4().simple());
            let admin = Database::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
            let _ = admin.close().await;
            let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is not a URL");
            url.set_path(&format!("/{name}"));
            (url.to_string(), None, Some(PgDatabase { admin_url, name }))
        }
        _ => {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("flowcloud-test.db");
            (
                format!("sqlite://{}?mode=rwc", path.display()),
                Some(dir),
                None,
            )
        }
    }
}

/// A per-test PostgreSQL database, dropped when the last app using it is gone.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort, on a thread of its own: Drop cannot await on the test's runtime.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin.execute_unprepared(&sql).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// A GraphQL multipart request (the spec every upload client speaks) that uploads `bytes` as
/// `uploadProfileImage(image:)`. Returns the HTTP status and the JSON body.
pub async fn upload_profile_image(
    app: &TestApp,
    token: Option<&str>,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> (reqwest::StatusCode, Value) {
    let boundary = "----flowcloud-test-boundary-7MA4YWxkTrZu0gW";
    let operations = json!({
        "query": "mutation($image: Upload!) { uploadProfileImage(image: $image) { id imageUrl } }",
        "variables": { "image": null }
    });
    let mut body = Vec::new();
    let mut part = |headers: String, content: &[u8]| {
        body.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    };
    part(
        "Content-Disposition: form-data; name=\"operations\"".into(),
        operations.to_string().as_bytes(),
    );
    part(
        "Content-Disposition: form-data; name=\"map\"".into(),
        br#"{"0":["variables.image"]}"#,
    );
    part(
        format!(
            "Content-Disposition: form-data; name=\"0\"; filename=\"{filename}\"\r\nContent-Type: {content_type}"
        ),
        bytes,
    );
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut request = app
        .client
        .post(app.graphql_url())
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("GraphQL-Require-Preflight", "true")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("multipart POST failed");
    let status = response.status();
    let text = response.text().await.expect("reading the response failed");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("response ({status}) is not JSON ({e}): {text}"));
    (status, value)
}
