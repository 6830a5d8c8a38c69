//! matcher (in progress).
