//! Locate in SQL: the objects a user owns or holds a grant on, filtered by type, algorithm,
//! length, tags and (possible) state, oldest first. Only the columns needed to settle the
//! state are read, never the key material.

use std::collections::BTreeSet;

use sqlx::Row;

use super::{Store, StoreError, corrupt};
use crate::object::{Algorithm, ObjectType, State};

/// What a Locate asks for. `impossible` is set when a filter names a value no object here can
/// have (the answer is then empty, not everything).
#[derive(Debug, Default, Clone)]
pub struct LocateFilter {
    pub object_type: Option<ObjectType>,
    /// A key format: the object types whose material can be returned in it (empty: any).
    pub format_of: Vec<ObjectType>,
    pub algorithm: Option<Algorithm>,
    pub length: Option<i32>,
    pub state: Option<State>,
    pub tags: BTreeSet<String>,
    pub uid: Option<String>,
    pub name: Option<String>,
    pub impossible: bool,
}

/// A matching object, with what it takes to settle its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub uid: String,
    pub state: State,
    pub activation_date: Option<i64>,
    pub deactivation_date: Option<i64>,
}

impl Located {
    pub fn settle(&mut self, now: i64) {
        self.state = self
            .state
            .settled(self.activation_date, self.deactivation_date, now);
    }
}

/// The SQL text and its values, numbered placeholders only.
fn query(user: &str, filter: &LocateFilter) -> (String, Vec<String>) {
    let mut values = vec![user.to_owned()];
    let next = |value: String, values: &mut Vec<String>| {
        values.push(value);
        format!("${}", values.len())
    };
    let mut sql = String::from(
        "SELECT o.uid AS uid, o.state AS state, o.activation_date AS activation_date, \
         o.deactivation_date AS deactivation_date FROM objects o \
         WHERE (o.owner = $1 OR EXISTS (SELECT 1 FROM grants g WHERE g.uid = o.uid \
         AND (g.user_id = $1 OR g.user_id = '*')))",
    );
    if let Some(object_type) = filter.object_type {
        let p = next(object_type.name().to_owned(), &mut values);
        sql.push_str(&format!(" AND o.object_type = {p}"));
    }
    if !filter.format_of.is_empty() {
        let types: Vec<String> = filter
            .format_of
            .iter()
            .map(|t| next(t.name().to_owned(), &mut values))
            .collect();
        sql.push_str(&format!(" AND o.object_type IN ({})", types.join(", ")));
    }
    if let Some(algorithm) = filter.algorithm {
        let p = next(algorithm.name().to_owned(), &mut values);
        sql.push_str(&format!(" AND o.algorithm = {p}"));
    }
    if let Some(length) = filter.length {
        // Bound as text on both backends; compared as a number.
        sql.push_str(&format!(" AND o.length_bits = {}", i64::from(length)));
    }
    if let Some(uid) = &filter.uid {
        let p = next(uid.clone(), &mut values);
        sql.push_str(&format!(" AND o.uid = {p}"));
    }
    if let Some(name) = &filter.name {
        let p = next(name.clone(), &mut values);
        sql.push_str(&format!(
            " AND o.uid IN (SELECT n.uid FROM object_names n WHERE n.name = {p})"
        ));
    }
    match filter.state {
        Some(state) => {
            let states: Vec<String> = state
                .settling_into()
                .iter()
                .map(|s| next(s.name().to_owned(), &mut values))
                .collect();
            sql.push_str(&format!(" AND o.state IN ({})", states.join(", ")));
        }
        None => sql.push_str(" AND o.state NOT IN ('Destroyed', 'Destroyed_Compromised')"),
    }
    if !filter.tags.is_empty() {
        let tags: Vec<String> = filter
            .tags
            .iter()
            .map(|t| next(t.clone(), &mut values))
            .collect();
        sql.push_str(&format!(
            " AND o.uid IN (SELECT t.uid FROM object_tags t WHERE t.tag IN ({}) \
             GROUP BY t.uid HAVING COUNT(DISTINCT t.tag) = {})",
            tags.join(", "),
            filter.tags.len()
        ));
    }
    sql.push_str(" ORDER BY o.created_at, o.uid");
    (sql, values)
}

impl Store {
    /// The objects `user` may see that match `filter`, oldest first.
    pub async fn locate(
        &self,
        user: &str,
        filter: &LocateFilter,
    ) -> Result<Vec<Located>, StoreError> {
        if filter.impossible {
            return Ok(Vec::new());
        }
        let (sql, values) = query(user, filter);
        // Only numbered placeholders and integers are generated; every text value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in values {
            q = q.bind(value);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let uid: String = row.try_get("uid")?;
                let state: String = row.try_get("state")?;
                Ok(Located {
                    state: State::parse(&state).ok_or_else(|| corrupt(&uid, "state"))?,
                    activation_date: row.try_get("activation_date")?,
                    deactivation_date: row.try_get("deactivation_date")?,
                    uid,
                })
            })
            .collect()
    }
}
