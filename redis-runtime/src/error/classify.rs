//! What a redis-rs error means for the caller: the one place that reads
//! server error codes and transport failures.
//!
//! Two questions are answered here and nowhere else: which
//! [`Error`](super::Error) kind the caller sees, and whether sending the
//! same request again is safe. A reply such as `LOADING` or `READONLY`
//! means the server refused the command before running it, so a retry can
//! never apply it twice; a dropped connection or a response timeout after
//! the request was sent means the server may or may not have run it.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Why the server could not serve a request for now: the states
/// [`Client::send`](crate::Client::send) waits out, with backoff, inside
/// the operation's deadline before reporting
/// [`Error::Unavailable`](super::Error::Unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unavailability {
    /// The connection could not be made or broke (refused, reset, closed).
    Connection,
    /// `LOADING`: the server is loading its dataset into memory.
    Loading,
    /// `BUSY`: the server is running a long script or function.
    Busy,
    /// `MASTERDOWN`: a replica lost its link to its primary and is
    /// configured not to serve stale data.
    MasterDown,
    /// `READONLY`: a write reached a replica (for instance during a
    /// failover, before the new primary is known).
    ReadOnly,
    /// `TRYAGAIN`: a cluster slot is being migrated.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster cannot serve the slot.
    ClusterDown,
    /// `MOVED` or `ASK` that reached the caller: a cluster node sent the
    /// request to another node, and the redirection could not be followed
    /// yet (a failover or slot move is still settling). The node did not
    /// run it.
    Redirected,
    /// `NOSCRIPT` on a cluster even after the script was loaded again: the
    /// node serving the slot is a replica just promoted (replicas never
    /// receive scripts) that the slot map did not name yet when the script
    /// was loaded. Nothing ran.
    ScriptMissing,
    /// No Sentinel names a live master (a failover is in progress, or
    /// every Sentinel is out of reach).
    NoMaster,
    /// `NOREPLICAS`: the master has fewer good replicas than its
    /// `min-replicas-to-write` asks for (a replica is down, or was just
    /// promoted away from it in a failover), so it refuses writes.
    TooFewReplicas,
    /// `UNBLOCKED`: a blocking command (`BLMOVE`, `BRPOP`, `XREADGROUP
    /// BLOCK`, …) was ended by the server before it took anything: the
    /// primary was turned into a replica (a failover, `REPLICAOF`), or
    /// `CLIENT UNBLOCK … ERROR` was sent. Issue the read again (on the new
    /// primary, once it is known).
    Unblocked,
}

impl Unavailability {
    /// What the state is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Unavailability::Connection => "the connection failed",
            Unavailability::Loading => "the server is loading its dataset",
            Unavailability::Busy => "the server is busy running a script or function",
            Unavailability::MasterDown => "the replica has lost its link to the primary",
            Unavailability::ReadOnly => "the server is a read-only replica",
            Unavailability::TryAgain => "the cluster asked to try again (slot migration)",
            Unavailability::ClusterDown => "the cluster is down",
            Unavailability::ScriptMissing => {
                "the cluster node serving the slot has not loaded the script yet (a replica just promoted)"
            }
            Unavailability::Redirected => {
                "the cluster redirected the request to a node that could not take it yet (failover or slot move)"
            }
            Unavailability::NoMaster => "no live master is known to the Sentinels",
            Unavailability::TooFewReplicas => {
                "the master has fewer good replicas than its min-replicas-to-write"
            }
            Unavailability::Unblocked => {
                "the server ended the blocking command before it took anything (failover or CLIENT UNBLOCK)"
            }
        }
    }
}

/// The class of a redis-rs error: what it becomes and whether it may be
/// retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The server did not run the request and may serve it later.
    NotRun(Unavailability),
    /// The link broke (reset, closed, EOF, a garbled reply): the request
    /// may or may not have run.
    Dropped,
    /// No reply within the response timeout: the request may have run.
    TimedOut,
    /// `OOM`: `maxmemory` is reached with `noeviction`; not run.
    OutOfMemory,
    /// `NOAUTH`, `WRONGPASS` or a refused `AUTH`.
    Auth,
    /// `NOPERM`: an ACL refused the command or a key.
    NoPerm,
    /// Any other error reply (`WRONGTYPE`, `ERR …`) or client-side failure.
    Command,
}

impl Class {
    /// Whether the server may have applied the request although it failed.
    pub(crate) fn outcome_unknown(self) -> bool {
        matches!(self, Class::Dropped | Class::TimedOut)
    }
}

/// A classified error: its class and what the server (or transport) said,
/// never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified {
    pub(crate) class: Class,
    pub(crate) said: String,
}

/// What answered: one server (alone or Sentinel's master) or a cluster.
/// A few replies mean something else on a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deployment {
    Server,
    Cluster,
}

/// Classifies `error` from `deployment`. For a pipeline, the first failing
/// command decides.
pub(crate) fn classify(error: &RedisError, deployment: Deployment) -> Classified {
    let reply = server_reply(error);
    let class = match reply.as_ref().map(|(code, _)| code.as_str()) {
        Some(code) => class_of_reply(code, deployment),
        None => class_of_transport(error, deployment),
    };
    let said = match reply {
        Some((code, Some(detail))) if !detail.trim().is_empty() => format!("{code} {detail}"),
        Some((code, _)) => code,
        None => error.to_string(),
    };
    Classified {
        class,
        said: non_empty(said, error),
    }
}

/// The class of a server error reply, by its code (the first word).
fn class_of_reply(code: &str, deployment: Deployment) -> Class {
    match code {
        "LOADING" => Class::NotRun(Unavailability::Loading),
        "BUSY" => Class::NotRun(Unavailability::Busy),
        "MASTERDOWN" => Class::NotRun(Unavailability::MasterDown),
        "READONLY" => Class::NotRun(Unavailability::ReadOnly),
        "TRYAGAIN" => Class::NotRun(Unavailability::TryAgain),
        "CLUSTERDOWN" => Class::NotRun(Unavailability::ClusterDown),
        // `min-replicas-to-write` refused the write before running it.
        "NOREPLICAS" => Class::NotRun(Unavailability::TooFewReplicas),
        // redis-rs follows redirections itself; one that surfaces could not
        // be followed yet. The node that answered it ran nothing.
        "MOVED" | "ASK" => Class::NotRun(Unavailability::Redirected),
        // A blocking command the server ended while it waited, before it
        // popped or moved anything; redis-rs has no kind for it.
        "UNBLOCKED" => Class::NotRun(Unavailability::Unblocked),
        // redis-rs answers NOSCRIPT itself (it loads the script and sends
        // the call again). On a cluster mid-failover the load can miss the
        // new primary, which a later attempt reaches; one server answering
        // it twice is not a passing state.
        "NOSCRIPT" if deployment == Deployment::Cluster => {
            Class::NotRun(Unavailability::ScriptMissing)
        }
        "OOM" => Class::OutOfMemory,
        "NOAUTH" | "WRONGPASS" => Class::Auth,
        "NOPERM" => Class::NoPerm,
        _ => Class::Command,
    }
}

/// The class of an error that is not a server reply.
fn class_of_transport(error: &RedisError, deployment: Deployment) -> Class {
    match error.kind() {
        ErrorKind::AuthenticationFailed => return Class::Auth,
        // A cluster connection had no connection to the node the request
        // was for (being reconnected, or not in the slot map yet): it was
        // never sent.
        ErrorKind::ClusterConnectionNotFound => {
            return Class::NotRun(Unavailability::Connection);
        }
        // Built by redis-rs itself with a server kind (not parsed from a reply).
        ErrorKind::Server(kind) => return class_of_reply(server_kind_code(kind), deployment),
        _ => {}
    }
    if error.is_timeout() {
        Class::TimedOut
    } else if error.is_connection_refusal() {
        // Nothing was sent: the connection was never made.
        Class::NotRun(Unavailability::Connection)
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error()
    {
        Class::Dropped
    } else {
        Class::Command
    }
}

/// The reply code of a server kind redis-rs knows by name.
fn server_kind_code(kind: ServerErrorKind) -> &'static str {
    match kind {
        ServerErrorKind::BusyLoading => "LOADING",
        ServerErrorKind::TryAgain => "TRYAGAIN",
        ServerErrorKind::ClusterDown => "CLUSTERDOWN",
        ServerErrorKind::Moved => "MOVED",
        ServerErrorKind::Ask => "ASK",
        ServerErrorKind::MasterDown => "MASTERDOWN",
        ServerErrorKind::ReadOnly => "READONLY",
        ServerErrorKind::NoPerm => "NOPERM",
        ServerErrorKind::NoScript => "NOSCRIPT",
        _ => "ERR",
    }
}

/// The code and detail of the server's error reply, if `error` is one (a
/// single reply, or the first failing command of a pipeline). redis-rs
/// gives no code for an unknown reply inside a pipeline, so the server
/// errors are read directly.
fn server_reply(error: &RedisError) -> Option<(String, Option<String>)> {
    let first = error.clone().into_server_errors()?;
    let (_, reply) = first.first()?;
    Some((reply.code().to_owned(), reply.details().map(str::to_owned)))
}

/// `said`, or when it is blank the error kind's description, so a message
/// is never empty.
fn non_empty(said: String, error: &RedisError) -> String {
    if !said.trim().is_empty() {
        return said;
    }
    let category = error.category();
    if !category.trim().is_empty() {
        return category.to_owned();
    }
    format!("{:?}", error.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_on_server(error: &RedisError) -> Classified {
        classify(error, Deployment::Server)
    }

    /// The error redis-rs makes of the server's reply `-<line>\r\n`.
    fn reply(line: &str) -> RedisError {
        redis::parse_redis_value(format!("-{line}\r\n").as_bytes())
            .expect("parses")
            .extract_error()
            .expect_err("an error reply")
    }

    fn io(kind: std::io::ErrorKind) -> RedisError {
        RedisError::from(std::io::Error::from(kind))
    }

    #[test]
    fn server_states_that_did_not_run_the_command_are_unavailability() {
        let cases = [
            (
                "LOADING Redis is loading the dataset in memory",
                Unavailability::Loading,
            ),
            (
                "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
                Unavailability::Busy,
            ),
            (
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
                Unavailability::MasterDown,
            ),
            (
                "READONLY You can't write against a read only replica.",
                Unavailability::ReadOnly,
            ),
            (
                "TRYAGAIN Multiple keys request during rehashing of slot",
                Unavailability::TryAgain,
            ),
            (
                "CLUSTERDOWN The cluster is down",
                Unavailability::ClusterDown,
            ),
            ("MOVED 9631 127.0.0.1:41719", Unavailability::Redirected),
            (
                "NOREPLICAS Not enough good replicas to write.",
                Unavailability::TooFewReplicas,
            ),
            ("ASK 9631 127.0.0.1:41719", Unavailability::Redirected),
            (
                "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
                Unavailability::Unblocked,
            ),
            (
                "UNBLOCKED client unblocked via CLIENT UNBLOCK",
                Unavailability::Unblocked,
            ),
        ];
        for (line, state) in cases {
            let classified = classify_on_server(&reply(line));
            assert_eq!(classified.class, Class::NotRun(state), "{line}");
            assert_eq!(classified.said, line);
            assert!(!classified.class.outcome_unknown(), "{line}");
        }
    }

    #[test]
    fn an_unblocked_blocking_read_is_a_transient_error_that_took_nothing() {
        for line in [
            "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
            "UNBLOCKED client unblocked via CLIENT UNBLOCK",
        ] {
            let ctx = crate::error::Context::new("queue.reliable_pop_blocking", "jobs");
            let err = crate::Error::from_redis(&reply(line), ctx);
            assert_eq!(err.code(), "STORAGE_UNAVAILABLE", "{err}");
            assert!(
                matches!(
                    err,
                    crate::Error::Unavailable {
                        reason: Unavailability::Unblocked,
                        outcome_unknown: false,
                        waited_ms: 0,
                        ..
                    }
                ),
                "{err:?}"
            );
            // The blocking-read path drops its connection on a transient
            // error and the caller (the worker) issues the read again.
            assert!(err.is_transient(), "{err}");
            assert!(
                crate::Effect::Write.may_resend(&err),
                "nothing was taken: {err}"
            );
            let text = err.to_string();
            for part in ["queue.reliable_pop_blocking", line, "blocking command"] {
                assert!(text.contains(part), "{text:?} lacks {part:?}");
            }
        }
    }

    #[test]
    fn refusals_that_will_not_pass_are_typed_and_never_retried() {
        let cases = [
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                Class::OutOfMemory,
            ),
            ("NOAUTH Authentication required.", Class::Auth),
            (
                "WRONGPASS invalid username-password pair or user is disabled.",
                Class::Auth,
            ),
            (
                "NOPERM this user has no permissions to run the 'set' command",
                Class::NoPerm,
            ),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                Class::Command,
            ),
            ("ERR unknown command 'FOO'", Class::Command),
        ];
        for (line, class) in cases {
            let classified = classify_on_server(&reply(line));
            assert_eq!(classified.class, class, "{line}");
            assert_eq!(classified.said, line);
            assert!(!class.outcome_unknown(), "{line}: refused, so not run");
        }
    }

    #[test]
    fn noscript_that_survives_the_reload_is_a_command_error_on_one_server_only() {
        let noscript = reply("NOSCRIPT No matching script. Please use EVAL.");
        let classified = classify_on_server(&noscript);
        assert_eq!(classified.class, Class::Command);
        assert_eq!(
            classified.said,
            "NOSCRIPT No matching script. Please use EVAL."
        );
        // On a cluster the script may have been loaded on a node that was
        // no longer the slot's primary: the call did not run.
        let classified = classify(&noscript, Deployment::Cluster);
        assert_eq!(
            classified.class,
            Class::NotRun(Unavailability::ScriptMissing)
        );
        assert!(!classified.class.outcome_unknown());
    }

    #[test]
    fn a_refused_connection_did_not_run_anything() {
        let classified = classify_on_server(&io(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classified.class, Class::NotRun(Unavailability::Connection));
        assert!(!classified.class.outcome_unknown(), "nothing was sent");
    }

    #[test]
    fn a_dropped_connection_leaves_the_outcome_unknown() {
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::ConnectionAborted,
        ] {
            let classified = classify_on_server(&io(kind));
            assert_eq!(classified.class, Class::Dropped, "{kind:?}");
            assert!(classified.class.outcome_unknown());
            assert!(!classified.said.is_empty());
        }
    }

    #[test]
    fn a_response_timeout_leaves_the_outcome_unknown() {
        let classified = classify_on_server(&io(std::io::ErrorKind::TimedOut));
        assert_eq!(classified.class, Class::TimedOut);
        assert!(classified.class.outcome_unknown());
    }

    #[test]
    fn auth_failures_at_connect_and_server_kinds_built_by_redis_rs() {
        let auth = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert_eq!(classify_on_server(&auth).class, Class::Auth);
        let loading = RedisError::from((
            ErrorKind::Server(ServerErrorKind::BusyLoading),
            "loading",
            "Redis is loading the dataset in memory".to_owned(),
        ));
        assert_eq!(
            classify_on_server(&loading).class,
            Class::NotRun(Unavailability::Loading)
        );
    }

    #[test]
    fn a_message_is_never_empty() {
        let blank = RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), ""));
        let classified = classify_on_server(&blank);
        assert_eq!(classified.class, Class::NoPerm);
        assert!(!classified.said.trim().is_empty(), "{classified:?}");
        let bare = reply("BUSY");
        assert_eq!(classify_on_server(&bare).said, "BUSY");
        let client = RedisError::from((ErrorKind::Client, ""));
        assert!(!classify_on_server(&client).said.trim().is_empty());
    }
}
