//! Decoding a stored row into an agent's record, one set of rules for
//! both backends: each reads its own columns through [`Columns`], and the
//! checks (record version, JSON fields, counts, the checkpoint and its
//! format) live here once. A row that cannot be decoded fails for that
//! row alone.

use mabeam_supervision_core::{
    AgentId, AgentRecord, AgentRegistration, AgentStatus, AgentStoreError, Checkpoint, LoadedAgent,
    agent_store::AGENT_RECORD_VERSION,
};
use serde_json::Value;

/// The columns every read selects, in the order [`Columns`] reads them.
pub(crate) const COLUMNS: &str = "id, version, generation, kind, config, args, restart, status, \
     restart_count, passivated, checkpoint_format, checkpoint";

/// One row of [`COLUMNS`] as a backend reads it; an error is the driver's
/// text.
pub(crate) trait Columns {
    /// The agent's id (column 0), as text even when the stored value is
    /// not quite text.
    fn id(&self) -> Result<String, String>;
    /// The record's version (column 1).
    fn record_version(&self) -> Result<i64, String>;
    /// An integer column.
    fn int(&self, index: usize) -> Result<i64, String>;
    /// Reads a text column in place: `read` borrows the row's own bytes
    /// (the recovery decodes three JSON columns a row, with no owned copy
    /// of their text first).
    fn with_text<T>(&self, index: usize, read: impl FnOnce(&str) -> T) -> Result<T, String>;
    /// The passivated flag (column 9); the error is the whole detail.
    fn passivated(&self) -> Result<bool, String>;
    /// A nullable integer column.
    fn opt_int(&self, index: usize) -> Result<Option<i64>, String>;
    /// A nullable bytes column.
    fn opt_bytes(&self, index: usize) -> Result<Option<Vec<u8>>, String>;
}

/// Decodes one row: its id, and its record or why it cannot be read.
pub(crate) fn decode(row: &impl Columns) -> LoadedAgent {
    let id = match row.id() {
        Ok(id) => AgentId::new(id),
        Err(e) => AgentId::new(format!("<unreadable id: {e}>")),
    };
    let record = record(&id, row);
    LoadedAgent { id, record }
}

fn record(id: &AgentId, row: &impl Columns) -> Result<AgentRecord, AgentStoreError> {
    let corrupt = |detail: String| AgentStoreError::Corrupt {
        id: id.clone(),
        detail,
    };
    let version = row.record_version().map_err(corrupt)?;
    if version > i64::from(AGENT_RECORD_VERSION) {
        return Err(AgentStoreError::NewerVersion {
            id: id.clone(),
            found: u32::try_from(version).unwrap_or(u32::MAX),
            supported: AGENT_RECORD_VERSION,
        });
    }
    if version < 1 {
        return Err(corrupt(format!("record version {version}")));
    }
    let text = |index: usize, name: &str| {
        row.with_text(index, str::to_owned)
            .map_err(|e| corrupt(format!("{name}: {e}")))
    };
    let json = |index: usize, name: &str| -> Result<Value, AgentStoreError> {
        row.with_text(index, |text| serde_json::from_str::<Value>(text))
            .map_err(|e| corrupt(format!("{name}: {e}")))?
            .map_err(|e| corrupt(format!("{name}: {e}")))
    };
    let int =
        |index: usize, name: &str| row.int(index).map_err(|e| corrupt(format!("{name}: {e}")));
    let generation = int(2, "generation")?;
    let kind = text(3, "kind")?;
    let status = row
        .with_text(7, |text| {
            use serde::{Deserialize, de::IntoDeserializer};
            let text: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
                text.into_deserializer();
            AgentStatus::deserialize(text)
        })
        .map_err(|e| corrupt(format!("status: {e}")))?
        .map_err(|e| corrupt(format!("status: {e}")))?;
    let restart_count = int(8, "restart_count")?;
    let passivated = row.passivated().map_err(corrupt)?;
    let format = row
        .opt_int(10)
        .map_err(|e| corrupt(format!("checkpoint_format: {e}")))?;
    let data = row
        .opt_bytes(11)
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
            passivated,
        },
        generation: u64::try_from(generation)
            .map_err(|_| corrupt(format!("generation {generation}")))?,
        checkpoint,
    })
}
