//! kited's end-to-end tests, in one test binary: the real `kited` and `kitectl` run as processes
//! against the Kite simulator, each daemon in its own temporary directory on an ephemeral port.
//! One binary links once and runs every test in one `cargo test` pass; the modules split the
//! tests by what they cover, and `helper` holds the fixtures they share.
//!
//! Every wait is a poll with a deadline, never a bare sleep; every process a test starts is
//! owned by a guard that kills it when the test ends, pass or fail.

mod helper;

mod demo;
mod doctor;
mod events;
mod exec;
mod first_hour;
mod foundation;
mod install;
mod public_listener;
mod push;
mod readiness;
mod redis;
mod remote;
mod resilience;
mod security;
mod security_links;
mod security_local;
mod security_push;
mod sim;
mod systemd;
mod web;
