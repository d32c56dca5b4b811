//! A small synthetic application for replay tests: `frontend` calls `cart`, which calls `db`,
//! ten requests a second, as OTLP/JSON trace lines plus a per-second CPU gauge per service.
//! From `step_at` seconds on, `cart` answers slower by `step_ms` (and so does `frontend`,
//! which waits for it).
#![allow(dead_code)]

use serde_json::{Value, json};

pub const T0: u64 = 1_700_000_000;

/// A deterministic generator (SplitMix64), so every run writes the same file.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn res(svc: &str) -> Value {
    json!({"attributes": [
        {"key": "service.name", "value": {"stringValue": svc}},
        {"key": "k8s.namespace.name", "value": {"stringValue": "shop"}},
    ]})
}

fn span(trace: u64, id: u64, parent: Option<u64>, kind: i32, start_ns: u64, dur_ns: u64) -> Value {
    let mut s = json!({
        "traceId": format!("{:016x}{:016x}", trace, trace ^ 0xABCD),
        "spanId": format!("{:016x}", id),
        "name": "op",
        "kind": kind,
        "startTimeUnixNano": start_ns.to_string(),
        "endTimeUnixNano": (start_ns + dur_ns).to_string(),
        "status": {},
    });
    if let Some(p) = parent {
        s["parentSpanId"] = json!(format!("{:016x}", p));
    }
    s
}

/// The lines of the recording, in event time order.
pub fn lines(seconds: u64, step_at: u64, step_ms: f64) -> Vec<String> {
    let mut rng = Rng::new(7);
    let mut out = Vec::new();
    let mut next_id = 1u64;
    for sec in 0..seconds {
        let t = (T0 + sec) * 1_000_000_000;
        let metrics: Vec<Value> = ["frontend", "cart", "db"]
            .iter()
            .map(|svc| {
                json!({"resource": res(svc), "scopeMetrics": [{"scope": {"name": "synth"}, "metrics": [
                    {"name": "container.cpu.usage", "unit": "{cpu}", "gauge": {"dataPoints": [
                        {"timeUnixNano": t.to_string(), "asDouble": 0.2 + 0.01 * rng.unit()}
                    ]}}
                ]}]})
            })
            .collect();
        out.push(json!({"resourceMetrics": metrics}).to_string());
        let (mut fe, mut cart, mut db) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..10u64 {
            let start = t + r * 100_000_000;
            let trace = sec * 100 + r + 1;
            let ms = |x: f64| (x * 1e6) as u64;
            let db_d = ms(2.0 + rng.unit());
            let mut cart_d = ms(10.0 + 2.0 * rng.unit()) + db_d;
            if sec >= step_at {
                cart_d += ms(step_ms);
            }
            let fe_d = cart_d + ms(3.0 + rng.unit());
            let ids: Vec<u64> = (0..5).map(|i| next_id + i).collect();
            next_id += 5;
            fe.push(span(trace, ids[0], None, 2, start, fe_d));
            fe.push(span(trace, ids[1], Some(ids[0]), 3, start + 1000, cart_d));
            cart.push(span(
                trace,
                ids[2],
                Some(ids[1]),
                2,
                start + 2000,
                cart_d - 2000,
            ));
            cart.push(span(trace, ids[3], Some(ids[2]), 3, start + 3000, db_d));
            db.push(span(
                trace,
                ids[4],
                Some(ids[3]),
                2,
                start + 4000,
                db_d - 2000,
            ));
        }
        let rs: Vec<Value> = [("frontend", fe), ("cart", cart), ("db", db)]
            .into_iter()
            .map(|(svc, spans)| json!({"resource": res(svc), "scopeSpans": [{"scope": {"name": "synth"}, "spans": spans}]}))
            .collect();
        out.push(json!({"resourceSpans": rs}).to_string());
    }
    out
}
