//! Both servers on one origin and one listener (`--public-url`): the MCP endpoint (`/mcp`) and
//! its protected resource metadata go to the resource server's routes, everything else to the
//! authorization server's. Each keeps its own layers (Host and Origin checks, CORS, the request
//! trace and its metrics); this only chooses between them by path.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use std::convert::Infallible;
use std::task::{Context, Poll};

/// The paths the resource server answers on a shared origin: the MCP endpoint and its metadata.
/// Not the root metadata (`/.well-known/oauth-protected-resource`): it would describe the origin,
/// whose `/` is the authorization server's, as a resource.
const RESOURCE_SERVER_PATHS: [&str; 2] = ["/mcp", "/.well-known/oauth-protected-resource/mcp"];

/// One router serving the authorization server's routes and the resource server's MCP routes.
pub fn router(auth: Router, mcp: Router) -> Router {
    Router::new().fallback_service(SingleOrigin { auth, mcp })
}

#[derive(Clone)]
struct SingleOrigin {
    auth: Router,
    mcp: Router,
}

impl tower::Service<Request<Body>> for SingleOrigin {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    /// Both routers are always ready.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if RESOURCE_SERVER_PATHS.contains(&request.uri().path()) {
            self.mcp.call(request)
        } else {
            self.auth.call(request)
        }
    }
}
