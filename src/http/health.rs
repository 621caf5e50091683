//! `GET /healthz` and `GET /readyz`, on both servers: liveness (the process answers) and
//! readiness (what it needs to serve is there: each server names its checks). Both answer JSON:
//! `{"status": "ok"}`, and `{"status": "ready" | "not ready", "checks": {name: {"ok", "detail"}}}`
//! with 200 or 503. They are outside the request trace, so a load balancer polling them every
//! second adds nothing to the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Response {
    let mut response = Json(json!({"status": "ok"})).into_response();
    super::error::no_store(&mut response);
    response
}

/// One readiness check: its name, whether it passed, and what it found.
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &'static str, ok: bool, detail: impl Into<String>) -> Self {
        Check {
            name,
            ok,
            detail: detail.into(),
        }
    }
}

/// The `/readyz` answer for `checks`: 200 when every one passed, else 503.
pub fn readiness(checks: Vec<Check>) -> Response {
    let ready = checks.iter().all(|c| c.ok);
    let mut by_name = Map::new();
    for check in checks {
        by_name.insert(
            check.name.into(),
            json!({"ok": check.ok, "detail": check.detail}),
        );
    }
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": Value::Object(by_name),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, Json(body)).into_response();
    super::error::no_store(&mut response);
    response
}
