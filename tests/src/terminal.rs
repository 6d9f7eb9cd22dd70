//! A pseudo-terminal for tests of programs that behave differently on a terminal: the program
//! gets the slave side, the test reads what it shows and types answers on the master side.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::eventually;

/// How long a prompt may take to appear on the terminal.
const PROMPT_DEADLINE: Duration = Duration::from_secs(10);

/// A pseudo-terminal: the master side read by a thread into `screen`, written by the test.
pub struct Terminal {
    master: fs::File,
    screen: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    slave_path: PathBuf,
}

impl Terminal {
    pub fn open() -> Terminal {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("no pseudo-terminals");
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let slave_path = PathBuf::from(ptsname(&master, Vec::new()).unwrap().to_str().unwrap());
        let master = fs::File::from(master);
        let mut reading = master.try_clone().unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let into = Arc::clone(&screen);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            // EIO once every slave descriptor is closed: the program is gone.
            while let Ok(n @ 1..) = reading.read(&mut buf) {
                into.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Terminal {
            master,
            screen,
            reader: Some(reader),
            slave_path,
        }
    }

    pub fn slave(&self) -> fs::File {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.slave_path)
            .unwrap()
    }

    /// Starts `command` with this terminal as its stdin, stdout and stderr.
    pub fn spawn(&self, command: &mut Command) -> Child {
        command
            .stdin(self.slave())
            .stdout(self.slave())
            .stderr(self.slave())
            .spawn()
            .unwrap()
    }

    pub fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits for `prompt` on the screen, then types `line` and Enter.
    pub fn answer(&mut self, prompt: &str, line: &str) {
        eventually(PROMPT_DEADLINE, &format!("the prompt {prompt:?}"), || {
            self.screen().contains(prompt)
        });
        self.master
            .write_all(format!("{line}\r").as_bytes())
            .unwrap();
    }

    /// Waits until `prompt` has been shown `times` times (a question asked again), then types
    /// `line` and Enter.
    pub fn answer_again(&mut self, prompt: &str, times: usize, line: &str) {
        eventually(
            PROMPT_DEADLINE,
            &format!("the prompt {prompt:?} shown {times} times"),
            || self.screen().matches(prompt).count() >= times,
        );
        self.master
            .write_all(format!("{line}\r").as_bytes())
            .unwrap();
    }

    /// Everything shown, once the program has closed the terminal.
    pub fn finish(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.screen()
    }
}
