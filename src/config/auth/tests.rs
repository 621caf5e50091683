//! The table tests of the authorization server's settings: defaults, derived values, and every
//! refused combination naming its setting.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    auth: AuthServerConfig,
}

fn settings(args: &[&str]) -> Result<AuthSettings, ConfigError> {
    let mut all = vec!["test"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).unwrap().auth.validate()
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn the_defaults_group_into_durations() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.issuer, "http://localhost:8999");
    assert_eq!(s.listen, SocketAddr::from(([127, 0, 0, 1], 8999)));
    assert_eq!(
        s.known_resources,
        ["http://localhost:8990", "http://localhost:8990/mcp"]
    );
    assert_eq!(s.read_timeout, Duration::from_secs(10));
    assert_eq!(s.store, StoreSettings::Directory("./data".into()));
    assert_eq!(
        s.tokens,
        TokenSettings {
            access_ttl: Duration::from_secs(900),
            code_ttl: Duration::from_secs(600),
            refresh: RefreshSettings {
                idle_ttl: 14 * DAY,
                absolute_ttl: 90 * DAY,
                grace: Duration::from_secs(5),
            },
        }
    );
    assert_eq!(s.sessions.ttl, 8 * HOUR);
    assert_eq!(s.sessions.pending_request_ttl, Duration::from_secs(900));
    assert_eq!(s.sessions.consent_ttl, 30 * DAY);
    assert_eq!(s.sessions.cookie_secret.expose(), DEV_SESSION_SECRET);
    assert_eq!(s.keys.rotation, Some(30 * DAY));
    assert_eq!(s.keys.publication_delay, HOUR);
    assert!(s.keys.encryption_secret.is_none() && s.introspection_secret.is_none());
    assert_eq!(s.login.lockout, Duration::from_secs(900));
    assert_eq!(
        (s.login.failures_per_account, s.login.failures_per_source),
        (5, 20)
    );
    assert_eq!(
        s.rates,
        RateSettings {
            authorize_per_minute: 600,
            register_per_minute: 60,
            token_per_minute: 600,
            login_per_minute: 30,
        }
    );
    assert!(s.trusted_proxies.is_empty());
    assert!(s.registration.dynamic && s.cimd.enabled && !s.cimd.allow_private);
    assert!(!s.registration.machine_clients);
    assert_eq!(s.registration.extra_redirect_schemes, ["cursor"]);
    assert_eq!(s.registration.unused_client_ttl, DAY);
    assert_eq!(s.cimd.timeout, Duration::from_secs(5));
    assert_eq!(s.limits.max_clients, 100_000);
    assert_eq!(s.limits.max_refresh_families, 1_000_000);
    assert_eq!(s.limits.max_revocations, 1_000_000);
    assert_eq!(s.limits.max_api_body_bytes, 64 * 1024);
}

/// Each flag lands in its group, converted once.
#[test]
fn each_flag_lands_in_its_group() {
    type Check = fn(&AuthSettings) -> bool;
    let cases: &[(&[&str], Check)] = &[
        (&["--access-token-ttl", "60"], |s| {
            s.tokens.access_ttl == Duration::from_secs(60)
        }),
        (&["--auth-code-ttl", "30"], |s| {
            s.tokens.code_ttl == Duration::from_secs(30)
        }),
        (&["--refresh-grace-seconds", "0"], |s| {
            s.tokens.refresh.grace.is_zero()
        }),
        (&["--session-ttl", "120"], |s| {
            s.sessions.ttl == Duration::from_secs(120)
        }),
        (&["--key-rotation-interval", "0"], |s| {
            s.keys.rotation.is_none()
        }),
        (&["--in-memory"], |s| s.store == StoreSettings::InMemory),
        (&["--data-dir", "/var/lib/x"], |s| {
            s.store == StoreSettings::Directory("/var/lib/x".into())
        }),
        (&["--no-dynamic-registration"], |s| !s.registration.dynamic),
        (&["--dynamic-machine-clients"], |s| {
            s.registration.machine_clients
        }),
        (&["--no-client-metadata-documents"], |s| !s.cimd.enabled),
        (&["--cimd-allow-private", "--cimd-timeout", "2"], |s| {
            s.cimd.allow_private && s.cimd.timeout == Duration::from_secs(2)
        }),
        (&["--clients-file", "/nowhere/clients.toml"], |s| {
            s.registration.clients_file.as_deref() == Some("/nowhere/clients.toml".as_ref())
        }),
        (&["--users-file", "/nowhere/users.toml"], |s| {
            s.login.users_file.as_deref() == Some("/nowhere/users.toml".as_ref())
        }),
        (&["--login-lockout", "7"], |s| {
            s.login.lockout == Duration::from_secs(7)
        }),
        (&["--max-codes", "3", "--max-sessions", "4"], |s| {
            (s.limits.max_codes, s.limits.max_sessions) == (3, 4)
        }),
        (
            &[
                "--issuer",
                "https://auth.example.com/tenant",
                "--session-secret",
                "0123456789abcdef",
            ],
            |s| {
                s.is_https()
                    && s.endpoint("/token") == "https://auth.example.com/tenant/token"
                    && s.listen == SocketAddr::from(([127, 0, 0, 1], 443))
            },
        ),
        (&["--auth-listen", "0.0.0.0:9000"], |s| {
            s.listen == SocketAddr::from(([0, 0, 0, 0], 9000))
        }),
        (&["--known-resources", "http://a.example"], |s| {
            s.known_resources == ["http://a.example", "http://localhost:8990"]
        }),
        (&["--introspection-secret", "0123456789abcdef"], |s| {
            s.introspection_secret.as_ref().map(Secret::expose) == Some("0123456789abcdef")
        }),
        (&["--trusted-proxies", "10.1.2.3/8,192.168.1.7, ::1"], |s| {
            let shown: Vec<String> = s.trusted_proxies.iter().map(|n| n.to_string()).collect();
            shown == ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]
        }),
    ];
    for (args, check) in cases {
        let s = settings(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(check(&s), "{args:?}");
    }
}

#[test]
fn a_trusted_proxy_must_be_an_address_or_a_range() {
    for bad in ["proxy.example", "10.0.0.0/33", "", "1.2.3.4:80"] {
        assert!(
            Cli::try_parse_from(["test", "--trusted-proxies", bad]).is_err(),
            "{bad:?}"
        );
    }
}

/// A bad combination names the setting; the first bad one is reported.
#[test]
fn bad_settings_name_the_setting() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--issuer", "https://auth.example.com"],
            "AUTH_SERVER_SESSION_SECRET",
        ),
        (&["--session-secret", "short"], "AUTH_SERVER_SESSION_SECRET"),
        (
            &[
                "--key-rotation-interval",
                "60",
                "--key-publication-delay",
                "60",
            ],
            "AUTH_SERVER_KEY_PUBLICATION_DELAY_SECONDS",
        ),
        (
            &["--key-encryption-secret", "short"],
            "AUTH_SERVER_KEY_ENCRYPTION_SECRET",
        ),
        (
            &[
                "--refresh-idle-ttl-seconds",
                "11",
                "--refresh-absolute-ttl-seconds",
                "10",
            ],
            "AUTH_SERVER_REFRESH_IDLE_TTL_SECONDS",
        ),
        (
            &["--introspection-secret", "short"],
            "AUTH_SERVER_INTROSPECTION_SECRET",
        ),
        (&["--metrics-token", "short"], "AUTH_SERVER_METRICS_TOKEN"),
        // Replicas on PostgreSQL must share the secret that seals the signing keys.
        (
            &["--database-url", "postgres://db.internal/mcp"],
            "AUTH_SERVER_KEY_ENCRYPTION_SECRET",
        ),
        (&["--database-url", "mysql://db/x"], "DATABASE_URL"),
        (&["--database-url", "sqlite://"], "DATABASE_URL"),
        (
            &["--database-url", "sqlite://./data", "--in-memory"],
            "DATABASE_URL",
        ),
        (
            &[
                "--session-secret",
                "short",
                "--introspection-secret",
                "short",
            ],
            "AUTH_SERVER_SESSION_SECRET",
        ),
    ];
    crate::config::checks::assert_refused(cases, settings);
    // Rotation off: any publication delay goes.
    assert!(
        settings(&[
            "--key-rotation-interval",
            "0",
            "--key-publication-delay",
            "60"
        ])
        .is_ok()
    );
}

/// `DATABASE_URL` picks the backend; the URL's password never shows in the settings' Debug.
#[test]
fn the_database_url_picks_the_store() {
    let secret = ["--key-encryption-secret", "a secret of sixteen or more"];
    let pg = settings(
        &[
            &["--database-url", "postgres://u:hunter2@db/mcp"][..],
            &secret,
        ]
        .concat(),
    )
    .expect("postgres");
    assert!(
        matches!(&pg.store, StoreSettings::Postgres { url, .. } if url == "postgres://u:hunter2@db/mcp")
    );
    let shown = format!("{:?}", pg.store);
    assert!(
        !shown.contains("hunter2") && shown.contains("db/mcp"),
        "{shown}"
    );
    let lite = settings(&["--database-url", "sqlite:///var/lib/mcp"]).expect("sqlite");
    assert_eq!(lite.store, StoreSettings::Directory("/var/lib/mcp".into()));
    assert_eq!(
        settings(&[]).expect("default").store,
        StoreSettings::Directory("./data".into())
    );
}

/// Validation reads no file: a clients file or users file that does not exist is a path.
#[test]
fn validation_reads_no_file() {
    let s = settings(&[
        "--clients-file",
        "/does/not/exist.toml",
        "--users-file",
        "/does/not/exist either.toml",
        "--data-dir",
        "/does/not/exist",
    ]);
    assert!(s.is_ok());
}
