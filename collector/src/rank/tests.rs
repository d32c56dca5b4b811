use super::*;
use daytwo_model::{Attributes, Severity};

fn anomaly_signal(svc: &str, metric: &str, sigma: f64, t: i64) -> Signal {
    let mut attributes = Attributes::new();
    attributes.insert("metric.name".into(), metric.into());
    attributes.insert("daytwo.anomaly.sigma".into(), sigma.into());
    Signal {
        id: format!("{svc}-{metric}-{t}"),
        name: crate::detect::METRIC_ANOMALY.into(),
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
