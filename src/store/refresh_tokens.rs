//! The refresh-token tables (`refresh_families`, `refresh_tokens`): [`FamilyRecord`] (a family as
//! it is kept, its tokens as digests), [`Rotation`], the [`RefreshTokenStore`] trait the
//! `RefreshTokens` actor writes through and reads on a miss of its cache, and its implementations:
//! SQLite, PostgreSQL and in-memory. Every method is atomic; a rotation is a compare-and-swap on
//! the family's current token, so single use holds in the store itself.

use super::connections::Settle;
use super::error::StoreError;
use super::postgres::PostgresStore;
use super::sqlite::{SqliteStore, chunks, insert_rows, int, unsigned, write_timer};
use crate::trace::SecretDigest;
use futures::future::BoxFuture;
use sqlx::Row;

/// SHA-256 digest of a refresh token: the only form in which a token is kept.
pub type TokenHash = SecretDigest;

/// A family as the store keeps it. Times are Unix milliseconds; token values are digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRecord {
    /// Random id (128 bits, base64url). Primary key.
    pub family_id: String,
    pub client_id: String,
    pub subject: String,
    /// The scope granted by the authorization; fixed for the family's life.
    pub scope: String,
    /// The resource (the access tokens' `aud`); fixed for the family's life.
    pub resource: String,
    pub flow: String,
    /// The `jti` of the access token issued with the family's first token (code redemption): a
    /// replay of that code revokes the family.
    pub origin_jti: String,
    pub created_at_ms: u64,
    /// The family ends here whatever happens.
    pub absolute_expires_at_ms: u64,
    /// The family ends here unless a refresh pushes it back. The store keeps it no later than the
    /// absolute deadline (it clamps what it is given), so this deadline alone says when the
    /// family dies: the sweep reads one index.
    pub idle_expires_at_ms: u64,
    /// Rotations so far (0 for the token issued with the code).
    pub generation: u64,
    /// Digest of the one current token.
    pub current: TokenHash,
    /// Digest of the token the last rotation retired, with the rotation's time and salt: the
    /// grace window's retry recomputes the current token from them.
    pub previous: Option<TokenHash>,
    pub rotated_at_ms: Option<u64>,
    pub salt: Option<[u8; 32]>,
    /// Digests of every token of the family ever issued (current and retired), so that a retired
    /// token is recognised as reuse and not as an unknown token.
    pub tokens: Vec<TokenHash>,
}

/// One rotation, applied by [`RefreshTokenStore::rotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub family_id: String,
    /// The token presented: the rotation applies only if it is still the family's current one.
    pub presented: TokenHash,
    /// The new current token.
    pub next: TokenHash,
    pub salt: [u8; 32],
    pub generation: u64,
    pub rotated_at_ms: u64,
    pub idle_expires_at_ms: u64,
}

/// Where refresh-token families are persisted: the truth, of which the actor caches the families
/// used lately. The actor calls the store before it answers; every method must have committed
/// durably when its future resolves `Ok`, and must change nothing when it resolves `Err`.
pub trait RefreshTokenStore: Send + Sync + 'static {
    /// Inserts a new family with its first token (`family.current`, also in `family.tokens`).
    /// Atomic: the family and its token are stored together or not at all. A batch of one.
    fn insert_family(&self, family: &FamilyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        let family = family.clone();
        Box::pin(async move {
            self.write_batch(std::slice::from_ref(&family), &[]).await?;
            Ok(())
        })
    }

    /// Rotates a family as one atomic compare-and-swap on the current token: if the family
    /// exists and its current token is `rotation.presented`, then in one transaction set
    /// `previous = presented`, `current = next`, record `next` among the family's tokens, and set
    /// `salt`, `generation`, `rotated_at_ms` and `idle_expires_at_ms`; answer `Ok(true)`.
    /// Otherwise (another rotation or a revocation came first) change nothing and answer
    /// `Ok(false)`. A store shared by several servers thereby enforces single use by itself
    /// (`UPDATE ... WHERE family_id = ? AND current = ?`, one row affected or none). A batch of
    /// one.
    fn rotate(&self, rotation: &Rotation) -> BoxFuture<'_, Result<bool, StoreError>> {
        let rotation = rotation.clone();
        Box::pin(async move {
            let swapped = self
                .write_batch(&[], std::slice::from_ref(&rotation))
                .await?;
            Ok(swapped.first() == Some(&true))
        })
    }

    /// Group commit: inserts `families` as [`insert_family`](Self::insert_family) does and
    /// applies `rotations` as [`rotate`](Self::rotate) does, all in one transaction (one commit,
    /// one `fsync`, for everyone waiting); answers, for each rotation in order, whether its
    /// compare-and-swap applied. A rotation that does not apply changes nothing and does not
    /// undo the others; an error changes nothing at all.
    fn write_batch<'a>(
        &'a self,
        families: &'a [FamilyRecord],
        rotations: &'a [Rotation],
    ) -> BoxFuture<'a, Result<Vec<bool>, StoreError>>;

    /// Deletes these families and all their tokens, atomically (revocation, reuse detection,
    /// consent revocation, expiry); answers how many existed. Ids that do not exist are ignored.
    /// After it commits no token of these families can be rotated.
    fn remove_families(&self, family_ids: &[String]) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Every family whose absolute and idle deadlines are both after `now_ms`, with all its token
    /// digests (`mcp-oauth admin grants`). The store may delete the others.
    fn load_live(&self, now_ms: u64) -> BoxFuture<'_, Result<Vec<FamilyRecord>, StoreError>>;

    /// How many families are stored (the actor's bound).
    fn count_families(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// The family one of whose tokens (current or retired) has this digest, with all its token
    /// digests, as stored now: read when the actor's cache misses, and before every judgement
    /// when other servers write the same store, which may have made, rotated or ended it.
    fn family_by_token(
        &self,
        hash: &TokenHash,
    ) -> BoxFuture<'_, Result<Option<FamilyRecord>, StoreError>>;

    /// Deletes the families past a deadline at `now_ms`, with their tokens, by the stored
    /// deadlines (which another server's refresh may have moved); answers how many.
    fn remove_dead_families(&self, now_ms: u64) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// The id of the stored family started with the access token `origin_jti` (a replayed code
    /// ends it).
    fn family_id_by_origin(
        &self,
        origin_jti: &str,
    ) -> BoxFuture<'_, Result<Option<String>, StoreError>>;

    /// The ids of the stored families of a user, of a client, or of a user for a client.
    fn family_ids_of(
        &self,
        subject: Option<&str>,
        client_id: Option<&str>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;

    /// The clients for which a user holds families live at `now_ms`, with how many, by client id
    /// (the account page).
    fn family_clients_of(
        &self,
        subject: &str,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<(String, u64)>, StoreError>>;
}

fn digest(bytes: Option<Vec<u8>>) -> Result<Option<TokenHash>, StoreError> {
    bytes
        .map(|b| {
            TokenHash::try_from(b.as_slice())
                .map_err(|_| StoreError("a stored refresh-token digest is corrupt".into()))
        })
        .transpose()
}

/// Whether no family has two of these rotations.
fn distinct_families(rotations: &[Rotation]) -> bool {
    let mut ids: Vec<&str> = rotations.iter().map(|r| r.family_id.as_str()).collect();
    ids.sort_unstable();
    ids.windows(2).all(|pair| pair[0] != pair[1])
}

/// A rotation's new idle deadline, `idle` (a parameter or a column), as the store keeps it: no
/// later than the family's absolute deadline.
fn clamped_idle(idle: &str) -> String {
    format!("CASE WHEN {idle} < absolute_expires_at_ms THEN {idle} ELSE absolute_expires_at_ms END")
}

/// The compare-and-swap of `rows` rotations in one statement (7 values each: family id,
/// presented, next, salt, generation, time, idle deadline), answering the ids of the families it
/// swapped.
fn swap_rows(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    let idle = clamped_idle("v.idle");
    format!(
        "WITH v (id, presented, next, salt, generation, at, idle) AS (VALUES {values}) \
         UPDATE refresh_families SET previous = current, current = v.next, salt = v.salt, \
         generation = v.generation, rotated_at_ms = v.at, idle_expires_at_ms = {idle} \
         FROM v WHERE refresh_families.family_id = v.id AND refresh_families.current = v.presented \
         RETURNING family_id"
    )
}

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::refresh_tokens::*;

            /// A family's row: the table and its columns, 15 values.
            const FAMILY_INSERT: &str = "refresh_families (family_id, client_id, subject, scope, resource, \
                 flow, origin_jti, created_at_ms, absolute_expires_at_ms, idle_expires_at_ms, \
                 generation, current, previous, rotated_at_ms, salt)";

            /// A connection of the backend, on which a batch's statements run.
            type Connection = <<$row as sqlx::Row>::Database as sqlx::Database>::Connection;

            /// A batch's statements, in order: the families, their other tokens, the rotations'
            /// compare-and-swaps; answers, for each rotation in order, whether it swapped.
            async fn write(
                conn: &mut Connection,
                families: &[FamilyRecord],
                tokens: &[(&TokenHash, &str)],
                rotations: &[Rotation],
                together: bool,
            ) -> Result<Vec<bool>, StoreError> {
                for chunk in chunks(families) {
                    let sql = <$store>::sql(&insert_rows(FAMILY_INSERT, 15, chunk.len())).into_owned();
                    let mut query = sqlx::query(&sql);
                    for family in chunk {
                        query = query
                            .bind(&family.family_id)
                            .bind(&family.client_id)
                            .bind(&family.subject)
                            .bind(&family.scope)
                            .bind(&family.resource)
                            .bind(&family.flow)
                            .bind(&family.origin_jti)
                            .bind(int(family.created_at_ms))
                            .bind(int(family.absolute_expires_at_ms))
                            .bind(int(family.idle_expires_at_ms.min(family.absolute_expires_at_ms)))
                            .bind(int(family.generation))
                            .bind(family.current.to_vec())
                            .bind(family.previous.map(|d| d.to_vec()))
                            .bind(family.rotated_at_ms.map(int))
                            .bind(family.salt.map(|d| d.to_vec()));
                    }
                    query.execute(&mut *conn).await?;
                }
                insert_tokens(conn, tokens).await?;
                match together {
                    true => swap_together(conn, rotations).await,
                    false => swap_in_order(conn, rotations).await,
                }
            }

            /// Token digests and their families, in as few statements as their number allows.
            async fn insert_tokens(
                conn: &mut Connection,
                tokens: &[(&TokenHash, &str)],
            ) -> Result<(), StoreError> {
                for chunk in chunks(tokens) {
                    let sql = <$store>::sql(&insert_rows("refresh_tokens (token_hash, family_id)", 2, chunk.len()))
                        .into_owned();
                    let mut query = sqlx::query(&sql);
                    for (token, family_id) in chunk {
                        query = query.bind(token.to_vec()).bind(*family_id);
                    }
                    query.execute(&mut *conn).await?;
                }
                Ok(())
            }

            /// The rotations' compare-and-swaps, one statement each, in the order of their family
            /// ids: two servers' transactions rotating the same families lock their rows in one
            /// order and never wait for each other in a circle.
            async fn swap_in_order(
                conn: &mut Connection,
                rotations: &[Rotation],
            ) -> Result<Vec<bool>, StoreError> {
                let mut order: Vec<usize> = (0..rotations.len()).collect();
                order.sort_by(|a, b| rotations[*a].family_id.cmp(&rotations[*b].family_id));
                let mut swapped = vec![false; rotations.len()];
                let idle = clamped_idle("?");
                let swap = <$store>::sql(&format!(
                    "UPDATE refresh_families SET previous = current, current = ?, salt = ?, \
                     generation = ?, rotated_at_ms = ?, idle_expires_at_ms = {idle} \
                     WHERE family_id = ? AND current = ?",
                ))
                .into_owned();
                for index in order {
                    let rotation = &rotations[index];
                    swapped[index] = sqlx::query(&swap)
                    .bind(rotation.next.to_vec())
                    .bind(rotation.salt.to_vec())
                    .bind(int(rotation.generation))
                    .bind(int(rotation.rotated_at_ms))
                    .bind(int(rotation.idle_expires_at_ms))
                    .bind(int(rotation.idle_expires_at_ms))
                    .bind(&rotation.family_id)
                    .bind(rotation.presented.to_vec())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                        == 1;
                }
                Ok(swapped)
            }

            /// The rotations' compare-and-swaps in as few statements as their number allows, each
            /// answering the families it swapped: for a store with one writer at a time, where no
            /// other transaction holds a row meanwhile. Each family at most once (else the
            /// statement would apply one of its rotations, unsaid which).
            async fn swap_together(
                conn: &mut Connection,
                rotations: &[Rotation],
            ) -> Result<Vec<bool>, StoreError> {
                let mut applied = std::collections::HashSet::new();
                for chunk in chunks(rotations) {
                    let sql = <$store>::sql(&swap_rows(chunk.len())).into_owned();
                    let mut query = sqlx::query(&sql);
                    for rotation in chunk {
                        query = query
                            .bind(&rotation.family_id)
                            .bind(rotation.presented.to_vec())
                            .bind(rotation.next.to_vec())
                            .bind(rotation.salt.to_vec())
                            .bind(int(rotation.generation))
                            .bind(int(rotation.rotated_at_ms))
                            .bind(int(rotation.idle_expires_at_ms));
                    }
                    for row in query.fetch_all(&mut *conn).await? {
                        applied.insert(row.try_get::<String, _>("family_id")?);
                    }
                }
                Ok(rotations.iter().map(|r| applied.contains(&r.family_id)).collect())
            }

            fn family_from_row(row: &$row) -> Result<FamilyRecord, StoreError> {
                let get_i = |name: &str| -> Result<i64, StoreError> {
                    row.try_get::<i64, _>(name).map_err(StoreError::from)
                };
                let get_s = |name: &str| -> Result<String, StoreError> {
                    row.try_get::<String, _>(name).map_err(StoreError::from)
                };
                Ok(FamilyRecord {
                    family_id: get_s("family_id")?,
                    client_id: get_s("client_id")?,
                    subject: get_s("subject")?,
                    scope: get_s("scope")?,
                    resource: get_s("resource")?,
                    flow: get_s("flow")?,
                    origin_jti: get_s("origin_jti")?,
                    created_at_ms: unsigned(get_i("created_at_ms")?),
                    absolute_expires_at_ms: unsigned(get_i("absolute_expires_at_ms")?),
                    idle_expires_at_ms: unsigned(get_i("idle_expires_at_ms")?),
                    generation: unsigned(get_i("generation")?),
                    current: digest(Some(row.try_get("current")?))?
                        .ok_or_else(|| StoreError("a stored family has no current token".into()))?,
                    previous: digest(row.try_get("previous")?)?,
                    rotated_at_ms: row
                        .try_get::<Option<i64>, _>("rotated_at_ms")?
                        .map(unsigned),
                    salt: digest(row.try_get("salt")?)?,
                    tokens: Vec::new(),
                })
            }

            /// Refresh-token families: each method is one transaction; a rotation is a compare-and-swap on
            /// the family's current token, so single use holds in the database itself.
            impl RefreshTokenStore for $store {
                fn write_batch<'a>(
                    &'a self,
                    families: &'a [FamilyRecord],
                    rotations: &'a [Rotation],
                ) -> BoxFuture<'a, Result<Vec<bool>, StoreError>> {
                    Box::pin(async move {
                        let _write = write_timer("refresh_families");
                        // The database records each family's current token among its tokens (a
                        // trigger, as the family is inserted and as a rotation swaps it): only a
                        // family's other tokens are written here.
                        let tokens: Vec<(&TokenHash, &str)> = families
                            .iter()
                            .flat_map(|family| {
                                let others = family.tokens.iter().filter(|t| **t != family.current);
                                others.map(|t| (t, family.family_id.as_str()))
                            })
                            .collect();
                        let together = <$store>::ONE_WRITER && distinct_families(rotations);
                        let swaps = match together {
                            true => chunks(rotations).count(),
                            false => rotations.len(),
                        };
                        let statements = chunks(families).count() + chunks(&tokens).count() + swaps;
                        let mut conn = self.connection().await?;
                        if statements <= 1 {
                            // One statement is atomic by itself: no transaction around it (two
                            // round trips fewer, its begin and its commit).
                            let written = write(&mut *conn, families, &tokens, rotations, together).await;
                            return conn.settle(written);
                        }
                        let written = async {
                            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                            let swapped = write(&mut *tx, families, &tokens, rotations, together).await?;
                            tx.commit().await?;
                            Ok(swapped)
                        }
                        .await;
                        conn.settle(written)
                    })
                }

                fn remove_families(&self, family_ids: &[String]) -> BoxFuture<'_, Result<u64, StoreError>> {
                    let family_ids = family_ids.to_vec();
                    Box::pin(async move {
                        let mut tx = self.pool.begin().await?;
                        let mut removed = 0;
                        for id in &family_ids {
                            sqlx::query(&<$store>::sql("DELETE FROM refresh_tokens WHERE family_id = ?"))
                                .bind(id)
                                .execute(&mut *tx)
                                .await?;
                            removed += sqlx::query(&<$store>::sql("DELETE FROM refresh_families WHERE family_id = ?"))
                                .bind(id)
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                        }
                        tx.commit().await?;
                        Ok(removed)
                    })
                }

                fn count_families(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
                    Box::pin(async move {
                        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refresh_families")
                            .fetch_one(&self.pool)
                            .await?;
                        Ok(unsigned(count))
                    })
                }

                fn family_clients_of(
                    &self,
                    subject: &str,
                    now_ms: u64,
                ) -> BoxFuture<'_, Result<Vec<(String, u64)>, StoreError>> {
                    let subject = subject.to_string();
                    Box::pin(async move {
                        let rows = sqlx::query(&<$store>::sql(
                            "SELECT client_id, COUNT(*) AS families FROM refresh_families \
                             WHERE subject = ? AND idle_expires_at_ms > ? AND absolute_expires_at_ms > ? \
                             GROUP BY client_id ORDER BY client_id",
                        ))
                        .bind(subject)
                        .bind(int(now_ms))
                        .bind(int(now_ms))
                        .fetch_all(&self.pool)
                        .await?;
                        rows.iter()
                            .map(|row| {
                                Ok((
                                    row.try_get::<String, _>("client_id")?,
                                    unsigned(row.try_get::<i64, _>("families")?),
                                ))
                            })
                            .collect()
                    })
                }

                fn remove_dead_families(&self, now_ms: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
                    Box::pin(async move {
                        let now = int(now_ms);
                        let mut tx = self.pool.begin().await?;
                        // Families past their idle deadline (never later than the absolute one) are
                        // dead whatever happens: drop them and their tokens.
                        let dead = "SELECT family_id FROM refresh_families WHERE idle_expires_at_ms <= ?";
                        sqlx::query(&<$store>::sql(&format!(
                            "DELETE FROM refresh_tokens WHERE family_id IN ({dead})"
                        )))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        let removed = sqlx::query(&<$store>::sql(
                            "DELETE FROM refresh_families WHERE idle_expires_at_ms <= ?",
                        ))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        tx.commit().await?;
                        Ok(removed)
                    })
                }

                fn load_live(&self, now_ms: u64) -> BoxFuture<'_, Result<Vec<FamilyRecord>, StoreError>> {
                    Box::pin(async move {
                        self.remove_dead_families(now_ms).await?;
                        let rows = sqlx::query(&<$store>::sql("SELECT * FROM refresh_families"))
                            .fetch_all(&self.pool)
                            .await?;
                        let mut families = std::collections::HashMap::new();
                        for row in &rows {
                            let family = family_from_row(row)?;
                            families.insert(family.family_id.clone(), family);
                        }
                        let tokens = sqlx::query(&<$store>::sql("SELECT token_hash, family_id FROM refresh_tokens"))
                            .fetch_all(&self.pool)
                            .await?;
                        for row in &tokens {
                            let id: String = row.try_get("family_id")?;
                            let hash = digest(Some(row.try_get("token_hash")?))?;
                            if let (Some(family), Some(hash)) = (families.get_mut(&id), hash) {
                                family.tokens.push(hash);
                            }
                        }
                        Ok(families.into_values().collect())
                    })
                }

                fn family_by_token(
                    &self,
                    hash: &TokenHash,
                ) -> BoxFuture<'_, Result<Option<FamilyRecord>, StoreError>> {
                    let hash = hash.to_vec();
                    Box::pin(async move {
                        let row = sqlx::query(&<$store>::sql(
                            "SELECT f.* FROM refresh_families f JOIN refresh_tokens t \
                             ON t.family_id = f.family_id WHERE t.token_hash = ?",
                        ))
                        .bind(hash)
                        .fetch_optional(&self.pool)
                        .await?;
                        let Some(row) = row else { return Ok(None) };
                        let mut family = family_from_row(&row)?;
                        let tokens = sqlx::query(&<$store>::sql(
                            "SELECT token_hash FROM refresh_tokens WHERE family_id = ?",
                        ))
                        .bind(&family.family_id)
                        .fetch_all(&self.pool)
                        .await?;
                        for row in &tokens {
                            if let Some(token) = digest(Some(row.try_get("token_hash")?))? {
                                family.tokens.push(token);
                            }
                        }
                        Ok(Some(family))
                    })
                }

                fn family_id_by_origin(
                    &self,
                    origin_jti: &str,
                ) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
                    let origin_jti = origin_jti.to_string();
                    Box::pin(async move {
                        let row = sqlx::query(&<$store>::sql(
                            "SELECT family_id FROM refresh_families WHERE origin_jti = ?",
                        ))
                        .bind(origin_jti)
                        .fetch_optional(&self.pool)
                        .await?;
                        row.map(|row| Ok(row.try_get::<String, _>("family_id")?))
                            .transpose()
                    })
                }

                fn family_ids_of(
                    &self,
                    subject: Option<&str>,
                    client_id: Option<&str>,
                ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
                    let (subject, client_id) = (subject.map(str::to_string), client_id.map(str::to_string));
                    Box::pin(async move {
                        // A missing filter matches every row: `? IS NULL OR column = ?`.
                        let rows = sqlx::query(&<$store>::sql(
                            "SELECT family_id FROM refresh_families \
                             WHERE (CAST(? AS TEXT) IS NULL OR subject = ?) \
                             AND (CAST(? AS TEXT) IS NULL OR client_id = ?)",
                        ))
                        .bind(subject.clone())
                        .bind(subject)
                        .bind(client_id.clone())
                        .bind(client_id)
                        .fetch_all(&self.pool)
                        .await?;
                        rows.iter()
                            .map(|row| Ok(row.try_get::<String, _>("family_id")?))
                            .collect()
                    })
                }
            }
        }
    };
}

sql_backend!(on_sqlite, SqliteStore, sqlx::sqlite::SqliteRow);
sql_backend!(on_postgres, PostgresStore, sqlx::postgres::PgRow);

mod in_memory;
