//! What an admin command prints: a table for people, or one JSON document for programs
//! (`--json`).

use serde_json::{Value, json};

/// What a command prints.
pub enum Output {
    /// Rows under headers; JSON: an array of objects.
    Table(Vec<&'static str>, Vec<Vec<String>>),
    /// One record as `field: value` lines; JSON: an object.
    Record(Vec<(&'static str, String)>),
    /// A sentence; JSON: the value given.
    Done(String, Value),
}

impl Output {
    pub fn print(self, as_json: bool) {
        match (self, as_json) {
            (Output::Table(headers, rows), true) => {
                let objects: Vec<Value> = rows
                    .iter()
                    .map(|row| {
                        let fields = headers
                            .iter()
                            .zip(row)
                            .map(|(h, v)| (h.to_string(), json!(v)));
                        Value::Object(fields.collect())
                    })
                    .collect();
                println!("{}", Value::Array(objects));
            }
            (Output::Table(headers, rows), false) => print!("{}", table(&headers, &rows)),
            (Output::Record(fields), true) => {
                let object = fields.into_iter().map(|(k, v)| (k.to_string(), json!(v)));
                println!("{}", Value::Object(object.collect()));
            }
            (Output::Record(fields), false) => {
                for (name, value) in fields {
                    println!("{name}: {value}");
                }
            }
            (Output::Done(_, value), true) => println!("{value}"),
            (Output::Done(text, _), false) => println!("{text}"),
        }
    }
}

/// Rows in columns as wide as their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}
