//! Moving a slot by hand, as `redis-cli --cluster reshard` would: mark
//! it migrating and importing, `MIGRATE` its keys in batches, then give
//! it to the target on every node.

use super::launch::check_slot;
use super::{AGREE_WAIT, ClusterTopology, MIGRATE_BATCH, MIGRATE_IO_TIMEOUT, MIGRATE_TIMEOUT_MS};
use crate::testing::process::connect;
use crate::testing::wait::Awaited;

impl ClusterTopology {
    /// Moves `slot` and its keys to the master on `to`, by hand: `CLUSTER
    /// SETSLOT … IMPORTING` on `to`, `… MIGRATING` on the slot's master,
    /// `MIGRATE` of its keys in batches of 10 (as `redis-cli --cluster
    /// reshard` does), then `CLUSTER SETSLOT …
    /// NODE` on `to`, the old master and every other master. Returns once
    /// every live master sees `to` serving the slot and none has it open
    /// for migration. Does nothing if `to` serves it already. Panics if
    /// `to` is not a master, a step is refused, or the masters do not agree
    /// within 10 s.
    pub fn migrate_slot(&self, slot: u16, to: u16) {
        check_slot(slot);
        let from = self.master_of_slot(slot);
        if from == to {
            return;
        }
        let masters = self.masters();
        if !masters.contains(&to) {
            self.fail(&format!(
                "cannot move slot {slot} to port {to}: it is not a live master ({masters:?})"
            ));
        }
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let slot_arg = slot.to_string();
        self.command::<()>(
            to,
            &["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id],
        );
        self.command::<()>(
            from,
            &["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id],
        );
        let batch = MIGRATE_BATCH.to_string();
        loop {
            let keys: Vec<Vec<u8>> =
                self.command(from, &["CLUSTER", "GETKEYSINSLOT", &slot_arg, &batch]);
            if keys.is_empty() {
                break;
            }
            self.migrate_keys(from, to, &keys);
        }
        // The target first, then the source: so the slot never has no
        // owner that accepts it (what the Redis docs prescribe).
        let mut order = vec![to, from];
        order.extend(masters.iter().filter(|&&port| port != to && port != from));
        for port in order {
            self.command::<()>(port, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
        }
        let what = format!("every master to see port {to} serving slot {slot}");
        self.wait_until(AGREE_WAIT, &what, || {
            for &port in &self.live_ports() {
                let view = self.view(port)?;
                let Some(me) = view.iter().find(|entry| entry.has_flag("myself")) else {
                    return Err(format!("port {port} does not list itself"));
                };
                if !me.has_flag("master") {
                    continue;
                }
                if me.open_slots.contains(&slot) {
                    return Err(format!("port {port} still has slot {slot} open"));
                }
                match view.iter().find(|entry| entry.serves(slot)) {
                    Some(entry) if entry.id == to_id => {}
                    Some(entry) => {
                        return Err(format!(
                            "port {port} sees port {} serving slot {slot}",
                            entry.port
                        ));
                    }
                    None => return Err(format!("port {port} sees nobody serving slot {slot}")),
                }
            }
            Ok(())
        });
    }

    /// `MIGRATE`s `keys` from `from` to `to` in one command.
    pub(super) fn migrate_keys(&self, from: u16, to: u16, keys: &[Vec<u8>]) {
        let mut cmd = redis::cmd("MIGRATE");
        cmd.arg("127.0.0.1")
            .arg(to)
            .arg("")
            .arg(0)
            .arg(MIGRATE_TIMEOUT_MS)
            .arg("KEYS")
            .arg(keys);
        let moved = connect(&self.node_url(from))
            .and_then(|mut conn| {
                conn.set_read_timeout(Some(MIGRATE_IO_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                cmd.query::<redis::Value>(&mut conn)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| format!("port {from}: {e}"));
        if let Err(e) = moved {
            self.fail(&format!(
                "cannot MIGRATE {} keys from port {from} to port {to}: {e}",
                keys.len()
            ));
        }
    }
}
