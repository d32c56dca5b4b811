//! Pure detectors shared by the agent and the collector: no I/O, no clock reads, no tokio.
//! Time arrives as event timestamps; state is plain data that can be persisted by the caller.
//!
//! * [`miner`] — the online log template miner (`daytwo logs templates`, log signals).
//! * [`series`] — detectors over numeric series: thresholds with hysteresis, robust anomalies,
//!   forecasts.

pub mod miner;
pub mod series;
