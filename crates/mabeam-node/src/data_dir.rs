//! The data directory: created if missing (mode 0700 on Unix), locked by
//! the node that uses it (`node.lock`, holding that node's process id);
//! holds the bearer token of the API (`token`) and the cluster's cookie
//! (`cookie`), each mode 0600, generated on first start. A secret file
//! its group or others can read is refused, as ssh refuses such a key.

use std::{
    fs,
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
};

use crate::NodeError;

/// The token file's name inside the data directory.
pub const TOKEN_FILE: &str = "token";
/// The cookie file's name inside the data directory.
pub const COOKIE_FILE: &str = "cookie";
/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "node.lock";
/// The files of the services that keep data there (the event store's
/// database and its journal files, the config server's settings): mode
/// 0600 once the node has started.
pub const PRIVATE_FILES: [&str; 4] = ["events.db", "events.db-wal", "events.db-shm", "config.json"];

/// The cluster's cookie: the one given, or the one in `dir/cookie`, or a
/// new random one written there (mode 0600 on Unix).
pub fn cookie(dir: &Path, given: Option<&str>) -> Result<String, NodeError> {
    secret(dir, COOKIE_FILE, given)
}

/// Creates `dir` (and its parents) if missing, mode 0700 on Unix.
pub fn ensure(dir: &Path) -> Result<(), NodeError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|error| NodeError::DataDir {
        path: dir.to_owned(),
        error,
    })
}

/// The data directory held by this node: while it lives, another node
/// asking for the same directory gets
/// [`DataDirInUse`](NodeError::DataDirInUse). The operating system's lock
/// (`flock`) goes with the process, so a killed node leaves no stale lock.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Locks `dir` for this node (see [`DirLock`]), writing its process id in
/// the lock file for the next one to name.
pub fn lock(dir: &Path) -> Result<DirLock, NodeError> {
    let path = dir.join(LOCK_FILE);
    let io = |error| NodeError::DataDir {
        path: path.clone(),
        error,
    };
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(NodeError::DataDirInUse {
                path: dir.to_owned(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(fs::TryLockError::Error(error)) => return Err(io(error)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DirLock { _file: file })
}

/// Sets the services' files in `dir` ([`PRIVATE_FILES`]) to mode 0600
/// (files made by an older node, or before the process's umask).
pub fn restrict(dir: &Path) -> Result<(), NodeError> {
    #[cfg(unix)]
    for name in PRIVATE_FILES {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        match fs::set_permissions(&path, fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(NodeError::DataDir { path, error }),
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The bearer token: the one given, or the one in `dir/token`, or a new
/// random one written there (mode 0600 on Unix).
pub fn token(dir: &Path, given: Option<&str>) -> Result<String, NodeError> {
    secret(dir, TOKEN_FILE, given)
}

/// Refuses a secret file its group or others may read (Unix).
fn private(path: &Path, file: &fs::File) -> Result<(), NodeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|error| NodeError::DataDir {
                path: path.to_owned(),
                error,
            })?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o077 != 0 {
            return Err(NodeError::InsecureFile {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, file);
    Ok(())
}

/// A secret: given, or read from `dir/file`, or made and written there.
fn secret(dir: &Path, file: &str, given: Option<&str>) -> Result<String, NodeError> {
    if let Some(token) = given {
        return Ok(token.to_owned());
    }
    let path: PathBuf = dir.join(file);
    let io = |error| NodeError::DataDir {
        path: path.clone(),
        error,
    };
    match fs::File::open(&path) {
        Ok(mut existing) => {
            private(&path, &existing)?;
            let mut text = String::new();
            existing.read_to_string(&mut text).map_err(io)?;
            if !text.trim().is_empty() {
                return Ok(text.trim().to_owned());
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(error)),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(io)?;
    file.write_all(token.as_bytes()).map_err(io)?;
    Ok(token)
}
