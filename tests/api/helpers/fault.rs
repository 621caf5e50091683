//! A TCP path to PostgreSQL that a test cuts and restores, as a database restart or a network
//! fault would, for the tests of database outages (one server, and replicas behind a balancer).

/// A TCP path to PostgreSQL that the test can cut and restore, as a database restart or a
/// network fault would: while it is down, open connections are reset and new ones refused.
pub struct Fault {
    /// The database's URL through this path, for the servers.
    pub url: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Fault {
    /// A path to the database at `database_url`, up.
    pub async fn start(database_url: &str) -> Fault {
        let mut url = url::Url::parse(database_url).unwrap();
        let target = url.port().unwrap_or(5432);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (accept_up, accept_links) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                accept_links.lock().unwrap().push(link.abort_handle());
            }
        });
        url.set_port(Some(port)).unwrap();
        Fault {
            url: url.to_string(),
            up,
            links,
        }
    }

    /// Resets the open connections and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
