//! Who this process is to other clients of the same Redis: `hostname-pid`,
//! unique per process across machines. Stream consumers are named with it
//! by default, and `cross_slot` lease and claim tokens start with it.

/// `hostname-pid`: the host name (`unknown-host` if it cannot be read), a
/// dash, the process id.
pub(crate) fn process_name() -> String {
    let host = hostname::get()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string());
    format!("{host}-{}", std::process::id())
}
