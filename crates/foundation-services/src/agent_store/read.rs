//! Reading rows back: the readers' connections (a small pool beside the
//! writer's) and a SQLite row's [`Columns`] for the decoding both
//! backends share.

use std::path::PathBuf;

use mabeam_supervision_core::{AgentStatus, AgentStoreError};
use parking_lot::Mutex;
use rusqlite::{Connection, Row};
use serde_json::Value;

use super::{record::Columns, schema};

/// The readers' connections, opened on demand, a few kept idle.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// The most idle reader connections kept.
const MAX_IDLE: usize = 4;

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Self {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on a reader connection (blocking).
    pub(crate) fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, AgentStoreError> {
        let conn = match self.idle.lock().pop() {
            Some(conn) => conn,
            None => schema::open_reader(&self.path)?,
        };
        let result = read(&conn).map_err(|e| schema::classify(&self.path, e));
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }

    pub(crate) fn clear(&self) {
        self.idle.lock().clear();
    }
}

/// The stored text of a status (its serde name).
pub(crate) fn status_text(status: AgentStatus) -> String {
    match serde_json::to_value(status) {
        Ok(Value::String(text)) => text,
        other => format!("{other:?}"),
    }
}

impl Columns for Row<'_> {
    fn id(&self) -> Result<String, String> {
        let value = self.get_ref(0).map_err(|e| e.to_string())?;
        Ok(match value.as_str() {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(value.as_bytes().unwrap_or(b"?")).into_owned(),
        })
    }

    fn record_version(&self) -> Result<i64, String> {
        self.get(1).map_err(|e| e.to_string())
    }

    fn int(&self, index: usize) -> Result<i64, String> {
        self.get(index).map_err(|e| e.to_string())
    }

    fn with_text<T>(&self, index: usize, read: impl FnOnce(&str) -> T) -> Result<T, String> {
        let value = self.get_ref(index).map_err(|e| e.to_string())?;
        value.as_str().map(read).map_err(|e| e.to_string())
    }

    fn passivated(&self) -> Result<bool, String> {
        // SQLite has no boolean: 0 or 1.
        match self.get::<_, i64>(9) {
            Ok(0) => Ok(false),
            Ok(1) => Ok(true),
            Ok(other) => Err(format!("passivated {other}")),
            Err(e) => Err(format!("passivated: {e}")),
        }
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, String> {
        self.get(index).map_err(|e| e.to_string())
    }

    fn opt_bytes(&self, index: usize) -> Result<Option<Vec<u8>>, String> {
        self.get(index).map_err(|e| e.to_string())
    }
}
