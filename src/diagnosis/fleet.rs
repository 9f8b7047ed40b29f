//! Rules across connections: idle clusters, mass closes, refused attempts, reconnect storms and
//! duplicate connections. One connection rarely proves a cause; many that agree do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::rules::Idle;
use super::{Diagnosis, View, for_each_group, ms, seconds};
use crate::analyzer::EndKind;
use crate::capture::Timestamp;
use crate::report::Outcome;

/// Endings closer together than this count as simultaneous.
const MASS_WINDOW_S: f64 = 1.0;
const MASS_MIN: usize = 3;
/// A new connection this soon after an old one from the same client ended is a reconnect.
const RECONNECT_WITHIN_S: f64 = 60.0;
/// Reconnect chains this long with intervals this short and no growth are a storm.
const STORM_MIN_RETRIES: usize = 3;
const STORM_MAX_INTERVAL_S: f64 = 5.0;
/// Intervals growing by this factor at least are exponential backoff.
const BACKOFF_FACTOR: f64 = 1.5;

/// Groups connections that ended after the same idle time, by the same role: index → (size, mean).
pub fn idle_clusters(views: &[View<'_>], idle: &[(usize, Idle)]) -> BTreeMap<usize, (usize, f64)> {
    let mut items: Vec<(&'static str, f64, usize)> = idle
        .iter()
        // The upstream leg of a proxied connection repeats its client leg: count the pair once.
        .filter(|(i, _)| views[*i].proxy() != Some(views[*i].client()))
        .map(|&(i, x)| (views[i].role(x.side), x.idle_s, i))
        .collect();
    items.sort_by(|a, b| a.0.cmp(b.0).then(a.1.total_cmp(&b.1)));
    let mut out = BTreeMap::new();
    let mut start = 0;
    while start < items.len() {
        let (role, first, _) = items[start];
        let tolerance = (first * 0.01).max(0.5);
        let end = items[start..]
            .iter()
            .position(|(r, s, _)| *r != role || s - first > tolerance)
            .map_or(items.len(), |p| start + p);
        let group = &items[start..end];
        let mean = group.iter().map(|g| g.1).sum::<f64>() / group.len() as f64;
        for (_, _, i) in group {
            out.insert(*i, (group.len(), mean));
        }
        start = end;
    }
    out
}

pub fn across(views: &[View<'_>], time: &dyn Fn(Timestamp) -> String) -> Vec<(u64, Diagnosis)> {
    let mut out = Vec::new();
    mass_close(views, time, &mut out);
    refused(views, &mut out);
    reconnects(views, time, &mut out);
    duplicates(views, time, &mut out);
    out
}

fn mass_close(
    views: &[View<'_>],
    time: &dyn Fn(Timestamp) -> String,
    out: &mut Vec<(u64, Diagnosis)>,
) {
    // Endings that are not a client's normal close: a server's close, or TCP dropped by either side.
    let mut endings: Vec<(Timestamp, &'static str, usize)> = views
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let e = v.brief.ending()?;
            let normal_client_close = e.side == v.client()
                && e.kind == EndKind::CloseFrame
                && v.brief
                    .first_close()
                    .is_some_and(|(_, code)| matches!(code, None | Some(1000 | 1001)));
            (!normal_client_close && v.outcome != Outcome::Refused).then_some((
                e.at,
                v.role(e.side),
                i,
            ))
        })
        .collect();
    // Unstable, with the index last to keep equal endings in order: a stable sort's buffer, half
    // the list, was a megabyte of peak memory at 54,000 connections.
    endings.sort_unstable_by_key(|e| (e.1, e.0, e.2));
    // Connections open at a time t: started by t, minus those whose ending came before t. Sorted
    // starts and ends answer that in O(log n) for each candidate window.
    let counted = views.iter().filter(|v| v.outcome != Outcome::Refused);
    let mut starts: Vec<Timestamp> = counted.clone().map(|v| v.brief.first_packet).collect();
    let mut ends: Vec<Timestamp> = counted
        .filter_map(|v| v.brief.ending().map(|e| e.at))
        .collect();
    starts.sort_unstable();
    ends.sort_unstable();
    let open_at = |t: Timestamp| {
        starts
            .partition_point(|s| *s <= t)
            .saturating_sub(ends.partition_point(|e| *e < t))
    };
    for window in mass_windows(&endings, |t0, n| n * 2 >= open_at(t0)) {
        let group = &endings[window];
        let (t0, role, _) = group[0];
        let open = open_at(t0);
        let last = group.last().map_or(t0, |g| g.0);
        for (_, _, i) in group {
            out.push((
                views[*i].brief.id,
                Diagnosis::new(
                    "mass-close",
                    format!(
                        "{} of {open} open connections were ended by the {role} within {:.3} s at {}: a restart, deploy, reload or partition",
                        group.len(),
                        seconds(t0, last),
                        time(t0)
                    ),
                    "drain before restarting (stop accepting, close with 1001/1012 gradually), and reconnect with backoff and jitter",
                )
                .with("ended_by", role)
                .with("connections", group.len() as u64)
                .with("open_at_the_time", open as u64)
                .with("from", time(t0))
                .with("window_s", ms(seconds(t0, last))),
            ));
        }
    }
}

/// The windows of `endings` (sorted by role, then time) that are mass events: from each ending,
/// the endings by the same role within [`MASS_WINDOW_S`] after it, when there are [`MASS_MIN`] of
/// them at least, `is_mass(first time, how many)` says so (only a large share of what was open at
/// the time is a mass event, not a busy server's churn), and they were not all in windows
/// reported already.
fn mass_windows(
    endings: &[(Timestamp, &'static str, usize)],
    mut is_mass: impl FnMut(Timestamp, usize) -> bool,
) -> Vec<std::ops::Range<usize>> {
    let mut windows = Vec::new();
    // The window from each ending, `endings[k..end]`, slides: as `k` moves on (same role, later
    // time) `end` can only move on too, so the scan is linear. Collecting each window afresh took
    // a third of the rules' time on a capture of 21,000 short connections.
    let mut end = 0;
    // Of the endings from `k` on, the reported windows cover exactly `k..reported_to` (each
    // started at or before `k`, and their ends only grow): a window ending by `reported_to` is
    // all reported already.
    let mut reported_to = 0;
    for (k, &(t0, role, _)) in endings.iter().enumerate() {
        end = end.max(k);
        while endings
            .get(end)
            .is_some_and(|(t, r, _)| *r == role && seconds(t0, *t) <= MASS_WINDOW_S)
        {
            end += 1;
        }
        if end - k < MASS_MIN || end <= reported_to || !is_mass(t0, end - k) {
            continue;
        }
        reported_to = end;
        windows.push(k..end);
    }
    windows
}

fn refused(views: &[View<'_>], out: &mut Vec<(u64, Diagnosis)>) {
    for v in views.iter().filter(|v| v.outcome == Outcome::Refused) {
        let c = &v.brief;
        let syns = c.packets[v.client()];
        let d = if let Some(rst) = c.first_rst[v.server()] {
            Diagnosis::new(
                "refused",
                format!("the connection attempt was answered with RST after {:.3} s: nothing listening (server down or restarting)", seconds(c.first_packet, rst)),
                "check that the server is up and listening; clients should retry with backoff",
            )
            .with("syns", syns)
        } else {
            Diagnosis::new(
                "overloaded",
                format!("{syns} SYN(s) over {:.1} s got no answer: listen backlog full, a firewall dropping, or the host down", seconds(c.first_packet, c.last_packet)),
                "check the server's accept backlog (somaxconn, listen queue overflows) and any firewall on the path",
            )
            .with("syns", syns)
        };
        out.push((c.id, d));
    }
}

/// Endpoint key of a client: its address without the port (a reconnect uses a new port).
fn client_ip(v: &View<'_>) -> std::net::IpAddr {
    v.brief.endpoint(v.client()).ip()
}

fn server_of(v: &View<'_>) -> SocketAddr {
    v.brief.endpoint(v.server())
}

/// When a connection was over, as far as its client could tell.
fn ended_at(v: &View<'_>) -> Option<Timestamp> {
    if v.outcome == Outcome::Open {
        None
    } else {
        Some(v.brief.ending().map_or(v.brief.last_packet, |e| e.at))
    }
}

/// Whether a client address held two of `group`'s connections (one client address to one server)
/// at once: several clients behind one address (loopback, NAT), whose reconnects cannot be told
/// apart into per-client chains. `spans` is scratch space.
fn is_shared(views: &[View<'_>], group: &[u32], spans: &mut Vec<(Timestamp, Timestamp)>) -> bool {
    spans.clear();
    spans.extend(group.iter().map(|&i| {
        let v = &views[i as usize];
        (
            v.brief.first_packet,
            ended_at(v).unwrap_or(v.brief.last_packet),
        )
    }));
    spans.sort();
    let mut latest_end: Option<Timestamp> = None;
    spans.iter().any(|(start, end)| {
        let o = latest_end.is_some_and(|e| *start < e);
        latest_end = Some(latest_end.map_or(*end, |e| e.max(*end)));
        o
    })
}

fn reconnects(
    views: &[View<'_>],
    time: &dyn Fn(Timestamp) -> String,
    out: &mut Vec<(u64, Diagnosis)>,
) {
    // Each client address's connections to one server together, in start order.
    let start = |i: u32| views[i as usize].brief.first_packet;
    // previous[i] = the connection i reconnected after, with the interval.
    let mut previous: BTreeMap<usize, (usize, f64)> = BTreeMap::new();
    let mut taken: BTreeSet<usize> = BTreeSet::new();
    let mut spans = Vec::new();
    for_each_group(
        0..views.len() as u32,
        |i| views[i as usize].client_server(),
        |a, b| start(a).cmp(&start(b)).then(a.cmp(&b)),
        |group| {
            if is_shared(views, group, &mut spans) {
                return;
            }
            for (at, &i) in group.iter().enumerate() {
                // The latest earlier connection of this client to this server that ended in time.
                let candidate = group[..at]
                    .iter()
                    .rev()
                    .map(|&j| j as usize)
                    .filter(|j| !taken.contains(j))
                    .filter_map(|j| ended_at(&views[j]).map(|e| (j, seconds(e, start(i)))))
                    .find(|(_, gap)| (0.0..=RECONNECT_WITHIN_S).contains(gap));
                if let Some((j, gap)) = candidate {
                    taken.insert(j);
                    previous.insert(i as usize, (j, gap));
                }
            }
        },
    );
    // Walk each chain back from its last attempt.
    let heads: Vec<usize> = previous
        .keys()
        .copied()
        .filter(|i| !taken.contains(i))
        .collect();
    for head in heads {
        let mut chain = vec![head];
        let mut intervals = Vec::new();
        let mut cur = head;
        while let Some(&(prev, gap)) = previous.get(&cur) {
            intervals.push(gap);
            chain.push(prev);
            cur = prev;
        }
        chain.reverse();
        intervals.reverse();
        if intervals.len() < STORM_MIN_RETRIES {
            continue;
        }
        let backoff = intervals.windows(2).all(|w| w[1] >= w[0] * BACKOFF_FACTOR);
        let ratios: Vec<f64> = intervals
            .windows(2)
            .filter(|w| w[0] > 0.0)
            .map(|w| w[1] / w[0])
            .collect();
        let jitter = ratios
            .windows(2)
            .any(|r| (r[0] - r[1]).abs() > 0.05 * r[0].max(r[1]));
        let fast = intervals.iter().all(|g| *g <= STORM_MAX_INTERVAL_S);
        if backoff || !fast {
            continue;
        }
        let shown: Vec<f64> = intervals.iter().map(|g| ms(*g)).collect();
        let first = &views[chain[0]];
        let d = Diagnosis::new(
            "reconnect-storm",
            format!(
                "{} reconnected to {} {} times, {:.3}-{:.3} s after each close, without backing off",
                client_ip(first),
                server_of(first),
                intervals.len(),
                intervals.iter().copied().fold(f64::INFINITY, f64::min),
                intervals.iter().copied().fold(0.0, f64::max)
            ),
            "reconnect with exponential backoff (e.g. 1 s doubling to 30 s) and random jitter, so a restart is not followed by a stampede",
        )
        .with("retry_intervals_s", shown)
        .with("exponential_backoff", backoff)
        .with("jitter", jitter)
        .with("connections", chain.iter().map(|&i| views[i].brief.id).collect::<Vec<_>>())
        .with("from", time(first.brief.first_packet));
        for &i in &chain {
            out.push((views[i].brief.id, d.clone()));
        }
    }
}

/// Silence, in both directions, that makes the older of two parallel connections a leftover.
const DUPLICATE_SILENT_S: f64 = 30.0;

fn duplicates(
    views: &[View<'_>],
    time: &dyn Fn(Timestamp) -> String,
    out: &mut Vec<(u64, Diagnosis)>,
) {
    let capture_end = views
        .iter()
        .map(|v| v.brief.last_packet)
        .max()
        .unwrap_or_default();
    let start = |i: u32| views[i as usize].brief.first_packet;
    // Same client address, server, path and User-Agent: one client's connections, in start order.
    let with_agent = (0..views.len() as u32).filter(|&i| {
        let v = &views[i as usize];
        v.outcome != Outcome::Refused
            && v.brief.is_websocket
            && v.brief
                .request
                .as_ref()
                .is_some_and(|r| r.user_agent.is_some())
    });
    let key = |i: u32| {
        let v = &views[i as usize];
        let req = v.brief.request.as_ref();
        (
            v.client_server(),
            req.map(|r| &*r.path),
            req.and_then(|r| r.user_agent.as_deref()),
        )
    };
    let within = |a: u32, b: u32| start(a).cmp(&start(b)).then(a.cmp(&b));
    for_each_group(with_agent, key, within, |g| {
        for (at, &old) in g.iter().enumerate() {
            duplicate_of(views, capture_end, old, &g[at + 1..], time, out);
        }
    });
}

/// The duplicate-connection finding for `old`, if a connection of the same client to the same
/// endpoint among `later` (in start order) began while `old` was open and then said nothing.
fn duplicate_of(
    views: &[View<'_>],
    capture_end: Timestamp,
    old: u32,
    later: &[u32],
    time: &dyn Fn(Timestamp) -> String,
    out: &mut Vec<(u64, Diagnosis)>,
) {
    let old = &views[old as usize];
    let later = later.iter().map(|&i| &views[i as usize]);
    // An old connection still open at the end of the capture was open until then.
    let old_end = ended_at(old).unwrap_or(capture_end);
    let newer = later
        .take_while(|n| n.brief.first_packet < old_end)
        .find(|n| n.brief.first_packet > old.brief.first_packet && n.brief.any_frames);
    let Some(newer) = newer else { return };
    // The older one said nothing at all, not even a ping, from the newer one's start on.
    let last_old = old.brief.last_activity.unwrap_or(old.brief.first_packet);
    let silent = seconds(last_old.max(newer.brief.first_packet), old_end);
    if last_old <= newer.brief.first_packet && silent >= DUPLICATE_SILENT_S {
        out.push((
            old.brief.id,
            Diagnosis::new(
                "duplicate-connection",
                format!(
                    "the client opened connection {} to the same endpoint at {} while this one stayed open and silent for {:.1} s",
                    newer.brief.id,
                    time(newer.brief.first_packet),
                    silent
                ),
                "close the old socket before reconnecting; a client that leaks connections doubles server load and misses messages",
            )
            .with("newer_connection", newer.brief.id)
            .with("silent_s", ms(silent)),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The windows as first written: each one collected afresh, and the endings reported so far
    /// kept in a set.
    fn mass_windows_by_rescanning(
        endings: &[(Timestamp, &'static str, usize)],
        is_mass: impl Fn(Timestamp, usize) -> bool,
    ) -> Vec<std::ops::Range<usize>> {
        let mut reported = BTreeSet::new();
        let mut windows = Vec::new();
        for (k, &(t0, role, _)) in endings.iter().enumerate() {
            let n = endings[k..]
                .iter()
                .take_while(|(t, r, _)| *r == role && seconds(t0, *t) <= MASS_WINDOW_S)
                .count();
            if n < MASS_MIN || (k..k + n).all(|j| reported.contains(&j)) || !is_mass(t0, n) {
                continue;
            }
            reported.extend(k..k + n);
            windows.push(k..k + n);
        }
        windows
    }

    proptest! {
        #[test]
        fn sliding_windows_are_the_rescanned_ones(
            mut ends in proptest::collection::vec((any::<bool>(), 0i64..4_000_000_000), 0..200),
            threshold in 0usize..12,
        ) {
            let mut endings: Vec<(Timestamp, &'static str, usize)> = ends
                .drain(..)
                .enumerate()
                .map(|(i, (server, ns))| {
                    (Timestamp::from_nanos(ns), if server { "server" } else { "client" }, i)
                })
                .collect();
            endings.sort_by_key(|e| (e.1, e.0));
            // Whether a window counts depends on its start and size, as with the open connections.
            let is_mass = |t0: Timestamp, n: usize| n + (t0.nanos() / 1_000_000_000) as usize >= threshold;
            prop_assert_eq!(
                mass_windows(&endings, is_mass),
                mass_windows_by_rescanning(&endings, is_mass)
            );
        }
    }
}
