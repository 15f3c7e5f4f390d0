//! A node's view of the cluster (`CLUSTER NODES`, `INFO`), parsed, and
//! the checks the waits make on it.

/// One line of `CLUSTER NODES`: a node as the node asked sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodeEntry {
    pub(super) id: String,
    /// 0 while the address is unknown (`noaddr`).
    pub(super) port: u16,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, …
    pub(super) flags: Vec<String>,
    /// The master's id, for a replica.
    pub(super) master_id: Option<String>,
    /// Whether the link to it is up (`connected`).
    pub(super) connected: bool,
    /// The slot ranges it serves, inclusive.
    pub(super) slots: Vec<(u16, u16)>,
    /// Slots it is migrating or importing (only listed for `myself`).
    pub(super) open_slots: Vec<u16>,
}

impl NodeEntry {
    pub(super) fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Flagged failing, by this node alone (`fail?`) or by the cluster.
    pub(super) fn failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    pub(super) fn is_replica(&self) -> bool {
        self.has_flag("slave") || self.has_flag("replica")
    }

    pub(super) fn serves(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|&(first, last)| (first..=last).contains(&slot))
    }
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport[,hostname…]> <flags>
/// <master id or -> <ping sent> <pong received> <config epoch> <link
/// state> <slot or range or [slot->-id] or [slot-<-id]>…`, one node a line.
pub(super) fn parse_cluster_nodes(text: &str) -> Result<Vec<NodeEntry>, String> {
    let mut entries = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [
            id,
            addr,
            flags,
            master,
            _ping,
            _pong,
            _epoch,
            link,
            slots @ ..,
        ] = fields.as_slice()
        else {
            return Err(format!("short line {line:?}"));
        };
        let host_port = addr.split(['@', ',']).next().unwrap_or_default();
        let port = match host_port.rsplit_once(':') {
            Some((_, port)) => port
                .parse()
                .map_err(|_| format!("no port in {addr:?} of line {line:?}"))?,
            None => return Err(format!("no port in {addr:?} of line {line:?}")),
        };
        let mut entry = NodeEntry {
            id: (*id).to_string(),
            port,
            flags: flags.split(',').map(str::to_string).collect(),
            master_id: (*master != "-").then(|| (*master).to_string()),
            connected: *link == "connected",
            slots: Vec::new(),
            open_slots: Vec::new(),
        };
        for slot in slots {
            if let Some(open) = slot.strip_prefix('[') {
                // `[1234->-<id>]` (migrating) or `[1234-<-<id>]` (importing).
                let number = open.split('-').next().unwrap_or_default();
                let number = number
                    .parse()
                    .map_err(|_| format!("bad open slot {slot:?} in line {line:?}"))?;
                entry.open_slots.push(number);
                continue;
            }
            let (first, last) = slot.split_once('-').unwrap_or((slot, slot));
            let parse = |text: &str| {
                text.parse::<u16>()
                    .map_err(|_| format!("bad slot {slot:?} in line {line:?}"))
            };
            entry.slots.push((parse(first)?, parse(last)?));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// `view` (the node on `asked`'s) shows the node `id` (on `port`) as a
/// master, not failing, serving every range of `slots`.
pub(super) fn expect_serving(
    view: &[NodeEntry],
    asked: u16,
    id: &str,
    port: u16,
    slots: &[(u16, u16)],
) -> Result<(), String> {
    let Some(entry) = view.iter().find(|entry| entry.id == id) else {
        return Err(format!("port {asked} does not know port {port}"));
    };
    let serves_all = slots
        .iter()
        .all(|&(first, last)| entry.serves(first) && entry.serves(last));
    if entry.has_flag("master") && !entry.failing() && serves_all {
        Ok(())
    } else {
        Err(format!(
            "port {asked} sees port {port} with flags {} serving {:?} (waiting for a master \
             serving {slots:?})",
            entry.flags.join(","),
            entry.slots
        ))
    }
}

/// `view` (the node on `asked`'s) shows the node `id` (on `port`) as a
/// replica of the node `master_id`, not failing.
pub(super) fn expect_replica_entry(
    view: &[NodeEntry],
    asked: u16,
    id: &str,
    port: u16,
    master_id: &str,
) -> Result<(), String> {
    let Some(entry) = view.iter().find(|entry| entry.id == id) else {
        return Err(format!("port {asked} does not know port {port}"));
    };
    if entry.is_replica() && !entry.failing() && entry.master_id.as_deref() == Some(master_id) {
        Ok(())
    } else {
        Err(format!(
            "port {asked} sees port {port} with flags {}, master {} (waiting for a replica \
             of {master_id})",
            entry.flags.join(","),
            entry.master_id.as_deref().unwrap_or("-")
        ))
    }
}

/// The value of `name:` in `INFO` or `CLUSTER INFO` text, or `?`.
pub(super) fn info_field<'a>(info: &'a str, name: &str) -> &'a str {
    info.lines()
        .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_are_parsed() {
        // Redis 7.0, with a slot being migrated; Valkey 8 adds a hostname
        // and auxiliary fields after the address.
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@40004 slave \
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@40002,,shard-id=ab master - 0 \
1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001 myself,master - 0 0 1 \
connected 0-5460 [5461-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1] [17->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@40003 master,fail - 0 \
1426238318243 3 disconnected 10923 10924-16383
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 handshake,noaddr - 0 0 0 disconnected
";
        let entries = parse_cluster_nodes(text).expect("valid CLUSTER NODES");
        assert_eq!(entries.len(), 5);
        assert!(entries[0].is_replica());
        assert_eq!(
            entries[0].master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!(entries[1].port, 30002);
        assert_eq!(entries[1].slots, vec![(5461, 10922)]);
        assert!(entries[2].has_flag("myself"));
        assert_eq!(entries[2].slots, vec![(0, 5460)]);
        assert_eq!(entries[2].open_slots, vec![5461, 17]);
        assert!(entries[3].failing() && !entries[3].connected);
        assert!(entries[3].serves(10923) && entries[3].serves(16383));
        assert!(!entries[3].serves(10922));
        assert_eq!(entries[4].port, 0);
    }
}
