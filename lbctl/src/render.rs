//! Table output: aligned columns of objects, key/value listings of one object, and a generic
//! rendering for replies without a known shape (status, zones, pending changes). Objects are
//! read as JSON, not as model types, so read-only fields (`serverState`, `rules`, `status`) and
//! fields this client does not know yet still show.
use serde_json::Value;

/// How an object kind is addressed and shown.
#[derive(Debug)]
pub struct Kind {
    /// For messages: "frontend", "server".
    pub noun: &'static str,
    /// Path segment of its collection: `/tcp/{collection}`.
    pub collection: &'static str,
    /// Key(s) of its id, first present wins.
    pub id_keys: &'static [&'static str],
    pub columns: &'static [Column],
}

/// Kinds are statics: one is equal only to itself.
impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

#[derive(Debug)]
pub struct Column {
    pub header: &'static str,
    /// JSON key(s) the cell reads, first present wins.
    pub keys: &'static [&'static str],
    pub cell: fn(&Value) -> String,
}

impl Column {
    pub const fn plain(header: &'static str, keys: &'static [&'static str]) -> Self {
        Column { header, keys, cell }
    }

    pub const fn with(header: &'static str, keys: &'static [&'static str], cell: fn(&Value) -> String) -> Self {
        Column { header, keys, cell }
    }

    fn read<'a>(&self, object: &'a Value) -> &'a Value {
        self.keys.iter().find_map(|k| object.get(k)).unwrap_or(&Value::Null)
    }
}

/// Tasks, as `refresh` and `task` show them. IPLB names their id `id`; `taskId` is accepted too.
pub static TASK: Kind = Kind {
    noun: "task",
    collection: "task",
    id_keys: &["id", "taskId"],
    columns: &[
        Column::plain("ID", &["id", "taskId"]),
        Column::plain("ACTION", &["action"]),
        Column::plain("STATUS", &["status"]),
        Column::plain("PROGRESS", &["progress"]),
        Column::plain("ZONE", &["zones", "zone"]),
        Column::plain("MESSAGE", &["message", "error"]),
    ],
};

/// The id of an object of `kind`, as text for paths and messages.
pub fn id_of(kind: &Kind, object: &Value) -> Option<String> {
    kind.id_keys.iter().find_map(|k| match object.get(k)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    })
}

/// One text cell: `-` for null or missing, lists comma-joined, nested objects as compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) if items.iter().all(is_scalar) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

/// A route action: `farm 2`, `reject`.
pub fn action_cell(value: &Value) -> String {
    match value.get("type").and_then(Value::as_str) {
        Some(kind) => match value.get("target").filter(|t| !t.is_null()) {
            Some(target) => format!("{kind} {}", cell(target)),
            None => kind.to_string(),
        },
        None => cell(value),
    }
}

/// A route's rules: ids, or `[not ]field match pattern` for each rule object.
pub fn rules_cell(value: &Value) -> String {
    let Value::Array(rules) = value else { return cell(value) };
    if !rules.iter().any(Value::is_object) {
        return cell(value);
    }
    let one = |rule: &Value| match rule {
        Value::Object(_) => {
            let mut text = String::new();
            if rule.get("negate").and_then(Value::as_bool) == Some(true) {
                text.push_str("not ");
            }
            text.push_str(&cell(rule.get("field").unwrap_or(&Value::Null)));
            text.push(' ');
            text.push_str(&cell(rule.get("match").unwrap_or(&Value::Null)));
            if let Some(pattern) = rule.get("pattern").filter(|p| !p.is_null()) {
                text.push(' ');
                text.push_str(&cell(pattern));
            }
            text
        }
        other => cell(other),
    };
    rules.iter().map(one).collect::<Vec<_>>().join("; ")
}

/// A server's health per zone, `zone:status` for each zone, from either a list of
/// `{zone, status, ...}` or an object keyed by zone.
pub fn state_cell(value: &Value) -> String {
    let status = |v: &Value| v.get("status").map(cell);
    let parts: Option<Vec<String>> = match value {
        Value::Array(items) => items.iter().map(|item| Some(format!("{}:{}", cell(item.get("zone")?), status(item)?))).collect(),
        Value::Object(map) if map.contains_key("status") => status(value).map(|s| vec![s]),
        Value::Object(map) => map.iter().map(|(zone, v)| Some(format!("{zone}:{}", status(v)?))).collect(),
        _ => None,
    };
    match parts {
        Some(parts) if !parts.is_empty() => parts.join(","),
        _ => cell(value),
    }
}

/// Objects as an aligned table, one row each, under the kind's columns.
pub fn table(kind: &Kind, objects: &[Value]) -> String {
    let headers: Vec<String> = kind.columns.iter().map(|c| c.header.to_string()).collect();
    let rows: Vec<Vec<String>> = objects.iter().map(|object| kind.columns.iter().map(|c| (c.cell)(c.read(object))).collect()).collect();
    align(&headers, &rows)
}

/// One object as `key  value` lines: the kind's columns' keys first, then any other key.
pub fn object(kind: &Kind, object: &Value) -> String {
    let Value::Object(map) = object else { return generic(object) };
    let mut keys: Vec<&str> = Vec::new();
    for column in kind.columns {
        if let Some(key) = column.keys.iter().find(|k| map.contains_key(**k)) {
            if !keys.contains(key) {
                keys.push(key);
            }
        }
    }
    for key in map.keys() {
        if !keys.contains(&key.as_str()) {
            keys.push(key);
        }
    }
    let rows: Vec<Vec<String>> = keys.iter().map(|k| vec![k.to_string(), cell(&map[*k])]).collect();
    align_rows(&rows)
}

/// A reply of no known kind: an object as key/value lines, a list of objects as a table of
/// their keys, a list of scalars one per line.
pub fn generic(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Object(map) => align_rows(&map.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect::<Vec<_>>()),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            let mut keys: Vec<&str> = Vec::new();
            for item in items {
                for key in item.as_object().into_iter().flat_map(|m| m.keys()) {
                    if !keys.contains(&key.as_str()) {
                        keys.push(key);
                    }
                }
            }
            let headers: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
            let rows: Vec<Vec<String>> = items.iter().map(|item| keys.iter().map(|k| cell(item.get(k).unwrap_or(&Value::Null))).collect()).collect();
            align(&headers, &rows)
        }
        Value::Array(items) => items.iter().map(|v| cell(v) + "\n").collect(),
        scalar => cell(scalar),
    }
}

/// The server's JSON, pretty-printed.
pub fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn align(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut all = Vec::with_capacity(rows.len() + 1);
    all.push(headers.to_vec());
    all.extend(rows.iter().cloned());
    align_rows(&all)
}

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
fn align_rows(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, text) in row.iter().enumerate() {
            // Cells are one line each: a newline in a value would break the alignment.
            let text = text.replace('\n', " ");
            line.push_str(&text);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', widths[i] - text.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
