//! The revocations the edge applies, on PostgreSQL: recorded (and announced) in the revoking
//! transaction, dated by the rule every node applies, and read by transaction visibility (the
//! [`RevocationFeed`](crate::store::feed::RevocationFeed), pushed through `LISTEN`).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use gatehouse_plugin_api::store::{StoreError, StoreResult};
use gatehouse_plugin_api::tokens::RevocationScope;
use tokio_postgres::Row;

use super::{col, execute, pg, query, query_opt, PostgresStore};
use crate::store::feed::RevocationCursor;
use crate::store::rows::{revocation_row, revocation_scope};

/// Records a revocation and announces it on the revocation channel; call it inside the
/// revocation's transaction, so the announcement goes out exactly when it commits.
pub(super) async fn insert_revocation<C: GenericClient>(
    c: &C,
    scope: &RevocationScope,
    instant_seconds: i64,
) -> StoreResult<()> {
    let (kind, first, second) = revocation_row(scope);
    execute(
        c,
        "INSERT INTO revocations (scope, first_id, second_id, instant) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (scope, first_id, second_id) \
         DO UPDATE SET instant = GREATEST(revocations.instant, excluded.instant), \
         xact = pg_current_xact_id()",
        &[&kind, &first, &second, &instant_seconds],
    )
    .await?;
    // A wake-up call only: listeners read the table, never a payload.
    query(
        c,
        "SELECT pg_notify($1, '')",
        &[&crate::store::feed::CHANNEL],
    )
    .await?;
    Ok(())
}

/// The instant (s) a revocation of `scopes` at `now_seconds` is dated, by the rule every node
/// applies ([`gatehouse_plugin_api::tokens::revocation_instant`]) over the revocations dated
/// now or later.
pub(super) async fn dated_revocation<C: GenericClient>(
    c: &C,
    scopes: &[RevocationScope],
    now_seconds: i64,
) -> StoreResult<i64> {
    let rows = query(
        c,
        "SELECT scope, first_id, second_id, instant FROM revocations WHERE instant >= $1",
        &[&now_seconds],
    )
    .await?;
    let recent = revocations_of(&rows)?;
    Ok(gatehouse_plugin_api::tokens::revocation_instant(
        scopes,
        now_seconds,
        recent.iter().map(|(scope, at)| (scope, *at)),
    ))
}

/// The revocations of `scope, first_id, second_id, instant` rows (rows of a kind this version
/// does not know are passed over).
pub(super) fn revocations_of(rows: &[Row]) -> StoreResult<Vec<(RevocationScope, i64)>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (kind, first, second): (String, String, String) =
            (col(row, 0)?, col(row, 1)?, col(row, 2)?);
        if let Some(scope) = revocation_scope(&kind, &first, &second) {
            out.push((scope, col(row, 3)?));
        }
    }
    Ok(out)
}

/// Revocations are pushed: one connection of this node listens on the revocation channel (see
/// [`super::feed`]). The table is read by transaction visibility: rows written by transactions
/// at or after the previous read's snapshot `xmin`, which includes every transaction still in
/// progress then, however late it commits.
#[async_trait]
impl crate::store::feed::RevocationFeed for PostgresStore {
    fn revocation_feed(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<crate::store::feed::FeedEvent>> {
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        self.runtime
            .spawn(crate::store::feed::listen(self.config.clone(), events));
        Some(receiver)
    }

    async fn revocations_since(
        &self,
        cursor: &RevocationCursor,
        horizon_seconds: i64,
    ) -> StoreResult<(Vec<(RevocationScope, i64)>, RevocationCursor)> {
        let after = match cursor.0.as_str() {
            "" => "0".to_string(),
            text => text.to_string(),
        };
        self.run(move |mut c| async move {
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg)?;
            let snapshot = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text";
            let xmin: String = match query_opt(&tx, snapshot, &[]).await? {
                Some(row) => col(&row, 0)?,
                None => return Err(StoreError::Backend("no snapshot xmin".into())),
            };
            let rows = query(
                &tx,
                "SELECT scope, first_id, second_id, instant FROM revocations \
                 WHERE xact >= $1::text::xid8 AND instant >= $2",
                &[&after, &horizon_seconds],
            )
            .await?;
            tx.commit().await.map_err(pg)?;
            Ok((revocations_of(&rows)?, RevocationCursor(xmin)))
        })
        .await
    }
}
