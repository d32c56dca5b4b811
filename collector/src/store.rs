//! The embedded store: one redb database in `--data-dir`, crash-safe (every commit is durable).
//!
//! Entry type: [`Store`]. Tables:
//!
//! | table | key → value | why |
//! |---|---|---|
//! | `signals` | signal id → Signal JSON | idempotent ingest: a signal id seen once is never processed again |
//! | `incidents` | incident id → Incident JSON | the incidents themselves |
//! | `incident_order` | (opened_at nanos, id) → () | listing newest first with a stable cursor |
//! | `active_by_fingerprint` | fingerprint → incident id | deduplication while an incident is open or acknowledged |
//! | `last_by_fingerprint` | fingerprint → incident id | links a reopened fingerprint to its previous incident |
//!
//! The notification outbox lives in the same database (see [`crate::notify`]), so an incident
//! change and its notification commit together. This module does no correlation; it reads and
//! writes inside transactions that the caller owns.

use daytwo_model::{Incident, IncidentStatus, Severity, Signal};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const SIGNALS: TableDefinition<&str, &[u8]> = TableDefinition::new("signals");
pub const INCIDENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("incidents");
pub const INCIDENT_ORDER: TableDefinition<(i64, &str), ()> = TableDefinition::new("incident_order");
pub const ACTIVE_BY_FINGERPRINT: TableDefinition<&str, &str> =
    TableDefinition::new("active_by_fingerprint");
pub const LAST_BY_FINGERPRINT: TableDefinition<&str, &str> =
    TableDefinition::new("last_by_fingerprint");

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the store at {path}: {source} (is another daytwo using this --data-dir? is the disk full or read-only?)"
    )]
    OpenFailed {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("store operation failed: {0} (retrying may help if the disk was full)")]
    Io(#[from] redb::Error),
    #[error("stored record {key} is not valid JSON: {source} (the store may be damaged)")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("notification outbox: {0}")]
    Notify(#[from] crate::notify::NotifyError),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Io(e.into()) }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Filters for listing incidents.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub status: Option<IncidentStatus>,
    pub severity: Option<Severity>,
    /// Only incidents whose root causes or signals are on this host (`host.name`).
    pub host: Option<String>,
    /// Only incidents whose root causes or signals carry this `k8s.cluster.name`.
    pub cluster: Option<String>,
    /// Only incidents whose root causes or signals carry this `k8s.namespace.name`.
    pub namespace: Option<String>,
    /// Only incidents with a root cause on this entity: `NAME` or `KIND/NAME` (`cgroup//probe1`,
    /// `pod/shop/cart-1`).
    pub entity: Option<String>,
    /// Only incidents opened at or after this time.
    pub since: Option<daytwo_model::Timestamp>,
    /// Only incidents opened before this time.
    pub until: Option<daytwo_model::Timestamp>,
    pub limit: usize,
    /// Opaque cursor from a previous page (`next`).
    pub cursor: Option<String>,
}

/// The embedded store.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) `<data_dir>/collector.redb` and its tables.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("collector.redb");
        let db = Database::create(&path).map_err(|e| StoreError::OpenFailed {
            path: path.clone(),
            source: e.into(),
        })?;
        let txn = db.begin_write()?;
        txn.open_table(SIGNALS)?;
        txn.open_table(INCIDENTS)?;
        txn.open_table(INCIDENT_ORDER)?;
        txn.open_table(ACTIVE_BY_FINGERPRINT)?;
        txn.open_table(LAST_BY_FINGERPRINT)?;
        crate::notify::init_tables(&txn)?;
        txn.commit()?;
        Ok(Store { db: Arc::new(db) })
    }

    pub fn db(&self) -> Arc<Database> {
        self.db.clone()
    }

    pub fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        Ok(self.db.begin_write()?)
    }

    pub fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(INCIDENTS)?;
        let v = t.get(id)?;
        v.map(|g| decode(id, g.value())).transpose()
    }

    /// Incidents newest first, filtered, one page at a time.
    pub fn list_incidents(
        &self,
        f: &ListFilter,
    ) -> Result<(Vec<Incident>, Option<String>), StoreError> {
        let limit = f.limit.clamp(1, 1000);
        let txn = self.db.begin_read()?;
        let order = txn.open_table(INCIDENT_ORDER)?;
        let incidents = txn.open_table(INCIDENTS)?;
        let upper = f.cursor.as_deref().and_then(parse_cursor);
        let range = match &upper {
            Some((t, id)) => order.range(..(*t, id.as_str()))?,
            None => order.range::<(i64, &str)>(..)?,
        };
        let mut out = Vec::new();
        let mut next = None;
        for item in range.rev() {
            let (k, _) = item?;
            let (t, id) = k.value();
            if f.until.is_some_and(|u| t >= u.0) {
                continue;
            }
            if f.since.is_some_and(|s| t < s.0) {
                // Newest first: everything after this is older still.
                break;
            }
            let Some(raw) = incidents.get(id)? else {
                continue;
            };
            let inc = decode(id, raw.value())?;
            if f.status.is_some_and(|s| s != inc.status)
                || f.severity.is_some_and(|s| s != inc.severity)
                || f.host.as_deref().is_some_and(|h| !mentions_host(&inc, h))
                || f.cluster
                    .as_deref()
                    .is_some_and(|c| !mentions_attr(&inc, "k8s.cluster.name", c))
                || f.namespace
                    .as_deref()
                    .is_some_and(|n| !mentions_attr(&inc, "k8s.namespace.name", n))
                || f.entity
                    .as_deref()
                    .is_some_and(|e| !has_root_entity(&inc, e))
            {
                continue;
            }
            if out.len() == limit {
                let last: &Incident = out.last().expect("limit >= 1");
                next = Some(format!("{}:{}", last.opened_at.0, last.id));
                let _ = (t, id);
                break;
            }
            out.push(inc);
        }
        Ok((out, next))
    }

    /// Every open or acknowledged incident (for rebuilding correlation state at start).
    pub fn active_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let txn = self.db.begin_read()?;
        let active = txn.open_table(ACTIVE_BY_FINGERPRINT)?;
        let incidents = txn.open_table(INCIDENTS)?;
        let mut out = Vec::new();
        for item in active.iter()? {
            let (_, id) = item?;
            if let Some(raw) = incidents.get(id.value())? {
                out.push(decode(id.value(), raw.value())?);
            }
        }
        Ok(out)
    }

    /// How many signals the store holds.
    pub fn signal_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(SIGNALS)?.len()?)
    }
}

/// True when the signal id is already stored (inside `txn`).
pub fn has_signal(txn: &WriteTransaction, id: &str) -> Result<bool, StoreError> {
    Ok(txn.open_table(SIGNALS)?.get(id)?.is_some())
}

pub fn put_signal(txn: &WriteTransaction, s: &Signal) -> Result<(), StoreError> {
    let json = serde_json::to_vec(s).expect("signals serialise");
    txn.open_table(SIGNALS)?
        .insert(s.id.as_str(), json.as_slice())?;
    Ok(())
}

pub fn get_incident_in(txn: &WriteTransaction, id: &str) -> Result<Option<Incident>, StoreError> {
    let t = txn.open_table(INCIDENTS)?;
    let v = t.get(id)?;
    v.map(|g| decode(id, g.value())).transpose()
}

/// Writes an incident and keeps the fingerprint indexes in step with its status.
pub fn put_incident(txn: &WriteTransaction, inc: &Incident) -> Result<(), StoreError> {
    let json = serde_json::to_vec(inc).expect("incidents serialise");
    let is_new = txn
        .open_table(INCIDENTS)?
        .insert(inc.id.as_str(), json.as_slice())?
        .is_none();
    if is_new {
        txn.open_table(INCIDENT_ORDER)?
            .insert((inc.opened_at.0, inc.id.as_str()), ())?;
    }
    let mut active = txn.open_table(ACTIVE_BY_FINGERPRINT)?;
    if inc.status.is_active() {
        active.insert(inc.fingerprint.as_str(), inc.id.as_str())?;
    } else {
        let current = active
            .get(inc.fingerprint.as_str())?
            .map(|g| g.value().to_string());
        if current.as_deref() == Some(inc.id.as_str()) {
            active.remove(inc.fingerprint.as_str())?;
        }
    }
    txn.open_table(LAST_BY_FINGERPRINT)?
        .insert(inc.fingerprint.as_str(), inc.id.as_str())?;
    Ok(())
}

/// The active incident id for a fingerprint, and the last incident id ever seen for it.
pub fn fingerprint_ids(
    txn: &WriteTransaction,
    fingerprint: &str,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let active = txn
        .open_table(ACTIVE_BY_FINGERPRINT)?
        .get(fingerprint)?
        .map(|g| g.value().to_string());
    let last = txn
        .open_table(LAST_BY_FINGERPRINT)?
        .get(fingerprint)?
        .map(|g| g.value().to_string());
    Ok((active, last))
}

fn decode(key: &str, raw: &[u8]) -> Result<Incident, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::Corrupt {
        key: key.to_string(),
        source,
    })
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (t, id) = c.split_once(':')?;
    Some((t.parse().ok()?, id.to_string()))
}

fn mentions_attr(inc: &Incident, key: &str, value: &str) -> bool {
    let is = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()) == Some(value);
    inc.root_causes
        .iter()
        .any(|h| is(h.entity.attributes.get(key)))
        || inc.signals.iter().any(|s| is(s.attr(key)))
}

fn has_root_entity(inc: &Incident, want: &str) -> bool {
    inc.root_causes.iter().any(|h| {
        h.entity.name == want
            || want
                .split_once('/')
                .is_some_and(|(kind, name)| kind == h.entity.kind.as_str() && name == h.entity.name)
    })
}

fn mentions_host(inc: &Incident, host: &str) -> bool {
    inc.root_causes
        .iter()
        .any(|h| h.entity.host() == Some(host))
        || inc.signals.iter().any(|s| s.host() == Some(host))
}
