//! The MCP tools: `greet` (a greeting for the given name, as in the example) and `whoami` (the
//! caller's subject, client and scopes from the validated token, which shows the authorization
//! context reaching the tools). The bearer middleware puts the [`Caller`] into the request; rmcp
//! hands the request parts to tools as an extension.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;

/// Who is calling, from the validated access token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub flow: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GreetRequest {
    /// The name of the person to greet.
    pub name: String,
}

/// The MCP server's tools.
#[derive(Debug, Clone)]
pub struct McpTools {
    tool_router: ToolRouter<Self>,
}

impl Default for McpTools {
    fn default() -> Self {
        Self::new()
    }
}

impl McpTools {
    pub fn new() -> Self {
        McpTools {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl McpTools {
    #[tool(description = "Greet someone by name.")]
    fn greet(&self, Parameters(GreetRequest { name }): Parameters<GreetRequest>) -> String {
        let name: String = name.chars().take(200).collect();
        format!("Hello, {name}!")
    }

    #[tool(description = "Show who is calling: the user, the client and the granted scopes.")]
    fn whoami(&self, Extension(parts): Extension<http::request::Parts>) -> String {
        match parts.extensions.get::<Caller>() {
            Some(caller) => serde_json::json!({
                "sub": caller.subject,
                "client_id": caller.client_id,
                "scopes": caller.scopes,
            })
            .to_string(),
            None => String::from("{\"error\":\"no authenticated caller\"}"),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "An MCP server protected by OAuth 2.1. Tools: greet (say hello) and whoami (show the caller).",
        )
    }
}
