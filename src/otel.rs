//! OpenTelemetry export: the request spans of both servers, with the lines written inside them as
//! span events, sent over OTLP (HTTP and protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and nothing at all otherwise.
//!
//! - [`layer`] builds the exporter from the standard `OTEL_*` variables (endpoint, headers,
//!   timeout, compression, service name, resource attributes, sampler), as the OpenTelemetry SDK
//!   reads them, and the tracing layer that feeds it. The trace installs the layer beside its line
//!   writer; the [`ExportGuard`] it returns sends what is still buffered when dropped.
//! - [`continue_trace`] makes a request span the child of the W3C `traceparent` a client sent,
//!   so that a client's trace continues into both servers. It costs one relaxed load when export
//!   is off.
//!
//! It lives apart from `trace` because the line trace is the product's own format, and this is a
//! bridge to someone else's; the two meet only in `trace::init`.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Set once the export is installed: request spans then look for a `traceparent`.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The one wire protocol this build speaks (gRPC would bring a second HTTP stack).
const PROTOCOL: &str = "http/protobuf";

/// Why the export could not be set up from the `OTEL_*` variables: a bad setting.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("{0}={1:?}: only {PROTOCOL} is supported")]
    Protocol(&'static str, String),
    #[error("OpenTelemetry export: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// True when request spans are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// True when the environment asks for the export: an OTLP endpoint is set, and neither
/// `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns it off.
pub fn requested() -> bool {
    let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
    let is = |var: &str, value: &str| {
        std::env::var(var).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// The exporter's provider: dropping it sends the spans still buffered (waiting up to five
/// seconds for the receiver) and stops the exporter's thread.
pub struct ExportGuard {
    provider: SdkTracerProvider,
}

impl Drop for ExportGuard {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown() {
            eprintln!("OpenTelemetry export: {err}");
        }
    }
}

/// The tracing layer that exports spans, and the [`ExportGuard`] to keep alive beside it, when the
/// environment asks for the export ([`requested`]); `None` otherwise. `service` names the
/// program (`service.name`) unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` does.
pub fn layer<S>(
    service: &'static str,
) -> Result<Option<(impl tracing_subscriber::Layer<S>, ExportGuard)>, OtelError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if !requested() {
        return Ok(None);
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        match std::env::var(var) {
            Ok(value) if value.trim().is_empty() => continue,
            Ok(value) if value.trim() == PROTOCOL => break,
            Ok(value) => return Err(OtelError::Protocol(var, value)),
            Err(_) => continue,
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(service))
        .build();
    let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        ExportGuard { provider },
    )))
}

/// The resource the SDK detects from the environment, named `service` when the environment
/// names no service.
fn resource(service: &'static str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::new("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder().with_service_name(service).build()
    }
}

/// When spans are exported and `headers` carry a valid W3C `traceparent` (and `tracestate`),
/// makes `span` (just created, not yet entered) its child: the client's trace goes on here.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if !enabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled or already started: it then keeps its own trace.
        let _ = span.set_parent(parent);
    }
}

/// Records the response status on an exported span, as the semantic conventions name it.
pub fn record_status(span: &tracing::Span, status: u16) {
    if enabled() {
        span.set_attribute("http.response.status_code", i64::from(status));
    }
}

/// Request headers as the propagator reads them.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceId;

    #[test]
    fn a_valid_traceparent_is_read_and_a_bad_one_is_not() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let parent = TraceContextPropagator::new().extract(&Headers(&headers));
        let context = parent.span().span_context().clone();
        assert_eq!(
            context.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert!(context.is_remote() && context.is_sampled());

        headers.insert("traceparent", "00-not-a-trace-01".parse().unwrap());
        let parent = TraceContextPropagator::new().extract(&Headers(&headers));
        assert!(!parent.span().span_context().is_valid());
    }

    #[test]
    fn without_an_endpoint_nothing_is_built() {
        // The unit tests run without OTEL_* variables: the export stays off.
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            assert!(!requested());
            let built = layer::<tracing_subscriber::Registry>("test");
            assert!(matches!(built, Ok(None)));
            assert!(!enabled());
        }
    }
}
