//! The initial bulk copy: every planned table read from the replication
//! slot's exported snapshot and written with each target's fastest path.

pub mod ranges;
