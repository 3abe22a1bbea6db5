//! GraphQL over HTTP, written around the schema rather than the stock integration so that the
//! unsafe defaults are closed: bounded bodies, no batches, no mutations over GET, no CSRF-able
//! content types, and status codes and media types as the GraphQL-over-HTTP spec asks.
use std::net::SocketAddr;

use async_graphql::http::MultipartOptions;
use async_graphql::parser::types::{BaseType, DocumentOperations, OperationType, Type};
use async_graphql::{ErrorExtensionValues, Request, Response as GqlResponse, Variables};
use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::{graphiql, HttpState};
use crate::auth::viewer::authenticate;
use crate::domain::accounts::MAX_IMAGE_BYTES;
use crate::graphql::context::ClientAddr;
use crate::graphql::loaders::Loaders;

/// An upload request: the file (at most 1 MiB) plus the operation and multipart framing.
const MAX_UPLOAD_BODY_BYTES: usize = MAX_IMAGE_BYTES + 64 * 1024;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const APPLICATION_JSON: &str = "application/json";

/// The media type the client asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResponseKind {
    GraphqlResponseJson,
    Json,
}

impl ResponseKind {
    fn content_type(self) -> &'static str {
        match self {
            Self::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        }
    }
}

/// Picks the response media type from `Accept`, preferring the first listed type we can serve.
/// No `Accept` header means `application/json`.
fn negotiate(headers: &HeaderMap) -> Option<ResponseKind> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(ResponseKind::Json);
    };
    let mut best: Option<(f32, ResponseKind)> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let media = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        let kind = match media.as_str() {
            GRAPHQL_RESPONSE_JSON => ResponseKind::GraphqlResponseJson,
            APPLICATION_JSON | "application/*" | "*/*" => ResponseKind::Json,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, kind));
        }
    }
    best.map(|(_, kind)| kind)
}

fn error_response(status: StatusCode, kind: ResponseKind, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    (
        status,
        [(header::CONTENT_TYPE, kind.content_type())],
        body.to_string(),
    )
        .into_response()
}

fn not_acceptable() -> Response {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        ResponseKind::Json,
        "BAD_USER_INPUT",
        "Accept must allow application/graphql-response+json or application/json",
    )
}

pub async fn graphql_post(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(kind) = negotiate(&headers) else {
        return not_acceptable();
    };
    // Kept as sent: a multipart boundary is case-sensitive. Only the media type is lower-cased.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let request = match media.as_str() {
        APPLICATION_JSON | GRAPHQL_RESPONSE_JSON => {
            let limit = state.app.config.max_body_bytes as usize;
            let bytes = match to_bytes(body, limit).await {
                Ok(b) => b,
                Err(_) => {
                    return too_large(
                        kind,
                        &format!("request body exceeds {limit} bytes (FLOWCLOUD_MAX_BODY_BYTES)"),
                    )
                }
            };
            match parse_json_request(&bytes) {
                Ok(r) => r,
                Err(message) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        kind,
                        "BAD_USER_INPUT",
                        &message,
                    )
                }
            }
        }
        "multipart/form-data" => {
            // Browsers send multipart forms cross-site without a preflight: insist on a header
            // a simple form cannot set.
            let preflighted = [
                "authorization",
                "graphql-require-preflight",
                "apollo-require-preflight",
                "x-apollo-operation-name",
            ]
            .iter()
            .any(|h| headers.contains_key(*h));
            if !preflighted {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    kind,
                    "BAD_USER_INPUT",
                    "multipart requests need an Authorization or GraphQL-Require-Preflight header",
                );
            }
            let bytes = match to_bytes(body, MAX_UPLOAD_BODY_BYTES).await {
                Ok(b) => b,
                Err(_) => return too_large(kind, "image: must be at most 1 MiB"),
            };
            // async-graphql applies `max_file_size` to the whole stream (framing and the
            // operations part included), so a 1 MiB image would not fit: the body limit above
            // bounds the request, and the resolver refuses an image over 1 MiB by its size.
            let options = MultipartOptions::default()
                .max_file_size(MAX_UPLOAD_BODY_BYTES)
                .max_num_files(1);
            match async_graphql::http::receive_body(
                Some(content_type),
                futures_util::io::Cursor::new(bytes.to_vec()),
                options,
            )
            .await
            {
                Ok(r) => r,
                Err(async_graphql::ParseRequestError::PayloadTooLarge) => {
                    return too_large(kind, "image: must be at most 1 MiB")
                }
                Err(err) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        kind,
                        "BAD_USER_INPUT",
                        &format!("invalid multipart request: {err}"),
                    )
                }
            }
        }
        _ => {
            return error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                kind,
                "BAD_USER_INPUT",
                "Content-Type must be application/json (or multipart/form-data for uploads)",
            )
        }
    };
    execute(&state, &headers, peer, request, kind).await
}

fn too_large(kind: ResponseKind, message: &str) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        kind,
        "BAD_USER_INPUT",
        message,
    )
}

/// Reads `{query, variables, operationName, extensions}` strictly; arrays (batches) are refused.
fn parse_json_request(bytes: &[u8]) -> Result<Request, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(if value.is_array() {
            "batched requests are not supported; send one operation per request".into()
        } else {
            "request body must be a JSON object".into()
        });
    };
    let query = match map.remove("query") {
        Some(serde_json::Value::String(q)) => q,
        Some(_) => return Err("`query` must be a string".into()),
        None => return Err("`query` is required".into()),
    };
    build_request(
        query,
        map.remove("variables"),
        map.remove("operationName"),
        map.remove("extensions"),
    )
}

fn build_request(
    query: String,
    variables: Option<serde_json::Value>,
    operation_name: Option<serde_json::Value>,
    extensions: Option<serde_json::Value>,
) -> Result<Request, String> {
    let mut request = Request::new(query);
    match variables {
        None | Some(serde_json::Value::Null) => {}
        Some(v @ serde_json::Value::Object(_)) => {
            request = request.variables(Variables::from_json(v));
        }
        Some(_) => return Err("`variables` must be an object".into()),
    }
    match operation_name {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(name)) => request = request.operation_name(name),
        Some(_) => return Err("`operationName` must be a string".into()),
    }
    match extensions {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Object(_)) => {}
        Some(_) => return Err("`extensions` must be an object".into()),
    }
    Ok(request)
}

#[derive(Deserialize)]
pub struct GetParams {
    query: Option<String>,
    variables: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    extensions: Option<String>,
}

pub async fn graphql_get(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<GetParams>,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let query = params.query.clone();
    let Some(query) = query else {
        if wants_html {
            return Html(graphiql::page(&state.app.config.graphiql_assets_url)).into_response();
        }
        return error_response(
            StatusCode::BAD_REQUEST,
            negotiate(&headers).unwrap_or(ResponseKind::Json),
            "BAD_USER_INPUT",
            "`query` is required",
        );
    };
    let Some(kind) = negotiate(&headers) else {
        return not_acceptable();
    };
    let parse_json = |field: &str, raw: Option<String>| match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<serde_json::Value>(&raw)
            .map(Some)
            .map_err(|_| format!("`{field}` must be JSON")),
    };
    let request = parse_json("variables", params.variables).and_then(|variables| {
        let extensions = parse_json("extensions", params.extensions)?;
        build_request(
            query.clone(),
            variables,
            params.operation_name.clone().map(serde_json::Value::String),
            extensions,
        )
    });
    let request = match request {
        Ok(r) => r,
        Err(message) => {
            return error_response(StatusCode::BAD_REQUEST, kind, "BAD_USER_INPUT", &message)
        }
    };
    // Only queries may run over GET: a link or an <img> must never change anything.
    if let Ok(document) = state.documents.parse(&query) {
        let operation = match &document.operations {
            DocumentOperations::Single(op) => Some(&op.node),
            DocumentOperations::Multiple(ops) => match &params.operation_name {
                Some(name) => ops.get(name.as_str()).map(|op| &op.node),
                None if ops.len() == 1 => ops.values().next().map(|op| &op.node),
                None => None,
            },
        };
        if let Some(op) = operation {
            if op.ty != OperationType::Query {
                let mut response = error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    kind,
                    "BAD_USER_INPUT",
                    "only queries may be sent with GET; use POST",
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                return response;
            }
        }
    }
    execute(&state, &headers, peer, request, kind).await
}

async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    peer: SocketAddr,
    mut request: Request,
    kind: ResponseKind,
) -> Response {
    if let Err(message) = check_variables(state, &mut request) {
        let status = match kind {
            ResponseKind::GraphqlResponseJson => StatusCode::BAD_REQUEST,
            ResponseKind::Json => StatusCode::OK,
        };
        return error_response(status, kind, "BAD_USER_INPUT", &message);
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let auth = authenticate(&state.app, authorization).await;
    let request = request
        .data(auth)
        .data(Loaders::new(&state.app))
        .data(ClientAddr(peer.ip().to_string()));
    let mut response = state.schema.execute(request).await;
    assign_error_codes(&mut response);
    // A request that never executed (unparsable, invalid, bad variables) has no data and no
    // error with a path: the GraphQL-over-HTTP spec answers those with 400.
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let status = if request_error && kind == ResponseKind::GraphqlResponseJson {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    // Never executed, so the body has no `data` entry at all, not even null (GraphQL spec).
    let serialized = if request_error {
        serde_json::to_vec(&serde_json::json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    };
    let body = match serialized {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, "could not serialize a GraphQL response");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                kind,
                "INTERNAL_SERVER_ERROR",
                "internal server error",
            );
        }
    };
    (status, [(header::CONTENT_TYPE, kind.content_type())], body).into_response()
}

/// Errors raised by async-graphql itself (parsing, validation, limits, variable coercion) carry
/// no code; give each the one API.md names.
pub fn assign_error_codes(response: &mut GqlResponse) {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|ext| ext.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if error.message.contains("nested too deep")
            || error.message.contains("too complex")
            || error.message.contains("recursive depth")
            || error.message.contains("too many directives")
        {
            "QUERY_TOO_COMPLEX"
        } else {
            "BAD_USER_INPUT"
        };
        error
            .extensions
            .get_or_insert_with(ErrorExtensionValues::default)
            .set("code", code);
    }
}

/// Variable coercion that async-graphql leaves to execution time (a required variable left out,
/// a malformed `UUID` or `DateTime`), so that it is answered as a request error (400 for
/// `application/graphql-response+json`) rather than a field error after a partial run.
/// Anything this does not recognise is left to the executor, which still refuses it.
/// The document parsed here is kept in the request, so the executor does not parse it again.
fn check_variables(state: &HttpState, request: &mut Request) -> Result<(), String> {
    let Ok(document) = state.documents.parse(&request.query) else {
        return Ok(());
    };
    let checked = check_operation_variables(
        &document,
        &request.variables,
        request.operation_name.as_deref(),
    );
    request.set_parsed_query(document);
    checked
}

fn check_operation_variables(
    document: &async_graphql::parser::types::ExecutableDocument,
    variables: &Variables,
    operation_name: Option<&str>,
) -> Result<(), String> {
    let operation = match &document.operations {
        DocumentOperations::Single(op) => &op.node,
        DocumentOperations::Multiple(ops) => match operation_name.and_then(|n| ops.get(n)) {
            Some(op) => &op.node,
            None => return Ok(()),
        },
    };
    for definition in &operation.variable_definitions {
        let definition = &definition.node;
        let name = definition.name.node.as_str();
        let ty = &definition.var_type.node;
        match variables.get(name) {
            None | Some(async_graphql::Value::Null) => {
                if !ty.nullable && definition.default_value.is_none() {
                    return Err(format!(
                        "variable ${name} of required type {ty} was not provided"
                    ));
                }
            }
            Some(value) => {
                if !value_fits(ty, value) {
                    return Err(format!("variable ${name} is not a valid {ty}"));
                }
            }
        }
    }
    Ok(())
}

fn value_fits(ty: &Type, value: &async_graphql::Value) -> bool {
    use async_graphql::Value;
    match (&ty.base, value) {
        (_, Value::Null) => ty.nullable,
        (BaseType::List(inner), Value::List(items)) => items.iter().all(|v| value_fits(inner, v)),
        // A single value stands for a one-element list.
        (BaseType::List(inner), single) => value_fits(inner, single),
        (BaseType::Named(name), value) => match name.as_str() {
            "UUID" => matches!(value, Value::String(s) if uuid::Uuid::parse_str(s).is_ok()),
            "DateTime" => matches!(
                value,
                Value::String(s) if s.parse::<chrono::DateTime<chrono::Utc>>().is_ok()
            ),
            _ => true,
        },
    }
}
