//! Rules across connections: idle clusters, mass closes, reconnect storms, duplicates.
use std::collections::BTreeMap;

use super::rules::Idle;
use super::{Diagnosis, View};
use crate::capture::Timestamp;

pub fn idle_clusters(_idle: &[Option<Idle>]) -> BTreeMap<usize, (usize, f64)> {
    BTreeMap::new()
}

pub fn across(_views: &[View<'_>], _time: &dyn Fn(Timestamp) -> String) -> Vec<(u64, Diagnosis)> {
    Vec::new()
}
