//! Which server the client talks to, and what it can do.
//!
//! Features that need a newer server than the one connected fail with
//! [`Error::Unsupported`](crate::Error::Unsupported), naming the feature and
//! the version it needs, before a command the server would reject is sent.
//! Valkey reports the Redis version whose commands it implements
//! (`redis_version` in `INFO server`, 7.2.4 for Valkey 8), so requirements
//! are compared against that, and the server's own name and version are kept
//! for display.
//!
//! ```
//! use redis_runtime::server::{Feature, ServerInfo};
//!
//! let info = ServerInfo::from_info("# Server\r\nredis_version:6.0.16\r\n").expect("parsed");
//! assert_eq!(info.to_string(), "redis 6.0.16");
//! let err = info.require(Feature::ListMove).unwrap_err();
//! assert_eq!(err.required.to_string(), "6.2.0");
//! ```

use std::fmt;

/// A server version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch level.
    pub patch: u32,
}

impl Version {
    /// `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `7.0.15` (missing parts are 0; anything after a number's
    /// digits, such as `-rc1`, is ignored). `None` if there is no major.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.').map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next().flatten()?;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A runtime feature that needs more than the oldest supported server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// `LMOVE` / `BLMOVE`: the reliable queue's pop into a processing list.
    ListMove,
    /// `RPOP key count`: popping several items from a list queue at once.
    PopCount,
    /// `XAUTOCLAIM`: claiming idle stream entries in one command (the
    /// runtime falls back to `XPENDING` + `XCLAIM` without it).
    AutoClaim,
    /// `SPUBLISH` / `SSUBSCRIBE`: sharded pub/sub.
    ShardedPubSub,
    /// Script flags (a `#!lua` shebang), which scripts carry on a Redis
    /// Cluster.
    ScriptFlags,
}

impl Feature {
    /// The Redis version that introduced it.
    pub fn required(self) -> Version {
        match self {
            Feature::ListMove | Feature::PopCount | Feature::AutoClaim => Version::new(6, 2, 0),
            Feature::ShardedPubSub | Feature::ScriptFlags => Version::new(7, 0, 0),
        }
    }

    /// What the feature is, for messages: its commands.
    pub fn describe(self) -> &'static str {
        match self {
            Feature::ListMove => "LMOVE/BLMOVE (reliable queues)",
            Feature::PopCount => "RPOP with a count (popping several queue items)",
            Feature::AutoClaim => "XAUTOCLAIM (claiming idle stream entries)",
            Feature::ShardedPubSub => "SPUBLISH/SSUBSCRIBE (sharded pub/sub)",
            Feature::ScriptFlags => "script flags (the #!lua shebang scripts carry on a cluster)",
        }
    }
}

/// The server on the other end, from `INFO server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `redis` or `valkey` (`server_name`, when the server reports one).
    pub name: String,
    /// The server's own version (`valkey_version` for Valkey).
    pub version: Version,
    /// The Redis version whose commands it implements (`redis_version`);
    /// what feature requirements are compared against.
    pub redis_version: Version,
}

/// A feature the connected server is too old for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The feature.
    pub feature: Feature,
    /// The Redis version it needs.
    pub required: Version,
    /// The server, e.g. `redis 6.0.16`.
    pub server: String,
}

impl ServerInfo {
    /// Reads the `INFO server` reply. `None` if it has no `redis_version`.
    pub fn from_info(info: &str) -> Option<Self> {
        let field = |name: &str| {
            info.lines().find_map(|line| {
                let (key, value) = line.trim_end_matches('\r').split_once(':')?;
                (key == name).then(|| value.trim().to_owned())
            })
        };
        let redis_version = Version::parse(&field("redis_version")?)?;
        let name = field("server_name").unwrap_or_else(|| "redis".to_owned());
        let version = field(&format!("{name}_version"))
            .and_then(|v| Version::parse(&v))
            .unwrap_or(redis_version);
        Some(Self {
            name,
            version,
            redis_version,
        })
    }

    /// Whether the server has `feature`.
    pub fn supports(&self, feature: Feature) -> bool {
        self.redis_version >= feature.required()
    }

    /// `Ok` if the server has `feature`, else what is missing.
    ///
    /// # Errors
    ///
    /// [`Unsupported`] naming the feature, the version it needs and the
    /// server.
    pub fn require(&self, feature: Feature) -> Result<(), Unsupported> {
        if self.supports(feature) {
            return Ok(());
        }
        Err(Unsupported {
            feature,
            required: feature.required(),
            server: self.to_string(),
        })
    }
}

impl fmt::Display for ServerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.version)?;
        if self.version != self.redis_version {
            write!(f, " (Redis {} compatible)", self.redis_version)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS_7: &str =
        "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n";
    const VALKEY_8: &str = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.8\r\nvalkey_release_stage:ga\r\n";
    const REDIS_6_0: &str = "# Server\r\nredis_version:6.0.16\r\n";

    #[test]
    fn reads_redis_and_valkey_info() {
        let redis = ServerInfo::from_info(REDIS_7).expect("redis");
        assert_eq!(
            (redis.name.as_str(), redis.version, redis.redis_version),
            ("redis", Version::new(7, 0, 15), Version::new(7, 0, 15))
        );
        assert_eq!(redis.to_string(), "redis 7.0.15");
        let valkey = ServerInfo::from_info(VALKEY_8).expect("valkey");
        assert_eq!(
            (valkey.name.as_str(), valkey.version, valkey.redis_version),
            ("valkey", Version::new(8, 1, 8), Version::new(7, 2, 4))
        );
        assert_eq!(valkey.to_string(), "valkey 8.1.8 (Redis 7.2.4 compatible)");
        assert_eq!(ServerInfo::from_info("# Server\r\n"), None);
    }

    #[test]
    fn an_old_server_is_refused_with_the_feature_and_version() {
        let old = ServerInfo::from_info(REDIS_6_0).expect("6.0");
        let err = old
            .require(Feature::ListMove)
            .expect_err("6.0 has no LMOVE");
        assert_eq!(
            err,
            Unsupported {
                feature: Feature::ListMove,
                required: Version::new(6, 2, 0),
                server: "redis 6.0.16".into(),
            }
        );
        assert!(old.require(Feature::ShardedPubSub).is_err());
        let redis = ServerInfo::from_info(REDIS_7).expect("7.0");
        for feature in [
            Feature::ListMove,
            Feature::PopCount,
            Feature::AutoClaim,
            Feature::ShardedPubSub,
            Feature::ScriptFlags,
        ] {
            assert!(redis.require(feature).is_ok(), "{feature:?}");
        }
    }

    #[test]
    fn versions_parse_leniently_and_compare_numerically() {
        assert_eq!(Version::parse("7.0.15"), Some(Version::new(7, 0, 15)));
        assert_eq!(Version::parse("7.2"), Some(Version::new(7, 2, 0)));
        assert_eq!(Version::parse("8.0.0-rc1"), Some(Version::new(8, 0, 0)));
        assert_eq!(Version::parse("x"), None);
        assert!(Version::new(6, 10, 0) > Version::new(6, 2, 0));
    }
}
