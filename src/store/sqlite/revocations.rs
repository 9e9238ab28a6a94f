//! The revocations the edge applies, on SQLite: recorded in the revoking transaction, dated by
//! the rule every node applies, and read in the order they were written (the
//! [`RevocationFeed`](crate::store::feed::RevocationFeed): polled, SQLite cannot push).

use async_trait::async_trait;
use gatehouse_plugin_api::store::StoreResult;
use gatehouse_plugin_api::tokens::RevocationScope;
use rusqlite::{params, Connection};

use super::{backend, SqliteStore};
use crate::store::feed::RevocationCursor;
use crate::store::rows::{revocation_row, revocation_scope};

pub(super) fn insert_revocation(
    tx: &Connection,
    scope: &RevocationScope,
    instant_seconds: i64,
) -> StoreResult<()> {
    let (kind, first, second) = revocation_row(scope);
    // Writes are serialized (one writer at a time), so this order is the commit order.
    let seq: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM revocations",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    tx.execute(
        "INSERT INTO revocations (scope, first_id, second_id, instant, seq) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (scope, first_id, second_id) \
         DO UPDATE SET instant = MAX(instant, excluded.instant), seq = excluded.seq",
        params![kind, first, second, instant_seconds, seq],
    )
    .map_err(backend)?;
    Ok(())
}

/// The instant (s) a revocation of `scopes` at `now_seconds` is dated, by the rule every node
/// applies ([`gatehouse_plugin_api::tokens::revocation_instant`]) over the revocations dated
/// now or later.
pub(super) fn dated_revocation(
    tx: &Connection,
    scopes: &[RevocationScope],
    now_seconds: i64,
) -> StoreResult<i64> {
    let recent = read_revocations(
        tx,
        "SELECT scope, first_id, second_id, instant FROM revocations WHERE instant >= ?1",
        params![now_seconds],
    )?;
    Ok(gatehouse_plugin_api::tokens::revocation_instant(
        scopes,
        now_seconds,
        recent.iter().map(|(scope, at)| (scope, *at)),
    ))
}

/// The revocations a `SELECT scope, first_id, second_id, instant …` finds (rows of a kind
/// this version does not know are passed over).
pub(super) fn read_revocations(
    tx: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<(RevocationScope, i64)>> {
    let mut stmt = tx.prepare(sql).map_err(backend)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, first, second, instant) = row.map_err(backend)?;
        if let Some(scope) = revocation_scope(&kind, &first, &second) {
            out.push((scope, instant));
        }
    }
    Ok(out)
}

/// SQLite cannot push: gateways on one file poll the revocations table every second, by the
/// order rows were written (`seq`).
#[async_trait]
impl crate::store::feed::RevocationFeed for SqliteStore {
    fn revocation_feed(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<crate::store::feed::FeedEvent>> {
        None
    }

    async fn revocations_since(
        &self,
        cursor: &RevocationCursor,
        horizon_seconds: i64,
    ) -> StoreResult<(Vec<(RevocationScope, i64)>, RevocationCursor)> {
        let after: i64 = cursor.0.parse().unwrap_or(0);
        self.tx(move |tx| {
            let rows = read_revocations(
                tx,
                "SELECT scope, first_id, second_id, instant FROM revocations \
                 WHERE seq > ?1 AND instant >= ?2",
                params![after, horizon_seconds],
            )?;
            let last: i64 = tx
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM revocations", [], |r| {
                    r.get(0)
                })
                .map_err(backend)?;
            Ok((rows, RevocationCursor(last.max(after).to_string())))
        })
        .await
    }
}
