//! `kitectl login`: a login URL (printed, or opened in a browser), waiting for the token, a login
//! link for a phone, and revoking every link issued so far.

use crate::cli::Target;
use crate::client::{Client, TIMEOUT};
use crate::exit::Outcome;
use crate::exit::{note, print, Failure};
use crate::status_text::{format_duration, user_label};
use kite_proto::message::{IssuedLink, LoginLink, LoginUrl, LoginUrls, RevokeLinks};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

/// `login`: print the URL, maybe open it, maybe wait for the token to arrive.
pub fn login(target: &Target, open: bool, wait: Option<u64>) -> Outcome {
    let mut client = Client::connect(&target.socket_path())?;
    let LoginUrls {
        login_url,
        callback_url,
    } = client.call(LoginUrl {})?;
    print(format!("{login_url}\n").as_bytes())?;
    let flags = target.hint_flags();
    note(&format!(
        "Log in at that URL; Kite then sends the browser to {callback_url}, where kited takes the token.\n\
         No browser on this machine? Run `kitectl{flags} exchange` and paste the address the browser ends on."
    ));
    if open {
        if let Err(why) = open_in_browser(&login_url) {
            let message = format!("no browser opened ({why}); open the URL above yourself");
            match wait {
                // Waiting still makes sense: the person can open the URL by hand.
                Some(_) => note(&format!("kitectl: {message}")),
                None => return Err(Failure::Local(message)),
            }
        }
    }
    let Some(wait) = wait else {
        return Ok(());
    };
    wait_for_login(&mut client, wait)
}

/// Waits up to `wait` seconds for a valid token, then says who logged in and until when.
fn wait_for_login(client: &mut Client, wait: u64) -> Outcome {
    note(&format!(
        "Waiting up to {} for the login…",
        format_duration(wait)
    ));
    let token = client.fetch_token(Some(wait))?;
    client.set_read_timeout(Some(TIMEOUT))?;
    let status = client.fetch_status()?;
    let who = user_label(&status).unwrap_or_else(|| "an unknown user".into());
    let until = status.expires_at.unwrap_or(token.expires_at);
    print(format!("Logged in as {who} until {until}\n").as_bytes())
}

/// `login --link`: a ticket link for a phone (and a QR code of it), then maybe wait.
pub fn login_link(target: &Target, qr: bool, wait: Option<u64>) -> Outcome {
    let mut client = Client::connect(&target.socket_path())?;
    let IssuedLink { link, expires_at } = client.call(LoginLink {})?;
    print(format!("{link}\n").as_bytes())?;
    if qr {
        print(crate::qr::render(&link).as_bytes())?;
    }
    note(&format!(
        "Open that link on your phone (valid until {expires_at}); it leads to the Kite login, \
         and kited takes the token when Kite sends the browser back."
    ));
    let Some(wait) = wait else {
        return Ok(());
    };
    wait_for_login(&mut client, wait)
}

/// How long `xdg-open` gets to say it failed; one still running by then has started a browser
/// (some run it in the foreground) and is left to it.
const OPEN_VERDICT: Duration = Duration::from_secs(3);

/// Runs `xdg-open URL` in its own process group; an error when it cannot start or reports that
/// it opened nothing (no browser, no desktop).
fn open_in_browser(url: &str) -> Result<(), String> {
    let mut child = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("KITE_API_SECRET")
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run xdg-open: {e}"))?;
    let deadline = std::time::Instant::now() + OPEN_VERDICT;
    while std::time::Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("xdg-open failed: {status}")),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for xdg-open: {e}")),
        }
    }
    Ok(())
}

/// `logout`.
/// `login --revoke-links`: a new ticket key in kited, so every link sent so far is dead.
pub fn revoke_links(target: &Target) -> Outcome {
    let mut client = Client::connect(&target.socket_path())?;
    client.call(RevokeLinks {})?;
    print(
        b"Every login link issued so far is now invalid; `kitectl login --link` makes a new one\n",
    )
}
