//! Detectors over numeric series (being written).
