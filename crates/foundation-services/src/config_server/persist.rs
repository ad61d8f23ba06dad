//! The persisted overrides: written atomically (a temporary file, fsync,
//! rename over the old file, fsync of the directory), so a crash at any
//! point leaves either the old file or the new one, never a torn or empty
//! one; and the TOML defaults file.

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ConfigError;

/// The persisted file's name inside the data directory.
pub const CONFIG_FILE: &str = "config.json";
const TEMP_SUFFIX: &str = ".tmp";

/// The values changed at run time, in the order they were set (replaying
/// them over the defaults rebuilds the tree).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Overrides {
    format: u32,
    pub(crate) entries: Vec<(String, Value)>,
}

impl Overrides {
    /// Records `path = value`, dropping earlier entries it covers.
    pub(crate) fn set(&mut self, path: &str, value: Value) {
        let below = format!("{path}.");
        self.entries
            .retain(|(p, _)| p != path && !p.starts_with(&below) && !path.is_empty());
        self.entries.push((path.to_owned(), value));
    }
}

pub(crate) fn file_path(dir: &Path) -> PathBuf {
    dir.join(CONFIG_FILE)
}

/// Loads the overrides; none when the file is missing. A stray temporary
/// file (a write cut short) is removed: the file it was to replace is
/// intact.
pub(crate) fn load(dir: &Path) -> Result<Overrides, ConfigError> {
    let path = file_path(dir);
    let temp = temp_path(&path);
    if temp.exists() {
        let _ = fs::remove_file(&temp);
    }
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Overrides::default()),
        Err(e) => {
            return Err(ConfigError::CorruptedFile {
                path,
                detail: e.to_string(),
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| ConfigError::CorruptedFile {
        path,
        detail: e.to_string(),
    })
}

/// Writes the overrides atomically.
pub(crate) fn save(dir: &Path, overrides: &Overrides) -> Result<(), ConfigError> {
    let bytes = serde_json::to_vec_pretty(&Overrides {
        format: 1,
        entries: overrides.entries.clone(),
    })
    .map_err(|e| ConfigError::Persist(e.to_string()))?;
    write_atomic(&file_path(dir), &bytes).map_err(|e| ConfigError::Persist(e.to_string()))
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

/// Replaces `path` with `bytes` atomically and durably.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let temp = temp_path(path);
    {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&temp, path)?;
    File::open(dir)?.sync_all()
}

/// Reads a TOML defaults file as a JSON tree.
pub(crate) fn load_toml(path: &Path) -> Result<Value, ConfigError> {
    let text = fs::read_to_string(path)
        .map_err(|e| ConfigError::InvalidDefaults(format!("{}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| ConfigError::InvalidDefaults(format!("{}: {e}", path.display())))?;
    serde_json::to_value(table)
        .map_err(|e| ConfigError::InvalidDefaults(format!("{}: {e}", path.display())))
}
