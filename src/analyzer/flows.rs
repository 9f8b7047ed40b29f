//! The flow table: every open connection, found by its flow.
//!
//! A slot holds the connection's box and nothing else. The flow key's hash finds the slot, and the
//! connection's own endpoints say whether it is the flow looked for; the hash is worked out again
//! from them when the table grows. A map from flow keys to boxes took 80 bytes a slot (56 with
//! endpoints of 24 bytes): on a capture of tens of thousands of short connections the table
//! outgrew the core's cache, and reading the key in the slot was one more cache miss on nearly
//! every packet.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::FxBuildHasher;

use super::connection::Connection;
use super::{FlowKey, flow_key};

#[derive(Default)]
pub(super) struct FlowTable(HashTable<Box<Connection>>);

fn hash(key: &FlowKey) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The flow of `conn`: its endpoints in the flow key's order.
pub(super) fn key_of(conn: &Connection) -> FlowKey {
    flow_key(conn.endpoints[0], conn.endpoints[1])
}

fn hash_of(conn: &Connection) -> u64 {
    hash(&key_of(conn))
}

/// Whether `conn` is the connection of flow `key`, without ordering its endpoints first.
fn is_flow(conn: &Connection, key: &FlowKey) -> bool {
    let [a, b] = &conn.endpoints;
    (*a == key.0 && *b == key.1) || (*a == key.1 && *b == key.0)
}

impl FlowTable {
    pub fn get(&self, key: &FlowKey) -> Option<&Connection> {
        self.0.find(hash(key), |c| is_flow(c, key)).map(|c| &**c)
    }

    /// Once a packet: inlined, as the map's lookup was (out of line it cost each packet 24
    /// instructions more).
    #[inline(always)]
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Box<Connection>> {
        self.0.find_mut(hash(key), |c| is_flow(c, key))
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<Box<Connection>> {
        let found = self.0.find_entry(hash(key), |c| is_flow(c, key)).ok()?;
        Some(found.remove().0)
    }

    /// Puts `conn` in the table under its own flow, in place of the connection there if any.
    pub fn insert(&mut self, conn: Box<Connection>) -> Option<Box<Connection>> {
        let key = key_of(&conn);
        match self
            .0
            .entry(hash(&key), |c| is_flow(c, &key), |c| hash_of(c))
        {
            Entry::Occupied(mut there) => Some(std::mem::replace(there.get_mut(), conn)),
            Entry::Vacant(slot) => {
                slot.insert(conn);
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &Box<Connection>> {
        self.0.iter()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Box<Connection>> {
        self.0.iter_mut()
    }

    pub fn drain(&mut self) -> impl Iterator<Item = Box<Connection>> {
        self.0.drain()
    }

    /// Each connection with its flow.
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, &Box<Connection>)> {
        self.0.iter().map(|c| (key_of(c), c))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use proptest::prelude::*;

    use super::*;
    use crate::capture::{Precision, Timestamp};
    use crate::decode::{Endpoint, TcpFlags, TcpSegment};
    use crate::tcp::Limits;

    /// A connection from `src` to `dst` numbered `id`, as its first segment opens it.
    fn connection(id: u64, src: Endpoint, dst: Endpoint) -> Box<Connection> {
        let seg = TcpSegment {
            src,
            dst,
            seq: 1,
            ack: 0,
            flags: TcpFlags {
                syn: true,
                ack: false,
                fin: false,
                rst: false,
            },
            window: 65535,
            payload: &[],
            wire_len: 0,
            ttl: 64,
            ip_id: None,
        };
        let at = Timestamp::from_parts(1_700_000_000, 0);
        Box::new(Connection::new(
            id,
            &seg,
            at,
            Precision::Micro,
            Limits::default(),
            None,
        ))
    }

    proptest! {
        /// The table finds, replaces and removes what a map keyed by flow would, whichever side
        /// opened each connection; few ports and addresses make flows meet often.
        #[test]
        fn a_table_of_boxes_acts_as_a_map_by_flow(
            ops in proptest::collection::vec((0u8..3, 0u8..4, 0u16..3, 0u8..4, 0u16..3, any::<bool>()), 1..200),
        ) {
            let endpoint = |host: u8, port: u16| {
                let addr: SocketAddr = if host.is_multiple_of(2) {
                    ([10, 0, 0, host], port).into()
                } else {
                    ([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(host)], port).into()
                };
                Endpoint::from(addr)
            };
            let mut table = FlowTable::default();
            let mut model: HashMap<FlowKey, u64> = HashMap::new();
            for (id, (op, a, pa, b, pb, swap)) in (0u64..).zip(ops) {
                let (mut src, mut dst) = (endpoint(a, pa), endpoint(b, pb));
                if swap {
                    std::mem::swap(&mut src, &mut dst);
                }
                let key = flow_key(src, dst);
                match op {
                    0 => {
                        let old = table.insert(connection(id, src, dst)).map(|c| c.id);
                        prop_assert_eq!(old, model.insert(key, id));
                    }
                    1 => prop_assert_eq!(table.remove(&key).map(|c| c.id), model.remove(&key)),
                    _ => {
                        prop_assert_eq!(table.get(&key).map(|c| c.id), model.get(&key).copied());
                        prop_assert_eq!(table.get_mut(&key).map(|c| c.id), model.get(&key).copied());
                    }
                }
                prop_assert_eq!(table.len(), model.len());
            }
            let mut listed: Vec<(FlowKey, u64)> = table.iter().map(|(k, c)| (k, c.id)).collect();
            let mut expected: Vec<(FlowKey, u64)> = model.into_iter().collect();
            listed.sort();
            expected.sort();
            prop_assert_eq!(listed, expected);
        }
    }
}
