//! OpenTelemetry export, end to end: the real binary, both servers, exporting over OTLP/HTTP to a
//! receiver in this test that decodes each export with the protocol's own protobuf types. A
//! client's `traceparent` continues into both servers, the flow id arrives as an attribute, the
//! actor messages as span events, and what is buffered is sent when the process stops.

use crate::helpers::{REDIRECT, free_port};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-oauth");

/// The client's trace, and the span ids it sends as parents of three requests.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REGISTER_PARENT: &str = "00f067aa0ba902b7";
const AUTHORIZE_PARENT: &str = "00f067aa0ba902b8";
const MCP_PARENT: &str = "00f067aa0ba902b9";

/// What the receiver was sent: every decoded export, and the content types they came with.
#[derive(Clone, Default)]
struct Received {
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

/// An OTLP/HTTP trace receiver on a port of its own: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, answered as a collector answers. A body that does not decode is
/// answered 400 and not kept.
async fn start_receiver() -> (String, Received) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    let received = Received::default();
    let state = received.clone();
    let router = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let content_type = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                state.content_types.lock().unwrap().push(content_type);
                match ExportTraceServiceRequest::decode(body) {
                    Ok(export) => {
                        state.exports.lock().unwrap().push(export);
                        (
                            [(header::CONTENT_TYPE, "application/x-protobuf")],
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                            .into_response()
                    }
                    Err(err) => (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), received)
}

fn traceparent(parent: &str) -> String {
    format!("00-{TRACE_ID}-{parent}-01")
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key) {
        Some(Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The one exported span named `name` whose `path` attribute is `path`.
fn span_of<'a>(spans: &'a [Span], name: &str, path: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.name == name && string_attribute(&s.attributes, "path").as_deref() == Some(path)
        })
        .collect();
    assert_eq!(found.len(), 1, "one {name} span for {path}: {spans:#?}");
    found[0]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_continue_the_clients_trace_into_both_servers() {
    let (receiver, received) = start_receiver().await;
    let (auth_port, mcp_port) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{auth_port}");
    let rs = format!("http://127.0.0.1:{mcp_port}");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["--auth-listen", &format!("127.0.0.1:{auth_port}")])
        .args(["--mcp-listen", &format!("127.0.0.1:{mcp_port}")])
        .args(["--issuer", &issuer, "--resource", &rs])
        .args(["--authorization-server", &issuer, "--resource-server", &rs])
        .args(["--in-memory", "--log-format", "json"])
        .current_dir(std::env::temp_dir())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    for var in [
        "AUTH_SERVER_ISSUER",
        "AUTH_SERVER_SESSION_SECRET",
        "RESOURCE_SERVER_URL",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_TRACES_SAMPLER",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().unwrap();
    // Read the log all along (a reader that stops stalls the writer once the pipe is full).
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            let _ = line_tx.send(serde_json::from_str(&line).expect("JSON log lines"));
        }
    });
    let mut log = Vec::new();
    let mut listening = 0;
    while listening < 2 {
        let line = tokio::time::timeout(Duration::from_secs(60), line_rx.recv())
            .await
            .expect("the servers start")
            .expect("the servers start");
        if line["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("listening"))
        {
            listening += 1;
        }
        log.push(line);
    }

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let registered = http
        .post(format!("{issuer}/register"))
        .header("traceparent", traceparent(REGISTER_PARENT))
        .json(&serde_json::json!({
            "client_name": "Traced Client",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let registered: serde_json::Value = registered.json().await.unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_string();
    let pkce = crate::helpers::Pkce::new();
    let authorize = url::Url::parse_with_params(
        &format!("{issuer}/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
            ("state", "otel-state"),
            ("scope", "mcp.read"),
            ("resource", &format!("{rs}/mcp")),
        ],
    )
    .unwrap();
    let authorized = http
        .get(authorize)
        .header("traceparent", traceparent(AUTHORIZE_PARENT))
        .header("tracestate", "client=1")
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 302, "on to the login page");
    let unauthorized = http
        .post(format!("{rs}/mcp"))
        .header("traceparent", traceparent(MCP_PARENT))
        .json(&crate::helpers::initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    // A request without a traceparent starts a trace of its own.
    let metadata = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), 200);

    // Stop: the spans still buffered are sent before the process exits.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0), "clean exit on SIGTERM");
    reader.await.unwrap();
    while let Ok(line) = line_rx.try_recv() {
        log.push(line);
    }

    // The flow minted at /authorize, as the log names it.
    let flow = log
        .iter()
        .find(|l| l["span"]["path"] == "/authorize" && l["span"]["flow"].is_string())
        .and_then(|l| l["span"]["flow"].as_str())
        .expect("the authorization request is logged with its flow")
        .to_string();

    let content_types = received.content_types.lock().unwrap().clone();
    let exports = received.exports.lock().unwrap().clone();
    assert!(!exports.is_empty(), "spans were exported");
    assert_eq!(
        content_types.len(),
        exports.len(),
        "every export decodes: {content_types:?}"
    );
    assert!(
        content_types.iter().all(|c| c == "application/x-protobuf"),
        "{content_types:?}"
    );
    let mut spans = Vec::new();
    for resource_spans in exports.iter().flat_map(|e| &e.resource_spans) {
        let resource = resource_spans.resource.as_ref().expect("a resource");
        assert_eq!(
            string_attribute(&resource.attributes, "service.name").as_deref(),
            Some("mcp-oauth")
        );
        for scope_spans in &resource_spans.scope_spans {
            spans.extend(scope_spans.spans.iter().cloned());
        }
    }

    // Each request the client traced is a child of the span it named, in its trace, on the
    // server it went to.
    for (name, path, parent, status) in [
        ("auth", "/register", REGISTER_PARENT, 201),
        ("auth", "/authorize", AUTHORIZE_PARENT, 302),
        ("mcp", "/mcp", MCP_PARENT, 401),
    ] {
        let span = span_of(&spans, name, path);
        assert_eq!(hex(&span.trace_id), TRACE_ID, "{name} {path}");
        assert_eq!(hex(&span.parent_span_id), parent, "{name} {path}");
        assert_eq!(span.span_id.len(), 8, "{name} {path}");
        assert!(
            matches!(attribute(&span.attributes, "http.response.status_code"), Some(Value::IntValue(s)) if *s == status),
            "{name} {path}: {:?}",
            span.attributes
        );
    }
    let authorize = span_of(&spans, "auth", "/authorize");
    assert_eq!(
        string_attribute(&authorize.attributes, "flow").as_deref(),
        Some(flow.as_str()),
        "the flow id, recorded after the span began, is an attribute"
    );
    assert_eq!(authorize.trace_state, "client=1", "the tracestate goes on");
    // Actor messages are events of the request span that sent them.
    let register = span_of(&spans, "auth", "/register");
    for (span, actor) in [
        (register, "ClientRegistry <- "),
        (authorize, "Sessions <- "),
    ] {
        let event = span
            .events
            .iter()
            .find(|e| e.name.starts_with(actor))
            .unwrap_or_else(|| panic!("an event for {actor}: {:#?}", span.events));
        assert_eq!(
            string_attribute(&event.attributes, "outcome").as_deref(),
            Some("ok")
        );
    }
    assert!(
        register.events.iter().any(|e| e.name == "response out"),
        "every line of the request is an event"
    );
    // An untraced request is a root of a trace of its own.
    let metadata = span_of(&spans, "auth", "/.well-known/oauth-authorization-server");
    assert_ne!(hex(&metadata.trace_id), TRACE_ID);
    assert!(metadata.parent_span_id.is_empty());
}

#[test]
fn an_export_setting_this_build_cannot_honour_is_a_bad_setting() {
    for (var, value, named) in [
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "grpc",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "not a url",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ] {
        let out = std::process::Command::new(BIN)
            .args([
                "--auth-listen",
                "127.0.0.1:0",
                "--mcp-listen",
                "127.0.0.1:0",
            ])
            .arg("--in-memory")
            .current_dir(std::env::temp_dir())
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_SDK_DISABLED")
            .env_remove("OTEL_TRACES_EXPORTER")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
            .env(var, value)
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.starts_with("error: ") && err.contains(named), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
