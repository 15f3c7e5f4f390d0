//! `rediss://`: a real TLS connection to a private `redis-server`, with a
//! private CA trusted through the config (needs the `tls` feature, which
//! `cargo test --workspace` turns on).
//!
//! A server binary built without TLS (CI's Valkey pass) cannot run these:
//! each test then prints `NOT APPLICABLE: tls::<test>: …` and returns. The
//! probe deciding that fails loudly when it cannot tell, so a TLS-capable
//! server always runs them in full.
#![cfg(feature = "tls")]

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use redis::AsyncCommands;
use redis_runtime::testing::{RedisServer, free_port, server_build};
use redis_runtime::{Client, Config, Context};

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    /// A client certificate the CA signed, and its key, for mutual TLS.
    client_cert_pem: String,
    client_key_pem: String,
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as files.
/// A config for `url` that trusts the test CA and presents the client
/// certificate, connecting at once.
fn mutual_tls_config(url: &str, pki: &Pki) -> Config {
    Config::builder(url)
        .tls_root_cert_pem(pki.ca_pem.clone())
        .tls_client_cert_pem(pki.client_cert_pem.clone(), pki.client_key_pem.clone())
        .lazy_connect(false)
        .build()
        .expect("config")
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("server params");
    params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    // A name of its own: with the CA's (rcgen's default for both), OpenSSL
    // takes the certificate for self-issued and does not find its CA,
    // which cluster nodes verifying each other do.
    params
        .distinguished_name
        .push(DnType::CommonName, "redis-runtime test server");
    let cert = params.signed_by(&key, &issuer).expect("server cert");

    let client_key = KeyPair::generate().expect("client key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, "redis-runtime test client");
    let client_cert = client_params
        .signed_by(&client_key, &issuer)
        .expect("client cert");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("server.crt"), cert.pem()).expect("write cert");
    std::fs::write(dir.path().join("server.key"), key.serialize_pem()).expect("write key");
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).expect("write ca");
    Pki {
        dir,
        ca_pem: ca.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// Whether the configured server can run TLS test `test`; if not, says so
/// in one line naming the test and the build.
fn applicable(test: &str) -> bool {
    let build = server_build();
    if build.supports_tls() {
        return true;
    }
    let why = match &build.tls {
        redis_runtime::testing::TlsSupport::NotCompiledIn { evidence } => evidence.as_str(),
        _ => "",
    };
    println!(
        "NOT APPLICABLE: tls::{test}: {} ({}) was built without TLS: {why}",
        build.bin, build.version
    );
    false
}

fn tls_server(pki: &Pki) -> (RedisServer, u16) {
    tls_server_authenticating(pki, false)
}

/// A server with a TLS port; with `clients`, it asks every client for a
/// certificate its CA signed (`tls-auth-clients yes`).
fn tls_server_authenticating(pki: &Pki, clients: bool) -> (RedisServer, u16) {
    let tls_port = free_port().expect("free port");
    let path = |name: &str| pki.dir.path().join(name).display().to_string();
    let args = [
        "--tls-port".to_string(),
        tls_port.to_string(),
        "--tls-cert-file".to_string(),
        path("server.crt"),
        "--tls-key-file".to_string(),
        path("server.key"),
        "--tls-ca-cert-file".to_string(),
        path("ca.crt"),
        "--tls-auth-clients".to_string(),
        if clients { "yes" } else { "no" }.to_string(),
    ];
    (RedisServer::start_with_args(&args), tls_port)
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate_the_server_asks_for() {
    if !applicable("mutual_tls_presents_the_client_certificate_the_server_asks_for") {
        return;
    }
    let pki = pki();
    let (_server, tls_port) = tls_server_authenticating(&pki, true);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let config = mutual_tls_config(&url, &pki);
    let client = Client::connect(config)
        .await
        .expect("connect with a client certificate");
    let read = redis_runtime::testing::set_get(&client, "mtls", "yes").await;
    assert_eq!(read.expect("a round trip"), "yes");
    client.shutdown().await;

    // Without one, the server ends the handshake: a typed error, in time.
    let without = Config::builder(&url)
        .tls_root_cert_pem(pki.ca_pem.clone())
        .connect_timeout(std::time::Duration::from_secs(1));
    refused(without).await;
    // The same through the environment variables, from files.
    let path = |name: &str| pki.dir.path().join(name);
    std::fs::write(path("client.crt"), &pki.client_cert_pem).expect("write");
    std::fs::write(path("client.key"), &pki.client_key_pem).expect("write");
    let vars = [
        ("REDIS_URL", url.clone()),
        ("REDIS_TLS_CA_FILE", path("ca.crt").display().to_string()),
        (
            "REDIS_TLS_CERT_FILE",
            path("client.crt").display().to_string(),
        ),
        (
            "REDIS_TLS_KEY_FILE",
            path("client.key").display().to_string(),
        ),
        ("REDIS_LAZY_CONNECT", "false".to_string()),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| value.clone())
    })
    .expect("config from the environment");
    assert!(!format!("{config:?}").contains("PRIVATE KEY"));
    let client = Client::connect(config).await.expect("connect");
    assert!(client.health().await.ok);
    client.shutdown().await;
}

#[tokio::test]
async fn rediss_connects_with_a_private_ca_and_acl_credentials() {
    if !applicable("rediss_connects_with_a_private_ca_and_acl_credentials") {
        return;
    }
    let pki = pki();
    let (server, tls_port) = tls_server(&pki);
    // An ACL user, created over the plain-text port.
    let admin = Client::connect(server.config()).await.expect("admin");
    redis_runtime::testing::raw_command(
        &admin,
        &[
            "ACL", "SETUSER", "app", "on", ">tls-pw", "~*", "&*", "+@all",
        ],
    )
    .await;

    let config = Config::builder(format!("rediss://app:tls-pw@127.0.0.1:{tls_port}/2"))
        .tls_root_cert_pem(pki.ca_pem.clone())
        .lazy_connect(false)
        .build()
        .expect("config");
    assert!(config.tls());
    let client = Client::connect(config).await.expect("TLS connect");
    assert!(client.health().await.ok);
    client
        .run(Context::new("test.tls", ""), |mut conn| async move {
            let _: () = conn.set("over-tls", "yes").await?;
            Ok(())
        })
        .await
        .expect("write over TLS");
    // The write went to database 2, as the URL said.
    let db2 = Client::connect(Config::from_url(&format!("{}/2", server.url())).expect("url"))
        .await
        .expect("db 2");
    let stored = redis_runtime::testing::raw_command(&db2, &["GET", "over-tls"]).await;
    assert_eq!(stored, redis::Value::BulkString(b"yes".to_vec()));
    let db0 = redis_runtime::testing::raw_command(&admin, &["EXISTS", "over-tls"]).await;
    assert_eq!(db0, redis::Value::Int(0));
}

#[tokio::test]
async fn rediss_refuses_a_server_certificate_from_an_unknown_ca() {
    if !applicable("rediss_refuses_a_server_certificate_from_an_unknown_ca") {
        return;
    }
    let pki = pki();
    let (_server, tls_port) = tls_server(&pki);
    refused_with_an_unknown_ca(&format!("rediss://127.0.0.1:{tls_port}")).await;
}

/// Connecting to `url` trusting a CA that did not sign the server's
/// certificate fails with a typed error.
async fn refused_with_an_unknown_ca(url: &str) {
    let other = pki();
    refused(Config::builder(url).tls_root_cert_pem(other.ca_pem.clone())).await;
}

/// Connecting eagerly with `config` fails with a typed error.
async fn refused(config: redis_runtime::ConfigBuilder) {
    let config = config.lazy_connect(false).build().expect("config");
    let err = Client::connect(config)
        .await
        .expect_err("a refused handshake");
    assert!(
        matches!(err.code(), "STORAGE_UNAVAILABLE" | "STORAGE_TIMEOUT"),
        "{err:?}"
    );
}

/// The TLS arguments of the cluster node on `port`: a TLS port of its own
/// (recorded in `tls_ports`) that asks clients for a certificate the CA
/// signed (the nodes present their own to each other), and TLS on the
/// cluster bus and replication
/// (with the bus on TLS, the slot map a TLS client is given names the
/// nodes' TLS ports, and replicas connect to those). The bus stays on
/// `port + 10000`, where the harness expects it.
fn tls_node_args(pki: &Pki, port: u16, tls_ports: &std::sync::Mutex<Vec<u16>>) -> Vec<String> {
    let tls_port = free_port().expect("free port");
    tls_ports
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(tls_port);
    let path = |name: &str| pki.dir.path().join(name).display().to_string();
    [
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path("server.crt"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.crt"),
        "--tls-auth-clients",
        "yes",
        "--tls-cluster",
        "yes",
        "--tls-replication",
        "yes",
        "--cluster-port",
        &(port + 10000).to_string(),
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_cluster_routes_scripts_and_subscriptions_over_tls() {
    if !applicable("rediss_cluster_routes_scripts_and_subscriptions_over_tls") {
        return;
    }
    let pki = pki();
    let tls_ports = std::sync::Mutex::new(Vec::new());
    let cluster = redis_runtime::testing::ClusterTopology::start_with_args(|port| {
        tls_node_args(&pki, port, &tls_ports)
    });
    let tls_ports = tls_ports.into_inner().unwrap_or_else(|e| e.into_inner());
    // The first node's TLS port alone: the client learns the others' TLS
    // ports from the slot map a TLS connection is given.
    let url = format!("rediss+cluster://127.0.0.1:{}", tls_ports[0]);
    let config = mutual_tls_config(&url, &pki);
    assert!(config.tls() && config.is_cluster());
    let client = Client::connect(config).await.expect("TLS cluster connect");
    // Keys on every master, each routed by its slot over TLS.
    for n in 0..30 {
        let mut set = redis::cmd("SET");
        set.arg(format!("tls-key-{n}")).arg(n);
        let _: () = client
            .write(Context::new("test.set", ""), &set)
            .await
            .expect("SET over TLS");
    }
    let script = redis::Script::new("return redis.call('GET', KEYS[1])");
    let mut call = script.prepare_invoke();
    call.key("tls-key-7");
    let seven: String = client
        .write(Context::new("test.script", ""), &call)
        .await
        .expect("a script over TLS");
    assert_eq!(seven, "7");
    // A classic subscription on a node of its own, over TLS too.
    let channel = redis_runtime::pubsub::Channel::<String>::new(&client, "tls-news");
    let mut subscription = channel.subscribe().await.expect("subscribe over TLS");
    channel
        .publish(&"hello".to_string())
        .await
        .expect("publish");
    let heard = tokio::time::timeout(std::time::Duration::from_secs(5), subscription.next())
        .await
        .expect("a message in time")
        .expect("subscribed")
        .expect("decoded");
    assert_eq!(heard, "hello");
    client.shutdown().await;

    refused_with_an_unknown_ca(&url).await;
    drop(cluster);
}
