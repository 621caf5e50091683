//! Scratch PostgreSQL databases for tests: each test gets a database of its own with a unique
//! name on the machine's PostgreSQL server (`TEST_DATABASE_URL`, default the local server's
//! `postgres` database as the `postgres` user), dropped when the value is dropped. An unreachable
//! server fails the test with the reason: nothing is skipped silently.

use sqlx::Connection;

/// The server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that is dropped with this value.
pub struct ScratchDatabase {
    /// Its URL.
    pub url: String,
    name: String,
}

impl ScratchDatabase {
    /// Creates an empty database with a fresh name; panics, naming the server, when it cannot.
    pub async fn create() -> Self {
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed by this test: {e}"));
        let name = format!("mcp_oauth_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        ScratchDatabase {
            url: url.to_string(),
            name,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // From a thread of its own: the test's runtime may be gone or busy.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(&drop).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}
