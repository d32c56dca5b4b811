//! Template assignment behind one small trait, so the pipeline does not depend on which
//! miner runs.
//!
//! Entry types: [`TemplateMiner`] (what the pipeline needs: `add` a message → template id
//! and whether it is new; `template(id)` → its text) and [`default_miner`], which builds the
//! agent's miner: `daytwo_detect::miner::Miner` with its shipped configuration (the same one
//! `daytwo logs templates` runs, so ids agree). [`MaskMiner`] is a fast stand-in (tokens with
//! digits become `<*>`) kept for tests and comparison.
//!
//! Invariants: ids are stable for the life of the miner; `add` never panics on any UTF-8.

use std::collections::HashMap;

/// What the log pipeline needs from a template miner.
pub trait TemplateMiner: Send {
    /// Assigns `message` to a template: (template id, first time this id is seen).
    fn add(&mut self, message: &str) -> (u64, bool);
    /// The template text of `id`, variables as `<*>`.
    fn template(&self, id: u64) -> Option<String>;
    /// A counter that moves whenever the state changes (0: nothing to persist).
    fn changes(&self) -> u64 {
        0
    }
    /// The state to persist, for [`load_miner`] after a restart (None: nothing to persist).
    fn save(&self) -> Option<String> {
        None
    }
}

/// The agent's miner from a saved state ([`TemplateMiner::save`]), so template ids stay
/// stable across restarts; a state that does not load gives a fresh miner and the reason.
pub fn load_miner(state: Option<&str>) -> (Box<dyn TemplateMiner>, Option<String>) {
    match state.map(daytwo_detect::miner::Miner::from_json) {
        Some(Ok(m)) => (Box::new(m), None),
        Some(Err(e)) => (default_miner(), Some(e.to_string())),
        None => (default_miner(), None),
    }
}

/// The agent's miner.
pub fn default_miner() -> Box<dyn TemplateMiner> {
    Box::new(daytwo_detect::miner::Miner::new(
        daytwo_detect::miner::MinerConfig::default(),
    ))
}

impl TemplateMiner for daytwo_detect::miner::Miner {
    fn add(&mut self, message: &str) -> (u64, bool) {
        let a = daytwo_detect::miner::Miner::add(self, message);
        (a.id.0, a.is_new)
    }

    fn template(&self, id: u64) -> Option<String> {
        daytwo_detect::miner::Miner::template(self, daytwo_detect::miner::TemplateId(id))
    }

    fn changes(&self) -> u64 {
        daytwo_detect::miner::Miner::changes(self)
    }

    fn save(&self) -> Option<String> {
        Some(self.to_json())
    }
}

/// A fast, deterministic stand-in: whitespace tokens holding a digit (or longer than 32
/// bytes) are variables. Stores the text of at most `max_templates` templates.
#[derive(Debug)]
pub struct MaskMiner {
    templates: HashMap<u64, String>,
    max_templates: usize,
}

impl MaskMiner {
    pub fn new(max_templates: usize) -> Self {
        MaskMiner {
            templates: HashMap::new(),
            max_templates,
        }
    }

    fn is_variable(tok: &[u8]) -> bool {
        tok.len() > 32 || tok.iter().any(u8::is_ascii_digit)
    }
}

/// FNV-1a-style 64-bit mixing, fast on short tokens.
#[inline]
fn mix(h: u64, bytes: &[u8]) -> u64 {
    let mut h = h;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3)
}

impl TemplateMiner for MaskMiner {
    fn add(&mut self, message: &str) -> (u64, bool) {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for tok in message.as_bytes().split(|b| b.is_ascii_whitespace()) {
            if tok.is_empty() {
                continue;
            }
            h = if Self::is_variable(tok) {
                mix(h, b"<*>")
            } else {
                mix(h, tok)
            };
        }
        // 53 bits: exact in JSON numbers and doubles.
        let id = h & ((1 << 53) - 1);
        if self.templates.contains_key(&id) {
            return (id, false);
        }
        if self.templates.len() < self.max_templates {
            let t: Vec<&str> = message
                .split_ascii_whitespace()
                .map(|t| {
                    if Self::is_variable(t.as_bytes()) {
                        "<*>"
                    } else {
                        t
                    }
                })
                .collect();
            self.templates.insert(id, t.join(" "));
            return (id, true);
        }
        // Full: ids still work, texts are no longer kept; "new" cannot be told apart.
        (id, false)
    }

    fn template(&self, id: u64) -> Option<String> {
        self.templates.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_miner_gives_the_same_ids_after_a_restart() {
        let mut m = default_miner();
        let a = m.add("session opened for user alice by uid 0").0;
        let before = m.changes();
        m.add("session opened for user alice by uid 17");
        let saved = m.save().unwrap();
        let (mut again, err) = load_miner(Some(&saved));
        assert!(err.is_none());
        assert_eq!(
            again.add("session opened for user bob by uid 3").0,
            m.add("session opened for user bob by uid 3").0
        );
        assert_eq!(again.template(a), m.template(a));
        assert!(m.changes() >= before);
        let (_, err) = load_miner(Some("{not json"));
        assert!(err.unwrap().contains("not valid"));
    }

    #[test]
    fn masks_variables_and_reuses_ids() {
        let mut m = MaskMiner::new(10);
        let (a, new_a) = m.add("user 17 logged in from 10.0.0.1");
        let (b, new_b) = m.add("user 42 logged  in from 10.0.0.9");
        assert!(new_a && !new_b);
        assert_eq!(a, b);
        assert_eq!(m.template(a).unwrap(), "user <*> logged in from <*>");
        let (c, new_c) = m.add("user bob logged out");
        assert!(new_c);
        assert_ne!(a, c);
        assert!(a < 1 << 53);
    }
}
