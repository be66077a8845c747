//! Printing: aligned tables for people, JSON (`--json`) for scripts.

use serde::Serialize;

use crate::scanner::ScanReport;

pub fn json<T: Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    );
}

pub fn done(as_json: bool, msg: &str) {
    if as_json {
        json(&serde_json::json!({"ok": true, "message": msg}));
    } else {
        println!("{msg}");
    }
}

/// Prints rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// Key/value lines for one object (its JSON fields, in order).
pub fn record<T: Serialize>(v: &T) {
    let value = serde_json::to_value(v).unwrap_or_default();
    if let serde_json::Value::Object(map) = value {
        let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, v) in map {
            let shown = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            };
            println!("{k:<width$}  {shown}");
        }
    }
}

pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn scan_report(as_json: bool, r: &ScanReport) {
    if as_json {
        json(r);
    } else {
        println!(
            "confirmed {}  underpaid {}  overpaid {}  expired {}  reorged {}",
            r.confirmed, r.underpaid, r.overpaid, r.expired, r.reorged
        );
        for f in &r.node_errors {
            println!(
                "chain {}: node failing, nothing moved ({})",
                f.chain, f.error
            );
        }
    }
}
