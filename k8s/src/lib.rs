//! Kubernetes objects → daytwo signals.
//!
//! Two halves, one crate, so the agent (its own node's pods and Node) and the collector
//! (cluster-wide objects) share both the mapping and the watch loop:
//!
//! * [`map`] — **pure**: no I/O, no clock. A [`map::Mapper`] turns (previous snapshot, new
//!   object) into [`daytwo_model::Signal`]s; a [`map::Tracker`] keeps the per-object state that
//!   makes the mapping diff-based across watch restarts and re-lists. Signal ids are derived
//!   from object identity and state (pod uid + container + restart count + reason, node +
//!   condition + transition time, …), never from the time of observation, so redelivery is a
//!   no-op at the collector, which dedupes by id.
//! * [`watch`] — the async shell: kube-runtime's watcher (list, watch, resume from the last
//!   resourceVersion after a cut stream, re-list after `410 Gone`) feeding a tracker, signals
//!   out on a bounded channel, errors counted and logged once per outage.
//!
//! [`client`] builds a client from `--kube auto|on|off` and `--kubeconfig`; [`fake`] (feature
//! `fake-api-server`) is the scriptable API server the tests run on 127.0.0.1.
//!
//! Event names and attributes are in [`names`] and docs/signals.md, section "Kubernetes".
//! Deliberately not done here: writing anything to the API server, leader election.
//!
//! Why a crate of its own: the agent and the collector both run the mapper and the watch loop,
//! and the mapping needs `k8s-openapi`'s types (about a minute of compilation), which `model`
//! (the nouns, depended on by everything, including the pure rule engine) must not pay for.

pub mod client;
#[cfg(feature = "fake-api-server")]
pub mod fake;
pub mod map;
pub mod names;
pub mod watch;

/// The Kubernetes types the mappers take, for callers that start watches.
pub use k8s_openapi;
pub use map::{Context, Mapper, Tracker};
