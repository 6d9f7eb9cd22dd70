//! kited's end-to-end tests, in one test binary: the real `kited` and `kitectl` run as processes
//! against the Kite simulator, each daemon in its own temporary directory on an ephemeral port.
//! One binary links once and runs every test in one `cargo test` pass; the modules split the
//! tests by what they cover, and `helper` holds the fixtures they share.
//!
//! Every wait is a poll with a deadline, never a bare sleep; every process a test starts is
//! owned by a guard that kills it when the test ends, pass or fail.

mod helper;

mod cli;
mod config;
mod config_reload;
mod crash_safety;
mod credentials;
mod demo;
mod doctor;
mod exchange;
mod exec;
mod first_hour;
mod get_token;
mod get_token_crowd;
mod hostile_environment;
mod hostile_http_clients;
mod hostile_kite;
mod hostile_requests;
mod hostile_socket_clients;
mod http_api;
mod http_generate;
mod http_limits;
mod install;
mod install_systemctl;
mod install_terminal;
mod kite_faults;
mod kite_sim_binary;
mod logging;
mod login;
mod notify_command;
mod notify_desktop;
mod public_listener;
mod push;
mod readiness;
mod redis;
mod remote;
mod restart;
mod schedule;
mod security_browser;
mod security_http;
mod security_links;
mod security_push;
mod security_secrets;
mod security_secrets_on_disk;
mod security_socket;
mod socket;
mod systemd;
mod token_events;
mod units;
mod watch;
