//! `mcp-oauth trace`: reading the flow trace back. Lines (the text format or JSON, as the
//! servers write them) become [`Entry`]s; [`flows`] lists the flows they contain, and [`diagram`]
//! turns one flow into a sequence of messages between participants (the MCP client, the browser,
//! the authorization server's endpoints, each actor, the MCP server and the tool), which
//! [`render_text`], [`render_mermaid`] and [`render_svg`] draw.
//!
//! Pure functions over strings: no I/O here (the command in `cli.rs` reads the file).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One line of the trace, as far as the diagram needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub timestamp: String,
    /// `auth` or `mcp` (the request span's name), empty outside a request.
    pub server: String,
    pub message: String,
    pub flow: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    /// Every `name=value` field of the line (the span's too), values unquoted.
    pub fields: BTreeMap<String, String>,
}

/// Reads one line of either format; `None` for a line that is neither.
pub fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.starts_with('{') {
        parse_json(line)
    } else {
        parse_text(line)
    }
}

fn parse_json(line: &str) -> Option<Entry> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let object = value.as_object()?;
    let mut fields = BTreeMap::new();
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    for (name, v) in object {
        if !matches!(
            name.as_str(),
            "span" | "spans" | "timestamp" | "level" | "message"
        ) {
            fields.insert(name.clone(), text(v));
        }
    }
    let mut server = String::new();
    if let Some(span) = object.get("span").and_then(|s| s.as_object()) {
        for (name, v) in span {
            if name == "name" {
                server = text(v);
            } else {
                fields.insert(name.clone(), text(v));
            }
        }
    }
    Some(Entry {
        timestamp: object.get("timestamp").map(text).unwrap_or_default(),
        server,
        message: object.get("message").map(text).unwrap_or_default(),
        flow: fields.get("flow").cloned(),
        method: fields.get("method").cloned(),
        path: fields.get("path").cloned(),
        fields,
    })
}

/// `2026-…Z  INFO auth: message k=v k="v w" method=GET path=/x flow=f`.
fn parse_text(line: &str) -> Option<Entry> {
    let (timestamp, rest) = line.split_once(' ')?;
    let rest = rest.trim_start();
    let (_level, rest) = rest.split_once(' ')?;
    let rest = rest.trim_start();
    // The request span's name, when the line was written inside a request.
    let (server, rest) = match rest.split_once(": ") {
        Some((span @ ("auth" | "mcp"), rest)) => (span.to_string(), rest),
        _ => (String::new(), rest),
    };
    // The message runs up to the first ` name=` field.
    let mut message_end = rest.len();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while let Some(at) = rest[i..].find(' ') {
        let start = i + at + 1;
        let word_end = rest[start..]
            .find([' ', '='])
            .map_or(rest.len(), |e| start + e);
        if word_end < rest.len()
            && bytes[word_end] == b'='
            && rest[start..word_end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            && !rest[..start].contains(" <- ")
        {
            message_end = start - 1;
            break;
        }
        i = start;
    }
    // An actor message line (`Actor <- Message { … }`) keeps its fields in the message; the
    // `outcome=` that follows the message starts the fields.
    if let Some(arrow) = rest.find(" <- ")
        && let Some(outcome) = rest[arrow..].find(" outcome=")
    {
        message_end = arrow + outcome;
    }
    let message = rest[..message_end].to_string();
    let fields = parse_fields(&rest[message_end..]);
    Some(Entry {
        timestamp: timestamp.to_string(),
        server,
        message,
        flow: fields.get("flow").cloned(),
        method: fields.get("method").cloned(),
        path: fields.get("path").cloned(),
        fields,
    })
}

/// ` a=1 b="x y" c=z` as a map (the last of a repeated name wins).
fn parse_fields(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut rest = text.trim_start();
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().to_string();
        rest = &rest[eq + 1..];
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            let value = quoted[..end].to_string();
            rest = quoted.get(end + 1..).unwrap_or("");
            value
        } else {
            // Up to the next ` name=`.
            let mut end = rest.len();
            let mut search = 0;
            while let Some(space) = rest[search..].find(' ') {
                let start = search + space + 1;
                let next = &rest[start..];
                if next
                    .find('=')
                    .is_some_and(|e| !next[..e].contains(' ') && e > 0)
                {
                    end = start - 1;
                    break;
                }
                search = start;
            }
            let value = rest[..end].to_string();
            rest = &rest[end..];
            value
        };
        fields.insert(name, value);
        rest = rest.trim_start();
    }
    fields
}

/// One flow seen in the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSummary {
    pub id: String,
    pub user: String,
    pub client: String,
    pub start: String,
    pub end: String,
    /// What became of it: `token`, `refused`, `denied` or `pending`.
    pub outcome: String,
    pub lines: usize,
}

/// The flows of `entries`, in the order they started.
pub fn flows(entries: &[Entry]) -> Vec<FlowSummary> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, FlowSummary> = BTreeMap::new();
    for entry in entries {
        let Some(id) = &entry.flow else { continue };
        let summary = by_id.entry(id.clone()).or_insert_with(|| {
            order.push(id.clone());
            FlowSummary {
                id: id.clone(),
                user: String::new(),
                client: String::new(),
                start: entry.timestamp.clone(),
                end: entry.timestamp.clone(),
                outcome: "pending".into(),
                lines: 0,
            }
        });
        summary.lines += 1;
        summary.end = entry.timestamp.clone();
        if let Some(client) = entry.fields.get("client_id")
            && summary.client.is_empty()
        {
            summary.client = client.clone();
        }
        if let Some(sub) = entry.fields.get("sub")
            && summary.user.is_empty()
        {
            summary.user = sub.clone();
        }
        let message = entry.message.as_str();
        if message.starts_with("access token issued")
            || message.starts_with("access token refreshed")
        {
            summary.outcome = "token".into();
        } else if message.starts_with("authorization refused") && summary.outcome == "pending" {
            summary.outcome =
                if entry.fields.get("error").map(String::as_str) == Some("access_denied") {
                    "denied".into()
                } else {
                    "refused".into()
                };
        }
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect()
}

/// A message of the diagram: from one participant to another, with its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow {
    pub from: String,
    pub to: String,
    pub label: String,
}

/// The participants of a flow's diagram in order of appearance, and its messages in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagram {
    pub participants: Vec<String>,
    pub arrows: Vec<Arrow>,
}

impl Diagram {
    fn send(&mut self, from: &str, to: &str, label: String) {
        for p in [from, to] {
            if !self.participants.iter().any(|q| q == p) {
                self.participants.push(p.to_string());
            }
        }
        self.arrows.push(Arrow {
            from: from.into(),
            to: to.into(),
            label,
        });
    }
}

/// Who sends a request to this endpoint: the browser for the pages, the MCP client otherwise.
fn caller(path: &str) -> &'static str {
    let page = ["/authorize", "/login", "/consent", "/account", "/logout"];
    if page.iter().any(|p| path.ends_with(p)) {
        "Browser"
    } else {
        "MCP client"
    }
}

fn endpoint(entry: &Entry) -> String {
    let path = entry.path.as_deref().unwrap_or("?");
    if entry.server == "mcp" {
        "MCP server".into()
    } else {
        format!("AS {path}")
    }
}

/// The diagram of flow `id`: each request from its caller to the endpoint, each actor message
/// from the endpoint to the actor, each tool call from the MCP server to the tool, each answer
/// back, and the flow's timer expiries as messages from the actor to itself.
pub fn diagram(entries: &[Entry], id: &str) -> Diagram {
    let mut d = Diagram::default();
    // Requests in progress, by (server, method, path): their endpoint participant.
    let mut open: Vec<(String, String, String)> = Vec::new();
    for entry in entries.iter().filter(|e| e.flow.as_deref() == Some(id)) {
        let Some(path) = entry.path.clone() else {
            // Outside a request: a timer of an actor.
            if let Some(actor) = entry.fields.get("actor") {
                d.send(actor, actor, entry.message.clone());
            }
            continue;
        };
        let method = entry.method.clone().unwrap_or_default();
        let key = (entry.server.clone(), method.clone(), path.clone());
        let target = endpoint(entry);
        if !open.contains(&key) {
            open.push(key.clone());
            let label = if entry.server == "mcp" {
                format!("{method} {path}")
            } else {
                format!("{method} {}", short_path(&path))
            };
            d.send(caller(&path), &target, label);
        }
        if entry.message == "response out" {
            // An MCP request's answer names the JSON-RPC methods it carried.
            if let Some(method) = entry.fields.get("mcp_method")
                && method.starts_with("tools/call")
            {
                d.send(&target, "Tool", method.clone());
            }
            let status = entry.fields.get("status").cloned().unwrap_or_default();
            d.send(&target, caller(&path), status);
            open.retain(|k| *k != key);
        } else if let Some((actor, message)) = entry.message.split_once(" <- ") {
            let name = message
                .split([' ', '(', '{'])
                .next()
                .unwrap_or(message)
                .to_string();
            d.send(&target, actor, name);
        } else if entry.message == "mcp request"
            && let Some(method) = entry.fields.get("mcp_method")
            && method.starts_with("tools/call")
        {
            // Logs written before the methods moved onto `response out`.
            d.send(&target, "Tool", method.clone());
        }
    }
    d
}

/// A path as the diagram shows it: its last segment (an issuer path is the same for all).
fn short_path(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((_, last)) if !last.is_empty() => format!("/{last}"),
        _ => path.to_string(),
    }
}

/// The diagram as text: one message per line, `from -> to: label`, aligned.
pub fn render_text(d: &Diagram) -> String {
    let width = d.participants.iter().map(|p| p.len()).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "participants: {}", d.participants.join(", "));
    for a in &d.arrows {
        out.push_str(&render_arrow(a, width));
    }
    out
}

/// One message as a line of text, the participants padded to `width`.
pub fn render_arrow(a: &Arrow, width: usize) -> String {
    let arrow = if a.from == a.to { "↺ " } else { "──▶" };
    format!("{:>width$} {arrow} {:<width$}  {}\n", a.from, a.to, a.label)
}

fn mermaid_id(index: usize) -> String {
    format!("P{index}")
}

/// The diagram as a Mermaid `sequenceDiagram`.
pub fn render_mermaid(d: &Diagram) -> String {
    let mut out = String::from("sequenceDiagram\n");
    let index = |name: &str| d.participants.iter().position(|p| p == name).unwrap_or(0);
    for (i, p) in d.participants.iter().enumerate() {
        let _ = writeln!(
            out,
            "    participant {} as {}",
            mermaid_id(i),
            mermaid_text(p)
        );
    }
    for a in &d.arrows {
        let _ = writeln!(
            out,
            "    {}->>{}: {}",
            mermaid_id(index(&a.from)),
            mermaid_id(index(&a.to)),
            mermaid_text(&a.label)
        );
    }
    out
}

/// Text Mermaid shows as written: no `;`, `#`, line breaks or arrows of its own.
fn mermaid_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ';' | '#' | '\n' | '\r' | '>' | '<' => ' ',
            c => c,
        })
        .collect()
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The diagram as a self-contained SVG picture: a column per participant with its lifeline, an
/// arrow per message, top to bottom.
pub fn render_svg(d: &Diagram) -> String {
    const COLUMN: usize = 150;
    const ROW: usize = 26;
    const TOP: usize = 50;
    let width = COLUMN * d.participants.len().max(1) + 40;
    let height = TOP + ROW * (d.arrows.len() + 1) + 20;
    let x = |name: &str| {
        20 + COLUMN / 2 + COLUMN * d.participants.iter().position(|p| p == name).unwrap_or(0)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"##
    );
    let _ = writeln!(
        out,
        r##"<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#334"/></marker></defs>"##
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    for p in &d.participants {
        let cx = x(p);
        let _ = writeln!(
            out,
            r##"<rect x="{}" y="10" width="{}" height="24" rx="4" fill="#e0e7ff" stroke="#334"/><text x="{cx}" y="26" text-anchor="middle">{}</text>"##,
            cx - COLUMN / 2 + 6,
            COLUMN - 12,
            xml(p)
        );
        let _ = writeln!(
            out,
            r##"<line x1="{cx}" y1="34" x2="{cx}" y2="{}" stroke="#99a" stroke-dasharray="4 3"/>"##,
            height - 10
        );
    }
    for (i, a) in d.arrows.iter().enumerate() {
        let y = TOP + ROW * (i + 1);
        let (x1, x2) = (x(&a.from), x(&a.to));
        if x1 == x2 {
            let _ = writeln!(
                out,
                r##"<path d="M{x1},{} h24 v10 h-22" fill="none" stroke="#334" marker-end="url(#head)"/><text x="{}" y="{}">{}</text>"##,
                y - 8,
                x1 + 28,
                y,
                xml(&a.label)
            );
        } else {
            let _ = writeln!(
                out,
                r##"<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#334" marker-end="url(#head)"/><text x="{}" y="{}" text-anchor="middle">{}</text>"##,
                (x1 + x2) / 2,
                y - 4,
                xml(&a.label)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The flow list as a table.
pub fn render_flows(list: &[FlowSummary]) -> String {
    let mut out = String::from(
        "flow          user      client                    start                        outcome  lines\n",
    );
    for f in list {
        let _ = writeln!(
            out,
            "{:<13} {:<9} {:<25} {:<28} {:<8} {}",
            f.id, f.user, f.client, f.start, f.outcome, f.lines
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"2026-12-04T20:40:35.321419Z  INFO auth: Throttle <- Admit { endpoint: Authorize, source: 127.0.0.1 } outcome="ok" us=222 method=GET path=/authorize flow=f1
2026-12-04T20:40:35.321640Z  INFO auth: authorization request client_id=c1 scope=mcp.read mcp.write resource=http://x/mcp method=GET path=/authorize flow=f1
2026-12-04T20:40:35.321986Z  INFO auth: response out status=302 us=807 method=GET path=/authorize flow=f1
2026-12-04T20:40:35.400000Z  INFO auth: response out status=200 us=1 method=GET path=/oauth/jwks
2026-12-04T20:40:36.000000Z  INFO auth: access token issued client_id=c1 sub=alice method=POST path=/token flow=f1
2026-12-04T20:40:36.100000Z  INFO mcp: response out status=200 us=250 sub=alice client_id=c1 mcp_method=tools/call greet method=POST path=/mcp flow=f1
2026-12-04T20:40:37.000000Z  INFO timer: code expired unredeemed actor="AuthorizationCodes" flow=f1"#;

    #[test]
    fn text_lines_read_back() {
        let entries: Vec<Entry> = TEXT.lines().filter_map(parse_line).collect();
        assert_eq!(entries.len(), 7);
        assert_eq!(
            entries[0].message,
            "Throttle <- Admit { endpoint: Authorize, source: 127.0.0.1 }"
        );
        assert_eq!(entries[0].fields["outcome"], "ok");
        assert_eq!(entries[1].message, "authorization request");
        assert_eq!(entries[1].fields["scope"], "mcp.read mcp.write");
        assert_eq!(entries[1].flow.as_deref(), Some("f1"));
        assert_eq!(entries[3].flow, None);
        assert_eq!(entries[5].server, "mcp");
        assert_eq!(entries[5].fields["mcp_method"], "tools/call greet");
    }

    #[test]
    fn a_flow_is_listed_and_drawn_in_order() {
        let entries: Vec<Entry> = TEXT.lines().filter_map(parse_line).collect();
        let list = flows(&entries);
        assert_eq!(list.len(), 1);
        assert_eq!(
            (
                list[0].user.as_str(),
                list[0].client.as_str(),
                list[0].outcome.as_str()
            ),
            ("alice", "c1", "token")
        );
        let d = diagram(&entries, "f1");
        assert_eq!(
            d.participants,
            [
                "Browser",
                "AS /authorize",
                "Throttle",
                "MCP client",
                "AS /token",
                "MCP server",
                "Tool",
                "AuthorizationCodes"
            ]
        );
        let labels: Vec<&str> = d.arrows.iter().map(|a| a.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "GET /authorize",
                "Admit",
                "302",
                "POST /token",
                "POST /mcp",
                "tools/call greet",
                "200",
                "timer: code expired unredeemed"
            ]
        );
        assert!(render_mermaid(&d).contains("P0->>P1: GET /authorize"));
        assert!(render_svg(&d).starts_with("<svg"));
    }

    #[test]
    fn json_lines_read_back() {
        let line = r#"{"timestamp":"t","level":"INFO","message":"response out","status":302,"span":{"flow":"f1","method":"GET","path":"/authorize","name":"auth"}}"#;
        let entry = parse_line(line).unwrap();
        assert_eq!(entry.server, "auth");
        assert_eq!(entry.flow.as_deref(), Some("f1"));
        assert_eq!(entry.fields["status"], "302");
    }
}
