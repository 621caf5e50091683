//! The MCP tools: `greet` (a greeting for the given name, as in the example), `whoami` (the
//! caller's subject, client and scopes from the validated token, which shows the authorization
//! context reaching the tools), `save_note` (a write: it needs `mcp.write`) and `list_notes`
//! (the caller's notes, read back; the notes belong to the `Notes` actor). The gate
//! puts the [`Caller`] into the request; rmcp hands the request parts to tools as an
//! extension. Each tool declares the scope it needs in [`TOOL_SCOPES`]; the scope gate answers a
//! call with a too-narrow token with 403 `insufficient_scope` before the tool runs (RS-2).

use super::caller::Caller;
use super::tool_scopes::ToolScopes;
use crate::actors::notes::{ListNotes, Notes, SaveNote};
use crate::actors::{AskError, ask};
use kameo::actor::ActorRef;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use std::sync::Arc;

/// The scope each tool needs. Listing tools needs only the baseline scope; calling one needs its
/// scope here. A tool missing from this table would need only the baseline scope: the test below
/// fails for one.
pub const TOOL_SCOPES: &[(&str, &str)] = &[
    ("greet", "mcp.read"),
    ("whoami", "mcp.read"),
    ("save_note", "mcp.write"),
    ("list_notes", "mcp.read"),
];

/// The scope each of these tools needs, as the scope gate reads it.
pub fn tool_scopes() -> ToolScopes {
    TOOL_SCOPES.iter().copied().collect()
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SaveNoteRequest {
    /// The text of the note.
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GreetRequest {
    /// The name of the person to greet.
    pub name: String,
}

/// The MCP server's tools.
#[derive(Clone)]
pub struct McpTools {
    tool_router: ToolRouter<Self>,
    notes: ActorRef<Notes>,
}

impl McpTools {
    pub fn new(notes: ActorRef<Notes>) -> Self {
        McpTools {
            tool_router: Self::tool_router(),
            notes,
        }
    }
}

#[tool_router]
impl McpTools {
    #[tool(
        description = "Greet someone by name.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn greet(&self, Parameters(GreetRequest { name }): Parameters<GreetRequest>) -> String {
        let name: String = name.chars().take(200).collect();
        format!("Hello, {name}!")
    }

    #[tool(
        description = "Show who is calling: the user, the client and the granted scopes.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn whoami(&self, Extension(parts): Extension<http::request::Parts>) -> String {
        match parts.extensions.get::<Caller>() {
            Some(caller) => serde_json::json!({
                "sub": &*caller.subject,
                "client_id": caller.client_id,
                "scopes": caller.scopes.iter().collect::<Vec<_>>(),
            })
            .to_string(),
            None => String::from("{\"error\":\"no authenticated caller\"}"),
        }
    }

    #[tool(
        description = "Save a note for the signed-in user (needs the mcp.write scope).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn save_note(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(SaveNoteRequest { text }): Parameters<SaveNoteRequest>,
    ) -> String {
        let Some(caller) = parts.extensions.get::<Caller>() else {
            return String::from("no authenticated caller");
        };
        let save = SaveNote {
            subject: Arc::clone(&caller.subject),
            text,
        };
        match ask(&self.notes, save).await {
            Ok(count) => format!("Saved. {} has {count} notes.", caller.subject),
            Err(AskError::Rejected(full)) => format!("Not saved: {full}."),
            Err(_) => String::from("Not saved: the notes are busy; try again."),
        }
    }

    #[tool(
        description = "List the signed-in user's notes, oldest first (needs the mcp.read scope).",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_notes(&self, Extension(parts): Extension<http::request::Parts>) -> String {
        let Some(caller) = parts.extensions.get::<Caller>() else {
            return String::from("{\"error\":\"no authenticated caller\"}");
        };
        let list = ListNotes {
            subject: Arc::clone(&caller.subject),
        };
        match ask(&self.notes, list).await {
            Ok(notes) => serde_json::json!({ "notes": notes }).to_string(),
            Err(_) => String::from("{\"error\":\"the notes are busy; try again\"}"),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "An MCP server protected by OAuth 2.1. Tools: greet (say hello), whoami (show the caller), save_note (needs mcp.write) and list_notes.",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_declares_its_scope() {
        let tools = McpTools::tool_router().list_all();
        assert_eq!(tools.len(), TOOL_SCOPES.len());
        for tool in tools {
            let scope = tool_scopes().scope_of(&tool.name).map(str::to_string);
            assert!(
                scope.is_some_and(|s| crate::oauth::scope::is_supported(&s)),
                "{} has no supported scope",
                tool.name
            );
        }
    }
}
