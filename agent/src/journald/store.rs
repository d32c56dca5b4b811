//! The journal cursor in the agent's state file.
//!
//! Entry points: [`load_cursor`] at start, [`write_cursor`] inside the transaction that commits
//! the records and signals read up to that cursor ([`crate::logs::store::LogStore::commit_with`]),
//! so after `kill -9` journalctl restarts `--after-cursor` exactly where the durable batches end.
//! Table `journald_cursor`: `"system"` → the `__CURSOR` of the last committed entry.

#![allow(clippy::result_large_err)]

use crate::queue::{Queue, QueueError};
use redb::{ReadableDatabase, TableDefinition};

const CURSORS: TableDefinition<&str, &str> = TableDefinition::new("journald_cursor");
const KEY: &str = "system";

/// The last committed cursor, if any.
pub fn load_cursor(queue: &Queue) -> Result<Option<String>, QueueError> {
    let read = || -> Result<Option<String>, redb::Error> {
        let r = queue.database()?.begin_read()?;
        let t = match r.open_table(CURSORS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(KEY)?.map(|v| v.value().to_string()))
    };
    read().map_err(|e| QueueError::StorageFailed {
        path: queue.path().to_path_buf(),
        op: "reading the journald cursor",
        source: Box::new(e),
    })
}

/// Writes `cursor` in the caller's transaction.
pub fn write_cursor(w: &redb::WriteTransaction, cursor: &str) -> Result<(), redb::Error> {
    let mut t = w.open_table(CURSORS)?;
    t.insert(KEY, cursor)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::store::LogStore;
    use crate::logs::tail::CheckpointChanges;
    use crate::metrics::Metrics;
    use std::sync::Arc;

    #[test]
    fn the_cursor_commits_with_the_batches_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent.redb");
        {
            let q =
                Arc::new(Queue::open(&path, 1 << 20, Metrics::unregistered().unwrap()).unwrap());
            assert_eq!(load_cursor(&q).unwrap(), None);
            let store = LogStore::open(q.clone()).unwrap();
            store
                .commit_with(&[], &[], &CheckpointChanges::default(), &mut |w| {
                    write_cursor(w, "s=1;i=2")
                })
                .unwrap();
        }
        let q = Queue::open(&path, 1 << 20, Metrics::unregistered().unwrap()).unwrap();
        assert_eq!(load_cursor(&q).unwrap().as_deref(), Some("s=1;i=2"));
    }
}
