//! The online log template miner (being written).
