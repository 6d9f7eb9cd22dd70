//! `kitectl setup`: writes a profile's config and secret files, then starts its user unit.

use crate::answers;
use crate::cli::{SetupFlags, Target};
use crate::client::Client;
use crate::exit::{print, Failure};
use crate::profile_files::ProfileFiles;
use crate::profile_port::{profile_port, DEFAULT_PORT};
use kite_proto::message::Status;
use kite_proto::socket_path::DEFAULT_PROFILE;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// How long a running kited may take to reload after setup sends it SIGHUP.
const RELOAD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The answers, all checked.
struct Answers {
    api_key: String,
    api_secret: String,
    public_url: Option<String>,
    /// The port for another profile than the default (`http.listen`), `None` for the default.
    port: Option<u16>,
}

/// Runs `kitectl setup`.
pub fn run(target: &Target, args: &SetupFlags) -> Result<(), Failure> {
    let profile = target.profile.as_str();
    let files = ProfileFiles::for_profile(profile)?;
    if !args.force {
        if let Some(why) = files.unsafe_dir() {
            return Err(Failure::Local(why));
        }
        for path in [&files.config, &files.secret] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(Failure::Local(format!(
                    "{} already exists; left alone (run `kitectl setup --force` to replace it)",
                    path.display()
                )));
            }
        }
    }
    let mut answers = gather(args)?;
    if profile != DEFAULT_PROFILE {
        answers.port = Some(profile_port(&files.dir, profile)?);
    }
    files.write(&answers.api_secret, &config_text(&answers))?;
    print(
        format!(
            "Wrote {} and {} (the api secret, mode 0600).\n",
            files.config.display(),
            files.secret.display()
        )
        .as_bytes(),
    )?;
    let port = answers.port.unwrap_or(DEFAULT_PORT);
    let callback = match &answers.public_url {
        Some(url) => format!("{url}/auth/callback"),
        None => format!("http://127.0.0.1:{port}/auth/callback"),
    };
    if let Some(port) = answers.port {
        print(
            format!("Profile {profile} listens on 127.0.0.1:{port} (http.listen).\n").as_bytes(),
        )?;
    }
    print(
        format!(
            "Register this redirect URL for your app on https://developers.kite.trade: {callback}\n"
        )
        .as_bytes(),
    )?;
    let profile_flag = if profile == DEFAULT_PROFILE {
        String::new()
    } else {
        format!(" --profile {profile}")
    };
    let started = if reload_unconfigured(target)? {
        Ok(())
    } else if args.no_systemd {
        print(format!("Start kited with `kited{profile_flag}`.\n").as_bytes())?;
        Ok(())
    } else {
        start_unit(profile, &profile_flag)
    };
    print(format!("Next: kitectl{} login --open\n", target.hint_flags()).as_bytes())?;
    started
}

/// Takes each value from its flag, else asks on the terminal, else fails naming it (exit 2).
fn gather(args: &SetupFlags) -> Result<Answers, Failure> {
    let terminal = answers::stdin_is_terminal();
    let usage = Failure::Usage;
    let api_key = match &args.api_key {
        Some(key) => answers::api_key(key).map_err(usage)?,
        None if terminal => ask_until_valid(answers::api_key, || {
            answers::ask("Kite api key (developers.kite.trade, your app): ")
        })?,
        None => {
            return Err(usage(
                "no api key: give --api-key KEY (stdin is not a terminal to ask on)".into(),
            ))
        }
    };
    let api_secret =
        match &args.api_secret_file {
            Some(path) if path.as_os_str() == "-" => read_secret(io::stdin().lock(), "stdin")?,
            Some(path) => {
                let file = fs::File::open(path).map_err(|e| {
                    Failure::Usage(format!(
                        "cannot read the api secret file {}: {e}",
                        path.display()
                    ))
                })?;
                read_secret(file, &path.display().to_string())?
            }
            None if terminal => ask_until_valid(answers::api_secret, || {
                answers::ask_hidden("Kite api secret (not shown): ")
            })?,
            None => return Err(usage(
                "no api secret: give --api-secret-file PATH, or --api-secret-file - to read it \
                 from stdin (stdin is not a terminal to ask on)"
                    .into(),
            )),
        };
    let api_secret = answers::api_secret(&api_secret).map_err(usage)?;
    let public_url = match &args.public_url {
        Some(url) => Some(url.clone()),
        None if terminal && args.api_secret_file.as_deref() != Some(Path::new("-")) => {
            let optional_url = |text: &str| match text.trim() {
                "" => Ok(String::new()),
                url => answers::public_url(url),
            };
            let url = ask_until_valid(optional_url, || {
                answers::ask(
                    "Public https URL of this kited behind a reverse proxy (Enter for none, the usual): ",
                )
            })?;
            Some(url).filter(|u| !u.is_empty())
        }
        None => None,
    };
    let public_url = public_url
        .map(|url| answers::public_url(&url))
        .transpose()
        .map_err(usage)?;
    Ok(Answers {
        api_key,
        api_secret,
        public_url,
        port: None,
    })
}

/// Asks on the terminal until the answer passes `check`: a typo is said and asked again, never
/// the end of setup. End of input is still a usage error.
fn ask_until_valid(
    check: impl Fn(&str) -> Result<String, String>,
    ask: impl Fn() -> io::Result<Option<String>>,
) -> Result<String, Failure> {
    loop {
        let text = answer(ask())?;
        match check(&text) {
            Ok(value) => return Ok(value),
            Err(why) => {
                let _ = io::stderr().write_all(format!("kitectl: {why}; try again\n").as_bytes());
            }
        }
    }
}

/// A kited already running for this profile without a Kite app (started before setup) is told
/// to reload (SIGHUP) and so reads the new files; true when it did and now has the app.
fn reload_unconfigured(target: &Target) -> Result<bool, Failure> {
    let Ok(mut client) = Client::connect(&target.socket_path()) else {
        return Ok(false);
    };
    let configured = |client: &mut Client| -> Option<bool> {
        client
            .call(Status {})
            .ok()
            .map(|status| status.status.configured)
    };
    if configured(&mut client) != Some(false) {
        return Ok(false);
    }
    let Some(pid) = client.peer_pid() else {
        return Ok(false);
    };
    drop(client);
    if rustix::process::kill_process(pid, rustix::process::Signal::HUP).is_err() {
        return Ok(false);
    }
    let deadline = std::time::Instant::now() + RELOAD_DEADLINE;
    while std::time::Instant::now() < deadline {
        if let Ok(mut client) = Client::connect(&target.socket_path()) {
            if configured(&mut client) == Some(true) {
                print(
                    format!("kited (pid {}) was running without a Kite app; it reloaded and uses this one now.\n", pid.as_raw_nonzero())
                        .as_bytes(),
                )?;
                return Ok(true);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(Failure::Local(format!(
        "the files are written, but the kited already running (pid {}) did not take them within \
         {} s: restart it",
        pid.as_raw_nonzero(),
        RELOAD_DEADLINE.as_secs()
    )))
}

/// An answer typed on the terminal; end of input is a usage error.
fn answer(read: io::Result<Option<String>>) -> Result<String, Failure> {
    match read {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(Failure::Usage(
            "no answer (end of input); nothing written".into(),
        )),
        Err(e) => Err(Failure::Local(format!("cannot read the answer: {e}"))),
    }
}

/// The first line of `source`, bounded: a secret is short, a huge file is a mistake.
fn read_secret(source: impl Read, name: &str) -> Result<String, Failure> {
    /// Kite secrets are 32 characters; anything past 4 KiB is not a secret file.
    const MAX_SECRET_FILE: u64 = 4096;
    let mut text = String::new();
    source
        .take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| Failure::Usage(format!("cannot read the api secret from {name}: {e}")))?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(Failure::Usage(format!(
            "{name} is too big to be an api secret (over {MAX_SECRET_FILE} bytes)"
        )));
    }
    let line = text.lines().next().unwrap_or("");
    if text.trim_end_matches(['\n', '\r']).contains('\n') {
        return Err(Failure::Usage(format!(
            "{name} has several lines; the api secret is one line"
        )));
    }
    Ok(line.to_string())
}

/// The TOML: the api key, and the public URL when given. The secret never goes in it.
fn config_text(answers: &Answers) -> String {
    let mut text = String::from(
        "# Written by `kitectl setup`. Every key kited reads is described in its README.\n\
         # The api secret is in the .api-secret file next to this one, not here.\n\
         [kite]\n",
    );
    // Both values were checked to be plain ASCII without quotes or backslashes.
    text.push_str(&format!("api_key = \"{}\"\n", answers.api_key));
    if answers.public_url.is_some() || answers.port.is_some() {
        text.push_str("\n[http]\n");
    }
    if let Some(port) = answers.port {
        text.push_str(&format!("listen = \"127.0.0.1:{port}\"\n"));
    }
    if let Some(url) = &answers.public_url {
        text.push_str(&format!("public_url = \"{url}\"\n"));
    }
    text
}

/// `kited` for the default profile, `kited@NAME` for the others.
fn unit_name(profile: &str) -> String {
    if profile == DEFAULT_PROFILE {
        "kited.service".into()
    } else {
        format!("kited@{profile}.service")
    }
}

/// Enables and starts the profile's user unit when a user manager answers; restarts it when it
/// was already running so it reads the new files.
fn start_unit(profile: &str, profile_flag: &str) -> Result<(), Failure> {
    let unit = unit_name(profile);
    if systemctl(&["show-environment"]).is_err() {
        print(
            format!(
                "No systemd user manager here (`systemctl --user` does not answer): start kited \
                 with `kited{profile_flag}`.\n"
            )
            .as_bytes(),
        )?;
        return Ok(());
    }
    let was_active = systemctl(&["is-active", "--quiet", &unit]).is_ok();
    // A unit installed since the manager started (a fresh package) is found after a reload.
    let _ = systemctl(&["daemon-reload"]);
    let action = if was_active { "restart" } else { "start" };
    let result =
        systemctl(&["enable", "--quiet", &unit]).and_then(|()| systemctl(&[action, &unit]));
    match result {
        Ok(()) => print(format!("Enabled and started {unit} (systemctl --user).\n").as_bytes()),
        Err(why) => Err(Failure::Local(format!(
            "the files are written, but systemctl --user could not enable and start {unit}: \
             {why}; see `journalctl --user -u {unit}`, or start kited with `kited{profile_flag}`"
        ))),
    }
}

/// Runs `systemctl --user ARGS`; an error carries the last line it printed.
fn systemctl(args: &[&str]) -> Result<(), String> {
    let output = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    // systemctl's first line says what failed ("Job for kited.service failed because ...").
    let last = stderr.lines().find(|l| !l.trim().is_empty());
    Err(last.map_or_else(
        || format!("systemctl {} failed ({})", args.join(" "), output.status),
        |l| l.trim().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_the_key_and_url_but_never_the_secret() {
        let answers = Answers {
            api_key: "abcdef12".into(),
            api_secret: "topsecret".into(),
            public_url: Some("https://kite.example.com".into()),
            port: None,
        };
        let text = config_text(&answers);
        assert!(text.contains("api_key = \"abcdef12\""), "{text}");
        assert!(
            text.contains("[http]\npublic_url = \"https://kite.example.com\""),
            "{text}"
        );
        assert!(!text.contains("topsecret"));
        let plain = config_text(&Answers {
            public_url: None,
            ..answers
        });
        assert!(!plain.contains("[http]"));
    }

    #[test]
    fn secrets_read_from_files() {
        assert_eq!(read_secret(&b"abc\n"[..], "f").unwrap(), "abc");
        assert_eq!(read_secret(&b"abc"[..], "f").unwrap(), "abc");
        assert!(read_secret(&b"abc\ndef\n"[..], "f").is_err());
        assert!(read_secret(&vec![b'a'; 5000][..], "f").is_err());
    }

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("default"), "kited.service");
        assert_eq!(unit_name("prod"), "kited@prod.service");
    }
}
