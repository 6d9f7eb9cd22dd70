//! The shipped systemd units: they agree with kited and kitectl and pass `systemd-analyze verify`.

use std::path::Path;
use std::process::Command;

use kite_tests::harness::bin;

use crate::helper::systemd::{ok, unit};
use crate::helper::text;

fn values<'a>(unit: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn units_agree_with_kited_and_kitectl() {
    for (name, profile) in [("kited.service", "default"), ("kited@.service", "%i")] {
        let unit = unit(name);
        let one = |key: &str| {
            let v = values(&unit, key);
            assert_eq!(v.len(), 1, "{name}: {key}= {v:?}");
            v[0].to_string()
        };
        assert_eq!(one("Type"), "notify", "{name}");
        assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID", "{name}");
        assert_eq!(one("Restart"), "on-failure", "{name}");
        let exec = one("ExecStart");
        assert!(exec.starts_with("%h/.cargo/bin/kited "), "{name}: {exec}");
        assert!(
            exec.contains(&format!("--profile {profile} ")),
            "{name}: {exec}"
        );
        // The socket is where kitectl looks ($XDG_RUNTIME_DIR/kited/NAME.sock) and inside the
        // writable RuntimeDirectory; the state dir inside the StateDirectory.
        assert!(
            exec.contains(&format!("--socket %t/kited/{profile}.sock ")),
            "{name}: {exec}"
        );
        assert_eq!(one("RuntimeDirectory"), "kited", "{name}");
        assert_eq!(one("RuntimeDirectoryPreserve"), "yes", "{name}");
        assert!(
            exec.contains(&format!("--state-dir %S/kited/{profile} ")),
            "{name}: {exec}"
        );
        assert_eq!(one("StateDirectory"), format!("kited/{profile}"), "{name}");
        assert!(exec.ends_with(" run"), "{name}: {exec}");
        // The credential names kited reads from $CREDENTIALS_DIRECTORY: the api secret (must
        // exist), the push tokens and the Redis password (optional: a SetCredential= of the
        // same name is the fallback systemd uses when the file is missing; a bare newline reads
        // as no token).
        assert_eq!(
            values(&unit, "LoadCredential"),
            vec![
                format!("kite-api-secret:%E/kited/{profile}.api-secret"),
                format!("telegram-bot-token:%E/kited/{profile}.telegram-bot-token"),
                format!("ntfy-token:%E/kited/{profile}.ntfy-token"),
                format!("redis-password:%E/kited/{profile}.redis-password"),
            ],
            "{name}"
        );
        assert_eq!(
            values(&unit, "SetCredential"),
            vec![
                "telegram-bot-token:\\n",
                "ntfy-token:\\n",
                "redis-password:\\n"
            ],
            "{name}"
        );
        assert_eq!(one("RestartPreventExitStatus"), "78", "{name}");
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "read-only"),
            ("PrivateTmp", "yes"),
            ("PrivateUsers", "yes"),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
            ("LockPersonality", "yes"),
            ("MemoryDenyWriteExecute", "yes"),
            ("SystemCallArchitectures", "native"),
            ("RestrictNamespaces", "yes"),
            ("RestrictRealtime", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectControlGroups", "yes"),
            ("UMask", "0077"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert_eq!(one(key), value, "{name}: {key}");
        }
        assert!(
            values(&unit, "SystemCallFilter").contains(&"@system-service"),
            "{name}"
        );
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/verify.sh");
    assert!(
        Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok(),
        "systemd-analyze is not installed (the systemd package has it)"
    );
    let out = Command::new("sh")
        .arg(&script)
        .env("KITED_BIN_DIR", bin("kited").parent().unwrap())
        .output()
        .unwrap();
    assert!(
        ok(&out),
        "systemd/verify.sh failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
