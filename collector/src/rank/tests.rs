use super::*;
use daytwo_model::{Attributes, Severity};

fn anomaly_signal(svc: &str, metric: &str, sigma: f64, t: i64) -> Signal {
    let mut attributes = Attributes::new();
    attributes.insert("metric.name".into(), metric.into());
    attributes.insert("daytwo.anomaly.sigma".into(), sigma.into());
    Signal {
        id: format!("{svc}-{metric}-{t}"),
        name: crate::detect::anomaly_signal_name(metric).into(),
        time: Timestamp::from_unix_secs(t),
        severity: Severity::Warning,
        entity: Entity::new(EntityKind::Service, svc)
            .with_attr("service.name", svc)
            .with_attr("k8s.namespace.name", "shop"),
        resource: Attributes::new(),
        attributes,
        message: String::new(),
        evidence: vec![],
    }
}

#[test]
fn the_strongest_anomaly_ranks_first_with_scores_in_range() {
    let sigs = vec![
        anomaly_signal("a", "container.cpu.usage", 8.0, 100),
        anomaly_signal("b", "container.cpu.usage", 900.0, 100),
        anomaly_signal("c", "container.memory.usage", -30.0, 90),
    ];
    let h = rank(&sigs, &CallGraph::new());
    assert_eq!(h[0].entity.name, "b");
    assert_eq!(h[0].entity.kind, EntityKind::Service);
    assert_eq!(h[0].entity.attributes["k8s.namespace.name"], "shop");
    assert_eq!(h[0].rule, GENERIC_RULE);
    assert!(h.iter().all(|h| h.score > 0.0 && h.score <= 1.0));
    assert!(h.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(
        h[0].explanation.contains("container.cpu.usage"),
        "{}",
        h[0].explanation
    );
    assert!(h[0].explanation.contains("900.0σ"), "{}", h[0].explanation);
}

#[test]
fn a_caller_explained_by_its_callee_ranks_below_it() {
    let mut g = CallGraph::new();
    g.add("frontend", "cart", Timestamp(0));
    g.add("cart", "db", Timestamp(0));
    // The caller's latency moved a little more than the callee's, at the same time.
    let sigs = vec![
        anomaly_signal("frontend", "latency", 60.0, 100),
        anomaly_signal("cart", "latency", 55.0, 100),
    ];
    let h = rank(&sigs, &g);
    assert_eq!(h[0].entity.name, "cart", "{h:#?}");
    assert!(h[1].explanation.contains("symptom"), "{}", h[1].explanation);
    // Without the graph, the bigger change wins.
    assert_eq!(rank(&sigs, &CallGraph::new())[0].entity.name, "frontend");
}

#[test]
fn no_anomaly_no_hypothesis() {
    let mut s = anomaly_signal("a", "m", 10.0, 1);
    s.name = "daytwo.kernel.oom_kill".into();
    assert!(rank(&[s], &CallGraph::new()).is_empty());
}

#[test]
fn upstream_is_transitive_and_excludes_itself() {
    let mut g = CallGraph::new();
    g.add("a", "b", Timestamp(0));
    g.add("b", "c", Timestamp(0));
    g.add("c", "a", Timestamp(0));
    let up: Vec<String> = g.upstream_of("c").into_iter().collect();
    assert_eq!(up, ["a", "b"]);
}

fn edges(pairs: &[(&str, &str)]) -> CallGraph {
    let mut g = CallGraph::new();
    for (a, b) in pairs {
        g.add(a, b, Timestamp(0));
    }
    g
}

fn position(h: &[Hypothesis], svc: &str) -> usize {
    h.iter()
        .position(|h| h.entity.name == svc)
        .unwrap_or_else(|| panic!("{svc} not ranked: {h:#?}"))
}

#[test]
fn a_callee_failing_under_a_healthy_caller_is_named_and_the_caller_is_its_symptom() {
    let g = edges(&[("frontend", "cart")]);
    // The callee's CPU and latency went up; the caller's latency followed, as strongly.
    let sigs = vec![
        anomaly_signal("cart", "container.cpu.usage", 40.0, 100),
        anomaly_signal("cart", "span.server.duration.p50", 30.0, 100),
        anomaly_signal("frontend", "span.server.duration.p50", 45.0, 100),
    ];
    let h = rank(&sigs, &g);
    assert_eq!(h[0].entity.name, "cart", "{h:#?}");
    let fe = &h[position(&h, "frontend")];
    assert!(fe.explanation.contains("symptom"), "{}", fe.explanation);
}

#[test]
fn a_caller_failing_with_a_healthy_callee_is_not_explained_by_the_callee_going_quiet() {
    let g = edges(&[("frontend", "cart")]);
    // The caller's own code broke: errors and latency up, fewer child calls per request.
    // Its callee only got less traffic, a fall as large as the caller's strongest change.
    let sigs = vec![
        anomaly_signal("frontend", "span.server.error.ratio", 40.0, 100),
        anomaly_signal("frontend", "span.server.duration.p50", 30.0, 100),
        anomaly_signal("frontend", "span.server.children", -25.0, 100),
        anomaly_signal("cart", "span.server.call.rate", -70.0, 100),
    ];
    let h = rank(&sigs, &g);
    assert_eq!(h[0].entity.name, "frontend", "{h:#?}");
    assert!(
        !h[0].explanation.contains("symptom"),
        "{}",
        h[0].explanation
    );
}

#[test]
fn a_traffic_drop_propagated_downstream_explains_nothing_upstream() {
    let g = edges(&[("frontend", "cart"), ("cart", "db")]);
    // The entry service fails; every service below it sees fewer calls at the same time.
    let sigs = vec![
        anomaly_signal("frontend", "span.server.error.ratio", 30.0, 100),
        anomaly_signal("cart", "span.server.call.rate", -50.0, 100),
        anomaly_signal("db", "span.server.call.rate", -50.0, 100),
    ];
    let h = rank(&sigs, &g);
    assert_eq!(h[0].entity.name, "frontend", "{h:#?}");
    // db's drop does not make cart a symptom, nor does cart's make frontend one.
    for x in &h {
        assert!(!x.explanation.contains("symptom"), "{}", x.explanation);
    }
}

#[test]
fn a_fan_out_change_in_a_callee_explains_its_caller() {
    let g = edges(&[("frontend", "ads")]);
    // The callee's handler took another path (half its child calls gone); the caller's
    // latency moved a little more at the same time.
    let sigs = vec![
        anomaly_signal("ads", "span.server.children", -30.0, 100),
        anomaly_signal("frontend", "span.server.duration.p50", 35.0, 100),
    ];
    let h = rank(&sigs, &g);
    let fe = &h[position(&h, "frontend")];
    assert!(fe.explanation.contains("symptom"), "{}", fe.explanation);
}

#[test]
fn two_corroborating_weak_anomalies_beat_one_strong_one() {
    // a: CPU, latency and memory all moved, each moderately; b: one latency, strongly.
    let sigs = vec![
        anomaly_signal("a", "container.cpu.usage", 20.0, 100),
        anomaly_signal("a", "span.server.duration.p50", 15.0, 100),
        anomaly_signal("a", "container.memory.usage", 12.0, 100),
        anomaly_signal("b", "span.server.duration.p50", 60.0, 100),
    ];
    let h = rank(&sigs, &CallGraph::new());
    assert_eq!(h[0].entity.name, "a", "{h:#?}");
    // Quantiles of one latency are one piece of evidence, not three.
    let sigs = vec![
        anomaly_signal("c", "http.server.request.duration.p90", 20.0, 100),
        anomaly_signal("c", "http.server.request.duration.p95", 20.0, 100),
        anomaly_signal("c", "http.server.request.duration.p99", 20.0, 100),
        anomaly_signal("b", "span.server.duration.p50", 60.0, 100),
    ];
    let h = rank(&sigs, &CallGraph::new());
    assert_eq!(h[0].entity.name, "b", "{h:#?}");
}

#[test]
fn a_falling_success_ratio_counts_as_a_rise_in_failures() {
    // Equal |z|: fewer successes is the faulty direction, less CPU the benign one.
    let sigs = vec![
        anomaly_signal("a", "container.cpu.usage", -20.0, 100),
        anomaly_signal("b", "sli.request.success_ratio", -20.0, 100),
    ];
    let h = rank(&sigs, &CallGraph::new());
    assert_eq!(h[0].entity.name, "b", "{h:#?}");
    assert!(h[0].score > h[1].score, "{h:#?}");
    // The explanation still reports the raw direction.
    assert!(
        h[0].explanation.contains("success_ratio down"),
        "{}",
        h[0].explanation
    );
}

fn client_latency(caller: &str, callee: &str, sigma: f64, t: i64) -> Signal {
    let mut s = anomaly_signal(callee, "span.client.duration.p50", sigma, t);
    s.attributes
        .insert(crate::detect::CALLER.into(), caller.into());
    s
}

#[test]
fn a_caller_whose_calls_got_slow_is_a_candidate_behind_the_callee() {
    // One caller saw its calls to one service slow down, and nothing else moved: the
    // callee is the likelier cause, but the caller's own delays are in that time too.
    let sigs = vec![
        client_latency("checkout", "currency", 20.0, 100),
        anomaly_signal("ads", "span.server.duration.p50", 15.0, 100),
    ];
    let h = rank(&sigs, &edges(&[("checkout", "currency")]));
    assert_eq!(h[0].entity.name, "currency", "{h:#?}");
    let co = &h[position(&h, "checkout")];
    assert!(co.score < h[0].score, "{h:#?}");
    assert!(
        co.explanation.contains("its calls to currency"),
        "{}",
        co.explanation
    );
}

#[test]
fn a_caller_whose_calls_to_many_services_got_slow_is_the_cause() {
    let sigs = vec![
        client_latency("frontend", "a", 20.0, 100),
        client_latency("frontend", "b", 20.0, 100),
        client_latency("frontend", "c", 20.0, 100),
    ];
    let h = rank(&sigs, &CallGraph::new());
    assert_eq!(h[0].entity.name, "frontend", "{h:#?}");
    assert_eq!(h.len(), 1, "{h:#?}");
}

#[test]
fn what_a_caller_measured_on_its_calls_does_not_make_the_callee_its_cause() {
    let g = edges(&[("checkout", "email")]);
    // checkout's CPU went up and, with it, the time it measures on its calls to email;
    // email itself shows nothing. checkout's own measurement cannot blame email.
    let sigs = vec![
        anomaly_signal("checkout", "container.cpu.usage", 30.0, 100),
        anomaly_signal("checkout", "container.memory.usage", 8.0, 100),
        client_latency("checkout", "email", 60.0, 100),
    ];
    let h = rank(&sigs, &g);
    let co = &h[position(&h, "checkout")];
    assert!(!co.explanation.contains("symptom"), "{}", co.explanation);
    // The same slowness seen by email's own server spans does explain checkout.
    let sigs = vec![
        anomaly_signal("checkout", "container.cpu.usage", 30.0, 100),
        anomaly_signal("email", "span.server.duration.p50", 60.0, 100),
    ];
    let h = rank(&sigs, &g);
    let co = &h[position(&h, "checkout")];
    assert!(co.explanation.contains("symptom"), "{}", co.explanation);
}

#[test]
fn a_callers_slower_calls_to_several_services_corroborate_each_other() {
    // frontend's calls to three services all slowed (its CPU, say): three pieces of evidence,
    // against one callee whose own latency moved more than any one of them and which also
    // shows a second family.
    let sigs = vec![
        client_latency("frontend", "a", 40.0, 100),
        client_latency("frontend", "b", 30.0, 100),
        client_latency("frontend", "c", 30.0, 100),
        anomaly_signal("d", "span.server.duration.p50", 50.0, 100),
        anomaly_signal("d", "container.memory.usage", 10.0, 100),
    ];
    let h = rank(&sigs, &CallGraph::new());
    assert_eq!(h[0].entity.name, "frontend", "{h:#?}");
}

#[test]
fn the_latency_of_a_services_calls_out_counts_at_the_callers_share() {
    // `http.client.*` without `peer.service`: the time a service waited on its calls, which
    // holds its callees' time too. A service whose own server latency moved beats one whose
    // calls out moved somewhat more.
    let sigs = vec![
        anomaly_signal("a", "http.client.request.duration.p99", 40.0, 100),
        anomaly_signal("b", "http.server.request.duration.p99", 20.0, 100),
    ];
    let h = rank(&sigs, &CallGraph::new());
    assert_eq!(h[0].entity.name, "b", "{h:#?}");
    assert!(
        h[1].explanation.contains("(its calls out)"),
        "{}",
        h[1].explanation
    );
    // Naming the callee, it is about the callee (and half about the caller), as before.
    let mut named = anomaly_signal("a", "http.client.request.duration.p99", 40.0, 100);
    named.attributes.insert("peer.service".into(), "c".into());
    assert!(!is_outbound(&named));
    assert!(is_outbound(&sigs[0]));
    assert!(!is_outbound(&sigs[1]));
}

#[test]
fn a_server_latency_on_one_callers_calls_only_is_shared_with_that_caller() {
    // `rpc.server.*` with `peer.service`: the service's own time on the calls from one
    // caller. It has two callers; only the calls from `checkout` got slower, so checkout's
    // calls changed as much as the service did.
    let mut g = CallGraph::new();
    g.add("checkout", "currency", Timestamp(0));
    g.add("frontend", "currency", Timestamp(0));
    let mut edge = anomaly_signal("currency", "rpc.server.duration.p50", 100.0, 100);
    edge.attributes
        .insert("peer.service".into(), "checkout".into());
    let own = anomaly_signal("checkout", "container.memory.usage", 30.0, 100);
    let h = rank(&[edge.clone(), own.clone()], &g);
    assert_eq!(h[0].entity.name, "checkout", "{h:#?}");
    let currency = h.iter().find(|h| h.entity.name == "currency").unwrap();
    assert!(
        currency
            .explanation
            .contains("(calls from one caller only)"),
        "{}",
        currency.explanation
    );
    // With one caller only (nothing to compare with), it is the service's own, as before.
    let mut single = CallGraph::new();
    single.add("checkout", "currency", Timestamp(0));
    assert_eq!(rank(&[edge, own], &single)[0].entity.name, "currency");
}

#[test]
fn a_callees_latency_on_one_callers_calls_does_not_make_it_that_callers_cause() {
    // checkout's requests to currency got slower, and only checkout's (frontend's calls to
    // currency did not move): checkout's own change (a new code path, a bigger payload) shows
    // as currency's server time on its calls. That measurement is about the two of them alike,
    // so it cannot tell which one is the symptom; checkout, with a change of its own, is named.
    let g = edges(&[
        ("frontend", "checkout"),
        ("frontend", "currency"),
        ("checkout", "currency"),
    ]);
    let rpc_server = |peer: &str| {
        let mut s = anomaly_signal("currency", "rpc.server.duration.p50", 10.0, 100);
        s.attributes.insert("peer.service".into(), peer.into());
        s
    };
    let sigs = vec![
        anomaly_signal("frontend", "http.server.request.duration.p99", 30.0, 100),
        rpc_server("checkout"),
        anomaly_signal("checkout", "container.memory.usage", 2.0, 100),
        anomaly_signal("checkout", "container.cpu.usage", 2.0, 100),
    ];
    let h = rank(&sigs, &g);
    let co = &h[position(&h, "checkout")];
    assert!(!co.explanation.contains("symptom"), "{}", co.explanation);
    assert!(
        position(&h, "checkout") < position(&h, "currency"),
        "{h:#?}"
    );
    // Near miss: currency is slower on frontend's calls too, so it changed for every caller;
    // then it does explain checkout.
    let mut sigs = sigs;
    sigs.push(rpc_server("frontend"));
    let h = rank(&sigs, &g);
    let co = &h[position(&h, "checkout")];
    assert!(co.explanation.contains("symptom"), "{}", co.explanation);
    assert!(
        position(&h, "currency") < position(&h, "checkout"),
        "{h:#?}"
    );
}

#[test]
fn a_callee_that_went_wrong_after_its_caller_does_not_reach_it() {
    // frontend's latency and memory went up; two minutes later its callee's latency jumped
    // more. A fault travels from callee to caller, so the callee cannot have caused what its
    // caller showed two minutes before: it gets no reach, and frontend stays first.
    let g = edges(&[("frontend", "ship")]);
    let sigs = |ship_onset: i64| {
        vec![
            anomaly_signal("frontend", "http.server.request.duration.p99", 20.0, 100),
            anomaly_signal("frontend", "container.memory.usage", 5.0, 100),
            anomaly_signal("ship", "http.server.request.duration.p99", 25.0, ship_onset),
        ]
    };
    let h = rank(&sigs(220), &g);
    assert_eq!(h[0].entity.name, "frontend", "{h:#?}");
    let ship = &h[position(&h, "ship")];
    assert!(
        !ship.explanation.contains("call it"),
        "{}",
        ship.explanation
    );
    // Near miss: within one interval of 1-minute metrics the onsets cannot be ordered, so the
    // callee reaches its caller as before and, stronger, is named.
    let h = rank(&sigs(130), &g);
    assert_eq!(h[0].entity.name, "ship", "{h:#?}");
    assert!(
        h[0].explanation
            .contains("1 other anomalous service(s) call it"),
        "{}",
        h[0].explanation
    );
}

#[test]
fn two_callers_seeing_the_same_callee_slow_are_two_witnesses() {
    // checkout and frontend each measured their calls to cart getting slower: two independent
    // witnesses of one change in cart, which corroborate each other like two metric families.
    // Against a service whose own latency moved more than either, cart is named.
    let sigs = vec![
        client_latency("checkout", "cart", 40.0, 100),
        client_latency("frontend", "cart", 30.0, 100),
        anomaly_signal("email", "http.server.request.duration.p99", 65.0, 100),
    ];
    let h = rank(&sigs, &CallGraph::new());
    assert_eq!(h[0].entity.name, "cart", "{h:#?}");
    // Near miss: the same two changes seen by one caller (its p50 and p99 of the calls to
    // cart) are one witness, one family; email's stronger change is named.
    let mut p99 = client_latency("checkout", "cart", 30.0, 100);
    p99.attributes
        .insert("metric.name".into(), "span.client.duration.p99".into());
    let sigs = vec![
        client_latency("checkout", "cart", 40.0, 100),
        p99,
        anomaly_signal("email", "http.server.request.duration.p99", 65.0, 100),
    ];
    let h = rank(&sigs, &CallGraph::new());
    assert_eq!(h[0].entity.name, "email", "{h:#?}");
}

#[test]
fn a_client_latency_on_one_callers_calls_only_is_shared_with_that_caller() {
    // currency has two callers; only checkout's calls to it got slower, and checkout's memory
    // moved too. A fault in currency would slow every caller's calls, so the slow calls say
    // as much about checkout as about currency: each gets half, and checkout is named.
    let g = edges(&[("checkout", "currency"), ("frontend", "currency")]);
    let sigs = vec![
        client_latency("checkout", "currency", 20.0, 100),
        anomaly_signal("checkout", "container.memory.usage", 10.0, 100),
    ];
    let h = rank(&sigs, &g);
    assert_eq!(h[0].entity.name, "checkout", "{h:#?}");
    let currency = &h[position(&h, "currency")];
    assert!(
        currency
            .explanation
            .contains("(calls from one caller only)"),
        "{}",
        currency.explanation
    );
    // Near miss: frontend's calls to currency slowed as well, so currency changed for every
    // caller; it gets the whole change (and two witnesses of it) and is named.
    let mut sigs = sigs;
    sigs.push(client_latency("frontend", "currency", 15.0, 100));
    let h = rank(&sigs, &g);
    assert_eq!(h[0].entity.name, "currency", "{h:#?}");
    // With one caller only, there is nothing to compare with: the callee's, as before.
    let single = edges(&[("checkout", "currency")]);
    let sigs = vec![
        client_latency("checkout", "currency", 20.0, 100),
        anomaly_signal("checkout", "container.memory.usage", 10.0, 100),
    ];
    assert_eq!(rank(&sigs, &single)[0].entity.name, "currency");
}

mod call_graph {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The call graph as a plain list of edges, searched in full.
    #[derive(Default)]
    struct Model {
        edges: BTreeMap<(String, String), (Timestamp, Timestamp)>,
    }

    impl Model {
        fn add(&mut self, caller: &str, callee: &str, t: Timestamp) {
            if caller.is_empty() || callee.is_empty() || caller == callee {
                return;
            }
            let e = self
                .edges
                .entry((caller.into(), callee.into()))
                .or_insert((t, t));
            e.0 = e.0.min(t);
            e.1 = e.1.max(t);
        }
    }

    fn agree(g: &CallGraph, m: &Model, names: &[&str]) {
        assert_eq!(g.len(), m.edges.len());
        for a in names {
            let callees: Vec<&str> = g.callees(a).collect();
            let want: Vec<&str> = m
                .edges
                .keys()
                .filter(|k| k.0 == *a)
                .map(|k| k.1.as_str())
                .collect();
            assert_eq!(callees, want, "callees of {a}");
            let mut callers: Vec<&str> = g.callers(a).collect();
            callers.sort();
            let mut want: Vec<&str> = m
                .edges
                .keys()
                .filter(|k| k.1 == *a)
                .map(|k| k.0.as_str())
                .collect();
            want.sort();
            assert_eq!(callers, want, "callers of {a}");
            for b in names {
                assert_eq!(
                    g.seen(a, b),
                    m.edges.get(&(a.to_string(), b.to_string())).copied(),
                    "{a} -> {b}"
                );
            }
        }
    }

    proptest! {
        /// Every answer (edges, first and last seen, callers, callees, count) is the plain
        /// list's, through adds and prunes.
        #[test]
        fn answers_match_a_plain_list_of_edges(
            ops in proptest::collection::vec((0usize..5, 0usize..5, 0i64..100, any::<bool>()), 1..60)
        ) {
            let names = ["", "a", "b", "c", "d"];
            let mut g = CallGraph::new();
            let mut m = Model::default();
            for (x, y, t, prune) in ops {
                let t = Timestamp::from_unix_secs(t);
                if prune {
                    let n = g.prune(t);
                    let before = m.edges.len();
                    m.edges.retain(|_, (_, last)| *last >= t);
                    prop_assert_eq!(n, before - m.edges.len());
                } else {
                    prop_assert_eq!(g.add(names[x], names[y], t), 0);
                    m.add(names[x], names[y], t);
                }
                agree(&g, &m, &names);
            }
        }
    }

    #[test]
    fn past_the_bound_the_least_recently_seen_edges_go() {
        let mut g = CallGraph::new();
        for i in 0..MAX_EDGES {
            assert_eq!(
                g.add(
                    "caller",
                    &format!("s{i}"),
                    Timestamp::from_unix_secs(i as i64)
                ),
                0
            );
        }
        // Seen again: now the most recent.
        g.add("caller", "s0", Timestamp::from_unix_secs(1_000_000));
        let dropped = g.add("caller", "new", Timestamp::from_unix_secs(1_000_001));
        assert_eq!(dropped, MAX_EDGES / 10);
        assert_eq!(g.len(), MAX_EDGES + 1 - MAX_EDGES / 10);
        assert!(g.seen("caller", "s0").is_some());
        assert!(g.seen("caller", "s1").is_none());
        assert!(g.seen("caller", &format!("s{}", MAX_EDGES / 10)).is_none());
        assert!(
            g.seen("caller", &format!("s{}", MAX_EDGES / 10 + 1))
                .is_some()
        );
        assert!(g.callers("s1").next().is_none());
    }
}
