//! What a path on disk is: its inode and whether it is a socket.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

pub fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

pub fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
