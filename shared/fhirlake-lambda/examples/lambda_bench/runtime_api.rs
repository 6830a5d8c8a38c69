//! A minimal Lambda Runtime API on 127.0.0.1, enough to run a function binary outside Lambda:
//! `GET /2018-06-01/runtime/invocation/next` hands out queued events,
//! `POST .../invocation/{id}/response` and `.../error` complete them, `POST .../init/error`
//! records a failed cold start. It records when the function first asked for an event (the end
//! of its init phase).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};

const PREFIX: &str = "/2018-06-01/runtime";

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    /// The function's response payload.
    Response(Bytes),
    /// The function reported an error (payload is the error document).
    Error(Bytes),
}

struct Pending {
    id: String,
    payload: Bytes,
}

struct State {
    queue_rx: AsyncMutex<mpsc::UnboundedReceiver<Pending>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_next: Mutex<Option<Instant>>,
    init_error: Mutex<Option<String>>,
}

/// A running emulator.
pub struct RuntimeApi {
    address: SocketAddr,
    queue_tx: mpsc::UnboundedSender<Pending>,
    state: Arc<State>,
    next_id: std::sync::atomic::AtomicU64,
}

impl RuntimeApi {
    /// Starts serving on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            queue_rx: AsyncMutex::new(queue_rx),
            waiting: Mutex::new(HashMap::new()),
            first_next: Mutex::new(None),
            init_error: Mutex::new(None),
        });
        let serving = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| route(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(RuntimeApi { address, queue_tx, state, next_id: std::sync::atomic::AtomicU64::new(1) })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// When the function first asked for an event.
    pub fn first_next(&self) -> Option<Instant> {
        *self.state.first_next.lock().expect("lock")
    }

    /// The init error the function reported, if any.
    pub fn init_error(&self) -> Option<String> {
        self.state.init_error.lock().expect("lock").clone()
    }

    /// Queues `payload` and waits for the function's answer.
    pub async fn invoke(&self, payload: impl Into<Bytes>) -> Outcome {
        let id = format!("bench-{:08}", self.next_id.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let (tx, rx) = oneshot::channel();
        self.state.waiting.lock().expect("lock").insert(id.clone(), tx);
        self.queue_tx.send(Pending { id, payload: payload.into() }).expect("the emulator is running");
        rx.await.expect("the emulator answers every invocation")
    }
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

async fn route(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_string();
    let Some(rest) = path.strip_prefix(PREFIX) else { return Ok(reply(StatusCode::NOT_FOUND, Bytes::new())) };
    if rest == "/invocation/next" {
        state.first_next.lock().expect("lock").get_or_insert_with(Instant::now);
        let next = state.queue_rx.lock().await.recv().await;
        let Some(next) = next else { return Ok(reply(StatusCode::GONE, Bytes::new())) };
        let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() + 30_000).unwrap_or(0);
        let mut response = reply(StatusCode::OK, next.payload);
        let headers = response.headers_mut();
        headers.insert("lambda-runtime-aws-request-id", next.id.parse().expect("a header value"));
        headers.insert("lambda-runtime-deadline-ms", deadline.to_string().parse().expect("a header value"));
        headers.insert(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:bench".parse().expect("a header value"),
        );
        headers.insert("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".parse().expect("a header value"));
        return Ok(response);
    }
    let body = request.into_body().collect().await?.to_bytes();
    if rest == "/init/error" {
        *state.init_error.lock().expect("lock") = Some(String::from_utf8_lossy(&body).into_owned());
        return Ok(reply(StatusCode::ACCEPTED, Bytes::new()));
    }
    if let Some(invocation) = rest.strip_prefix("/invocation/") {
        let (id, outcome) = match invocation.rsplit_once('/') {
            Some((id, "response")) => (id, Outcome::Response(body)),
            Some((id, "error")) => (id, Outcome::Error(body)),
            _ => return Ok(reply(StatusCode::NOT_FOUND, Bytes::new())),
        };
        if let Some(waiter) = state.waiting.lock().expect("lock").remove(id) {
            let _ = waiter.send(outcome);
        }
        return Ok(reply(StatusCode::ACCEPTED, Bytes::new()));
    }
    Ok(reply(StatusCode::NOT_FOUND, Bytes::new()))
}
