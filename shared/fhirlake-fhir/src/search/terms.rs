//! terms (in progress).
