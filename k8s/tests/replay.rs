//! Property: whatever the watcher replays (an object re-delivered, a re-list after a reconnect
//! or a `410 Gone`, at any point of the stream), a tracker yields each signal at most once,
//! and exactly the signals of the clean stream.

use daytwo_k8s::map::event::EventMapper;
use daytwo_k8s::map::node::NodeMapper;
use daytwo_k8s::map::pod::PodMapper;
use daytwo_k8s::{Context, Mapper, Tracker};
use daytwo_model::{Signal, Timestamp};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashSet;

fn fixtures<T: DeserializeOwned>(file: &str, names: &[&str]) -> Vec<T> {
    let path = format!(
        "{}/../tests/fixtures/kubernetes/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    names
        .iter()
        .map(|n| serde_json::from_value(all[*n].clone()).unwrap())
        .collect()
}

fn ctx() -> Context {
    Context {
        cluster: None,
        host: None,
        max_age: std::time::Duration::from_secs(10 * 365 * 86400),
    }
}

/// What the watcher does next.
#[derive(Clone, Debug)]
enum Op {
    /// The next state of the object arrives (a watch MODIFIED).
    Next,
    /// The current state is delivered again (a resumed watch repeating an event).
    Repeat,
    /// Init, InitApply(current), InitDone: a re-list after a reconnect or 410.
    Relist,
    /// Init, InitDone without the object: it was deleted while we were away.
    RelistWithout,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => Just(Op::Next),
            2 => Just(Op::Repeat),
            2 => Just(Op::Relist),
        ],
        0..40,
    )
}

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-25T14:31:00Z").unwrap()
}

/// Runs `states` (by index sequence) through a tracker under `ops`; returns every signal.
/// A re-list delivers the latest state of every object delivered so far, as an API server
/// lists every object that exists.
fn run<M: Mapper>(mapper: M, states: &[M::Object], seq: &[usize], ops: &[Op]) -> Vec<Signal> {
    let keys: Vec<String> = states.iter().map(|o| mapper.key(o)).collect();
    let mut latest: Vec<(String, usize)> = Vec::new();
    let remember = |latest: &mut Vec<(String, usize)>, i: usize| match latest
        .iter_mut()
        .find(|(k, _)| *k == keys[i])
    {
        Some(e) => e.1 = i,
        None => latest.push((keys[i].clone(), i)),
    };
    let mut t = Tracker::new(mapper);
    let mut out = Vec::new();
    let mut pos = 0;
    t.init();
    out.extend(t.apply(&states[seq[0]], now()));
    remember(&mut latest, seq[0]);
    out.extend(t.init_done(now()));
    for op in ops {
        match op {
            Op::Next => {
                if pos + 1 < seq.len() {
                    pos += 1;
                    out.extend(t.apply(&states[seq[pos]], now()));
                    remember(&mut latest, seq[pos]);
                }
            }
            Op::Repeat => out.extend(t.apply(&states[seq[pos]], now())),
            Op::Relist => {
                t.init();
                for (_, i) in &latest {
                    out.extend(t.apply(&states[*i], now()));
                }
                out.extend(t.init_done(now()));
            }
            Op::RelistWithout => {
                t.init();
                latest.clear();
                out.extend(t.init_done(now()));
            }
        }
    }
    out
}

fn clean<M: Mapper>(mapper: M, states: &[M::Object], seq: &[usize], reached: usize) -> Vec<Signal> {
    let mut t = Tracker::new(mapper);
    seq[..=reached]
        .iter()
        .flat_map(|i| t.apply(&states[*i], now()))
        .collect()
}

fn reached(seq_len: usize, ops: &[Op]) -> usize {
    ops.iter()
        .filter(|o| matches!(o, Op::Next))
        .count()
        .min(seq_len - 1)
}

fn check<M: Mapper + Clone>(mapper: M, states: &[M::Object], seq: &[usize], ops: &[Op]) {
    let got = run(mapper.clone(), states, seq, ops);
    let mut seen = HashSet::new();
    for s in &got {
        assert!(seen.insert(s.id.clone()), "{} emitted twice: {s:#?}", s.id);
    }
    let want: HashSet<String> = clean(mapper, states, seq, reached(seq.len(), ops))
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(seen, want, "replays changed what was reported");
}

const POD_STATES: &[&str] = &[
    "running",
    "not_ready",
    "crashloop",
    "restarted",
    "oomkilled",
    "image_pull_backoff",
    "err_image_pull",
    "config_error",
    "evicted",
];

const NODE_STATES: &[&str] = &[
    "ready",
    "heartbeat",
    "not_ready",
    "ready_again",
    "memory_pressure",
    "disk_pressure",
    "kernel_deadlock",
    "cordoned",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pods_each_signal_at_most_once(
        seq in prop::collection::vec(0..POD_STATES.len(), 1..12),
        ops in ops(),
    ) {
        let states = fixtures("pods.json", POD_STATES);
        check(PodMapper::new(ctx()), &states, &seq, &ops);
    }

    #[test]
    fn nodes_each_signal_at_most_once(
        seq in prop::collection::vec(0..NODE_STATES.len(), 1..12),
        ops in ops(),
    ) {
        let states = fixtures("nodes.json", NODE_STATES);
        check(NodeMapper::new(ctx()), &states, &seq, &ops);
    }

    #[test]
    fn events_each_signal_at_most_once(
        seq in prop::collection::vec(0..4usize, 1..12),
        ops in ops(),
    ) {
        let states = fixtures(
            "events.json",
            &["backoff", "unhealthy", "failed_scheduling", "job_backoff"],
        );
        check(EventMapper::new(ctx()), &states, &seq, &ops);
    }
}

#[test]
fn an_object_deleted_while_away_is_forgotten_and_seen_anew() {
    let states: Vec<k8s_openapi::api::core::v1::Pod> =
        fixtures("pods.json", &["crashloop", "crashloop"]);
    let got = run(
        PodMapper::new(ctx()),
        &states,
        &[0, 1],
        &[Op::RelistWithout, Op::Next],
    );
    // Forgotten on the re-list, seen again afterwards: its state is reported again with the
    // same ids, which the collector deduplicates.
    let ids: Vec<&String> = got.iter().map(|s| &s.id).collect();
    assert_eq!(ids.len(), 4, "{got:#?}");
    assert_eq!(ids[0], ids[2]);
}
