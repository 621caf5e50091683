//! The binaries: `--help` lists every setting, a bad setting is one clear line and exit code 2,
//! a server that cannot start is one line and exit code 1, the default binary starts both
//! servers, logs JSON on request and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-oauth");

/// Both servers on ports of their own, in memory.
const LISTEN_IN_MEMORY: [&str; 5] = [
    "--auth-listen",
    "127.0.0.1:0",
    "--mcp-listen",
    "127.0.0.1:0",
    "--in-memory",
];

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(std::env::temp_dir());
    for var in [
        "AUTH_SERVER_ISSUER",
        "AUTH_SERVER_SESSION_SECRET",
        "RESOURCE_SERVER_URL",
        "AUTHORIZATION_SERVER_URL",
        "PUBLIC_URL",
        "LISTEN_ADDRESS",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Starts the default binary (both servers, in memory, on ports of their own) with `extra`
/// arguments and without the `unset` environment variables; its standard output is piped.
fn start_both(extra: &[&str], unset: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(BIN);
    cmd.args(LISTEN_IN_MEMORY)
        .args(extra)
        .current_dir(std::env::temp_dir());
    for var in unset {
        cmd.env_remove(var);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn help_lists_every_setting() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "AUTH_SERVER_ISSUER",
        "AUTH_SERVER_RESOURCE",
        "AUTH_SERVER_KNOWN_RESOURCES",
        "AUTH_SERVER_SESSION_SECRET",
        "AUTH_SERVER_ACCESS_TOKEN_TTL_SECONDS",
        "AUTH_SERVER_AUTH_CODE_TTL_SECONDS",
        "AUTHORIZATION_SERVER_URL",
        "RESOURCE_SERVER_URL",
        "JWKS_ENDPOINT",
        "REQUIRED_SCOPES",
        "AUTH_SERVER_LISTEN",
        "MCP_SERVER_LISTEN",
        "AUTH_SERVER_REFRESH_GRACE_SECONDS",
        "AUTH_SERVER_REFRESH_IDLE_TTL_SECONDS",
        "AUTH_SERVER_REFRESH_ABSOLUTE_TTL_SECONDS",
        "AUTH_SERVER_INTROSPECTION_SECRET",
        "MCP_INTROSPECT",
        "MCP_INTROSPECTION_SECRET",
        "MCP_INTROSPECTION_CACHE_SECONDS",
        "JWKS_REFRESH_SECONDS",
        "AUTH_SERVER_TRUSTED_PROXIES",
        "AUTH_SERVER_METRICS_TOKEN",
        "MCP_METRICS_TOKEN",
        "AUTH_SERVER_NO_METRICS",
        "MCP_NO_METRICS",
        "MCP_REVOCATION_FEED_ENDPOINT",
        "MCP_NO_REVOCATION_FEED",
        "MCP_REVOCATION_FEED_MAX_LAG_SECONDS",
        "AUTH_SERVER_CLIENTS_FILE",
        "AUTH_SERVER_NO_DYNAMIC_REGISTRATION",
        "AUTH_SERVER_DYNAMIC_MACHINE_CLIENTS",
        "AUTH_SERVER_NO_CLIENT_METADATA_DOCUMENTS",
        "AUTH_SERVER_CIMD_ALLOW_PRIVATE",
        "AUTH_SERVER_CIMD_TIMEOUT_SECONDS",
        "PUBLIC_URL",
        "LISTEN_ADDRESS",
        // Not a flag: the standard variable, named at the end.
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(help.contains(var), "--help names {var}");
    }
    assert!(help.contains("http://localhost:8999") && help.contains("http://localhost:8990"));
}

/// Every boolean variable takes the same spellings, and refuses anything else as a bad setting
/// (an unknown word is not silently true).
#[test]
fn boolean_variables_accept_the_same_spellings_everywhere() {
    // A later, unrelated bad setting stops the program once the booleans were read.
    let stop_after_parsing = [
        "--refresh-idle-ttl-seconds",
        "100",
        "--refresh-absolute-ttl-seconds",
        "10",
    ];
    for var in [
        "AUTH_SERVER_IN_MEMORY",
        "AUTH_SERVER_ALLOW_DEMO_USERS",
        "AUTH_SERVER_NO_DYNAMIC_REGISTRATION",
        "AUTH_SERVER_DYNAMIC_MACHINE_CLIENTS",
        "AUTH_SERVER_NO_CLIENT_METADATA_DOCUMENTS",
        "AUTH_SERVER_CIMD_ALLOW_PRIVATE",
        "AUTH_SERVER_NO_METRICS",
        "MCP_NO_METRICS",
        "MCP_INTROSPECT",
        "MCP_NO_REVOCATION_FEED",
    ] {
        for value in ["true", "false", "yes", "no", "on", "off", "1", "0"] {
            let out = run(&stop_after_parsing, &[(var, value)]);
            let err = String::from_utf8(out.stderr).unwrap();
            assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
            assert!(!err.contains("invalid value"), "{var}={value}: {err}");
        }
        let out = run(&stop_after_parsing, &[(var, "flase")]);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}=flase: {err}");
        assert!(err.contains("invalid value 'flase'"), "{var}=flase: {err}");
    }
}

#[test]
fn bad_settings_exit_2_with_one_clear_line() {
    let out = run(&["--issuer", "not a url"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--issuer"), "{err}");

    let out = run(&[], &[("AUTH_SERVER_ACCESS_TOKEN_TTL_SECONDS", "soon")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("access-token-ttl")
    );

    let out = run(&[], &[("AUTH_SERVER_ISSUER", "https://auth.example.com")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("AUTH_SERVER_SESSION_SECRET"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = run(
        &[
            "--refresh-idle-ttl-seconds",
            "100",
            "--refresh-absolute-ttl-seconds",
            "10",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("AUTH_SERVER_REFRESH_IDLE_TTL_SECONDS"),
        "{err}"
    );

    let out = run(&["--introspection-secret", "short"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("AUTH_SERVER_INTROSPECTION_SECRET"), "{err}");

    // The two servers' URLs disagree: every token would be refused, so neither starts.
    let out = run(
        &[
            "--issuer",
            "http://127.0.0.1:1",
            "--authorization-server",
            "http://127.0.0.1:2",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: AUTHORIZATION_SERVER_URL: ") && err.contains("AUTH_SERVER_ISSUER"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = run(&[], &[("PUBLIC_URL", "http://127.0.0.1:1/base")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: PUBLIC_URL: "), "{err}");

    let clients = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        clients.path(),
        "[[client]]\nclient_id = \"x\"\nredirect_uris = [\"http://example.com/cb\"]\n",
    )
    .unwrap();
    let clients_file = ["--clients-file", clients.path().to_str().unwrap()];
    let out = run(&[&LISTEN_IN_MEMORY[..], &clients_file].concat(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: AUTH_SERVER_CLIENTS_FILE: "),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // An identity-providers file naming a provider that cannot be used.
    let providers = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        providers.path(),
        "[[provider]]\nid = \"op\"\nkind = \"oidc\"\nissuer = \"http://op.example\"\nclient_id = \"c\"\n",
    )
    .unwrap();
    let providers_file = ["--identity-providers", providers.path().to_str().unwrap()];
    let out = run(&[&LISTEN_IN_MEMORY[..], &providers_file].concat(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: AUTH_SERVER_IDENTITY_PROVIDERS: ")
            && err.contains("provider op: issuer must be https"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn starts_both_servers_logs_json_and_stops_on_sigterm() {
    let mut child = start_both(
        // One switch: the combined binary shares an introspection secret by itself.
        &["--log-format", "json", "--introspect"],
        &[
            "MCP_INTROSPECTION_SECRET",
            "AUTH_SERVER_INTROSPECTION_SECRET",
        ],
    );
    // Read the output as a terminal would, all along: a reader that stops reading stalls the
    // trace's writer once the pipe is full.
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut lines = lines.into_iter();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut listening = 0;
    let mut introspecting = false;
    let mut mcp_listen = String::new();
    while listening < 2 && Instant::now() < deadline {
        let Some(line) = lines.next() else { break };
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        if event["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("listening"))
        {
            listening += 1;
            introspecting |= event["introspect"] == true;
            if event["message"] == "MCP server listening" {
                mcp_listen = event["listen"].as_str().unwrap_or_default().to_string();
            }
        }
    }
    assert_eq!(listening, 2, "both servers announce themselves");
    assert!(introspecting, "the MCP server introspects");
    // A burst of requests, each traced: the trace's writer batches its output, and stopping
    // the server must still write every line.
    let burst = 300;
    for _ in 0..burst {
        let mut stream = std::net::TcpStream::connect(&mcp_listen).unwrap();
        write!(
            stream,
            "POST /mcp HTTP/1.1\r\nHost: {mcp_listen}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap();
    let rest: Vec<serde_json::Value> = lines
        .map(|line| serde_json::from_str(&line).expect("JSON log lines"))
        .collect();
    let answered = rest
        .iter()
        .filter(|e| e["message"] == "response out" && e["status"] == 401)
        .count();
    assert_eq!(answered, burst, "every traced answer is written");
    assert!(
        rest.iter()
            .any(|e| e["message"] == "authorization server stopped; store closed"),
        "the last lines are written at exit"
    );
}

#[test]
fn logs_to_a_pipe_are_plain_text() {
    let mut child = start_both(&[], &["NO_COLOR"]);
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("INFO"), "{line}");
    assert!(
        !line.contains('\u{1b}'),
        "no colour codes in a pipe: {line:?}"
    );
}

#[test]
fn a_server_that_cannot_listen_exits_1_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(
        &[
            "--auth-listen",
            &addr,
            "--mcp-listen",
            "127.0.0.1:0",
            "--in-memory",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let line = format!("error: the authorization server: cannot listen on {addr}: ");
    assert!(err.starts_with(&line), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn the_single_server_binaries_name_themselves_and_refuse_bad_settings() {
    for (bin, bad) in [
        (env!("CARGO_BIN_EXE_auth-server"), "--issuer"),
        (env!("CARGO_BIN_EXE_mcp-server"), "--resource-server"),
    ] {
        let name = std::path::Path::new(bin)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let out = Command::new(bin).arg("--version").output().unwrap();
        assert!(out.status.success());
        let version = String::from_utf8(out.stdout).unwrap();
        assert!(version.starts_with(&format!("{name} ")), "{version}");

        let out = Command::new(bin)
            .args([bad, "not a url"])
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with("error: ") && err.contains(&bad[2..]),
            "{name}: {err}"
        );
    }
}

/// `.env` is read from the working directory only; a line it cannot read stops the program as a
/// bad setting, named by its number and not its text (which may hold a secret).
#[test]
fn dotenv_is_read_from_the_working_directory_only_and_a_bad_line_is_named() {
    let parent = tempfile::tempdir().unwrap();
    let child = parent.path().join("work");
    std::fs::create_dir(&child).unwrap();
    let in_dir = |dir: &std::path::Path, args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(dir);
        for var in [
            "AUTH_SERVER_ACCESS_TOKEN_TTL_SECONDS",
            "AUTH_SERVER_SESSION_SECRET",
        ] {
            cmd.env_remove(var);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8(out.stderr).unwrap())
    };
    // A later, unrelated bad setting stops the program once the settings were read.
    let stop = [
        "--refresh-idle-ttl-seconds",
        "100",
        "--refresh-absolute-ttl-seconds",
        "10",
    ];
    std::fs::write(
        parent.path().join(".env"),
        "AUTH_SERVER_ACCESS_TOKEN_TTL_SECONDS=soon\n",
    )
    .unwrap();
    let (code, err) = in_dir(&child, &stop);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("REFRESH_IDLE"),
        "the parent's .env was read: {err}"
    );
    let (code, err) = in_dir(parent.path(), &stop);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("access-token-ttl"),
        "this directory's .env: {err}"
    );

    std::fs::write(
        child.join(".env"),
        "# settings\nAUTH_SERVER_SESSION_SECRET=a-very-secret-value-1234\nthis is not a setting s3cr3t\n",
    )
    .unwrap();
    let (code, err) = in_dir(&child, &stop);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim(),
        "error: .env line 3: not a NAME=value line (quote a value with spaces or #)"
    );
    assert!(!err.contains("s3cr3t"));
}
