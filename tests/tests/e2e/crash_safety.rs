//! Crash safety: a token kited acknowledged survives `kill -9` at random moments.

use std::thread;
use std::time::{Duration, Instant};

use kite_tests::Daemon;
use rand::Rng;
use serde_json::json;

use crate::helper::socket::{exchange, exchange_in_background};
use crate::helper::{new_tokens, served_token, sim, the_new_token};

#[test]
fn acknowledged_tokens_survive_kill_9_at_random_moments() {
    const ROUNDS: usize = 60;
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let mut rng = rand::rng();
    let mut outcomes = [0usize; 3]; // second exchange: acked, stored unacked, lost unacked
    let started = Instant::now();
    for round in 0..ROUNDS {
        let before = sim.valid_access_tokens();
        let answer = exchange(&daemon, &sim.issue_request_token());
        assert_eq!(
            answer["ok"],
            json!(true),
            "round {round}: exchange: {answer}; log:\n{}",
            daemon.log()
        );
        let mut acked = the_new_token(&sim, &before);
        let mut unacked: Vec<String> = Vec::new();
        match round % 3 {
            // Killed right after the acknowledgement.
            0 => daemon.kill9(),
            // Killed a random moment later (usually while idle).
            1 => {
                thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
                daemon.kill9();
            }
            // Killed at a random moment while a second exchange is in flight.
            _ => {
                let before_second = sim.valid_access_tokens();
                let second =
                    exchange_in_background(daemon.socket_path(), &sim.issue_request_token());
                thread::sleep(Duration::from_micros(rng.random_range(0..4000)));
                daemon.kill9();
                let second_answer = second.join().expect("exchange thread");
                let minted = new_tokens(&sim, &before_second);
                match second_answer {
                    Some(a) if a["ok"] == json!(true) => {
                        assert_eq!(minted.len(), 1, "round {round}: {minted:?}");
                        acked = minted[0].clone();
                        outcomes[0] += 1;
                    }
                    _ => unacked = minted,
                }
            }
        }
        daemon.restart();
        let served = served_token(&daemon).unwrap_or_else(|| {
            panic!(
                "round {round}: no token after restart (acknowledged {acked}); log:\n{}",
                daemon.log()
            )
        });
        if served != acked {
            // Only a token exchanged after the last acknowledgement may have replaced it.
            assert!(
                unacked.contains(&served),
                "round {round}: after kill -9 kited serves {served}, but the acknowledged token \
                 was {acked} (unacknowledged: {unacked:?}); log:\n{}",
                daemon.log()
            );
            outcomes[1] += 1;
        } else if !unacked.is_empty() {
            outcomes[2] += 1;
        }
        let status = daemon.request(&json!({"op": "status"}));
        assert_eq!(
            status["status"]["state"],
            json!("valid"),
            "round {round}: {status}"
        );
    }
    eprintln!(
        "{ROUNDS} kill -9 rounds in {:?}; second exchange acked {} times, stored but unacked {}, \
         lost unacked {}",
        started.elapsed(),
        outcomes[0],
        outcomes[1],
        outcomes[2]
    );
}

// Kite faults
