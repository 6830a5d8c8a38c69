//! values (in progress).
