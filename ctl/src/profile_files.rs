//! A profile's two files under `$XDG_CONFIG_HOME/kited/` (its config and its api secret): where
//! they are, whether their directory is safe to write in, and writing them privately.

use crate::exit::Failure;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The profile's two files under `$XDG_CONFIG_HOME/kited/`.
pub struct ProfileFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub secret: PathBuf,
}

impl ProfileFiles {
    pub fn for_profile(profile: &str) -> Result<ProfileFiles, Failure> {
        // A relative XDG_CONFIG_HOME is ignored, as the XDG spec says (kited ignores it too).
        let config_home = match std::env::var("XDG_CONFIG_HOME")
            .ok()
            .and_then(|v| kite_proto::socket_path::xdg_base_dir(&v))
        {
            Some(dir) => dir,
            None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                Some(home) => PathBuf::from(home).join(".config"),
                None => {
                    return Err(Failure::Local(
                        "neither XDG_CONFIG_HOME nor HOME is set: no place for the config".into(),
                    ))
                }
            },
        };
        let dir = config_home.join("kited");
        Ok(ProfileFiles {
            config: dir.join(format!("{profile}.toml")),
            secret: dir.join(format!("{profile}.api-secret")),
            dir,
        })
    }

    /// Why the directory is no place for the api secret: another user owns it, or others may
    /// write in it (and so swap the secret or the config under kited). `None` when it is safe,
    /// or does not exist yet (it is then created 0700).
    pub fn unsafe_dir(&self) -> Option<String> {
        let meta = fs::metadata(&self.dir).ok()?;
        let me = rustix::process::geteuid().as_raw();
        let mode = meta.mode() & 0o777;
        let problem = if meta.uid() != me {
            format!("belongs to uid {}, not to you (uid {me})", meta.uid())
        } else if mode & 0o022 != 0 {
            format!("can be written by other users (mode {mode:04o})")
        } else {
            return None;
        };
        Some(format!(
            "{} {problem}: they could replace the secret or the config; fix it (chown it to \
             yourself, chmod 700) or run `kitectl setup --force` to write there anyway",
            self.dir.display()
        ))
    }

    /// Writes both files (0600) in the directory (made 0700), each through a temporary file and
    /// a rename.
    pub fn write(&self, api_secret: &str, config_text: &str) -> Result<(), Failure> {
        let failed = |what: &Path, e: io::Error| {
            Failure::Local(format!("cannot write {}: {e}", what.display()))
        };
        fs::create_dir_all(&self.dir).map_err(|e| failed(&self.dir, e))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| failed(&self.dir, e))?;
        let secret = format!("{api_secret}\n");
        write_private(&self.secret, secret.as_bytes()).map_err(|e| failed(&self.secret, e))?;
        write_private(&self.config, config_text.as_bytes()).map_err(|e| failed(&self.config, e))
    }
}

/// Writes `bytes` to `path` with mode 0600 whatever the umask, replacing it atomically.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp{}", std::process::id()));
    let temp = PathBuf::from(temp);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &Path) -> ProfileFiles {
        let dir = dir.join("kited");
        ProfileFiles {
            config: dir.join("p.toml"),
            secret: dir.join("p.api-secret"),
            dir,
        }
    }

    #[test]
    fn a_directory_others_can_write_is_unsafe_and_writing_makes_it_private() {
        let scratch = tempfile::tempdir().unwrap();
        let files = files_in(scratch.path());
        assert_eq!(
            files.unsafe_dir(),
            None,
            "a missing directory is created private"
        );
        fs::create_dir(&files.dir).unwrap();
        fs::set_permissions(&files.dir, fs::Permissions::from_mode(0o775)).unwrap();
        let why = files.unsafe_dir().unwrap();
        assert!(
            why.contains("mode 0775") && why.contains("--force"),
            "{why}"
        );
        files.write("s3cret", "[kite]\n").unwrap();
        assert_eq!(files.unsafe_dir(), None);
        for path in [&files.secret, &files.config] {
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        assert_eq!(fs::read_to_string(&files.secret).unwrap(), "s3cret\n");
    }
}
