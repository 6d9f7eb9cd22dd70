//! Fixtures the end-to-end tests share.
