//! placeholder
pub mod notify;
