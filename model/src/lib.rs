//! The nouns of daytwo and their OpenTelemetry mapping.
//!
//! Entry types: [`Signal`] (one observation about one [`Entity`] at one time, with
//! [`Evidence`]), [`Incident`] (signals joined by time and topology, with ranked
//! [`Hypothesis`] values) and the OTLP mapping in [`otlp`].
//!
//! Invariants: every time is an absolute event time ([`Timestamp`], nanoseconds since the
//! Unix epoch) and serialises as RFC 3339; a signal's `id` is stable across redelivery, so
//! storing a signal twice is a no-op; an incident's `fingerprint` never depends on message
//! text. This crate does no I/O and reads no clock.

pub mod entity;
pub mod hash;
pub mod ids;
pub mod incident;
pub mod otlp;
pub mod signal;
pub mod time;

pub use entity::{Attributes, Entity, EntityKind};
pub use hash::{FastHash, FastHasher};
pub use ids::stable_id;
pub use incident::{Hypothesis, Incident, IncidentStatus, Link};
pub use signal::{Evidence, Severity, Signal};
pub use time::Timestamp;
