//! Garbage collection of hosted content (below).
