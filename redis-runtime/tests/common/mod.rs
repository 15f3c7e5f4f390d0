//! What the redaction checks (`redaction.rs`, and criterion 11 in
//! `streams.rs`) share: a login whose password must never show, and a
//! capture of everything `tracing` writes, to search for it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use redis_runtime::testing::{RedisServer, create_acl_user};
use redis_runtime::{Client, Config};
use tracing::subscriber::DefaultGuard;

/// The password of the ACL user `app` that [`secret_login`] logs in as.
pub(crate) const PASSWORD: &str = "s3cret";

/// A client logged in with real credentials, and everything `tracing`
/// wrote on this thread since just before it connected.
pub(crate) struct SecretLogin {
    pub(crate) server: RedisServer,
    /// `redis://app:<PASSWORD>@127.0.0.1:<port>/0`.
    pub(crate) url: String,
    /// The config made from `url`, connecting eagerly.
    #[allow(dead_code, reason = "only redaction.rs formats it")]
    pub(crate) config: Config,
    /// Logged in as `app`.
    pub(crate) client: Client,
    pub(crate) logs: CapturedLogs,
    /// The client that created the ACL user; kept alive like the server.
    pub(crate) _admin: Client,
    /// Captures until dropped.
    pub(crate) _guard: DefaultGuard,
}

/// Starts a server with the ACL user `app` (password [`PASSWORD`]), starts
/// capturing `tracing` output, and connects as `app` through a URL that
/// holds the password.
pub(crate) async fn secret_login() -> SecretLogin {
    let (server, admin) = RedisServer::start_with_client().await;
    create_acl_user(&admin, "app", PASSWORD).await;
    let url = format!("redis://app:{PASSWORD}@127.0.0.1:{}/0", server.port());

    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);

    let config = Config::builder(url.clone())
        .lazy_connect(false)
        .build()
        .expect("config");
    let client = Client::connect(config.clone())
        .await
        .expect("ACL login works");
    SecretLogin {
        server,
        url,
        config,
        client,
        logs,
        _admin: admin,
        _guard: guard,
    }
}

/// Collects everything `tracing` writes, to search it for secrets.
#[derive(Clone, Default)]
pub(crate) struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
