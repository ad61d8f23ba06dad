//! The data directory: created if missing; holds the bearer token of the
//! mutating endpoints (`token`) and the cluster's cookie (`cookie`), each
//! mode 0600, generated on first start.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use crate::NodeError;

/// The token file's name inside the data directory.
pub const TOKEN_FILE: &str = "token";
/// The cookie file's name inside the data directory.
pub const COOKIE_FILE: &str = "cookie";

/// The cluster's cookie: the one given, or the one in `dir/cookie`, or a
/// new random one written there (mode 0600 on Unix).
pub fn cookie(dir: &Path, given: Option<&str>) -> Result<String, NodeError> {
    secret(dir, COOKIE_FILE, given)
}

/// Creates `dir` (and its parents) if missing.
pub fn ensure(dir: &Path) -> Result<(), NodeError> {
    fs::create_dir_all(dir).map_err(|error| NodeError::DataDir {
        path: dir.to_owned(),
        error,
    })
}

/// The bearer token: the one given, or the one in `dir/token`, or a new
/// random one written there (mode 0600 on Unix).
pub fn token(dir: &Path, given: Option<&str>) -> Result<String, NodeError> {
    secret(dir, TOKEN_FILE, given)
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
    match fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
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
