//! Stable identifiers derived from content, so redelivery is idempotent.

use sha2::{Digest, Sha256};

/// A 128-bit hex id derived from `parts` (joined unambiguously). The same parts always give
/// the same id; use it for signal ids (source + boot + sequence) and fingerprints.
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_unambiguous() {
        assert_ne!(stable_id(&["ab", "c"]), stable_id(&["a", "bc"]));
        assert_eq!(stable_id(&["x"]), stable_id(&["x"]));
        assert_eq!(stable_id(&["x"]).len(), 32);
    }
}
