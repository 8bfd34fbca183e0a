//! Unit tests of the classifier, one file per topic, and the assertions they share.

use super::*;

#[track_caller]
fn assert_read(sql: &str) {
    let c = classify(sql);
    assert_eq!(c.target, Target::Read, "expected Read: {sql:?} -> {c:?}");
    assert!(c.parsed, "expected parsed: {sql:?} -> {c:?}");
}

#[track_caller]
fn assert_write(sql: &str) {
    let c = classify(sql);
    assert_eq!(c.target, Target::Write, "expected Write: {sql:?} -> {c:?}");
}

#[track_caller]
fn assert_all_read(sqls: &[&str]) {
    sqls.iter().for_each(|sql| assert_read(sql));
}

#[track_caller]
fn assert_all_write(sqls: &[&str]) {
    sqls.iter().for_each(|sql| assert_write(sql));
}

#[track_caller]
fn assert_txn(sql: &str, txn: Option<TxnControl>) {
    let c = classify(sql);
    assert_eq!(c.txn, txn, "{sql:?} -> {c:?}");
    assert!(c.parsed, "expected parsed: {sql:?} -> {c:?}");
}

#[track_caller]
fn assert_params(sql: &str, params: &[ParamChange]) {
    let c = classify(sql);
    assert_eq!(c.params, params, "{sql:?} -> {c:?}");
    assert!(c.parsed, "expected parsed: {sql:?} -> {c:?}");
}

#[track_caller]
fn assert_pin(sql: &str, pin: Option<PinReason>) {
    let c = classify(sql);
    assert_eq!(c.pin, pin, "{sql:?} -> {c:?}");
}

fn set(name: &str, value: &str) -> ParamChange {
    ParamChange::Set {
        name: name.to_string(),
        value: value.to_string(),
    }
}

fn reset(name: &str) -> ParamChange {
    ParamChange::Reset {
        name: name.to_string(),
    }
}

mod calls;
mod fallback;
mod params;
mod pins;
mod properties;
mod reads;
mod side_effects;
mod statements;
mod transactions;
mod writes;
