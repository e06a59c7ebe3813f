//! Type mapping: PostgreSQL types and values to a target's (work in progress).
