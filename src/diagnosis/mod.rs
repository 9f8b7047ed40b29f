//! Diagnosis: from the facts of each connection (and of all of them together) to named root causes,
//! each with its evidence and a fix hint. Every id is documented in docs/diagnosis.md.
//!
//! Rules never fire on a connection whose close handshake completed normally: false alarms are bugs.

mod fleet;
mod proxy;
mod rules;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::analyzer::{Brief, Connection, Held, Outcome, Side};
use crate::capture::Timestamp;
use crate::websocket::handshake::Text;

/// Named numbers and times behind a diagnosis, in order of name (a map in JSON, as a `BTreeMap`
/// would be): a few entries in a list, where a `BTreeMap`'s first node alone took 640 bytes, held
/// for every finding across connections until the report is written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence(Vec<(Text, Value)>);

impl Evidence {
    /// Sets `key` (replacing its value if it is there already).
    pub fn insert(&mut self, key: Text, value: Value) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(at) => self.0[at].1 = value,
            Err(at) => self.0.insert(at, (key, value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Text, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.0.iter_mut().map(|(_, v)| v)
    }
}

impl Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Evidence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A map's keys come out in order, once each.
        Ok(Evidence(
            BTreeMap::<Text, Value>::deserialize(d)?
                .into_iter()
                .collect(),
        ))
    }
}

/// One named cause with its evidence. The id, the fix and the evidence's names are the rules' own
/// words: kept as `Text` that borrows them, not copied for every connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Stable identifier (`idle-timeout`, `abnormal-closure`...).
    pub id: Text,
    /// One line for people.
    pub summary: String,
    /// Numbers and times behind it.
    pub evidence: Evidence,
    /// What to change.
    pub fix: Text,
}

impl Diagnosis {
    fn new(id: &'static str, summary: String, fix: &'static str) -> Self {
        Diagnosis {
            id: Text::const_new(id),
            summary,
            evidence: Evidence::default(),
            fix: Text::const_new(fix),
        }
    }

    fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.evidence.insert(Text::const_new(key), value.into());
        self
    }

    /// Rank for choosing the main diagnosis: root causes before symptoms.
    fn rank(&self) -> usize {
        RANKING
            .iter()
            .position(|id| *id == self.id)
            .unwrap_or(RANKING.len())
    }
}

/// Root causes first, then what they cause (an idle timeout explains an abnormal closure).
const RANKING: &[&str] = &[
    "handshake-failed",
    "refused",
    "overloaded",
    "message-too-big",
    "protocol-error",
    "idle-timeout",
    "unanswered-ping",
    "one-way-heartbeat",
    "heartbeat-too-slow",
    "no-heartbeat",
    "peer-unreachable",
    "middlebox-reset",
    "server-going-away",
    "mass-close",
    "proxy-legs",
    "close-unanswered",
    "abnormal-closure",
    "reconnect-storm",
    "duplicate-connection",
];

/// Every diagnosis id with a one-line meaning (printed by `wsclose explain`, kept in docs/diagnosis.md).
pub const IDS: &[(&str, &str)] = &[
    (
        "idle-timeout",
        "the connection was ended after N seconds without traffic: an intermediary's or a peer's idle timeout",
    ),
    (
        "no-heartbeat",
        "an idle timeout hit a connection on which neither side sent pings",
    ),
    (
        "heartbeat-too-slow",
        "pings were sent, but less often than every half of the idle timeout that ended the connection",
    ),
    (
        "one-way-heartbeat",
        "in the final idle window traffic flowed one way only (pings never answered or never arriving)",
    ),
    (
        "unanswered-ping",
        "pings got no pong before the end: a dead or half-open peer",
    ),
    (
        "abnormal-closure",
        "TCP ended (FIN or RST) without any close frame: browsers report 1006",
    ),
    (
        "close-unanswered",
        "a close frame got no close reply before TCP ended",
    ),
    (
        "server-going-away",
        "the server closed with 1001 (going away) or 1012 (service restart)",
    ),
    (
        "mass-close",
        "many connections were ended by the same side within a short window",
    ),
    (
        "reconnect-storm",
        "clients reconnected right after closes without backing off",
    ),
    (
        "duplicate-connection",
        "a client holds two connections to the same endpoint, the older one silent",
    ),
    (
        "message-too-big",
        "a side closed with 1009 after a message larger than it accepts",
    ),
    (
        "protocol-error",
        "a protocol violation: 1002/1007 closes, masking errors, bad control frames, RSV bits, invalid close codes",
    ),
    (
        "handshake-failed",
        "the upgrade was refused (non-101), or the request lacked the Upgrade/Connection headers",
    ),
    (
        "peer-unreachable",
        "one side kept retransmitting without acknowledgement before a RST or the end",
    ),
    (
        "refused",
        "connection attempts to a WebSocket server were answered with RST",
    ),
    (
        "overloaded",
        "connection attempts got no answer, or a side advertised a zero window",
    ),
    (
        "middlebox-reset",
        "a RST whose TTL differs from everything that endpoint sent before: forged by a box in between",
    ),
    (
        "proxy-legs",
        "a proxy's two legs of one WebSocket, which ended first and who ended it",
    ),
];

/// Well-known idle timeouts, for naming what a measured idle time matches.
pub const KNOWN_TIMEOUTS: &[(f64, &str)] = &[
    (30.0, "GCP load balancer backend timeout (30 s)"),
    (50.0, "HAProxy sample config `timeout client/server 50s`"),
    (55.0, "Heroku router idle timeout (55 s)"),
    (
        60.0,
        "nginx proxy_read_timeout / proxy_send_timeout default (60 s)",
    ),
    (60.0, "AWS ALB / ELB idle timeout default (60 s)"),
    (100.0, "Cloudflare proxy idle timeout (100 s)"),
    (240.0, "Azure Load Balancer idle timeout default (4 min)"),
    (350.0, "AWS NLB / Gateway LB TCP idle timeout (350 s)"),
    (3600.0, "HAProxy `timeout tunnel 1h` (a common setting)"),
];

/// Calls `each` with every group of `items` (view numbers) that share a `key`, its members in the
/// order `within` gives them; groups in no particular order.
///
/// Found by sorting each view number with a 32-bit hash of its key (8 bytes a connection), then
/// checking the keys themselves, so that a hash two keys share only costs a sort by key. Maps
/// of lists keyed by client address took about 400 bytes a connection when every client has an
/// address of its own, held with every brief at the end of a capture (`BENCHMARKS.md`).
pub fn for_each_group<K: Ord + Hash>(
    items: impl Iterator<Item = u32>,
    key: impl Fn(u32) -> K,
    within: impl Fn(u32, u32) -> Ordering,
    mut each: impl FnMut(&[u32]),
) {
    let hash32 = |i: u32| (rustc_hash::FxBuildHasher.hash_one(key(i)) >> 32) as u32;
    let mut tagged: Vec<u64> = items
        .map(|i| u64::from(hash32(i)) << 32 | u64::from(i))
        .collect();
    tagged.sort_unstable();
    let mut run: Vec<u32> = Vec::new();
    for hashed in tagged.chunk_by(|a, b| a >> 32 == b >> 32) {
        run.clear();
        run.extend(hashed.iter().map(|&t| t as u32));
        if run.windows(2).all(|w| key(w[0]) == key(w[1])) {
            // One key (nearly always): the run is the group.
            run.sort_by(|&a, &b| within(a, b));
            each(&run);
        } else {
            run.sort_by(|&a, &b| key(a).cmp(&key(b)).then_with(|| within(a, b)));
            for group in run.chunk_by(|&a, &b| key(a) == key(b)) {
                each(group);
            }
        }
    }
}

/// A client address and a server endpoint ([`View::client_server`]).
pub type ClientServer = ((u128, bool), ((u128, bool), u16));

/// Facts every rule needs, resolved once per connection: its [`Brief`] (all that the rules across
/// connections read), with the roles resolved. The rules of one connection read the whole
/// [`Connection`] besides.
#[derive(Clone, Debug)]
pub struct View<'a> {
    /// Borrowed from the analysis when the connection was spilled, else made for the view.
    pub brief: Held<'a, Brief>,
    /// The outcome as reported (clean, abnormal...).
    pub outcome: Outcome,
    /// Sides as bytes: a view is held for every connection of the capture (24 bytes, not 56).
    client: u8,
    /// The side that is a proxy, when this connection is one leg of a proxied WebSocket.
    proxy: Option<u8>,
}

impl<'a> View<'a> {
    pub fn new(brief: Held<'a, Brief>) -> Self {
        View {
            client: brief.client() as u8,
            outcome: brief.outcome,
            proxy: None,
            brief,
        }
    }

    pub fn client(&self) -> Side {
        Side::from(self.client)
    }

    pub fn server(&self) -> Side {
        1 - self.client()
    }

    /// The side that is a proxy, when this connection is one leg of a proxied WebSocket.
    pub fn proxy(&self) -> Option<Side> {
        self.proxy.map(Side::from)
    }

    fn set_proxy(&mut self, side: Side) {
        self.proxy = Some(side as u8);
    }

    pub fn of(conn: &Connection) -> Self {
        View::new(Held::Owned(Box::new(Brief::unshared(conn))))
    }

    /// What groups a client's connections to one server: the client's address (without the
    /// port: a reconnect uses a new port) and the server's address and port, packed
    /// ([`Brief::address_key`]): equal exactly when the addresses are.
    pub fn client_server(&self) -> ClientServer {
        let b = &self.brief;
        (
            b.address_key(self.client()),
            (b.address_key(self.server()), b.port(self.server())),
        )
    }

    /// How a summary names a side: "client", "server", or "proxy" on a proxied leg.
    pub fn role(&self, side: Side) -> &'static str {
        if self.proxy() == Some(side) {
            "proxy"
        } else if side == self.client() {
            "client"
        } else {
            "server"
        }
    }
}

fn seconds(a: Timestamp, b: Timestamp) -> f64 {
    b.seconds_since(a)
}

/// Rounds to milliseconds for evidence (numbers people read, not compute with).
fn ms(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs every rule over these connections; returns the diagnoses of each by id, main one first.
pub fn diagnose(
    conns: &[&Connection],
    time: &dyn Fn(Timestamp) -> String,
) -> BTreeMap<u64, Vec<Diagnosis>> {
    let diagnoser = Diagnoser::new(conns.iter().map(|c| View::of(c)).collect(), time);
    conns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let list = diagnoser.of(i, c, time);
            (!list.is_empty()).then_some((c.id, list))
        })
        .collect()
}

/// The rules, ready to run connection by connection: what needs every connection (idle clusters,
/// mass closes, proxy legs...) is worked out once, up front; the per-connection rules run when a
/// connection's diagnoses are asked for, so a report written connection by connection never holds
/// the diagnoses of all of them at once.
pub struct Diagnoser<'a> {
    /// The views, with the proxy side set on the legs of proxied connections.
    views: Vec<View<'a>>,
    /// (view index, idle) in order of index, for the connections that ended after an idle time.
    idle: Vec<(usize, rules::Idle)>,
    clusters: BTreeMap<usize, (usize, f64)>,
    /// Findings across connections, (connection id, finding) in order of id (only the connections
    /// involved; a map of lists held a list of four per connection).
    across: Vec<(u64, Diagnosis)>,
}

impl<'a> Diagnoser<'a> {
    pub fn new(mut views: Vec<View<'a>>, time: &dyn Fn(Timestamp) -> String) -> Self {
        // Name the proxy as such on both legs of a proxied connection.
        let pairs = proxy::pairs(&views);
        for &(front, up, _) in &pairs {
            let (server, client) = (views[front].server(), views[up].client());
            views[front].set_proxy(server);
            views[up].set_proxy(client);
        }
        let idle = rules::idle_candidates(&views);
        let clusters = fleet::idle_clusters(&views, &idle);
        let mut across = fleet::across(&views, time);
        across.extend(proxy::pair_legs(&views, &pairs, time));
        // Stable: a connection's findings stay in the order the rules gave them.
        across.sort_by_key(|(id, _)| *id);
        across.shrink_to_fit();
        for (_, d) in &mut across {
            d.evidence.0.shrink_to_fit();
        }
        Diagnoser {
            views,
            idle,
            clusters,
            across,
        }
    }

    /// The views given to `new`, with the proxy side set on proxied legs.
    pub fn views(&self) -> &[View<'a>] {
        &self.views
    }

    /// The diagnoses of the connection at `index` (in the order of the views given to `new`), the
    /// main one first; `conn` is that connection.
    pub fn of(
        &self,
        index: usize,
        conn: &Connection,
        time: &dyn Fn(Timestamp) -> String,
    ) -> Vec<Diagnosis> {
        let Some(v) = self.views.get(index) else {
            return Vec::new();
        };
        let idle = self
            .idle
            .binary_search_by_key(&index, |(i, _)| *i)
            .ok()
            .map(|at| self.idle[at].1);
        let mut list = rules::per_connection(v, conn, idle, self.clusters.get(&index), time);
        let from = self.across.partition_point(|(id, _)| *id < v.brief.id);
        list.extend(
            self.across
                .get(from..)
                .unwrap_or_default()
                .iter()
                .take_while(|(id, _)| *id == v.brief.id)
                .map(|(_, d)| d.clone()),
        );
        list.sort_by_key(Diagnosis::rank);
        list.dedup_by(|a, b| a.id == b.id && a.summary == b.summary);
        list
    }
}

/// Which well-known defaults a measured idle time is close to.
pub fn matching_defaults(idle_s: f64) -> Vec<&'static str> {
    KNOWN_TIMEOUTS
        .iter()
        .filter(|(t, _)| (idle_s - t).abs() <= (t * 0.01).max(0.5))
        .map(|(_, name)| *name)
        .collect()
}

/// Whether a duration sits on a round number of seconds, as timers configured in seconds fire.
pub fn is_round(idle_s: f64) -> bool {
    (idle_s - idle_s.round()).abs() <= (idle_s * 0.002).max(0.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A key every one of which hashes alike: every group shares one hash, as colliding keys do.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    struct Colliding(u8);

    impl Hash for Colliding {
        fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
            h.write_u8(0);
        }
    }

    /// The groups as a map of lists finds them, each sorted by `within`.
    fn groups_by_map<K: Ord>(
        items: &[u32],
        key: impl Fn(u32) -> K,
        within: impl Fn(u32, u32) -> Ordering,
    ) -> Vec<Vec<u32>> {
        let mut map: BTreeMap<K, Vec<u32>> = BTreeMap::new();
        for &i in items {
            map.entry(key(i)).or_default().push(i);
        }
        let mut groups: Vec<Vec<u32>> = map.into_values().collect();
        for g in &mut groups {
            g.sort_by(|&a, &b| within(a, b));
        }
        groups.sort();
        groups
    }

    fn groups_found<K: Ord + Hash>(
        items: &[u32],
        key: impl Fn(u32) -> K,
        within: impl Fn(u32, u32) -> Ordering,
    ) -> Vec<Vec<u32>> {
        let mut groups = Vec::new();
        for_each_group(items.iter().copied(), key, within, |g| {
            groups.push(g.to_vec())
        });
        groups.sort();
        groups
    }

    proptest! {
        /// Items with keys from a small set (so that groups have several members) and an order
        /// within groups that ties (broken by the item): the groups found are those of a map of
        /// lists, whether the keys' hashes differ or all collide.
        #[test]
        fn groups_are_those_of_a_map(
            keys in proptest::collection::vec((0u8..6, 0u8..4), 0..60),
        ) {
            let items: Vec<u32> = (0..keys.len() as u32).rev().collect();
            let key = |i: u32| keys[i as usize].0;
            let within = |a: u32, b: u32| keys[a as usize].1.cmp(&keys[b as usize].1).then(a.cmp(&b));
            let expected = groups_by_map(&items, key, within);
            prop_assert_eq!(groups_found(&items, key, within), expected.clone());
            prop_assert_eq!(groups_found(&items, |i| Colliding(key(i)), within), expected);
        }
    }
}
