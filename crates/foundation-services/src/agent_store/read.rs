//! Reading rows back: the readers' connections (a small pool beside the
//! writer's) and the decoding of a row, which fails for that row alone.

use std::path::PathBuf;

use mabeam_supervision_core::{
    AgentId, AgentRecord, AgentRegistration, AgentStatus, AgentStoreError, Checkpoint, LoadedAgent,
    agent_store::AGENT_RECORD_VERSION,
};
use parking_lot::Mutex;
use rusqlite::{Connection, Row};
use serde_json::Value;

use super::schema;

/// The columns every read selects, in [`decode`]'s order.
pub(crate) const COLUMNS: &str = "id, version, generation, kind, config, args, restart, status, \
     restart_count, passivated, checkpoint_format, checkpoint";

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

/// Decodes one row: its id, and its record or why it cannot be read.
pub(crate) fn decode(row: &Row<'_>) -> LoadedAgent {
    let id = match row.get_ref(0) {
        Ok(value) => match value.as_str() {
            Ok(text) => AgentId::new(text),
            Err(_) => AgentId::new(String::from_utf8_lossy(value.as_bytes().unwrap_or(b"?"))),
        },
        Err(e) => AgentId::new(format!("<unreadable id: {e}>")),
    };
    let record = record(&id, row);
    LoadedAgent { id, record }
}

fn record(id: &AgentId, row: &Row<'_>) -> Result<AgentRecord, AgentStoreError> {
    let corrupt = |detail: String| AgentStoreError::Corrupt {
        id: id.clone(),
        detail,
    };
    let version: i64 = row.get(1).map_err(|e| corrupt(e.to_string()))?;
    if version > AGENT_RECORD_VERSION as i64 {
        return Err(AgentStoreError::NewerVersion {
            id: id.clone(),
            found: u32::try_from(version).unwrap_or(u32::MAX),
            supported: AGENT_RECORD_VERSION,
        });
    }
    if version < 1 {
        return Err(corrupt(format!("record version {version}")));
    }
    // Parsed from the row's own bytes: no owned copy of the text first
    // (three a row, on the recovery's path).
    let json = |index: usize, name: &str| -> Result<Value, AgentStoreError> {
        let text = row
            .get_ref(index)
            .map_err(|e| corrupt(format!("{name}: {e}")))?
            .as_str()
            .map_err(|e| corrupt(format!("{name}: {e}")))?;
        serde_json::from_str(text).map_err(|e| corrupt(format!("{name}: {e}")))
    };
    let int = |index: usize, name: &str| -> Result<i64, AgentStoreError> {
        row.get(index).map_err(|e| corrupt(format!("{name}: {e}")))
    };
    let generation = int(2, "generation")?;
    let kind: String = row.get(3).map_err(|e| corrupt(format!("kind: {e}")))?;
    let status = row
        .get_ref(7)
        .map_err(|e| corrupt(format!("status: {e}")))?
        .as_str()
        .map_err(|e| corrupt(format!("status: {e}")))?;
    let status: AgentStatus = {
        use serde::{Deserialize, de::IntoDeserializer};
        let text: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            status.into_deserializer();
        AgentStatus::deserialize(text).map_err(|e| corrupt(format!("status: {e}")))?
    };
    let restart_count = int(8, "restart_count")?;
    let passivated = int(9, "passivated")?;
    let format: Option<i64> = row
        .get(10)
        .map_err(|e| corrupt(format!("checkpoint_format: {e}")))?;
    let data: Option<Vec<u8>> = row
        .get(11)
        .map_err(|e| corrupt(format!("checkpoint: {e}")))?;
    let checkpoint = match (format, data) {
        (Some(format), Some(data)) => Some(Checkpoint {
            format: u32::try_from(format)
                .map_err(|_| corrupt(format!("checkpoint format {format}")))?,
            data,
        }),
        (None, None) => None,
        _ => return Err(corrupt("checkpoint without its format".into())),
    };
    Ok(AgentRecord {
        registration: AgentRegistration {
            id: id.clone(),
            kind,
            config: json(4, "config")?,
            args: json(5, "args")?,
            restart: json(6, "restart")?,
            status,
            restart_count: u32::try_from(restart_count)
                .map_err(|_| corrupt(format!("restart_count {restart_count}")))?,
            passivated: match passivated {
                0 => false,
                1 => true,
                other => return Err(corrupt(format!("passivated {other}"))),
            },
        },
        generation: u64::try_from(generation)
            .map_err(|_| corrupt(format!("generation {generation}")))?,
        checkpoint,
    })
}
