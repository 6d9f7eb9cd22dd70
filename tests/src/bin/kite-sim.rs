//! kite-sim: a local stand-in for the Kite Connect API, to try kited without a Kite account.
//! Prints the environment to give kited, then serves until SIGINT or SIGTERM.

use clap::Parser;
use kite_tests::sim::{Sim, SimConfig, DEFAULT_API_KEY, DEFAULT_API_SECRET};

#[derive(Debug, Parser)]
#[command(
    name = "kite-sim",
    version,
    about = "A local Kite Connect simulator: try kited without a Kite account",
    after_help = "Control routes (curl -X POST): /_sim/fail?count=N&status=S, /_sim/hang?count=N, \
/_sim/fault?count=N&kind=hang|non-json|wrong-content-type|truncated, /_sim/kill?access_token=T, \
/_sim/redirect?url=U, /_sim/cancel?on=1, /_sim/user?user_id=ID&user_name=NAME, \
/_sim/login-time?t=YYYY-MM-DD+HH:MM:SS, /_sim/refresh-tokens?on=1, /_sim/request-token, \
/_sim/date-offset?secs=N (every answer's Date header runs N seconds from this clock); \
GET /_sim/calls, /_sim/tokens."
)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8078")]
    listen: String,
    /// The api key the simulated app has.
    #[arg(long, default_value = DEFAULT_API_KEY)]
    api_key: String,
    /// The api secret checksums are checked with.
    #[arg(long, default_value = DEFAULT_API_SECRET)]
    api_secret: String,
    /// The Zerodha user every login belongs to.
    #[arg(long, default_value = "AB1234")]
    user_id: String,
    #[arg(long, default_value = "Kite Tester")]
    user_name: String,
    /// The redirect URL "registered on the developer console": where logins are sent.
    #[arg(long, default_value = "http://127.0.0.1:8079/auth/callback")]
    redirect_url: String,
}

fn main() {
    let args = Args::parse();
    let config = SimConfig {
        api_key: args.api_key.clone(),
        api_secret: args.api_secret.clone(),
        user_id: args.user_id,
        user_name: args.user_name,
        redirect_url: Some(args.redirect_url.clone()),
        log_calls: true,
        ..SimConfig::default()
    };
    let sim = match Sim::start_on(args.listen.as_str(), config) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("kite-sim: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!(
        "export KITE_API_ROOT={} KITE_LOGIN_URL={} KITE_API_KEY={} KITE_API_SECRET={}",
        sim.url(),
        sim.login_url(),
        args.api_key,
        args.api_secret
    );
    eprintln!(
        "kite-sim: listening on {}; logins redirect to {} (register kited's callback URL there, \
         or change it with --redirect-url). Ctrl-C to stop.",
        sim.url(),
        args.redirect_url
    );

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kite-sim: cannot start: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    eprintln!("kite-sim: cannot watch SIGTERM: {e}");
                    std::process::exit(1);
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
    eprintln!("kite-sim: stopping");
    drop(sim);
}
