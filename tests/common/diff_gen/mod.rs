//! Case generators of the differential test, one per family. Each table starts as
//! `(1,'a'), (2,'b'), (3,'c')` with `id int primary key, v text`.
//!
//! The families are grouped by what they exercise: `statements` (simple queries, settings,
//! transactions, function calls), `extended` (Parse/Bind/Execute batches and pipelines), `copy`,
//! `endings` (Terminate, truncated messages, vanishing clients, server-side FATAL), `pseudo`
//! (pgroute's own statements) and `startup` (malformed startup packets); `sql` holds the
//! statement pickers they share.

mod copy;
mod endings;
mod extended;
mod pseudo;
mod sql;
mod startup;
mod statements;

use super::diff_case::{Rng, Step};
use copy::{copy_extended, copy_from_sql, copy_in_simple, copy_out, copy_rows};
use endings::{server_fatal, terminate, truncated, vanish};
use extended::{extended_group, pipelined_groups, reordered};
use pseudo::{pseudo, pseudo_copy};
use sql::{any_sql, bad_sql, ext, q, read_sql, setting_sql, write_sql};
use startup::startup;
use statements::{function_call, settings, simple, transaction};

/// Every family, in the order cases cycle through them.
pub const FAMILIES: &[&str] = &[
    "simple",
    "settings",
    "transaction",
    "extended",
    "pipelined_groups",
    "reordered",
    "copy_in_simple",
    "copy_out",
    "copy_extended",
    "copy_extended_pipelined",
    "sync_in_copy",
    "function_call",
    "terminate",
    "truncated",
    "vanish",
    "server_fatal",
    "pseudo",
    "pseudo_extended",
    "pseudo_copy",
    "startup",
];

/// `int4pl(int4, int4)`, a built-in whose oid is fixed (checked by the test at start).
pub const INT4PL_OID: u32 = 177;

/// The steps of one case of `family`.
pub fn generate(family: &str, rng: &mut Rng) -> Vec<Step> {
    match family {
        "simple" => simple(rng),
        "settings" => settings(rng),
        "transaction" => transaction(rng),
        "extended" => {
            let mut s = extended_group(rng, 30);
            s.push(Step::Sync);
            s
        }
        "pipelined_groups" => pipelined_groups(rng),
        "reordered" => reordered(rng),
        "copy_in_simple" => copy_in_simple(rng, false),
        "copy_out" => copy_out(rng),
        "copy_extended" => copy_extended(rng, false),
        "copy_extended_pipelined" => copy_extended(rng, true),
        "sync_in_copy" => copy_in_simple(rng, true),
        "function_call" => function_call(rng),
        "terminate" => terminate(rng),
        "truncated" => truncated(rng),
        "vanish" => vanish(rng),
        "server_fatal" => server_fatal(rng),
        "pseudo" => pseudo(rng, false),
        "pseudo_extended" => pseudo(rng, true),
        "pseudo_copy" => pseudo_copy(rng),
        "startup" => startup(rng),
        other => panic!("no generator for family {other:?}"),
    }
}
