//! A small GraphQL-over-websocket client for the tests: speaks `graphql-transport-ws` or the
//! legacy `graphql-ws`, answers server pings, and never sleeps — every wait is a read with a
//! timeout, so a missing message fails the test instead of hanging it.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::TestApp;

/// How long any single expected message may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (the `graphql-ws` npm library).
    Transport,
    /// The legacy `graphql-ws` (subscriptions-transport-ws).
    Legacy,
}

pub const BOTH: [Protocol; 2] = [Protocol::Transport, Protocol::Legacy];

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Transport => "graphql-transport-ws",
            Protocol::Legacy => "graphql-ws",
        }
    }
    fn subscribe_type(self) -> &'static str {
        match self {
            Protocol::Transport => "subscribe",
            Protocol::Legacy => "start",
        }
    }
    fn data_type(self) -> &'static str {
        match self {
            Protocol::Transport => "next",
            Protocol::Legacy => "data",
        }
    }
    fn stop_type(self) -> &'static str {
        match self {
            Protocol::Transport => "complete",
            Protocol::Legacy => "stop",
        }
    }
}

/// What the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Json(Value),
    /// A close frame (code, reason), or `None` when the connection ended without one.
    Closed(Option<(u16, String)>),
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// An `error` message with its payload.
    Error(Value),
    /// `next`/`data` with errors (their payload), followed by `complete`.
    ErrorThenComplete(Value),
    Complete,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct WsClient {
    socket: Socket,
    pub protocol: Protocol,
    /// Server pings (`ping` / `ka`) seen so far.
    pub pings_seen: usize,
}

impl WsClient {
    pub async fn connect(app: &TestApp, protocol: Protocol) -> WsClient {
        Self::connect_to(&app.address, protocol, None).await
    }

    /// Connects with a tiny kernel receive buffer, so a client that stops reading pushes
    /// back on the server after a few frames (for slow-subscriber tests).
    pub async fn connect_small_buffer(app: &TestApp, protocol: Protocol) -> WsClient {
        Self::connect_to(&app.address, protocol, Some(4096)).await
    }

    async fn connect_to(address: &str, protocol: Protocol, recv_buffer: Option<u32>) -> WsClient {
        let url = format!("{}/graphql/ws", address.replacen("http", "ws", 1));
        let mut request = url.as_str().into_client_request().expect("ws request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.name()),
        );
        let host = address.trim_start_matches("http://");
        let addr: std::net::SocketAddr = host.parse().expect("server address");
        let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            tcp.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let stream = tokio::time::timeout(WAIT, tcp.connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        stream.set_nodelay(true).expect("nodelay");
        let (socket, response) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("websocket handshake timed out")
        .expect("websocket handshake failed");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(protocol.name()),
            "the server must select the offered sub-protocol"
        );
        WsClient {
            socket,
            protocol,
            pings_seen: 0,
        }
    }

    pub async fn send(&mut self, value: Value) {
        self.send_raw(&value.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("websocket send failed");
    }

    /// The next frame within `wait`, or `None` on timeout. Transport-level pings are
    /// answered by tungstenite itself and skipped here.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            return Some(match next {
                None | Some(Err(_)) => Frame::Closed(None),
                Some(Ok(Message::Text(text))) => Frame::Json(
                    serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("server sent non-JSON text ({e}): {text}")),
                ),
                Some(Ok(Message::Close(frame))) => Frame::Closed(
                    frame.map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string())),
                ),
                Some(Ok(_)) => continue,
            });
        }
    }

    /// The next frame; fails the test after [`WAIT`].
    pub async fn recv(&mut self) -> Frame {
        self.recv_within(WAIT)
            .await
            .unwrap_or_else(|| panic!("no message from the server within {WAIT:?}"))
    }

    /// The next protocol message that is not a keep-alive (server pings are answered).
    pub async fn recv_message(&mut self) -> Frame {
        loop {
            match self.recv().await {
                Frame::Json(message) => match message["type"].as_str() {
                    Some("ping") => {
                        self.pings_seen += 1;
                        self.send(json!({ "type": "pong" })).await;
                    }
                    Some("ka") => self.pings_seen += 1,
                    Some("pong") => {}
                    _ => return Frame::Json(message),
                },
                closed => return closed,
            }
        }
    }

    /// Sends `connection_init` with `payload`.
    pub async fn send_init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
    }

    /// Initialises with `Authorization: Bearer <token>` and waits for the ack.
    pub async fn init(&mut self, token: &str) {
        self.send_init(json!({ "Authorization": format!("Bearer {token}") }))
            .await;
        self.expect_ack().await;
    }

    pub async fn expect_ack(&mut self) {
        match self.recv_message().await {
            Frame::Json(m) if m["type"] == "connection_ack" => {}
            other => panic!("expected connection_ack, got {other:?}"),
        }
    }

    /// Starts an operation (`subscribe` / `start`).
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = self.protocol.subscribe_type();
        self.send(json!({
            "type": kind, "id": id,
            "payload": { "query": query, "variables": variables }
        }))
        .await;
    }

    /// Stops an operation (`complete` / `stop`).
    pub async fn unsubscribe(&mut self, id: &str) {
        let kind = self.protocol.stop_type();
        self.send(json!({ "type": kind, "id": id })).await;
    }

    /// The `data` of the next result of operation `id`; panics on anything else.
    pub async fn next_data(&mut self, id: &str) -> Value {
        match self.recv_message().await {
            Frame::Json(m) if m["type"] == self.protocol.data_type() && m["id"] == id => {
                let payload = &m["payload"];
                assert!(
                    payload.get("errors").is_none(),
                    "operation {id} got errors: {m:#}"
                );
                payload["data"].clone()
            }
            other => panic!("expected a result for operation {id}, got {other:?}"),
        }
    }

    /// The next result of `id`, unwrapped from `data.<field>`.
    pub async fn next_event(&mut self, id: &str, field: &str) -> Value {
        self.next_data(id).await[field].clone()
    }

    /// `count` consecutive results of `id`.
    pub async fn events(&mut self, id: &str, field: &str, count: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(self.next_event(id, field).await);
        }
        out
    }

    /// Reads until operation `id` ends; panics if it delivers a result first.
    pub async fn expect_end(&mut self, id: &str) -> End {
        match self.recv_message().await {
            Frame::Json(m) if m["type"] == "error" && m["id"] == id => {
                End::Error(m["payload"].clone())
            }
            Frame::Json(m) if m["type"] == "complete" && m["id"] == id => End::Complete,
            Frame::Json(m) if m["type"] == self.protocol.data_type() && m["id"] == id => {
                assert!(
                    m["payload"].get("errors").is_some(),
                    "operation {id} delivered a result instead of ending: {m:#}"
                );
                match self.recv_message().await {
                    Frame::Json(c) if c["type"] == "complete" && c["id"] == id => {
                        End::ErrorThenComplete(m["payload"].clone())
                    }
                    other => panic!("expected complete for {id} after its error, got {other:?}"),
                }
            }
            other => panic!("expected operation {id} to end, got {other:?}"),
        }
    }

    /// The `error` message of operation `id` (the first error object for either protocol).
    pub async fn expect_error(&mut self, id: &str) -> Value {
        match self.recv_message().await {
            Frame::Json(m) if m["type"] == "error" && m["id"] == id => match &m["payload"] {
                Value::Array(errors) => errors[0].clone(),
                single => single.clone(),
            },
            other => panic!("expected an error message for {id}, got {other:?}"),
        }
    }

    /// Reads until the server closes the connection; returns the close code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.recv().await {
                Frame::Closed(Some(close)) => return close,
                Frame::Closed(None) => panic!("the connection ended without a close frame"),
                Frame::Json(_) => {}
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// Connects with `protocol` and initialises with `token`.
pub async fn connect_as(app: &TestApp, protocol: Protocol, token: &str) -> WsClient {
    let mut client = WsClient::connect(app, protocol).await;
    client.init(token).await;
    client
}
