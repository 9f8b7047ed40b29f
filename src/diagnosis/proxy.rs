//! A capture on a proxy host (`-i any`, or `lo` with the upstream local) holds both legs of each
//! proxied WebSocket: client↔proxy and proxy↔upstream. nginx and HAProxy forward the client's
//! `Sec-WebSocket-Key` unchanged, which pairs the legs exactly; otherwise the same path requested
//! by the proxy within a second of the client's request pairs them. Then: which leg ended first, and
//! who ended it.

use super::{Diagnosis, View, for_each_group, ms, seconds};
use crate::analyzer::{EndKind, Ending, RequestBrief, SharedStr};
// Fx hashing, as in the analyzer's flow table and the rules across connections (fleet.rs).
use rustc_hash::{FxBuildHasher, FxHashSet};

use std::cmp::Ordering;
use std::hash::BuildHasher;

use crate::capture::Timestamp;
use crate::report::Outcome;

/// The upstream request follows the client's by at most this much.
const PAIR_WITHIN_S: f64 = 1.0;
/// Endings of the two legs this close together are one action of the proxy.
const SAME_ACTION_S: f64 = 0.5;

fn request_of<'v>(v: &'v View<'_>) -> Option<(Timestamp, &'v RequestBrief)> {
    v.brief.request.as_ref().map(|r| (r.at, r))
}

fn how(e: &Ending, v: &View<'_>) -> String {
    match e.kind {
        EndKind::CloseFrame => {
            let code = v.brief.close_code[e.side];
            format!(
                "a close frame ({})",
                code.map_or("no code".to_owned(), |c| c.to_string())
            )
        }
        EndKind::TlsClose => "a TLS close_notify".to_owned(),
        EndKind::Fin => "a FIN".to_owned(),
        EndKind::Rst => "a RST".to_owned(),
    }
}

/// Where a request came from, what it asked for and when: the order the pairing looks requests
/// up in. Addresses compare as [`crate::analyzer::Brief::address_key`]s and paths first by
/// pointer (an analyzer holds each path once): comparing `SocketAddr`s unpacked both first, and
/// comparing equal paths was a call to `memcmp` (2 M of the 268 M instructions of the 2,105
/// short connections of `BENCHMARKS.md`'s x2 capture).
#[derive(Clone, Copy)]
struct OriginPath<'v> {
    origin: (u128, bool),
    path: &'v SharedStr,
    at: Timestamp,
}

impl OriginPath<'_> {
    /// The same path, by pointer first (the usual case) and by text only if they differ.
    fn same_path(&self, other: &Self) -> bool {
        self.path.ptr_eq(other.path) || self.path == other.path
    }

    fn same_group(&self, other: &Self) -> bool {
        self.origin == other.origin && self.same_path(other)
    }

    /// Origin, then path, then time.
    fn order(&self, other: &Self) -> Ordering {
        self.origin
            .cmp(&other.origin)
            .then_with(|| {
                if self.path.ptr_eq(other.path) {
                    Ordering::Equal
                } else {
                    self.path.cmp(other.path)
                }
            })
            .then(self.at.cmp(&other.at))
    }
}

/// The legs of proxied connections: (client leg, upstream leg, how they were paired), as indexes
/// into `views`.
pub fn pairs(views: &[View<'_>]) -> Vec<(usize, usize, &'static str)> {
    // Indexes, so that pairing costs O(n log n) and not a comparison of every two connections:
    // the requests sorted by key, and by origin address, path and time. Lists of view numbers
    // (4 bytes a request, where a map of lists took 80).
    let key_of = |i: u32| request_of(&views[i as usize]).and_then(|(_, r)| r.key.as_deref());
    // Every entry of `by_origin_path` has a request: `None` is only for the others.
    let origin_path_of = |i: u32| {
        let v = &views[i as usize];
        request_of(v).map(|(t, r)| OriginPath {
            origin: v.brief.address_key(v.client()),
            path: &r.path,
            at: t,
        })
    };
    let origin_order = |a: u32, b: u32| match (origin_path_of(a), origin_path_of(b)) {
        (Some(a), Some(b)) => a.order(&b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    };
    let with_request =
        || (0..views.len() as u32).filter(|&i| request_of(&views[i as usize]).is_some());
    // Only requests that some front leg could look up are indexed: those whose key another
    // request shares (found as the rules across connections group theirs), and those that came
    // from an address some request went to (a proxy host: a set of hashes, so that a collision
    // only lets a request in). Nearly always neither is any (no proxy in the capture), and then
    // nothing is sorted: the two sorts were 2% of the instructions on many short connections.
    let mut by_key: Vec<u32> = Vec::new();
    for_each_group(
        with_request().filter(|&i| key_of(i).is_some()),
        key_of,
        |a, b| a.cmp(&b),
        |same_key| {
            if same_key.len() > 1 {
                by_key.extend_from_slice(same_key);
            }
        },
    );
    let address_hash = |i: u32, server: bool| {
        let v = &views[i as usize];
        let side = if server { v.server() } else { v.client() };
        FxBuildHasher.hash_one(v.brief.address_key(side))
    };
    let proxy_hosts: FxHashSet<u64> = with_request().map(|i| address_hash(i, true)).collect();
    let mut by_origin_path: Vec<u32> = with_request()
        .filter(|&i| proxy_hosts.contains(&address_hash(i, false)))
        .collect();
    drop(proxy_hosts);
    if by_key.is_empty() && by_origin_path.is_empty() {
        return Vec::new();
    }
    // Ties broken by the view number, so that an unstable sort (in place: no scratch copy, where
    // a stable one allocates half the list) gives the one order.
    by_key.sort_unstable_by(|&a, &b| key_of(a).cmp(&key_of(b)).then(a.cmp(&b)));
    by_origin_path.sort_unstable_by(|&a, &b| origin_order(a, b).then(a.cmp(&b)));
    let mut out = Vec::new();
    let mut used = FxHashSet::default();
    let mut fronts: Vec<(Timestamp, usize)> = views
        .iter()
        .enumerate()
        .filter_map(|(i, v)| request_of(v).map(|(t, _)| (t, i)))
        .collect();
    fronts.sort();
    for (t_front, fi) in fronts {
        if used.contains(&fi) {
            continue;
        }
        let front = &views[fi];
        let Some((_, req_front)) = request_of(front) else {
            continue;
        };
        let front_server = front.brief.endpoint(front.server());
        let fits = |ui: usize, t_up: Timestamp| {
            ui != fi
                && !used.contains(&ui)
                && views[ui].brief.endpoint(views[ui].server()) != front_server
                && (0.0..=PAIR_WITHIN_S).contains(&seconds(t_front, t_up))
        };
        // The upstream leg: a later request with the same key, else one from the proxy host (the
        // front leg's server address) for the same path, soon after.
        let by_same_key = req_front.key.as_deref().and_then(|k| {
            let from = by_key.partition_point(|&i| key_of(i) < Some(k));
            by_key
                .get(from..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&i| key_of(i) == Some(k))
                .map(|&i| i as usize)
                .find(|&ui| request_of(&views[ui]).is_some_and(|(t, _)| fits(ui, t)))
        });
        let best = match by_same_key {
            Some(ui) => Some((ui, "same Sec-WebSocket-Key")),
            None => {
                let wanted = OriginPath {
                    origin: front.brief.address_key(front.server()),
                    path: &req_front.path,
                    at: t_front,
                };
                let from = by_origin_path.partition_point(|&i| {
                    origin_path_of(i).is_none_or(|o| o.order(&wanted).is_lt())
                });
                by_origin_path
                    .get(from..)
                    .unwrap_or_default()
                    .iter()
                    .map_while(|&i| {
                        let o = origin_path_of(i)?;
                        (o.same_group(&wanted) && seconds(t_front, o.at) <= PAIR_WITHIN_S)
                            .then_some((o.at, i as usize))
                    })
                    .find(|&(t, ui)| fits(ui, t))
                    .map(|(_, ui)| (ui, "same path within a second"))
            }
        };
        if let Some((ui, evidence)) = best {
            used.insert(fi);
            used.insert(ui);
            out.push((fi, ui, evidence));
        }
    }
    out
}

/// `pairs`: what [`pairs`] found in `views`.
pub fn pair_legs(
    views: &[View<'_>],
    pairs: &[(usize, usize, &'static str)],
    time: &dyn Fn(Timestamp) -> String,
) -> Vec<(u64, Diagnosis)> {
    let mut out = Vec::new();
    for &(fi, ui, evidence) in pairs {
        let (front, up) = (&views[fi], &views[ui]);
        let (Some(ef), Some(eu)) = (front.brief.ending(), up.brief.ending()) else {
            continue;
        };
        // Two clean close handshakes are no fault to explain.
        if front.outcome == Outcome::Clean && up.outcome == Outcome::Clean {
            continue;
        }
        let gap = seconds(ef.at.min(eu.at), ef.at.max(eu.at));
        // Roles on each leg: the proxy is the server of the front leg and the client of the upstream one.
        let proxy_ended_front = ef.side == front.server();
        let proxy_ended_up = eu.side == up.client();
        let last_frame = [front, up]
            .iter()
            .flat_map(|v| v.brief.last_frame.iter().flatten().copied())
            .filter(|t| *t <= ef.at.min(eu.at))
            .max();
        let summary = if proxy_ended_front && proxy_ended_up && gap <= SAME_ACTION_S {
            let idle = last_frame.map(|t| seconds(t, ef.at.min(eu.at)));
            match idle {
                Some(idle) if idle >= super::rules::MIN_IDLE_S => format!(
                    "the proxy ended both legs ({} to the client, {} to upstream) {:.1} s after the last frame: its own idle timeout",
                    how(&ef, front),
                    how(&eu, up),
                    idle
                ),
                _ => format!(
                    "the proxy ended both legs ({} to the client, {} to upstream) within {:.1} ms",
                    how(&ef, front),
                    how(&eu, up),
                    gap * 1e3
                ),
            }
        } else if eu.at <= ef.at && !proxy_ended_up {
            let relay = if proxy_ended_front {
                format!(
                    "the proxy relayed it to the client {:.1} ms later",
                    seconds(eu.at, ef.at) * 1e3
                )
            } else {
                "the client ended its leg itself".to_owned()
            };
            format!(
                "upstream ended first with {} at {}; {relay}",
                how(&eu, up),
                time(eu.at)
            )
        } else if ef.at <= eu.at && !proxy_ended_front {
            let relay = if proxy_ended_up {
                format!(
                    "the proxy relayed it upstream {:.1} ms later",
                    seconds(ef.at, eu.at) * 1e3
                )
            } else {
                "upstream ended its leg itself".to_owned()
            };
            format!(
                "the client ended first with {} at {}; {relay}",
                how(&ef, front),
                time(ef.at)
            )
        } else if ef.at <= eu.at {
            format!(
                "the proxy ended the client's leg first with {} at {}, upstream's {:.1} ms later",
                how(&ef, front),
                time(ef.at),
                gap * 1e3
            )
        } else {
            format!(
                "the proxy ended the upstream leg first with {} at {}, the client's {:.1} ms later",
                how(&eu, up),
                time(eu.at),
                gap * 1e3
            )
        };
        let d = Diagnosis::new(
            "proxy-legs",
            summary,
            "the leg that ended first names the actor: tune that component (proxy timeouts, upstream restarts, client behaviour)",
        )
        .with("client_leg", front.brief.id)
        .with("upstream_leg", up.brief.id)
        .with("paired_by", evidence)
        .with("client_leg_ended_by", if proxy_ended_front { "proxy" } else { "client" })
        .with("upstream_leg_ended_by", if proxy_ended_up { "proxy" } else { "upstream" })
        .with("client_leg_ended_at", time(ef.at))
        .with("upstream_leg_ended_at", time(eu.at))
        .with("between_endings_ms", ms(gap * 1e3));
        out.push((front.brief.id, d.clone()));
        out.push((up.brief.id, d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::{Brief, Held};
    use proptest::prelude::*;

    /// The pairing as it was before its indexes were filtered: every request indexed by key and
    /// by origin, path and time. The filtered one must find the same pairs.
    fn pairs_unfiltered(views: &[View<'_>]) -> Vec<(usize, usize, &'static str)> {
        let key_of = |i: u32| request_of(&views[i as usize]).and_then(|(_, r)| r.key.as_deref());
        let origin_path_of = |i: u32| {
            let v = &views[i as usize];
            request_of(v).map(|(t, r)| OriginPath {
                origin: v.brief.address_key(v.client()),
                path: &r.path,
                at: t,
            })
        };
        let with_request =
            || (0..views.len() as u32).filter(|&i| request_of(&views[i as usize]).is_some());
        let mut by_key: Vec<u32> = with_request().filter(|&i| key_of(i).is_some()).collect();
        by_key.sort_by(|&a, &b| key_of(a).cmp(&key_of(b)));
        let mut by_origin_path: Vec<u32> = with_request().collect();
        by_origin_path.sort_by(|&a, &b| {
            let (a, b) = (origin_path_of(a).unwrap(), origin_path_of(b).unwrap());
            a.order(&b)
        });
        let mut out = Vec::new();
        let mut used = FxHashSet::default();
        let mut fronts: Vec<(Timestamp, usize)> = views
            .iter()
            .enumerate()
            .filter_map(|(i, v)| request_of(v).map(|(t, _)| (t, i)))
            .collect();
        fronts.sort();
        for (t_front, fi) in fronts {
            if used.contains(&fi) {
                continue;
            }
            let front = &views[fi];
            let (_, req_front) = request_of(front).unwrap();
            let front_server = front.brief.endpoint(front.server());
            let fits = |ui: usize, t_up: Timestamp| {
                ui != fi
                    && !used.contains(&ui)
                    && views[ui].brief.endpoint(views[ui].server()) != front_server
                    && (0.0..=PAIR_WITHIN_S).contains(&seconds(t_front, t_up))
            };
            let by_same_key = req_front.key.as_deref().and_then(|k| {
                by_key
                    .iter()
                    .filter(|&&i| key_of(i) == Some(k))
                    .map(|&i| i as usize)
                    .find(|&ui| fits(ui, request_of(&views[ui]).unwrap().0))
            });
            let wanted = OriginPath {
                origin: front.brief.address_key(front.server()),
                path: &req_front.path,
                at: t_front,
            };
            let best = match by_same_key {
                Some(ui) => Some((ui, "same Sec-WebSocket-Key")),
                None => by_origin_path
                    .iter()
                    .map(|&i| (origin_path_of(i).unwrap(), i as usize))
                    .filter(|(o, _)| o.same_group(&wanted) && o.at >= t_front)
                    .take_while(|(o, _)| seconds(t_front, o.at) <= PAIR_WITHIN_S)
                    .find(|&(o, ui)| fits(ui, o.at))
                    .map(|(_, ui)| (ui, "same path within a second")),
            };
            if let Some((ui, evidence)) = best {
                used.insert(fi);
                used.insert(ui);
                out.push((fi, ui, evidence));
            }
        }
        out
    }

    proptest! {
        /// Connections among a few hosts (so that some clients are other connections' servers,
        /// as a proxy is), with keys and paths from small pools and requests within two seconds:
        /// the pairs found through the filtered indexes are the pairs found through whole ones.
        #[test]
        fn filtered_indexes_find_the_same_pairs(
            conns in proptest::collection::vec(
                (0u8..4, 0u8..4, 1u16..4, proptest::option::of((0i64..2_000, proptest::option::of(0u8..6), 0u8..2))),
                0..40,
            ),
        ) {
            let host = |h: u8| -> std::net::IpAddr {
                if h.is_multiple_of(2) { [10, 0, 0, h].into() } else { [0xfd00, 0, 0, 0, 0, 0, 0, u16::from(h)].into() }
            };
            let paths: [SharedStr; 2] = [SharedStr::new("/ws"), SharedStr::new("/chat")];
            let briefs: Vec<Brief> = conns
                .iter()
                .enumerate()
                .map(|(i, &(c, s, port, req))| {
                    let request = req.map(|(ms, key, path)| RequestBrief {
                        at: Timestamp::from_nanos(1_700_000_000_000_000_000 + ms * 1_000_000),
                        // A path equal to another's but held apart, as two analyzers hold them.
                        path: if i % 3 == 0 {
                            SharedStr::new(&paths[usize::from(path)])
                        } else {
                            paths[usize::from(path)].clone()
                        },
                        key: key.map(|k| format!("key{k}AAAAAAAAAAAAAAAAA==").as_str().into()),
                        user_agent: None,
                    });
                    Brief::with_request(
                        i as u64,
                        std::net::SocketAddr::new(host(c), 40_000 + i as u16),
                        std::net::SocketAddr::new(host(s), port),
                        request,
                    )
                })
                .collect();
            let views: Vec<View<'_>> = briefs.iter().map(|b| View::new(Held::Borrowed(b))).collect();
            prop_assert_eq!(pairs(&views), pairs_unfiltered(&views));
        }
    }

    /// Both ways of pairing, found: the same key (ports differ), and the same path from the front
    /// leg's server within a second.
    #[test]
    fn pairs_by_key_and_by_path() {
        let t = |ms: i64| Timestamp::from_nanos(1_700_000_000_000_000_000 + ms * 1_000_000);
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        let request = |ms: i64, key: Option<&str>| {
            Some(RequestBrief {
                at: t(ms),
                path: SharedStr::new("/ws"),
                key: key.map(Into::into),
                user_agent: None,
            })
        };
        // (client, server, request time in ms, Sec-WebSocket-Key) of each connection.
        let legs = [
            // Client → proxy, then proxy → upstream with the same key.
            ("192.0.2.1:5000", "10.0.0.1:80", 0, "a"),
            ("10.0.0.1:6000", "10.0.0.2:8080", 5, "a"),
            // Client → proxy, then proxy → upstream with a new key, 0.2 s later.
            ("192.0.2.2:5001", "10.0.0.1:80", 100, "b"),
            ("10.0.0.1:6001", "10.0.0.2:8080", 300, "c"),
            // A lone connection.
            ("192.0.2.3:5002", "10.0.0.9:80", 400, "d"),
        ];
        let briefs: Vec<Brief> = legs
            .iter()
            .enumerate()
            .map(|(id, &(client, server, ms, key))| {
                Brief::with_request(
                    id as u64,
                    addr(client),
                    addr(server),
                    request(ms, Some(key)),
                )
            })
            .collect();
        let views: Vec<View<'_>> = briefs
            .iter()
            .map(|b| View::new(Held::Borrowed(b)))
            .collect();
        assert_eq!(
            pairs(&views),
            [
                (0, 1, "same Sec-WebSocket-Key"),
                (2, 3, "same path within a second")
            ]
        );
    }
}
