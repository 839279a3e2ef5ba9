//! Rows defined once, read by column name, written in column order, by both backends.
//!
//! Each table's row struct is declared with `row!`: its fields *are* its
//! columns (same names, same order), so the column list of every SELECT, RETURNING and
//! INSERT (`Columns::LIST`), the reader (`FromRow`) and the writers
//! (`ToRow`) all come from that one declaration. A reader asks for each field by
//! its name; the name's position in the list is found at compile time (a misspelt name
//! does not compile), so reading costs what reading by index did, and debug builds
//! (every test) check that the database returned that very column name at that
//! position. A query that selects `Columns::LIST` can therefore not read a column
//! into the wrong field, which hand-numbered `row.get(7)` calls in two backends could.
//!
//! Values are the plain column types both drivers read and write (TEXT uuids and JSON,
//! BIGINT epoch ms, DOUBLE, BOOLEAN): see [`ColumnType`]. Turning a row into a record
//! (parsing uuids, statuses and JSON) is the row struct's own `into_record`, also
//! written once.

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Postgres, Row as _};

/// A query of the PostgreSQL backend.
pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// A column value both drivers can read.
pub(crate) trait ColumnType:
    rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>
{
}

impl<T> ColumnType for T where T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres> {}

/// One result row of either driver.
pub(crate) trait RowReader {
    /// The driver's error.
    type Error;

    /// The column `name`, which the query selected at `index` (both come from the
    /// row struct's one column list; debug builds check that they agree).
    fn column<T: ColumnType>(&self, index: usize, name: &'static str) -> Result<T, Self::Error>;
}

impl RowReader for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn column<T: ColumnType>(&self, index: usize, name: &'static str) -> rusqlite::Result<T> {
        debug_assert_eq!(self.as_ref().column_name(index).ok(), Some(name), "column {index} of the query");
        self.get(index)
    }
}

impl RowReader for PgRow {
    type Error = sqlx::Error;

    fn column<T: ColumnType>(&self, index: usize, name: &'static str) -> Result<T, sqlx::Error> {
        debug_assert_eq!(self.columns().get(index).map(sqlx::Column::name), Some(name), "column {index} of the query");
        self.try_get(index)
    }
}

/// A row struct's columns, in declaration order.
pub(crate) trait Columns {
    /// The table.
    const TABLE: &'static str;
    /// The column names.
    const NAMES: &'static [&'static str];
    /// `a, b, c`: what a SELECT, RETURNING or INSERT lists.
    const LIST: &'static str;
}

/// A row struct read from a result row (every column of [`Columns::LIST`]).
pub(crate) trait FromRow: Columns + Sized {
    /// Reads each field from the column of the same name.
    fn from_row<R: RowReader>(row: &R) -> Result<Self, R::Error>;
}

/// A row struct written as a whole (an INSERT of [`Columns::LIST`]).
pub(crate) trait ToRow: Columns {
    /// Calls `f` with the values in column order, for SQLite.
    fn with_sqlite_params<T>(&self, f: impl FnOnce(&[&dyn rusqlite::ToSql]) -> T) -> T;
    /// Binds the values in column order, for PostgreSQL.
    fn bind_pg(self, query: PgQuery<'_>) -> PgQuery<'_>;
}

/// Many row structs written at once, a column at a time (`batch` in [`row!`]).
pub(crate) trait ToColumns: Columns + Sized {
    /// Binds, in column order, each column of `rows` as one PostgreSQL array: the
    /// arguments of an `unnest($1, $2, ...)` that yields the rows back. Arrays travel
    /// in the binary format, element by element: nothing to escape, nothing to parse.
    fn bind_pg_columns<'q>(rows: &[&Self], query: PgQuery<'q>) -> PgQuery<'q>;
}

/// Where `name` stands in `names`; compile-time, so a misspelt column fails the build.
pub(crate) const fn position(names: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < names.len() {
        if same(names[i].as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("no such column")
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `INSERT INTO <table> (<columns>) VALUES (<placeholders>)<suffix>` for a row struct.
pub(crate) fn insert_sql<R: Columns>(style: super::Placeholders, suffix: &str) -> String {
    let values: Vec<String> = (1..=R::NAMES.len()).map(|n| style.nth(n)).collect();
    format!("INSERT INTO {} ({}) VALUES ({}){suffix}", R::TABLE, R::LIST, values.join(", "))
}

/// Declares a row struct (fields = columns of `table`, in order) and derives its
/// column list and, as asked, its reader (`read`), its writers (`write`) and its
/// column-wise writer for many rows at once (`batch`).
///
/// ```text
/// row! {
///     /// A GPU model as stored.
///     #[derive(Clone, Debug)]
///     pub(crate) struct GpuModelRow in "gpu_models" (read, write) {
///         uuid: String,
///         vram_gb: f64,
///     }
/// }
/// ```
macro_rules! row {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident in $table:literal ($($cap:ident),+) {
            $($(#[$fmeta:meta])* $field:ident : $ty:ty),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$fmeta])* pub $field: $ty,)+
        }

        impl $crate::sql::row::Columns for $name {
            const TABLE: &'static str = $table;
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];
            const LIST: &'static str = $crate::sql::row::row!(@list $($field),+);
        }

        $crate::sql::row::row!(@caps [$($cap)+] $name [$($field)+]);
    };
    (@caps [] $name:ident [$($field:ident)+]) => {};
    (@caps [$cap:ident $($rest:ident)*] $name:ident [$($field:ident)+]) => {
        $crate::sql::row::row!(@$cap $name; $($field),+);
        $crate::sql::row::row!(@caps [$($rest)*] $name [$($field)+]);
    };
    (@list $first:ident $(, $rest:ident)*) => {
        concat!(stringify!($first) $(, ", ", stringify!($rest))*)
    };
    (@read $name:ident; $($field:ident),+) => {
        impl $crate::sql::row::FromRow for $name {
            fn from_row<R: $crate::sql::row::RowReader>(row: &R) -> Result<Self, R::Error> {
                Ok(Self {
                    $($field: row.column(
                        const {
                            $crate::sql::row::position(
                                <$name as $crate::sql::row::Columns>::NAMES,
                                stringify!($field),
                            )
                        },
                        stringify!($field),
                    )?,)+
                })
            }
        }
    };
    (@batch $name:ident; $($field:ident),+) => {
        impl $crate::sql::row::ToColumns for $name {
            fn bind_pg_columns<'q>(
                rows: &[&Self],
                query: $crate::sql::row::PgQuery<'q>,
            ) -> $crate::sql::row::PgQuery<'q> {
                query $(.bind(rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()))+
            }
        }
    };
    (@write $name:ident; $($field:ident),+) => {
        impl $crate::sql::row::ToRow for $name {
            fn with_sqlite_params<T>(&self, f: impl FnOnce(&[&dyn rusqlite::ToSql]) -> T) -> T {
                f(&[$(&self.$field),+])
            }

            fn bind_pg(self, query: $crate::sql::row::PgQuery<'_>) -> $crate::sql::row::PgQuery<'_> {
                query $(.bind(self.$field))+
            }
        }
    };
}

pub(crate) use row;

/// A row struct that decodes into a record (uuids, statuses and JSON parsed); a
/// failure is a corrupt row.
pub(crate) trait IntoRecord: FromRow {
    /// The record.
    type Record;
    /// Decodes the row.
    fn into_record(self) -> crate::StoreResult<Self::Record>;
}
