//! Two servers on one PostgreSQL database behind haproxy, round robin per request, as
//! `docs/SCALING.md` deploys them: `durable --postgres` measures the writes through them. On two
//! cores this shows the cost of the shared database per request, not scaling.

use crate::servers::{Binaries, Servers, ServersView, free_port};
use anyhow::{Context, bail};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The replicas and the balancer in front of them; stopped when dropped.
pub struct Replicas {
    pub servers: Vec<Servers>,
    haproxy: Child,
    config: std::path::PathBuf,
    /// The public URLs: the balancer's.
    pub view: ServersView,
}

impl Drop for Replicas {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// haproxy, from the path or where Debian puts it; `None` when it is not installed.
pub fn haproxy() -> Option<String> {
    ["haproxy", "/usr/sbin/haproxy"]
        .into_iter()
        .find(|candidate| {
            Command::new(candidate)
                .arg("-v")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_string)
}

impl Replicas {
    /// Two servers on the database at `url`, with `extra` settings, behind `haproxy`.
    pub async fn start(
        binaries: &Binaries,
        haproxy: &str,
        extra: &[&str],
        url: &str,
    ) -> anyhow::Result<Replicas> {
        let front = (free_port()?, free_port()?);
        let view = ServersView {
            issuer: format!("http://127.0.0.1:{}", front.0),
            rs: format!("http://127.0.0.1:{}", front.1),
        };
        let servers = vec![
            Servers::start_on_database(binaries, extra, url, Some(&view))?,
            Servers::start_on_database(binaries, extra, url, Some(&view))?,
        ];
        let port = |url: &str| url.rsplit(':').next().unwrap_or_default().to_string();
        let file = std::env::temp_dir().join(format!(
            "mcp-oauth-bench-haproxy-{}-{}.cfg",
            std::process::id(),
            front.0
        ));
        // The configuration of `docs/SCALING.md` (`tests/haproxy.cfg`), with these ports.
        let ports = [
            ("@AUTH_FRONT@", front.0.to_string()),
            ("@AUTH_1@", port(&servers[0].issuer)),
            ("@AUTH_2@", port(&servers[1].issuer)),
            ("@MCP_FRONT@", front.1.to_string()),
            ("@MCP_1@", port(&servers[0].rs)),
            ("@MCP_2@", port(&servers[1].rs)),
        ];
        let text = ports.iter().fold(
            include_str!("../../tests/haproxy.cfg").to_string(),
            |text, (name, port)| text.replace(name, port),
        );
        std::fs::write(&file, text)?;
        let haproxy = Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting haproxy")?;
        let replicas = Replicas {
            servers,
            haproxy,
            config: file,
            view,
        };
        let http = reqwest::Client::new();
        for server in &replicas.servers {
            server.wait_ready(&http).await?;
        }
        // Ready through the balancer once its checks have taken both servers in.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{}/readyz", replicas.view.issuer))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                tokio::time::sleep(Duration::from_secs(2)).await;
                return Ok(replicas);
            }
            if Instant::now() > deadline {
                bail!("the balancer did not come up");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
