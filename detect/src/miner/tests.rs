use super::*;

#[test]
fn same_shape_lines_share_a_template() {
    let mut m = Miner::default();
    let a = m.add("PacketResponder 1 for block blk_38865049064139660 terminating");
    let b = m.add("PacketResponder 0 for block blk_-6952295868487656571 terminating");
    assert!(a.is_new);
    assert!(!b.is_new);
    assert_eq!(a.id, b.id);
    assert_eq!(
        m.template(a.id).unwrap(),
        "PacketResponder <*> for block <*> terminating"
    );
}

#[test]
fn plain_words_stay_separate_templates() {
    let mut m = Miner::default();
    let a = m.add("cupsd startup succeeded");
    let b = m.add("cupsd shutdown succeeded");
    assert_ne!(a.id, b.id);
}

#[test]
fn a_word_seen_with_several_values_becomes_a_variable() {
    let mut m = Miner::default();
    let ids: Vec<_> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|u| m.add(&format!("session closed for user {u} now")).id)
        .collect();
    let resolved: Vec<_> = ids.iter().map(|&i| m.resolve(i).unwrap()).collect();
    assert!(resolved.iter().all(|&r| r == resolved[0]));
    assert_eq!(ids[0], resolved[0], "the oldest cluster keeps its id");
    assert_eq!(
        m.template(ids[1]).unwrap(),
        "session closed for user <*> now"
    );
}

#[test]
fn key_values_and_addresses_keep_their_separators() {
    let mut m = Miner::default();
    let a = m.add("connect uid=0 rhost=10.0.0.1:22 tty=ssh");
    m.add("connect uid=5 rhost=host-a.example.net:22 tty=ssh");
    assert_eq!(
        m.template(a.id).unwrap(),
        "connect uid=<*> rhost=<*>:<*> tty=ssh"
    );
}

#[test]
fn long_lines_are_capped() {
    let mut m = Miner::new(MinerConfig {
        max_tokens: 4,
        ..MinerConfig::default()
    });
    let a = m.add("a b c d e f g");
    assert_eq!(m.template(a.id).unwrap(), "a b c d <*>");
}

#[test]
fn eviction_keeps_the_cap_and_drops_the_least_recently_used() {
    let mut m = Miner::new(MinerConfig {
        max_clusters: 10,
        ..MinerConfig::default()
    });
    let first = m.add("first kind of line here").id;
    for i in 0..30 {
        let words: String = (0..5).map(|j| format!(" w{}x", (i * 7 + j) % 26)).collect();
        // Distinct letter sequences so that each line is a new template.
        let line: String = words
            .chars()
            .map(|c| {
                if c.is_ascii_digit() {
                    (b'a' + c as u8 - b'0') as char
                } else {
                    c
                }
            })
            .collect();
        m.add(&format!("{i}{line}"));
        assert!(m.len() <= 10);
    }
    assert_eq!(m.resolve(first), None);
    assert_eq!(m.template(first), None);
}

#[test]
fn state_round_trip_gives_identical_later_assignments() {
    let lines = corpus();
    let mut a = Miner::default();
    for l in &lines[..150] {
        a.add(l);
    }
    let mut b = Miner::from_json(&a.to_json()).unwrap();
    assert_eq!(a.len(), b.len());
    for l in &lines[150..] {
        assert_eq!(a.add(l), b.add(l), "line {l:?}");
    }
    assert_eq!(a.to_json(), b.to_json());
}

#[test]
fn bad_state_is_an_error() {
    assert!(matches!(
        Miner::from_json("{"),
        Err(MinerStateError::Parse(_))
    ));
    let mut v: serde_json::Value = serde_json::from_str(&Miner::default().to_json()).unwrap();
    v["version"] = 99.into();
    assert!(matches!(
        Miner::from_json(&v.to_string()),
        Err(MinerStateError::Version { found: 99, .. })
    ));
}

#[test]
fn json_lines_are_mined_by_their_message_with_their_keys() {
    let mut m = Miner::default();
    let a = m.add(r#"{"ts":"2024-06-01T00:00:01.5Z","level":"info","msg":"request completed","path":"/api/v1/users/17","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","duration_ms":12.5}"#);
    let b = m.add(r#"  {"ts": "2024-06-01T00:00:02Z", "level": "info", "msg": "request completed", "path": "/login", "trace_id": "00f067aa0ba902b7", "duration_ms": 3}  "#);
    assert_eq!(a.id, b.id);
    assert_eq!(
        m.template(a.id).unwrap(),
        "{ts,level,msg,path,trace_id,duration_ms} info request completed"
    );
    // Another level, message or key list is another template.
    let c = m.add(r#"{"ts":"x","level":"error","msg":"request completed","path":"/","trace_id":"1","duration_ms":1}"#);
    let d = m.add(
        r#"{"ts":"x","level":"info","msg":"cache miss","path":"/","trace_id":"1","duration_ms":1}"#,
    );
    let e = m.add(r#"{"ts":"x","level":"info","msg":"request completed","path":"/","trace_id":"1","duration_ms":1,"attrs":{"region":"eu","n":[1,{"a":"}"}]}}"#);
    for x in [c, d, e] {
        assert!(x.is_new, "{:?}", m.template(x.id));
    }
    // The message is masked like any line.
    let f = m.add(r#"{"message":"order 4711 failed: upstream returned 503","lvl":3}"#);
    let g = m.add(r#"{"message":"order 99 failed: upstream returned 500","lvl":3}"#);
    assert_eq!(f.id, g.id);
    assert_eq!(
        m.template(f.id).unwrap(),
        "{message,lvl} <*> order <*> failed: upstream returned <*>"
    );
}

#[test]
fn only_whole_json_objects_with_a_string_message_are_mined_as_json() {
    let mut out = String::new();
    for not in [
        r#"{"level":"info"}"#,
        r#"{"msg":42}"#,
        r#"{"msg":"a" "b"}"#,
        r#"{"msg":"unterminated}"#,
        r#"{"msg":"a",}"#,
        r#"{"msg":"a"} trailing"#,
        r#"{}"#,
        r#"{"#,
        r#"["msg","a"]"#,
        "plain text {\"msg\":\"a\"}",
        r#"{"msg":"a","n":}"#,
        r#"{"msg":"a","o":{"x":[1,2}"#,
    ] {
        assert!(!json_line(not, &mut out), "{not}");
    }
    assert!(json_line(r#"{"log":"a","msg":"b \"quoted\" é"}"#, &mut out));
    assert_eq!(out, r#"{log,msg} b \"quoted\" é"#);
    assert!(json_line(r#"{"my key":"v","message":""}"#, &mut out));
    assert_eq!(out, "{my_key,message} ");
}

#[test]
fn json_mining_can_be_turned_off() {
    let mut m = Miner::new(MinerConfig {
        json_message: false,
        ..MinerConfig::default()
    });
    let a = m.add(r#"{"level":"info","msg":"request completed"}"#);
    assert!(m.template(a.id).unwrap().starts_with("{\"level\""));
}

fn corpus() -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..300u32 {
        v.push(match i % 6 {
            0 => format!(
                "PacketResponder {} for block blk_{} terminating",
                i % 3,
                i * 7919
            ),
            1 => format!(
                "Accepted password for user{} from 10.0.{}.{} port {}",
                i % 5,
                i % 7,
                i,
                2000 + i
            ),
            2 => format!(
                "session opened for user {} by (uid=0)",
                ["alice", "bob", "carol", "dave"][i as usize % 4]
            ),
            3 => format!("disk sda{} is {}% full", i % 4, i % 100),
            4 => format!(
                "GC pause {}ms young gen {}",
                i,
                ["ok", "slow"][i as usize % 2]
            ),
            _ => format!(
                "connection from 10.1.{}.{} ({}) at Fri Jun {} 07:07:00 2005",
                i % 9,
                i,
                ["", "a.example.net"][i as usize % 2],
                i % 28
            ),
        });
    }
    v
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-c]{1,3}( [a-c0-9=:./()-]{1,6}){0,6}",
            "(user|disk|node) [a-z]{1,2} (is|was) [0-9]{1,3}( ok)?",
        ]
    }

    fn constants(t: &str) -> Vec<String> {
        t.split(' ')
            .map(|w| {
                if w.contains("<*>") {
                    String::new()
                } else {
                    w.to_string()
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics_and_is_deterministic(lines in proptest::collection::vec(line(), 0..40)) {
            let mut a = Miner::default();
            let mut b = Miner::default();
            for l in &lines {
                let x = a.add(l);
                prop_assert_eq!(x, b.add(l));
                prop_assert!(a.template(x.id).is_some());
            }
        }

        #[test]
        fn a_line_added_twice_gets_the_same_id(lines in proptest::collection::vec(line(), 1..30)) {
            let mut m = Miner::default();
            for l in &lines {
                let x = m.add(l);
                let y = m.add(l);
                prop_assert_eq!(m.resolve(x.id), Some(y.id));
                prop_assert!(!y.is_new);
            }
        }

        #[test]
        fn templates_only_generalise(lines in proptest::collection::vec(line(), 1..40)) {
            let mut m = Miner::default();
            let mut seen: Vec<(TemplateId, String)> = Vec::new();
            for l in &lines {
                m.add(l);
                for (id, old) in &seen {
                    if let Some(now) = m.template(*id) {
                        let (o, n) = (constants(old), constants(&now));
                        prop_assert_eq!(o.len(), n.len());
                        for (o, n) in o.iter().zip(&n) {
                            // A constant may become a variable, never a different constant.
                            prop_assert!(n.is_empty() || n == o, "{old:?} -> {now:?}");
                        }
                    }
                }
                seen = m.state().clusters.iter().map(|c| (c.id, c.tokens.join(" "))).collect();
            }
        }

        #[test]
        fn state_round_trips(lines in proptest::collection::vec(line(), 0..40), more in proptest::collection::vec(line(), 0..20)) {
            let mut a = Miner::default();
            for l in &lines { a.add(l); }
            let mut b = Miner::from_json(&a.to_json()).unwrap();
            for l in &more {
                prop_assert_eq!(a.add(l), b.add(l));
            }
        }
    }
}
