//! The servers under measurement: finding the binaries of the chosen Cargo profile, starting them
//! as child processes on free loopback ports, waiting until they answer, stopping them as an
//! operator would, and reading their resident memory and CPU time from `/proc`.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The Cargo profile whose server binaries are measured.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuildProfile {
    /// `cargo build --release`: what a first `cargo run --release` builds, quickly.
    Release,
    /// `cargo build --profile dist`: the optimised build for shipping and for benchmarks.
    Dist,
}

impl BuildProfile {
    /// The profile's name, which is also its directory under `target/`.
    pub fn name(self) -> &'static str {
        match self {
            BuildProfile::Release => "release",
            BuildProfile::Dist => "dist",
        }
    }

    /// The command that builds the servers in this profile.
    fn build_command(self) -> &'static str {
        match self {
            BuildProfile::Release => "cargo build --release",
            BuildProfile::Dist => "cargo build --profile dist",
        }
    }
}

/// The directory holding the server binaries of one profile: `target/<profile>/`, beside the
/// directory of this bench's own binary (whichever profile built the bench).
pub struct Binaries {
    pub profile: BuildProfile,
    dir: PathBuf,
}

impl Binaries {
    /// Finds the servers built in `profile`; an error naming the build command when they are not.
    pub fn locate(profile: BuildProfile) -> anyhow::Result<Binaries> {
        let exe = std::env::current_exe()?;
        let target = exe
            .parent()
            .and_then(Path::parent)
            .context("the bench's binary is not inside a target directory")?;
        let dir = target.join(profile.name());
        let binaries = Binaries { profile, dir };
        let server = binaries.path("mcp-oauth");
        if !server.exists() {
            bail!(
                "{} not found: build it with `{}`",
                server.display(),
                profile.build_command()
            );
        }
        Ok(binaries)
    }

    /// The path of one server binary (`mcp-oauth`, `auth-server` or `mcp-server`).
    pub fn path(&self, binary: &str) -> PathBuf {
        self.dir.join(binary)
    }

    /// The path of one of the crate's examples (`bare_rmcp`, the baseline), built in the same
    /// profile; an error naming the build command when it is not there.
    pub fn example(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("examples").join(name);
        if !path.exists() {
            bail!(
                "{} not found: build it with `{} --example {name}`",
                path.display(),
                self.profile.build_command()
            );
        }
        Ok(path)
    }
}

/// The baseline: rmcp serving the same tools with nothing in front (`examples/bare_rmcp.rs`),
/// a child process on a free loopback port; killed when dropped.
pub struct BareRmcp {
    child: Child,
    /// Its base URL; the MCP endpoint is its `/mcp`.
    pub url: String,
}

impl BareRmcp {
    pub async fn start(binaries: &Binaries) -> anyhow::Result<BareRmcp> {
        let port = free_port()?;
        let child = Command::new(binaries.example("bare_rmcp")?)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bare_rmcp")?;
        let bare = BareRmcp {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("bare_rmcp did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(bare)
    }
}

impl Drop for BareRmcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The servers' flags that lift every per-source and per-account limit: the bench measures the
/// servers' capacity, not their throttles.
pub fn no_limits() -> Vec<&'static str> {
    let lockouts = [
        "--login-failures-per-source",
        "0",
        "--login-failures-per-account",
        "0",
    ];
    [&mcp_oauth_testkit::NO_RATE_LIMITS[..], &lockouts[..]].concat()
}

/// An empty `RUST_LOG`: the servers then use their default filter, the flow trace at info, as
/// when it is unset; being set, it cannot be replaced by a `.env` file in the working directory.
pub const SERVERS_DEFAULT_FILTER: &str = "";

/// Both servers in one process (`mcp-oauth`).
pub struct Servers {
    child: Child,
    pub issuer: String,
    pub rs: String,
    /// Their stdout and stderr: the flow trace, and the count of trace lines dropped if any.
    pub log_file: PathBuf,
}

impl Servers {
    pub fn start(binaries: &Binaries, extra: &[&str]) -> anyhow::Result<Servers> {
        Self::start_with_log(binaries, extra, "warn")
    }

    pub fn start_with_log(
        binaries: &Binaries,
        extra: &[&str],
        log: &str,
    ) -> anyhow::Result<Servers> {
        Self::start_on(binaries, extra, log, &["--in-memory".into()], None)
    }

    /// The servers with the durable SQLite store in `data_dir` (the default configuration's
    /// store) instead of in memory, the trace at `log` (`warn`, or [`SERVERS_DEFAULT_FILTER`]
    /// for the servers as a user runs them, the trace written to a file).
    pub fn start_durable(
        binaries: &Binaries,
        extra: &[&str],
        data_dir: &Path,
        log: &str,
    ) -> anyhow::Result<Servers> {
        Self::start_on(
            binaries,
            extra,
            log,
            &["--data-dir".into(), data_dir.into()],
            None,
        )
    }

    /// The servers with their store on the PostgreSQL database at `url`; with `public`, a
    /// replica behind a balancer at those URLs (this one listening on ports of its own).
    pub fn start_on_database(
        binaries: &Binaries,
        extra: &[&str],
        url: &str,
        public: Option<&ServersView>,
    ) -> anyhow::Result<Servers> {
        let store = [
            "--database-url",
            url,
            "--key-encryption-secret",
            "the bench's key-encryption secret",
            "--session-secret",
            "the bench's shared session secret",
        ];
        Self::start_on(binaries, extra, "warn", &store.map(Into::into), public)
    }

    fn start_on(
        binaries: &Binaries,
        extra: &[&str],
        log: &str,
        store: &[std::ffi::OsString],
        public: Option<&ServersView>,
    ) -> anyhow::Result<Servers> {
        let bin = binaries.path("mcp-oauth");
        let as_port = free_port()?;
        let rs_port = free_port()?;
        // Trace lines go to a file, as an operator would keep them, not to a pipe nobody reads.
        let log_file = std::env::temp_dir().join(format!(
            "mcp-oauth-bench-{}-{as_port}.log",
            std::process::id()
        ));
        let issuer = format!("http://127.0.0.1:{as_port}");
        let rs = format!("http://127.0.0.1:{rs_port}");
        let listen = [
            "--auth-listen".to_string(),
            format!("127.0.0.1:{as_port}"),
            "--mcp-listen".to_string(),
            format!("127.0.0.1:{rs_port}"),
        ];
        let (public_issuer, public_rs) = match public {
            Some(view) => (view.issuer.clone(), view.rs.clone()),
            None => (issuer.clone(), rs.clone()),
        };
        // A profiler may wrap the server: MCP_OAUTH_BENCH_WRAP="valgrind --tool=callgrind".
        let wrap = std::env::var("MCP_OAUTH_BENCH_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut command = match wrap.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(wrap).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let output = std::fs::File::create(&log_file)?;
        // Measure the servers, not the disk, unless the disk is what is measured.
        command.args(store);
        if public.is_some() {
            command.args(listen);
        }
        let child = command
            .args([
                "--issuer",
                &public_issuer,
                "--resource",
                &public_rs,
                "--authorization-server",
                &public_issuer,
                "--resource-server",
                &public_rs,
            ])
            .args(extra)
            .env("RUST_LOG", log)
            .stderr(output.try_clone()?)
            .stdout(output)
            .spawn()
            .context("starting mcp-oauth")?;
        Ok(Servers {
            child,
            issuer,
            rs,
            log_file,
        })
    }

    pub async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        // Under a profiler, start-up (key generation, hashing the demo users) is far slower.
        let patience = if std::env::var_os("MCP_OAUTH_BENCH_WRAP").is_some() {
            600
        } else {
            30
        };
        let deadline = Instant::now() + Duration::from_secs(patience);
        while Instant::now() < deadline {
            if http
                .get(format!("{}/oauth/jwks", self.issuer))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the servers did not start")
    }

    /// The process id of the servers (or of the profiler wrapping them).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// CPU time the servers have used so far (user and system).
    pub fn cpu(&self) -> Duration {
        cpu_of(&self.child.id().to_string())
    }

    /// Samples the server's RSS every 50 ms until the returned sampler is stopped; the sampler
    /// then gives the peak.
    pub fn sample_rss(&self) -> RssSampler {
        let pid = self.child.id();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_of(pid));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        });
        RssSampler { stop, task }
    }

    /// A view of running servers by their URLs (for closures that cannot borrow them).
    pub fn view(issuer: &str, rs: &str) -> ServersView {
        ServersView {
            issuer: issuer.to_string(),
            rs: rs.to_string(),
        }
    }

    pub fn urls(&self) -> ServersView {
        Self::view(&self.issuer, &self.rs)
    }
}

impl Drop for Servers {
    /// Stops the servers as an operator would (SIGTERM, then they drain and exit), so that a
    /// wrapping profiler writes its output; SIGKILL only if they do not exit in time.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let patience = if std::env::var_os("MCP_OAUTH_BENCH_WRAP").is_some() {
            120
        } else {
            15
        };
        let deadline = Instant::now() + Duration::from_secs(patience);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URLs of running servers.
#[derive(Clone)]
pub struct ServersView {
    pub issuer: String,
    pub rs: String,
}

impl ServersView {
    /// The MCP endpoint.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.rs)
    }
}

/// A running RSS sampler (see [`Servers::sample_rss`]).
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    /// Stops sampling; the peak RSS seen, in KiB.
    pub async fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}

/// RSS after the allocator has had a moment to return freed memory.
pub async fn settled_rss(servers: &Servers) -> u64 {
    tokio::time::sleep(Duration::from_secs(2)).await;
    servers.rss_kib()
}

/// Resident set size of a process, in KiB (0 when it cannot be read).
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user and system) a process has used, from `/proc/<pid>/stat`; zero if unreadable.
pub fn cpu_of(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and
    // 13th, in clock ticks (100 per second on Linux).
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Idle RSS of one server binary started alone (`auth-server` or `mcp-server`), once it answers
/// `probe` and has settled.
pub async fn idle_rss_alone(
    binaries: &Binaries,
    binary: &str,
    args: &[String],
    probe: &str,
) -> anyhow::Result<u64> {
    let bin = binaries.path(binary);
    let mut child = Command::new(&bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = false;
    while Instant::now() < deadline && !ready {
        ready = http.get(probe).send().await.is_ok();
        if !ready {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    if !ready {
        bail!("{binary} did not start");
    }
    Ok(rss)
}

/// A loopback port free at the moment of asking.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
