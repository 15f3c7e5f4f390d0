//! The URLs that list several hosts, which the `url` crate cannot parse:
//! `redis+sentinel://` and `redis+cluster://`.

use redis::IntoConnectionInfo;

use crate::error::{Error, Result};

use super::{
    Config, ConfigBuilder, DEFAULT_SENTINEL_PORT, ENV_SENTINEL_PASSWORD, ENV_SENTINEL_USERNAME,
    SentinelSettings, Topology,
};

impl ConfigBuilder {
    /// A `redis+sentinel://` configuration from the URL after its scheme.
    pub(super) fn build_sentinel(self, rest: &str) -> Result<Config> {
        if self.tls_root_cert.is_some() || self.tls_client_identity.is_some() {
            return Err(Error::Config(
                "a TLS certificate was given for a Sentinel URL, and TLS through Sentinel is not supported yet".into(),
            ));
        }
        let parsed = SentinelUrl::parse(rest)?;
        // The address is a placeholder the master's replaces once the
        // Sentinels name it.
        let connection_info = node_connection_info(parsed.userinfo, parsed.database, "Sentinel")?;
        let endpoint = format!(
            "sentinel/{} ({})",
            parsed.master_name,
            host_list(&parsed.sentinels)
        );
        let (username, password) = match self.sentinel_credentials.clone() {
            Some((username, password)) => (username, Some(password)),
            None => (None, None),
        };
        let topology = Topology::Sentinel(SentinelSettings {
            master_name: parsed.master_name,
            sentinels: parsed.sentinels,
            username,
            password,
        });
        Ok(self.into_config(connection_info, endpoint, false, topology))
    }

    /// A `redis+cluster://` configuration from the URL after its scheme
    /// (`rediss+cluster://` with `tls`).
    pub(super) fn build_cluster(self, rest: &str, tls: bool) -> Result<Config> {
        const FORM: &str = "redis+cluster://[[user]:password@]host[:port][,host[:port]...] (rediss+cluster:// for TLS)";
        let bad = |why: String| Error::Config(format!("{why}; the form is {FORM}"));
        if self.sentinel_credentials.is_some() {
            return Err(Error::Config(
                "Sentinel credentials were given for a Redis Cluster URL: a cluster has no Sentinels".into(),
            ));
        }
        self.check_tls(tls, "rediss+cluster://")?;
        if rest.contains(['?', '#']) {
            return Err(bad("a Redis Cluster URL takes no query or fragment".into()));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !matches!(path, "" | "0") {
            return Err(bad(format!(
                "Redis Cluster has only database 0, got /{path}"
            )));
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let seeds = hosts
            .split(',')
            .map(|host| parse_host_port(host.trim(), 6379).ok_or(host))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|host| {
                bad(format!(
                    "the cluster node address {host:?} is not host[:port]"
                ))
            })?;
        // The listed nodes' addresses replace the placeholder host.
        let connection_info = node_connection_info(userinfo, 0, "Redis Cluster")?;
        let endpoint = format!("cluster ({})", host_list(&seeds));
        Ok(self.into_config(connection_info, endpoint, tls, Topology::Cluster(seeds)))
    }
}

/// A URL listing several hosts, which the `url` crate cannot parse: the
/// part after the scheme.
pub(super) enum MultiHost<'u> {
    /// `redis+sentinel://`.
    Sentinel(&'u str),
    /// `redis+cluster://`, or with `tls` `rediss+cluster://`.
    Cluster { rest: &'u str, tls: bool },
}

/// The multi-host form `url` is in, if any; the ones not supported (yet)
/// are refused here, before they could be mistaken for a malformed URL.
pub(super) fn multi_host_url(url: &str) -> Result<Option<MultiHost<'_>>> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(None);
    };
    match scheme.to_ascii_lowercase().as_str() {
        "redis+sentinel" | "valkey+sentinel" => Ok(Some(MultiHost::Sentinel(rest))),
        "rediss+sentinel" | "valkeys+sentinel" => Err(Error::Config(
            "TLS through Sentinel is not supported yet: use redis+sentinel:// on a private network, or rediss:// to one server".into(),
        )),
        "redis+cluster" | "valkey+cluster" => Ok(Some(MultiHost::Cluster { rest, tls: false })),
        "rediss+cluster" | "valkeys+cluster" => Ok(Some(MultiHost::Cluster { rest, tls: true })),
        _ => Ok(None),
    }
}

/// `[[user]:password@]host[:port][,host[:port]…]/master_name[/db]`: the
/// form of a `redis+sentinel://` URL after its scheme.
struct SentinelUrl<'u> {
    /// The data nodes' credentials, still percent-encoded.
    userinfo: Option<&'u str>,
    sentinels: Vec<(String, u16)>,
    master_name: String,
    database: u32,
}

impl<'u> SentinelUrl<'u> {
    const FORM: &'static str =
        "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]";

    fn parse(rest: &'u str) -> Result<Self> {
        let bad = |why: String| Error::Config(format!("{why}; the form is {}", Self::FORM));
        if rest.contains(['?', '#']) {
            return Err(bad(format!(
                "a Sentinel URL takes no query or fragment (Sentinel credentials come from {ENV_SENTINEL_USERNAME} and {ENV_SENTINEL_PASSWORD})"
            )));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let sentinels = hosts
            .split(',')
            .map(|host| parse_host_port(host.trim(), DEFAULT_SENTINEL_PORT).ok_or(host))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|host| bad(format!("the Sentinel address {host:?} is not host[:port]")))?;
        let mut segments = path.split('/');
        let master_name = segments.next().unwrap_or_default();
        if master_name.is_empty()
            || !master_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(format!(
                "the Sentinel URL must name the master (letters, digits, - _ .), got {master_name:?}"
            )));
        }
        let database = match segments.next() {
            None | Some("") => 0,
            Some(db) => db.parse().map_err(|_| {
                bad(format!(
                    "the database in the Sentinel URL must be a number, got {db:?}"
                ))
            })?,
        };
        if segments.any(|s| !s.is_empty()) {
            return Err(bad("the Sentinel URL has extra path segments".into()));
        }
        Ok(Self {
            userinfo,
            sentinels,
            master_name: master_name.to_string(),
            database,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to
/// `default_port`.
fn parse_host_port(text: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(['@', '/', ' ']) {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(port) => port.parse().ok().filter(|p| *p != 0)?,
    };
    Some((host.to_string(), port))
}

/// The connection settings every node of a multi-host URL shares: its
/// credentials (`userinfo`, through redis-rs's own URL parsing, so
/// percent-decoding included) and `database`, at a placeholder address
/// the topology replaces. `form` names the URL in an error.
fn node_connection_info(
    userinfo: Option<&str>,
    database: u32,
    form: &str,
) -> Result<redis::ConnectionInfo> {
    let node_url = format!(
        "redis://{}127.0.0.1/{database}",
        userinfo.map(|u| format!("{u}@")).unwrap_or_default()
    );
    node_url.as_str().into_connection_info().map_err(|e| {
        Error::Config(format!(
            "the credentials in the {form} URL were rejected: {e}"
        ))
    })
}

/// `host:port,host:port` for an endpoint description.
fn host_list(hosts: &[(String, u16)]) -> String {
    let hosts: Vec<String> = hosts
        .iter()
        .map(|(host, port)| format!("{host}:{port}"))
        .collect();
    hosts.join(",")
}
