//! The command line: clap definitions, plus a hand-written fast path for plain `get-token`.

use clap::{Args, Parser, Subcommand};
use clap_complete::aot::Shell;
use kite_proto::socket_path::{validate_profile, DEFAULT_PROFILE};
use std::ffi::OsString;
use std::path::PathBuf;

const MAIN_EXAMPLES: &str = "\
Examples:
  kitectl get-token                      print the access token (exit 4: log in first)
  kitectl login --open --wait 300        open the Kite login page and wait for the token
  kitectl status
  kitectl --profile prod exec -- python trade.py

Exit codes: 0 ok, 1 error, 2 usage, 3 kited not reachable, 4 login required.
The socket is --socket, else $KITED_SOCKET, else $XDG_RUNTIME_DIR/kited/PROFILE.sock,
else /tmp/kited-$UID/PROFILE.sock.";

/// Client for kited: get a valid Kite access token, log in, watch token events.
#[derive(Debug, Parser)]
#[command(name = "kitectl", version, after_help = MAIN_EXAMPLES, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: Command,
}

/// Which daemon to talk to.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Target {
    /// Profile (one Kite app); picks the default socket path.
    #[arg(long, global = true, value_name = "NAME", default_value = DEFAULT_PROFILE, value_parser = profile_name)]
    pub profile: String,
    /// Socket of the daemon (overrides $KITED_SOCKET and the profile's default).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

impl Target {
    /// The socket path, by the rules every kited client shares.
    pub fn socket_path(&self) -> PathBuf {
        kite_proto::socket_path::socket_path(self.socket.as_deref(), &self.profile)
    }

    /// The global flags to repeat in a command kitectl suggests, so the hint reaches the same
    /// daemon and profile: ` --profile NAME` for another profile than the default, and
    /// ` --socket PATH` when one was given.
    pub fn hint_flags(&self) -> String {
        let mut flags = String::new();
        if self.profile != DEFAULT_PROFILE {
            flags.push_str(&format!(" --profile {}", self.profile));
        }
        if let Some(path) = &self.socket {
            flags.push_str(&format!(
                " --socket {}",
                shell_word(&path.to_string_lossy())
            ));
        }
        flags
    }
}

/// `text` as one shell word: as it is when it holds only safe characters, else single-quoted.
fn shell_word(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn profile_name(name: &str) -> Result<String, String> {
    validate_profile(name).map(|()| name.to_string())
}

fn not_empty(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        Err("give the request_token or the whole callback URL".into())
    } else {
        Ok(text.to_string())
    }
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Print the access token alone on stdout (exit 4 if nobody has logged in).
    #[command(after_help = "\
Examples:
  kitectl get-token
  TOKEN=$(kitectl get-token --wait 60)    wait up to a minute for someone to log in
  kitectl get-token --json                {\"access_token\":…,\"api_key\":…,\"expires_at\":…}")]
    GetToken {
        /// Wait up to SECS seconds for a valid token instead of failing at once.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        /// Print {"access_token","api_key","expires_at"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the token's state, user and expiry (exits 0 whatever the state).
    #[command(after_help = "\
Examples:
  kitectl status
  kitectl status --json | jq -r .expires_at")]
    Status {
        /// Print the status object as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the Kite login URL; kited catches the browser's redirect and stores the token.
    #[command(after_help = "\
Examples:
  kitectl login                 print the URL to open
  kitectl login --open          open it with xdg-open
  kitectl login --open --wait 300
                                and wait up to 5 minutes for the login to complete
  kitectl login --link          a link for your phone, valid until the next cutoff
                                (needs http.public_url: kited behind a TLS proxy)
  kitectl login --link --qr     the same link as a QR code to scan
  kitectl login --revoke-links  make every link issued so far invalid (one leaked)")]
    Login {
        /// Open the URL in the browser with xdg-open.
        #[arg(long, conflicts_with = "link")]
        open: bool,
        /// Then wait up to SECS seconds for a valid token (exit 4 if none arrives).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        /// Print a login link for a phone (https://PUBLIC/login?t=…) instead of the Kite URL.
        #[arg(long)]
        link: bool,
        /// With --link: also draw the link as a QR code in the terminal.
        #[arg(long, requires = "link")]
        qr: bool,
        /// Make every login link issued so far invalid (logout does this too); new links work.
        #[arg(long, conflicts_with_all = ["link", "open", "wait"])]
        revoke_links: bool,
    },
    /// Exchange the callback URL the browser ended on, or a request token (headless machines).
    #[command(after_help = "\
Examples:
  kitectl exchange              then paste the URL the browser ended on, and Enter
  kitectl exchange < url.txt    read it from a file or a pipe
  kitectl exchange 'http://127.0.0.1:8079/auth/callback?request_token=AbC123&status=success'
                                works too, but other local users can read the command line")]
    Exchange {
        /// The whole URL the browser was redirected to, or the request_token; `-` or nothing
        /// reads it from stdin (a prompt on a terminal).
        #[arg(value_name = "CALLBACK_URL|REQUEST_TOKEN", value_parser = not_empty)]
        value: Option<String>,
    },
    /// Send one test message through every push channel (Telegram, ntfy) and say how each went.
    #[command(after_help = "\
Example:
  kitectl push-test           telegram: ok
                              ntfy: failed: HTTP 401: unauthorized

Exit 0 when every channel delivered, 1 otherwise (or when none is configured).")]
    PushTest,
    /// Check now whether programs can trade at 09:15: token, Kite, egress IP, clock, deliveries.
    #[command(after_help = "\
Example:
  kitectl doctor              token: ok \u{2014} logged in as Asha (AB1234) until 06:00 IST
                              kite: ok \u{2014} Kite answered in 84 ms
                              ip: failed \u{2014} this host sends from 198.51.100.9, registered: 203.0.113.7; ...

Exit 0 when every check passed, 1 otherwise, 3 when kited is not running.")]
    Doctor {
        /// Print {\"checks\":[...]} instead of one line per check.
        #[arg(long)]
        json: bool,
    },
    /// Invalidate the token at Kite and forget it.
    #[command(after_help = "Example:\n  kitectl logout")]
    Logout,
    /// Print export lines for KITE_API_KEY and KITE_ACCESS_TOKEN.
    #[command(after_help = "Example:\n  eval \"$(kitectl env)\"")]
    Env {
        /// Wait up to SECS seconds for a valid token.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
    /// Run a command with KITE_API_KEY and KITE_ACCESS_TOKEN set; its exit code passes through.
    #[command(after_help = "\
Examples:
  kitectl exec -- python trade.py --live
  kitectl exec --wait 120 -- ./bot
  kitectl exec --on-new-token restart -- ./bot
                                restart the bot with each new token (SIGTERM, 10 s, SIGKILL)
  kitectl exec --on-new-token signal:HUP -- ./bot
                                send it SIGHUP instead; it re-reads `kitectl get-token` itself

With restart or signal:NAME kitectl stays as the bot's supervisor: SIGINT, SIGTERM and SIGHUP
are passed on, and it exits with the bot's own status.")]
    Exec {
        /// Wait up to SECS seconds for a valid token.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        /// What to do when someone logs in again: none, restart, or signal:NAME (signal:HUP).
        #[arg(long, value_name = "ACTION", default_value = "none", value_parser = crate::supervise::OnNewToken::parse)]
        on_new_token: crate::supervise::OnNewToken,
        /// The command and its arguments.
        #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Print token events as they happen, until kited stops.
    #[command(after_help = "\
Examples:
  kitectl watch
  kitectl watch --json | while read -r event; do …; done")]
    Watch {
        /// Print each event as its JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Check that kited answers, and print its version.
    #[command(after_help = "Example:\n  kitectl ping")]
    Ping,
    /// Ask kited to exit cleanly.
    #[command(after_help = "Example:\n  kitectl shutdown")]
    Shutdown,
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  kitectl completions bash > ~/.local/share/bash-completion/completions/kitectl
  kitectl completions zsh > ~/.zfunc/_kitectl
  kitectl completions fish > ~/.config/fish/completions/kitectl.fish")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },
    /// Write the profile's config and api secret files, then enable and start its user service.
    #[command(after_help = "\
Examples:
  kitectl setup                                   asks for the api key and secret
  kitectl setup --api-key abc123xyz --api-secret-file ~/secret.txt
  pass kite/secret | kitectl --profile prod setup --api-key abc123xyz --api-secret-file -

Writes $XDG_CONFIG_HOME/kited/PROFILE.toml and PROFILE.api-secret (0600, in a 0700 directory),
prints the redirect URL to register on developers.kite.trade, then runs `systemctl --user enable
--now` for kited (or kited@PROFILE). Existing files are left alone without --force (exit 1);
bad input exits 2 and writes nothing.")]
    Setup(SetupFlags),
    /// Print the man page (roff), or write every page (one per command) into a directory.
    #[command(after_help = "\
Examples:
  kitectl man > ~/.local/share/man/man1/kitectl.1
  kitectl man --dir ~/.local/share/man/man1        kitectl.1 and kitectl-COMMAND.1 for each command")]
    Man {
        /// Write kitectl.1 and one kitectl-COMMAND.1 per command into DIR.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `kitectl setup`'s flags.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct SetupFlags {
    /// The app's api key (6-32 letters and digits); asked for on a terminal when missing.
    #[arg(long, value_name = "KEY", value_parser = crate::answers::api_key)]
    pub api_key: Option<String>,
    /// A file holding the api secret, or - to read it from stdin; asked for (unechoed) on a
    /// terminal when missing.
    #[arg(long, value_name = "PATH|-")]
    pub api_secret_file: Option<PathBuf>,
    /// The https URL where a reverse proxy serves kited (scheme, host, optional port; no path).
    #[arg(long, value_name = "URL", value_parser = crate::answers::public_url)]
    pub public_url: Option<String>,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
    /// Only write the files; do not enable or start the systemd user service.
    #[arg(long)]
    pub no_systemd: bool,
}

/// `kitectl [--profile NAME] [--socket PATH] get-token [--json] [--wait SECS]`, recognised by
/// hand so the hot path does not build clap's command tree.
#[derive(Debug, PartialEq, Eq)]
pub struct FastGetToken {
    pub target: Target,
    pub wait: Option<u64>,
    pub json: bool,
}

/// Recognises only the plain forms of `get-token` (arguments after the program name); anything
/// else, including every malformed input, returns `None` and goes to clap.
pub fn fast_get_token(args: &[OsString]) -> Option<FastGetToken> {
    let mut args = args.iter().map(|a| a.to_str());
    let mut target = Target {
        profile: DEFAULT_PROFILE.to_string(),
        socket: None,
    };
    let mut seen_profile = false;
    loop {
        match args.next()?? {
            "--profile" if !seen_profile => {
                let name = args.next()??;
                validate_profile(name).ok()?;
                target.profile = name.to_string();
                seen_profile = true;
            }
            "--socket" if target.socket.is_none() => {
                let path = args.next()??;
                if path.is_empty() || path.starts_with('-') {
                    return None;
                }
                target.socket = Some(PathBuf::from(path));
            }
            "get-token" => break,
            _ => return None,
        }
    }
    let (mut wait, mut json) = (None, false);
    while let Some(arg) = args.next() {
        match arg? {
            "--json" if !json => json = true,
            "--wait" if wait.is_none() => {
                let secs = args.next()??;
                // u64's parser accepts a leading '+'; clap's does too, but keep to digits.
                if !secs.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                wait = Some(secs.parse().ok()?);
            }
            _ => return None,
        }
    }
    Some(FastGetToken { target, wait, json })
}

/// Prints clap's verdict and returns the exit code: help and version go to stdout (exit 0); a
/// usage error becomes one `kitectl: …` line on stderr (exit 2).
pub fn usage_error(err: clap::Error) -> u8 {
    use clap::error::ErrorKind;
    let code = u8::try_from(err.exit_code()).unwrap_or(crate::exit::USAGE);
    if !err.use_stderr() || err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = err.print();
        return code;
    }
    crate::exit::note(&format!(
        "kitectl: {}",
        one_line_usage(&err.render().to_string())
    ));
    code
}

/// Folds clap's several-line error into one: the error, its tips, and the usage.
fn one_line_usage(rendered: &str) -> String {
    let mut message = String::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(error) = line.strip_prefix("error: ") {
            message.push_str(error);
        } else if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u);
        } else if line.starts_with("For more information") {
            continue;
        } else if !message.is_empty() {
            message.push_str(if message.ends_with(':') { " " } else { "; " });
            message.push_str(line);
        }
    }
    match usage {
        Some(usage) => message.push_str(&format!(" (usage: {usage}; see --help)")),
        None => message.push_str(" (see kitectl --help)"),
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::OnNewToken;
    use clap::CommandFactory;

    fn argv(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn clap_get_token(line: &str) -> Option<FastGetToken> {
        let mut full = vec![OsString::from("kitectl")];
        full.extend(argv(line));
        match Cli::try_parse_from(full).ok()? {
            Cli {
                target,
                command: Command::GetToken { wait, json },
            } => Some(FastGetToken { target, wait, json }),
            _ => None,
        }
    }

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn fast_path_agrees_with_clap() {
        for line in [
            "get-token",
            "get-token --json",
            "get-token --wait 30",
            "get-token --wait 0 --json",
            "get-token --json --wait 7",
            "--profile prod get-token",
            "--socket /tmp/x.sock get-token",
            "--profile dev --socket /tmp/y.sock get-token --json",
            "--socket /tmp/y.sock --profile dev get-token",
        ] {
            let fast = fast_get_token(&argv(line));
            assert!(fast.is_some(), "fast path should take {line:?}");
            assert_eq!(fast, clap_get_token(line), "{line:?}");
        }
    }

    #[test]
    fn fast_path_leaves_the_rest_to_clap() {
        for line in [
            "",
            "status",
            "get-token --help",
            "get-token --wait",
            "get-token --wait x",
            "get-token --wait -1",
            "get-token --wait +1",
            "get-token --wait=5",
            "get-token --json --json",
            "get-token extra",
            "--profile ../x get-token",
            "--profile get-token",
            "--profile a --profile b get-token",
            "--socket --json get-token",
            "--socket=/x get-token",
            "-h get-token",
            "--version",
            "get-token --profile prod",
        ] {
            assert_eq!(fast_get_token(&argv(line)), None, "{line:?}");
        }
    }

    #[test]
    fn exec_takes_everything_after_the_command() {
        let cli = Cli::try_parse_from(argv("kitectl exec -- python x.py --live -v")).unwrap();
        assert_eq!(
            cli.command,
            Command::Exec {
                wait: None,
                on_new_token: OnNewToken::None,
                command: argv("python x.py --live -v")
            }
        );
        let cli = Cli::try_parse_from(argv("kitectl exec --wait 3 ./bot --json")).unwrap();
        assert_eq!(
            cli.command,
            Command::Exec {
                wait: Some(3),
                on_new_token: OnNewToken::None,
                command: argv("./bot --json")
            }
        );
        assert!(Cli::try_parse_from(argv("kitectl exec")).is_err());
        let cli =
            Cli::try_parse_from(argv("kitectl exec --on-new-token signal:usr1 -- ./bot")).unwrap();
        assert_eq!(
            cli.command,
            Command::Exec {
                wait: None,
                on_new_token: OnNewToken::Signal(rustix::process::Signal::USR1),
                command: argv("./bot")
            }
        );
        let err =
            Cli::try_parse_from(argv("kitectl exec --on-new-token reboot -- ./bot")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn usage_errors_exit_2_and_help_exits_0() {
        for bad in ["kitectl", "kitectl fly", "kitectl get-token --wait soon"] {
            let err = Cli::try_parse_from(argv(bad)).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
        for ok in [
            "kitectl --help",
            "kitectl --version",
            "kitectl status --help",
        ] {
            let err = Cli::try_parse_from(argv(ok)).unwrap_err();
            assert_eq!(err.exit_code(), 0, "{ok}");
        }
        let err = Cli::try_parse_from(vec!["kitectl", "exchange", "  "]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(argv("kitectl --profile a/b status")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn usage_errors_fold_into_one_line() {
        for bad in [
            "kitectl fly",
            "kitectl get-token --wait soon",
            "kitectl get-token --foo",
        ] {
            let err = Cli::try_parse_from(argv(bad)).unwrap_err();
            let line = one_line_usage(&err.render().to_string());
            assert!(!line.contains('\n') && !line.is_empty(), "{bad}: {line}");
            assert!(line.contains("--help)"), "{bad}: {line}");
        }
    }

    fn target(profile: &str, socket: Option<&str>) -> Target {
        Target {
            profile: profile.to_string(),
            socket: socket.map(PathBuf::from),
        }
    }

    #[test]
    fn hints_repeat_the_flags_that_reach_the_same_daemon() {
        assert_eq!(target(DEFAULT_PROFILE, None).hint_flags(), "");
        assert_eq!(target("prod", None).hint_flags(), " --profile prod");
        assert_eq!(
            target("prod", Some("/tmp/d/kited.sock")).hint_flags(),
            " --profile prod --socket /tmp/d/kited.sock"
        );
        assert_eq!(
            target(DEFAULT_PROFILE, Some("/tmp/my dir/it's.sock")).hint_flags(),
            " --socket '/tmp/my dir/it'\\''s.sock'"
        );
    }
}
