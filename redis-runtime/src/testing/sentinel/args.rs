//! Starting a Sentinel topology's processes: their command lines and
//! config files.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use super::super::process::{Process, server_args};
use super::super::{HarnessError, free_port};
use super::{DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, QUORUM, SentinelOptions};

/// Starts a data node on a fresh port in `dir`, replicating from
/// `replica_of` if given, retrying on fresh ports if the bind fails.
pub(super) fn start_data_node(
    bin: &str,
    dir: &Path,
    options: &SentinelOptions,
    replica_of: Option<u16>,
) -> Result<Process, HarnessError> {
    let password = options.node_password.as_deref();
    Process::start_on_free_port(bin, dir, password, free_port, |port| {
        let mut args = data_node_args(port, dir, password, replica_of);
        args.extend(options.node_args.iter().map(OsString::from));
        Ok(args)
    })
}

/// Starts a sentinel on a fresh port in `dir`, with its own config file
/// there (sentinels rewrite it, so it is theirs).
pub(super) fn start_sentinel(
    bin: &str,
    dir: &Path,
    master_name: &str,
    master_port: u16,
    options: &SentinelOptions,
) -> Result<Process, HarnessError> {
    let password = options.sentinel_password.as_deref();
    Process::start_on_free_port(bin, dir, password, free_port, |port| {
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            sentinel_config(port, dir, master_name, master_port, options),
        )?;
        Ok(vec![config.into_os_string(), "--sentinel".into()])
    })
}

/// A data node's arguments, like [`RedisServer`](crate::testing::RedisServer)'s (loopback,
/// persistence off) plus the password on both sides of replication, since
/// either node may become a replica.
fn data_node_args(
    port: u16,
    dir: &Path,
    password: Option<&str>,
    replica_of: Option<u16>,
) -> Vec<OsString> {
    let mut args = server_args(port, dir);
    if let Some(password) = password {
        for arg in ["--requirepass", password, "--masterauth", password] {
            args.push(arg.into());
        }
    }
    if let Some(master) = replica_of {
        for arg in ["--replicaof", "127.0.0.1", &master.to_string()] {
            args.push(arg.into());
        }
    }
    args
}

/// A sentinel's config file. Only directives Redis 7.0 and Valkey 8 both
/// accept; `sentinel sentinel-pass` needs Redis 6.2.
fn sentinel_config(
    port: u16,
    dir: &Path,
    master_name: &str,
    master_port: u16,
    options: &SentinelOptions,
) -> String {
    let name = master_name;
    let mut config = format!(
        "port {port}\n\
         bind 127.0.0.1\n\
         daemonize no\n\
         dir {}\n\
         logfile {}\n\
         sentinel monitor {name} 127.0.0.1 {master_port} {QUORUM}\n\
         sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {name} 1\n",
        config_quote(&dir.to_string_lossy()),
        config_quote(&dir.join("redis.log").to_string_lossy()),
    );
    if let Some(password) = &options.node_password {
        let _ = writeln!(
            config,
            "sentinel auth-pass {name} {}",
            config_quote(password)
        );
    }
    if let Some(password) = &options.sentinel_password {
        let password = config_quote(password);
        let _ = writeln!(config, "requirepass {password}");
        let _ = writeln!(config, "sentinel sentinel-pass {password}");
    }
    config
}

/// `text` as one double-quoted config-file argument.
fn config_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for b in text.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b' '..=b'~' => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_arguments_are_quoted() {
        assert_eq!(config_quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(config_quote("x\ny"), r#""x\x0ay""#);
    }
}
