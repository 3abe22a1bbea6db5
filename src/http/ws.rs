//! GraphQL over websockets: `graphql-transport-ws` and the legacy `graphql-ws`
//! (subscriptions-transport-ws) protocols, written around async-graphql's `execute_stream` so
//! that the protocol's rules hold where the stock handler bends them: 4408 without a timely
//! `connection_init`, 4401 for a subscribe before the ack, 4400 for an invalid message, 4403 for
//! a bad or missing token, 4409 for a duplicate id, 4429 for a second init; server pings; errors
//! before the first result answered with an `error` message; 1001 on shutdown.
use std::collections::HashSet;
use std::pin::Pin;
use std::time::Duration;

use async_graphql::{Request, Response as GqlResponse, Variables};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio_stream::StreamMap;

use super::graphql::assign_error_codes;
use super::HttpState;
use crate::auth::viewer::authenticate;
use crate::auth::Auth;
use crate::graphql::loaders::Loaders;

const TRANSPORT_WS: &str = "graphql-transport-ws";
const LEGACY_WS: &str = "graphql-ws";
/// Subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 1_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Transport,
    Legacy,
}

pub async fn graphql_ws(
    State(state): State<HttpState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Small buffers: a dashboard holds many mostly idle subscriptions.
    let upgrade = upgrade
        .protocols([TRANSPORT_WS, LEGACY_WS])
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(2 * 1024 * 1024);
    let protocol = match upgrade.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(LEGACY_WS) => Protocol::Legacy,
        _ => Protocol::Transport,
    };
    upgrade.on_upgrade(move |socket| async move {
        Connection::new(state, protocol, header_token)
            .run(socket)
            .await
    })
}

type ResultStream = Pin<Box<dyn Stream<Item = Option<GqlResponse>> + Send>>;

struct Connection {
    state: HttpState,
    protocol: Protocol,
    header_token: Option<String>,
    auth: Option<Auth>,
    loaders: Option<std::sync::Arc<Loaders>>,
    subscriptions: StreamMap<String, ResultStream>,
    /// Subscriptions that already sent a result (later errors go out as `next`).
    answered: HashSet<String>,
}

/// Why the connection loop stopped.
struct Close(u16, &'static str);

impl Connection {
    fn new(state: HttpState, protocol: Protocol, header_token: Option<String>) -> Self {
        Self {
            state,
            protocol,
            header_token,
            auth: None,
            loaders: None,
            subscriptions: StreamMap::new(),
            answered: HashSet::new(),
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let config = self.state.app.config.clone();
        let init_deadline =
            tokio::time::sleep(Duration::from_millis(u64::from(config.ws_init_timeout_ms)));
        tokio::pin!(init_deadline);
        let ping_every = Duration::from_secs(u64::from(config.ws_ping_seconds));
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let mut shutdown = self.state.app.shutdown.subscribe();
        if *shutdown.borrow() {
            let _ = close(&mut socket, 1001, "server is shutting down").await;
            return;
        }
        let outcome: Result<(), Close> = loop {
            tokio::select! {
                incoming = socket.recv() => {
                    let message = match incoming {
                        Some(Ok(message)) => message,
                        // The peer went away.
                        Some(Err(_)) | None => return,
                    };
                    match self.on_message(&mut socket, message).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(close) => break Err(close),
                    }
                }
                Some((id, item)) = self.subscriptions.next(), if !self.subscriptions.is_empty() => {
                    if self.on_result(&mut socket, id, item).await.is_err() {
                        return;
                    }
                }
                _ = &mut init_deadline, if self.auth.is_none() => {
                    break Err(Close(4408, "Connection initialisation timeout"));
                }
                _ = ping.tick() => {
                    let frame = match self.protocol {
                        Protocol::Transport => json!({ "type": "ping" }),
                        Protocol::Legacy => json!({ "type": "ka" }),
                    };
                    if send(&mut socket, &frame).await.is_err() {
                        return;
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break Err(Close(1001, "server is shutting down"));
                    }
                }
            }
        };
        if let Err(Close(code, reason)) = outcome {
            let _ = close(&mut socket, code, reason).await;
        }
    }

    /// Handles one client frame. `Ok(false)` ends the connection quietly.
    async fn on_message(
        &mut self,
        socket: &mut WebSocket,
        message: Message,
    ) -> Result<bool, Close> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => return Err(Close(4400, "Binary frames are not supported")),
            Message::Ping(_) | Message::Pong(_) => return Ok(true),
            Message::Close(_) => return Ok(false),
        };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            return Err(Close(4400, "Invalid message: not JSON"));
        };
        let kind = frame.get("type").and_then(Value::as_str).unwrap_or("");
        match (self.protocol, kind) {
            (_, "connection_init") => {
                if self.auth.is_some() {
                    return Err(Close(4429, "Too many initialisation requests"));
                }
                let payload = frame.get("payload").cloned().unwrap_or(Value::Null);
                let token = token_from_payload(&payload).or_else(|| self.header_token.clone());
                let auth = authenticate(&self.state.app, token.as_deref()).await;
                if !matches!(auth, Auth::Viewer(_)) {
                    if self.protocol == Protocol::Legacy {
                        let _ = send(
                            socket,
                            &json!({ "type": "connection_error", "payload": { "message": "Forbidden: a valid token is required" } }),
                        )
                        .await;
                    }
                    return Err(Close(4403, "Forbidden"));
                }
                self.auth = Some(auth);
                self.loaders = Some(std::sync::Arc::new(Loaders::new(&self.state.app)));
                send(socket, &json!({ "type": "connection_ack" }))
                    .await
                    .map_err(|_| Close(1011, "send failed"))?;
                if self.protocol == Protocol::Legacy {
                    send(socket, &json!({ "type": "ka" }))
                        .await
                        .map_err(|_| Close(1011, "send failed"))?;
                }
                Ok(true)
            }
            (Protocol::Transport, "ping") => {
                let mut pong = json!({ "type": "pong" });
                if let Some(payload) = frame.get("payload") {
                    pong["payload"] = payload.clone();
                }
                send(socket, &pong)
                    .await
                    .map_err(|_| Close(1011, "send failed"))?;
                Ok(true)
            }
            (Protocol::Transport, "pong") => Ok(true),
            (Protocol::Transport, "subscribe") | (Protocol::Legacy, "start") => {
                self.subscribe(socket, &frame).await?;
                Ok(true)
            }
            (Protocol::Transport, "complete") | (Protocol::Legacy, "stop") => {
                let Some(id) = frame.get("id").and_then(Value::as_str) else {
                    return Err(Close(4400, "Invalid message: missing id"));
                };
                let id = id.to_owned();
                if self.subscriptions.remove(&id).is_some() && self.protocol == Protocol::Legacy {
                    send(socket, &json!({ "type": "complete", "id": id }))
                        .await
                        .map_err(|_| Close(1011, "send failed"))?;
                }
                self.answered.remove(&id);
                Ok(true)
            }
            (Protocol::Legacy, "connection_terminate") => Err(Close(1000, "Normal closure")),
            _ => Err(Close(4400, "Invalid message: unknown type")),
        }
    }

    async fn subscribe(&mut self, socket: &mut WebSocket, frame: &Value) -> Result<(), Close> {
        let Some(auth) = self.auth.clone() else {
            return Err(Close(4401, "Unauthorized"));
        };
        let Some(id) = frame
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
        else {
            return Err(Close(4400, "Invalid message: missing id"));
        };
        let id = id.to_owned();
        if self.subscriptions.contains_key(&id) {
            return Err(Close(4409, "Subscriber for this id already exists"));
        }
        let request = match parse_request(frame.get("payload")) {
            Ok(request) => request,
            Err(reason) => return Err(Close(4400, reason)),
        };
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            let error = json!([{ "message": "too many subscriptions on this connection", "extensions": { "code": "LIMIT_EXCEEDED" } }]);
            return self.send_error(socket, &id, error).await;
        }
        let mut request = request.data(auth);
        if let Some(loaders) = &self.loaders {
            request = request.data(loaders.clone());
        }
        let stream = self
            .state
            .schema
            .execute_stream(request)
            .map(Some)
            .chain(futures_util::stream::once(async { None }));
        self.subscriptions.insert(id, Box::pin(stream));
        Ok(())
    }

    async fn on_result(
        &mut self,
        socket: &mut WebSocket,
        id: String,
        item: Option<GqlResponse>,
    ) -> Result<(), Close> {
        let Some(mut response) = item else {
            // The stream ended (the map drops it itself).
            self.answered.remove(&id);
            return send(socket, &json!({ "type": "complete", "id": id }))
                .await
                .map_err(|_| Close(1011, "send failed"));
        };
        assign_error_codes(&mut response);
        let first = self.answered.insert(id.clone());
        // A request error (parse, validation: no path) or a refusal by the subscription
        // field itself (no access, bad cursor: the path is just the root field). async-graphql
        // gives the latter the root field's path, so "no path" alone would send it as a
        // result. Errors deeper in a result (path longer than one) are results.
        let request_error = response.data == async_graphql::Value::Null
            && !response.errors.is_empty()
            && response.errors.iter().all(|e| e.path.len() <= 1);
        if first && request_error {
            // Refused before any result: an `error` message, and the operation is over.
            self.subscriptions.remove(&id);
            self.answered.remove(&id);
            let errors = serde_json::to_value(&response.errors).unwrap_or(Value::Null);
            return self.send_error(socket, &id, errors).await;
        }
        let kind = match self.protocol {
            Protocol::Transport => "next",
            Protocol::Legacy => "data",
        };
        // Serialized straight to text (no intermediate JSON tree): this runs once per event
        // per subscription.
        let text = serde_json::to_string(&Envelope {
            kind,
            id: &id,
            payload: &response,
        })
        .map_err(|_| Close(1011, "could not serialize a result"))?;
        socket
            .send(Message::Text(Utf8Bytes::from(text)))
            .await
            .map_err(|_| Close(1011, "send failed"))
    }

    async fn send_error(
        &mut self,
        socket: &mut WebSocket,
        id: &str,
        errors: Value,
    ) -> Result<(), Close> {
        let payload = match self.protocol {
            Protocol::Transport => errors,
            // The legacy protocol carries one error object.
            Protocol::Legacy => errors
                .as_array()
                .and_then(|a| a.first().cloned())
                .unwrap_or(errors),
        };
        send(
            socket,
            &json!({ "type": "error", "id": id, "payload": payload }),
        )
        .await
        .map_err(|_| Close(1011, "send failed"))
    }
}

/// A `next` / `data` message.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    payload: &'a GqlResponse,
}

/// The bearer token of a `connection_init` payload: `{"Authorization": "Bearer …"}` (any case)
/// or `{"authToken": "…"}`.
fn token_from_payload(payload: &Value) -> Option<String> {
    let object = payload.as_object()?;
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization") || k.as_str() == "authToken")
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned)
}

fn parse_request(payload: Option<&Value>) -> Result<Request, &'static str> {
    let payload = payload
        .and_then(Value::as_object)
        .ok_or("Invalid message: payload must be an object")?;
    let query = payload
        .get("query")
        .and_then(Value::as_str)
        .ok_or("Invalid message: payload.query must be a string")?;
    let mut request = Request::new(query);
    match payload.get("variables") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Object(_)) => request = request.variables(Variables::from_json(v.clone())),
        Some(_) => return Err("Invalid message: payload.variables must be an object"),
    }
    match payload.get("operationName") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => request = request.operation_name(name.clone()),
        Some(_) => return Err("Invalid message: payload.operationName must be a string"),
    }
    Ok(request)
}

async fn send(socket: &mut WebSocket, value: &Value) -> Result<(), axum::Error> {
    socket
        .send(Message::Text(Utf8Bytes::from(value.to_string())))
        .await
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) -> Result<(), axum::Error> {
    socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason.to_owned()),
        })))
        .await
}
