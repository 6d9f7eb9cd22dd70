//! kited's end-to-end tests, in one test binary: the real `kited` and `kitectl` run as processes
//! against the Kite simulator, each daemon in its own temporary directory on an ephemeral port.
//! One binary links once and runs every test in one `cargo test` pass; each module covers one
//! feature (the `security_*` and `hostile_*` ones cover attacks and faults), and `helper` holds
//! the fixtures they share, split by what they drive. The simulator's own tests live with it, in
//! `tests/kite-sim/tests/sim/`.
//!
//! Every wait is a poll with a deadline, never a bare sleep; every process a test starts is
//! owned by a guard that kills it when the test ends, pass or fail.

mod helper;

// Logging in and serving the token.
mod demo; // `kite-demo`, the README's first command
mod doctor; // `kitectl doctor` and the `doctor` op
mod exchange; // `kitectl exchange`: logging in without a browser
mod first_hour; // the first hour of a new user, message by message
mod get_token; // `kitectl get-token`, `--wait`, `exec`/`env`, no daemon running
mod get_token_crowd; // a hundred `get-token --wait` processes wake with one token
mod login; // the browser login, the callback page and its state, expiry, logout
mod public_listener; // `http.public_listen`, proxy headers on `http.listen`, their config
mod public_proxies; // the guide's Caddy and nginx recipes in front of the public listener
mod readiness; // the morning readiness check on trading days
mod remote; // logging in from anywhere through a real Caddy
mod token_events; // another user's login, the refresh token, postbacks, a woken waiter

// The interfaces.
mod cli; // kitectl's completions, man page and help examples
mod http_api; // the HTTP API over a real server: status, refresh_info, no route leaks the token
mod http_generate; // the HTTP generate route's success and failures
mod http_limits; // HTTP limits a real server enforces: no Host, sizes, slow clients
mod socket; // the IPC socket: garbage, hang-ups, privacy, stale and contested sockets

// Events and the programs that follow the token.
mod exec; // `kitectl exec --on-new-token`
mod notify_command; // the notify command hook and the env file
mod notify_desktop; // desktop notifications over D-Bus
mod push; // push to Telegram and ntfy
mod redis; // the Redis sink
mod schedule; // the login reminder on trading days
mod watch; // `kitectl watch`, expiry warnings, the periodic check

// Running as a service.
mod config; // configuration at start: missing keys, broken file
mod config_reload; // config errors at start and reloads on SIGHUP
mod crash_safety; // acknowledged tokens survive `kill -9` at random moments
mod credentials; // where the api secret comes from, and `check-config`
mod install; // `kitectl setup` without a terminal
mod install_systemctl; // `kitectl setup` with a real systemd user manager
mod install_terminal; // `kitectl setup` on a terminal
mod logging; // RUST_LOG and journal lines
mod restart; // the token across restarts, crashes and clean stops
mod systemd; // sd_notify readiness, status, watchdog, stops
mod units; // the shipped systemd units

// Faults and attacks.
mod hostile_environment; // a vanished log reader, a full disk, FIFOs, unwritable files
mod hostile_http_clients; // hostile HTTP clients: oversized, slowloris, forged callbacks
mod hostile_kite; // wrong or hostile answers from Kite
mod hostile_requests; // repeated keys, floods, idle crowds
mod hostile_socket_clients; // hostile IPC clients: huge lines, bad UTF-8, floods
mod kite_faults; // Kite's errors and hangs: clear errors, nothing stored, no retry
mod security_browser; // a hostile web page: CORS, security headers, injection
mod security_http; // another local user over HTTP
mod security_links; // leaked login links
mod security_local; // another local user and the local files: the socket lock, symlinks, stuck clients, children's environment
mod security_push; // a hostile push endpoint
mod security_secrets; // secrets never in logs, errors or pages
mod security_secrets_on_disk; // secrets nowhere kited writes
mod security_socket; // another local user against the socket directory

// The simulator.
mod kite_sim_binary; // the `kite-sim` binary's environment line and SIGTERM
