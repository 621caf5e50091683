//! What each binary's `main` does: parse the command line, validate the settings, start the
//! tracing, build the servers and serve until SIGINT or SIGTERM. It lives in the library, behind
//! one non-generic function per program, so that the async runtime, the argument parser and the
//! servers' generic code are compiled once, here; with generics not shared between crates in
//! optimised builds, each binary would otherwise compile them again (about a minute of a first
//! release build each). The binaries under `src/bin/` are one line each.
//!
//! Exit codes: 0 after a clean stop, 2 for a bad setting (one line naming it), 1 for anything
//! else that stops a server from starting or serving.

use crate::config::{AuthServerConfig, ConfigError, McpServerConfig, PublicConfig};
use crate::http::auth_server::{self, AuthServer};
use crate::http::mcp_server::{self, McpServer};
use crate::otel::OtelError;
use crate::trace::LogFormat;
use crate::users::UserError;
use clap::{Parser, Subcommand};
use std::future::Future;
use std::io::Read;
use std::process::ExitCode;

/// The end of every program's `--help`: the export's settings are the standard `OTEL_*`
/// variables, read by the OpenTelemetry SDK and not by the argument parser.
const OTEL_HELP: &str = "OpenTelemetry: set OTEL_EXPORTER_OTLP_ENDPOINT to an OTLP/HTTP collector \
(e.g. http://localhost:4318) to export the request spans; OTEL_SERVICE_NAME, \
OTEL_EXPORTER_OTLP_HEADERS and the other standard OTEL_* variables apply.";

/// mcp-oauth: an OAuth 2.1 authorization server and an MCP resource server, with a flow trace.
#[derive(Parser)]
#[command(
    name = "mcp-oauth",
    version,
    about,
    after_help = OTEL_HELP,
    args_conflicts_with_subcommands = true
)]
struct BothCli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    public: PublicConfig,
    #[command(flatten)]
    auth: AuthServerConfig,
    #[command(flatten)]
    mcp: McpServerConfig,
    /// Log format: human-readable lines or JSON objects.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Read a password from standard input (one line) and print its argon2id hash (a PHC string)
    /// for the `password_hash` of a users file.
    HashPassword,
    /// Read a flow trace (text or JSON lines, from a file or standard input): list its flows, or
    /// draw one as a sequence diagram with `--flow ID`.
    Trace(TraceArgs),
    /// Manage the authorization server's store while the servers run: clients, grants, users,
    /// signing keys and sessions. A running server applies each change within a second.
    Admin(crate::admin::AdminArgs),
}

#[derive(clap::Args)]
struct TraceArgs {
    /// The log to read (standard input when absent or `-`).
    file: Option<std::path::PathBuf>,
    /// Draw this flow; without it, list the flows.
    #[arg(long)]
    flow: Option<String>,
    /// How to draw the flow.
    #[arg(long, value_enum, default_value = "text")]
    format: DrawFormat,
    /// Keep reading as the log grows (a file) or until it ends (standard input), printing what
    /// is new: the flow list when it changes, or the flow's new messages (text only).
    #[arg(long)]
    follow: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DrawFormat {
    /// One message per line, in the terminal.
    Text,
    /// A Mermaid `sequenceDiagram`.
    Mermaid,
    /// A self-contained SVG picture.
    Svg,
}

/// The OAuth 2.1 authorization server of mcp-oauth.
#[derive(Parser)]
#[command(name = "auth-server", version, about, after_help = OTEL_HELP)]
struct AuthCli {
    #[command(flatten)]
    auth: AuthServerConfig,
    /// Log format: human-readable lines or JSON objects.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

/// The MCP resource server of mcp-oauth.
#[derive(Parser)]
#[command(name = "mcp-server", version, about, after_help = OTEL_HELP)]
struct McpCli {
    #[command(flatten)]
    mcp: McpServerConfig,
    /// Log format: human-readable lines or JSON objects.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

impl From<crate::trace::TraceError> for ProgramError {
    fn from(e: crate::trace::TraceError) -> Self {
        match e {
            crate::trace::TraceError::Otel(e) => Self::Telemetry(e),
            crate::trace::TraceError::Writer(e) => Self::Io(e),
        }
    }
}

/// Why a program stopped with an error.
#[derive(Debug, thiserror::Error)]
enum ProgramError {
    /// A bad setting: exit code 2.
    #[error(transparent)]
    Setting(#[from] ConfigError),
    /// A bad `OTEL_*` setting: exit code 2 too.
    #[error(transparent)]
    Telemetry(#[from] OtelError),
    #[error("the authorization server: {0}")]
    AuthServer(#[source] auth_server::BuildError),
    #[error("the MCP server: {0}")]
    McpServer(#[from] mcp_server::BuildError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Users(#[from] UserError),
    #[error("no password on standard input")]
    NoPassword,
    #[error("no line of the log belongs to flow {0}")]
    NoSuchFlow(String),
    #[error("--follow draws a flow only as text")]
    FollowNeedsText,
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
}

impl From<auth_server::BuildError> for ProgramError {
    fn from(error: auth_server::BuildError) -> Self {
        match error {
            // A clients file that cannot be used is a bad setting, reported as one.
            auth_server::BuildError::Setting(e) => Self::Setting(e),
            e => Self::AuthServer(e),
        }
    }
}

/// `mcp-oauth`: both servers in one process, or one of its commands (`hash-password`, `trace`,
/// `admin`).
pub fn mcp_oauth() -> ExitCode {
    run(both_servers)
}

/// `auth-server`: the authorization server alone.
pub fn auth_server() -> ExitCode {
    run(auth_server_alone)
}

/// `mcp-server`: the MCP resource server alone.
pub fn mcp_server() -> ExitCode {
    run(mcp_server_alone)
}

/// Loads `.env`, runs `program` on a multi-threaded runtime and turns its outcome into the exit
/// code, printing an error as one line.
fn run<F: Future<Output = Result<(), ProgramError>>>(program: fn() -> F) -> ExitCode {
    crate::memory::configure_allocator();
    if let Err(line) = load_dotenv() {
        eprintln!("{line}");
        return ExitCode::from(2);
    }
    let outcome = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(program()),
        Err(e) => Err(ProgramError::Io(e)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(ProgramError::Setting(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(ProgramError::Telemetry(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(ProgramError::NoPassword) => {
            eprintln!("error: {}", ProgramError::NoPassword);
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Reads `.env` from the working directory only (never a parent's), without overriding the
/// environment. A line it cannot read is a bad setting: the error names the line by its number,
/// not its text, which may hold a secret.
fn load_dotenv() -> Result<(), String> {
    const FILE: &str = ".env";
    match dotenvy::from_path(FILE) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(text, _)) => {
            let first = text.lines().next().unwrap_or_default().trim();
            let number = std::fs::read_to_string(FILE)
                .ok()
                .and_then(|file| file.lines().position(|l| l.trim() == first))
                .map_or_else(String::new, |i| format!(" line {}", i + 1));
            Err(format!(
                "error: {FILE}{number}: not a NAME=value line (quote a value with spaces or #)"
            ))
        }
        Err(e) => Err(format!("error: {FILE}: {e}")),
    }
}

/// The error and its sources on one line, each once.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

async fn both_servers() -> Result<(), ProgramError> {
    let mut cli = BothCli::parse();
    match cli.command.take() {
        Some(Command::HashPassword) => return hash_password(),
        Some(Command::Trace(args)) => return trace(args),
        Some(Command::Admin(args)) => return Ok(crate::admin::run(args).await?),
        None => {}
    }
    // The combined binary shares the resource-server credential by itself: the one either side
    // was given, or one made for this run. It guards the revocation feed and, with one switch
    // (`--introspect`), introspection.
    let shared = match (
        &cli.auth.introspection_secret,
        &cli.mcp.rs_introspection_secret,
    ) {
        (Some(secret), _) | (None, Some(secret)) => secret.clone(),
        (None, None) => crate::trace::random_token(32),
    };
    cli.auth
        .introspection_secret
        .get_or_insert_with(|| shared.clone());
    cli.mcp.rs_introspection_secret.get_or_insert(shared);
    let settings = cli.public.combine(cli.auth, cli.mcp)?;
    let (auth, mcp) = (settings.auth, settings.mcp);
    let _guard = crate::trace::init(cli.log_format, "mcp-oauth")?;
    // One recorder for the process, in place before either server's actors record anything,
    // whichever server has the metrics on.
    if auth.metrics || mcp.metrics {
        crate::http::metrics::install();
    }
    if let Some(listen) = settings.shared_listen {
        // One origin: the resource server's routes are served on the authorization server's
        // listener.
        let resource = mcp.mcp_resource();
        let auth = AuthServer::build(auth).await?;
        let (mcp, _) = McpServer::build_router(mcp, listen.ip().is_loopback()).await?;
        tracing::info!(server = "mcp", %resource, %listen, "MCP server on the same listener");
        auth.with_resource_server(mcp)
            .run_until(crate::http::shutdown_signal())
            .await?;
        return Ok(());
    }
    let auth = AuthServer::build(auth).await?;
    let mcp = McpServer::build(mcp).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::http::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let (auth, mcp) = tokio::join!(
        auth.run_until(stopped(stop_rx.clone())),
        mcp.run_until(stopped(stop_rx))
    );
    auth?;
    mcp?;
    Ok(())
}

async fn auth_server_alone() -> Result<(), ProgramError> {
    let cli = AuthCli::parse();
    let settings = cli.auth.validate()?;
    let _guard = crate::trace::init(cli.log_format, "auth-server")?;
    let server = AuthServer::build(settings).await?;
    server.run_until(crate::http::shutdown_signal()).await?;
    Ok(())
}

async fn mcp_server_alone() -> Result<(), ProgramError> {
    let cli = McpCli::parse();
    let settings = cli.mcp.validate()?;
    let _guard = crate::trace::init(cli.log_format, "mcp-server")?;
    let server = McpServer::build(settings).await?;
    server.run_until(crate::http::shutdown_signal()).await?;
    Ok(())
}

/// `mcp-oauth trace`: the flows of a log, or one flow drawn.
fn trace(args: TraceArgs) -> Result<(), ProgramError> {
    use crate::flow_view::{diagram, flows, parse_line, render_flows};
    let mut input: Box<dyn std::io::BufRead> = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            Box::new(std::io::BufReader::new(std::fs::File::open(path)?))
        }
        _ => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    if args.follow {
        return follow_trace(&args, input.as_mut());
    }
    let mut text = String::new();
    input.read_to_string(&mut text)?;
    let entries: Vec<_> = text.lines().filter_map(parse_line).collect();
    let Some(id) = args.flow else {
        print!("{}", render_flows(&flows(&entries)));
        return Ok(());
    };
    let drawn = diagram(&entries, &id);
    if drawn.arrows.is_empty() {
        return Err(ProgramError::NoSuchFlow(id));
    }
    print!(
        "{}",
        match args.format {
            DrawFormat::Text => crate::flow_view::render_text(&drawn),
            DrawFormat::Mermaid => crate::flow_view::render_mermaid(&drawn),
            DrawFormat::Svg => crate::flow_view::render_svg(&drawn),
        }
    );
    Ok(())
}

/// `mcp-oauth trace --follow`: reads line by line, waiting for more at the end of a file (a
/// stream ends at its end), and prints the flow list each time it changes, or each new message
/// of the flow.
fn follow_trace(args: &TraceArgs, input: &mut dyn std::io::BufRead) -> Result<(), ProgramError> {
    use crate::flow_view::{diagram, flows, parse_line, render_arrow, render_flows};
    use std::io::Write;
    if args.flow.is_some() && !matches!(args.format, DrawFormat::Text) {
        return Err(ProgramError::FollowNeedsText);
    }
    let is_file = args.file.as_ref().is_some_and(|p| p.as_os_str() != "-");
    let mut entries = Vec::new();
    let (mut shown_table, mut shown_arrows) = (String::new(), 0);
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            if !is_file {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
            continue;
        }
        let Some(entry) = parse_line(&line) else {
            continue;
        };
        entries.push(entry);
        let mut out = std::io::stdout().lock();
        match &args.flow {
            None => {
                let table = render_flows(&flows(&entries));
                if table != shown_table {
                    writeln!(out, "{table}")?;
                    shown_table = table;
                }
            }
            Some(id) => {
                let drawn = diagram(&entries, id);
                for arrow in &drawn.arrows[shown_arrows..] {
                    write!(out, "{}", render_arrow(arrow, 20))?;
                }
                shown_arrows = drawn.arrows.len();
            }
        }
        out.flush()?;
    }
}

/// `mcp-oauth hash-password`: one line of standard input in, its argon2id PHC string out.
fn hash_password() -> Result<(), ProgramError> {
    let mut input = String::new();
    std::io::stdin().take(4096).read_to_string(&mut input)?;
    let password = input.strip_suffix('\n').unwrap_or(&input);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(ProgramError::NoPassword);
    }
    println!("{}", crate::users::hash_password(password)?);
    Ok(())
}
