//! The exported schema file, the playground operations and the command line.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::helpers::*;

#[test]
fn the_schema_file_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/schema.graphql");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let from_code = flowcloud::graphql::sdl();
    assert!(
        on_disk == from_code,
        "schema/schema.graphql is out of date with the code; regenerate it with\n\n    cargo run -- schema > schema/schema.graphql\n"
    );
}

#[test]
fn every_playground_file_is_a_tab_of_graphiql() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playground");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "graphql"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let tabs = flowcloud::http::graphiql::PLAYGROUND;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            tabs.iter().any(|(_, query)| *query == text),
            "{} is not listed in PLAYGROUND in src/http/graphiql.rs",
            file.display()
        );
    }
    assert_eq!(
        tabs.len(),
        files.len(),
        "PLAYGROUND lists something that is not in playground/"
    );
}

/// `createFoo { id }` in a result becomes the variable `fooId` for the operations after it.
fn collect_ids(data: &Value, variables: &mut Map<String, Value>) {
    let Some(fields) = data.as_object() else {
        return;
    };
    for (field, value) in fields {
        if let (Some(rest), Some(id)) = (field.strip_prefix("create"), value.get("id")) {
            let mut name = rest.to_owned();
            if let Some(first) = name.get_mut(0..1) {
                first.make_ascii_lowercase();
            }
            variables.insert(format!("{name}Id"), id.clone());
        }
    }
}

#[tokio::test]
async fn every_playground_operation_runs_in_order_against_a_fresh_server() {
    let app = spawn_app().await;
    let mut token: Option<String> = None;
    let mut variables = Map::new();
    for (name, query) in flowcloud::http::graphiql::PLAYGROUND {
        // Subscriptions run over the websocket (covered by the live tests), not over HTTP.
        if query
            .lines()
            .any(|line| line.trim_start().starts_with("subscription"))
        {
            continue;
        }
        let response = match &token {
            Some(token) => {
                app.gql_as(token, query, Value::Object(variables.clone()))
                    .await
            }
            None => app.gql(query, Value::Object(variables.clone())).await,
        };
        assert!(
            response.get("errors").is_none(),
            "playground operation {name} failed (variables {variables:?}): {response:#}"
        );
        let data = &response["data"];
        for field in ["signUp", "logIn"] {
            if let Some(new_token) = data[field]["token"].as_str() {
                token = Some(new_token.to_owned());
            }
        }
        collect_ids(data, &mut variables);
    }
    assert!(token.is_some(), "the playground signs up first");
}

/// Runs the built binary with a clean environment plus `env`; it must fail fast.
async fn run_cli(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowcloud"));
    command
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display()),
        )
        .env("FLOWCLOUD_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("flowcloud did not stop on a bad configuration")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_bad_configuration_stops_the_binary_with_one_line_naming_the_variable() {
    let cases: BTreeMap<&str, &str> = [
        ("FLOWCLOUD_LATE_AFTER_SECONDS", "-5"),
        ("DATABASE_URL", "mysql://x"),
        ("FLOWCLOUD_MAX_WORKSPACES_PER_ACCOUNT", "many"),
        ("FLOWCLOUD_MAX_COLLABORATORS_PER_WORKSPACE", "-1"),
        ("FLOWCLOUD_LISTEN", "not-an-address"),
        ("FLOWCLOUD_JWT_SECRET", "short"),
    ]
    .into_iter()
    .collect();
    for (variable, value) in cases {
        let (code, stderr) = run_cli(&[(variable, value)]).await;
        assert!(
            code.is_some_and(|c| c != 0),
            "{variable}={value}: exit {code:?}, stderr {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{variable}={value}: expected one line, got:\n{stderr}"
        );
        assert!(lines[0].contains(variable), "{variable}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{variable}={value}: {stderr}");
    }
}

#[tokio::test]
async fn the_schema_command_prints_the_schema_file() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowcloud"))
        .arg("schema")
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        flowcloud::graphql::sdl()
    );
}
