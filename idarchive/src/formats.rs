//! The file formats of `redirects import` and `redirects export`, and the admin API's JSON rows.
//!
//! - **CSV** with a header line naming the columns `old,new,kind,reason` (any order; `kind` and
//!   `reason` may be left out). `kind` is `moved`, `temporary` or `gone`; empty means `moved`
//!   when there is a target. `new` is empty for `gone`.
//! - **YAML**: a list of maps with the same keys, e.g. `- {old: a, new: b, kind: moved}`.
//! - **JSON** (admin API only): an array of objects with the same keys.
//!
//! Parsing checks each row on its own (keys, kind, identifiers) and keeps going, so one pass
//! reports every bad row with its place in the file; the rules that involve other rows and the
//! archive are checked later, by the store. Identifiers are taken exactly as written (no
//! trimming): they are the decoded identifiers, as stored.
//!
//! [`Exporter`] writes either format so that importing the output changes nothing.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::Serialize;

use crate::model::{validate_id, Edit, Kind, Record};

/// Where a row is in its input: a line (CSV, YAML when it can be told), an item number (YAML
/// and JSON lists, counted from 1), or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The line, from 1.
    pub line: Option<usize>,
    /// The item of a list, from 1.
    pub item: Option<usize>,
}

impl Location {
    /// A place known by its line only.
    pub fn line(line: usize) -> Location {
        Location {
            line: Some(line),
            item: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.item, self.line) {
            (Some(item), Some(line)) => write!(f, "item {item} (line {line})"),
            (Some(item), None) => write!(f, "item {item}"),
            (None, Some(line)) => write!(f, "line {line}"),
            (None, None) => f.write_str("input"),
        }
    }
}

/// One row of an import, checked on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Where it is in the input.
    pub location: Location,
    /// What it asks for.
    pub edit: Edit,
    /// Why (the `reason` column).
    pub reason: String,
}

/// A row that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowProblem {
    /// Where the row is.
    #[serde(skip)]
    pub location: Location,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// The rows of an input, and the problems of the rows that could not be read.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The rows that read well, in input order.
    pub rows: Vec<Row>,
    /// The rows that did not.
    pub problems: Vec<RowProblem>,
}

/// An input that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading failed.
    #[error("cannot read the input: {0}")]
    Io(#[from] io::Error),
    /// The CSV header line is not `old,new,kind,reason` (in some order), or CSV is broken.
    #[error("CSV header: {0}")]
    Header(String),
    /// The YAML does not parse, or is not a list.
    #[error("YAML{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Yaml {
        /// Where, when known.
        line: Option<usize>,
        /// The parser's words.
        message: String,
    },
    /// The JSON body is not an array.
    #[error("JSON: {0}")]
    Json(String),
}

/// An import or export file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header line.
    Csv,
    /// A YAML list of maps.
    Yaml,
}

impl Format {
    /// YAML for `.yaml` and `.yml` files, CSV otherwise.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") => {
                Format::Yaml
            }
            _ => Format::Csv,
        }
    }
}

/// Reads a whole input in the given format.
///
/// # Errors
///
/// A [`FormatError`] when the input as a whole is unreadable (I/O, CSV header, YAML or JSON
/// syntax); problems of single rows are in [`Parsed::problems`].
pub fn parse(format: Format, mut input: impl Read) -> Result<Parsed, FormatError> {
    match format {
        Format::Csv => parse_csv(input),
        Format::Yaml => {
            let mut text = String::new();
            input.read_to_string(&mut text)?;
            parse_yaml(&text)
        }
    }
}

/// The fields of one row as read, before checking.
#[derive(Default)]
struct Fields {
    old: Option<String>,
    new: Option<String>,
    kind: Option<String>,
    reason: Option<String>,
}

impl Fields {
    fn set(&mut self, key: &str, value: Option<String>) -> Result<(), String> {
        let slot = match key {
            "old" => &mut self.old,
            "new" => &mut self.new,
            "kind" => &mut self.kind,
            "reason" => &mut self.reason,
            other => {
                return Err(format!(
                    "unknown key {other:?}; the keys are old, new, kind, reason"
                ))
            }
        };
        *slot = value;
        Ok(())
    }

    /// Checks the row on its own.
    fn into_row(self, location: Location) -> Result<Row, RowProblem> {
        let problem = |message: String| RowProblem { location, message };
        let old = self
            .old
            .filter(|o| !o.is_empty())
            .ok_or_else(|| problem("old is missing".into()))?;
        validate_id(&old).map_err(|e| problem(format!("old: {e}")))?;
        let new = self.new.filter(|n| !n.is_empty());
        if let Some(new) = &new {
            validate_id(new).map_err(|e| problem(format!("new: {e}")))?;
        }
        let kind = match self
            .kind
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            Some(kind) => kind.parse::<Kind>().map_err(problem)?,
            None if new.is_some() => Kind::Moved,
            None => {
                return Err(problem(
                    "no target and no kind: give new, or kind gone to withdraw the identifier"
                        .into(),
                ))
            }
        };
        let edit = Edit::from_parts(&old, new.as_deref(), kind).map_err(problem)?;
        Ok(Row {
            location,
            edit,
            reason: self.reason.unwrap_or_default(),
        })
    }
}

/// Reads CSV with a header line.
///
/// # Errors
///
/// See [`parse`].
pub fn parse_csv(input: impl Read) -> Result<Parsed, FormatError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let headers = reader.headers().map_err(|e| csv_error(&e))?.clone();
    let mut columns = Vec::with_capacity(headers.len());
    for name in headers.iter() {
        let name = name.trim().to_ascii_lowercase();
        if !["old", "new", "kind", "reason"].contains(&name.as_str()) {
            return Err(FormatError::Header(format!(
                "unknown column {name:?}; the columns are old,new,kind,reason"
            )));
        }
        if columns.contains(&name) {
            return Err(FormatError::Header(format!(
                "column {name:?} appears twice"
            )));
        }
        columns.push(name);
    }
    if !columns.iter().any(|c| c == "old") {
        return Err(FormatError::Header(
            "no old column; the first line must name the columns, e.g. old,new,kind,reason".into(),
        ));
    }
    let mut parsed = Parsed::default();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line() as usize);
                let location = Location::line(line);
                if record.len() > columns.len() {
                    parsed.problems.push(RowProblem {
                        location,
                        message: format!(
                            "{} fields, but the header names {} columns",
                            record.len(),
                            columns.len()
                        ),
                    });
                    continue;
                }
                let mut fields = Fields::default();
                for (column, value) in columns.iter().zip(record.iter()) {
                    // The column names were checked above, so this cannot fail.
                    let _ = fields.set(column, Some(value.to_owned()));
                }
                match fields.into_row(location) {
                    Ok(row) => parsed.rows.push(row),
                    Err(problem) => parsed.problems.push(problem),
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                // A row that is not UTF-8 is a row problem; anything else ends the read.
                if let csv::ErrorKind::Utf8 { .. } = e.kind() {
                    parsed.problems.push(RowProblem {
                        location: Location::line(line),
                        message: "not valid UTF-8".into(),
                    });
                    continue;
                }
                return Err(csv_error(&e));
            }
        }
    }
    Ok(parsed)
}

fn csv_error(e: &csv::Error) -> FormatError {
    match e.kind() {
        csv::ErrorKind::Io(io) => FormatError::Io(io::Error::new(io.kind(), io.to_string())),
        _ => FormatError::Header(e.to_string()),
    }
}

/// Reads a YAML list of maps.
///
/// # Errors
///
/// See [`parse`].
pub fn parse_yaml(text: &str) -> Result<Parsed, FormatError> {
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| FormatError::Yaml {
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?;
    let items = match value {
        serde_yaml_ng::Value::Null => Vec::new(),
        serde_yaml_ng::Value::Sequence(items) => items,
        _ => {
            return Err(FormatError::Yaml {
                line: None,
                message: "expected a list of rows (- old: …)".into(),
            })
        }
    };
    let lines = item_lines(text, items.len());
    let mut parsed = Parsed::default();
    for (index, item) in items.into_iter().enumerate() {
        let location = Location {
            line: lines.as_ref().map(|l| l[index]),
            item: Some(index + 1),
        };
        let row = yaml_fields(item)
            .map_err(|message| RowProblem { location, message })
            .and_then(|fields| fields.into_row(location));
        match row {
            Ok(row) => parsed.rows.push(row),
            Err(problem) => parsed.problems.push(problem),
        }
    }
    Ok(parsed)
}

/// The line of each top-level list item, when the list is written in block style at column 0
/// (as [`Exporter`] writes it and people usually do); `None` when that cannot be told.
fn item_lines(text: &str, n_items: usize) -> Option<Vec<usize>> {
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "-" || l.starts_with("- ") || l.starts_with("-\t"))
        .map(|(i, _)| i + 1)
        .collect();
    (lines.len() == n_items).then_some(lines)
}

fn yaml_fields(item: serde_yaml_ng::Value) -> Result<Fields, String> {
    use serde_yaml_ng::Value;
    let Value::Mapping(map) = item else {
        return Err("expected a map with old, new, kind, reason".into());
    };
    let mut fields = Fields::default();
    for (key, value) in map {
        let Value::String(key) = key else {
            return Err("keys must be old, new, kind, reason".into());
        };
        let value = match value {
            Value::Null => None,
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => return Err(format!("{key}: expected a single value")),
        };
        fields.set(&key, value)?;
    }
    Ok(fields)
}

/// Reads the admin API's JSON array of rows; items are counted from 1.
///
/// # Errors
///
/// [`FormatError::Json`] when the body is not a JSON array.
pub fn parse_json(body: &[u8]) -> Result<Parsed, FormatError> {
    use serde_json::Value;
    let items: Vec<Value> =
        serde_json::from_slice(body).map_err(|e| FormatError::Json(e.to_string()))?;
    let mut parsed = Parsed::default();
    for (index, item) in items.into_iter().enumerate() {
        let location = Location {
            line: None,
            item: Some(index + 1),
        };
        let fields = match item {
            Value::Object(map) => map
                .into_iter()
                .try_fold(Fields::default(), |mut f, (k, v)| {
                    let value = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        Value::Number(n) => Some(n.to_string()),
                        _ => return Err(format!("{k}: expected a string")),
                    };
                    f.set(&k, value).map(|()| f)
                }),
            _ => Err("expected an object with old, new, kind, reason".into()),
        };
        match fields
            .map_err(|message| RowProblem { location, message })
            .and_then(|f| f.into_row(location))
        {
            Ok(row) => parsed.rows.push(row),
            Err(problem) => parsed.problems.push(problem),
        }
    }
    Ok(parsed)
}

/// One exported row, as YAML writes it.
#[derive(Serialize)]
struct ExportItem<'a> {
    old: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    new: Option<&'a str>,
    kind: Kind,
    reason: &'a str,
}

/// Writes records in an import format, one at a time.
pub struct Exporter<W: Write> {
    format: Format,
    csv: Option<csv::Writer<W>>,
    yaml: Option<W>,
}

impl<W: Write> Exporter<W> {
    /// Starts the output (the CSV header line).
    ///
    /// # Errors
    ///
    /// Writing to `output` failed.
    pub fn new(format: Format, output: W) -> io::Result<Exporter<W>> {
        let mut exporter = Exporter {
            format,
            csv: None,
            yaml: None,
        };
        match format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(output);
                writer.write_record(["old", "new", "kind", "reason"])?;
                exporter.csv = Some(writer);
            }
            Format::Yaml => exporter.yaml = Some(output),
        }
        Ok(exporter)
    }

    /// Writes one record.
    ///
    /// # Errors
    ///
    /// Writing to the output failed.
    pub fn write(&mut self, id: &str, record: &Record) -> io::Result<()> {
        let target = record.target();
        if let Some(writer) = &mut self.csv {
            writer.write_record([
                id,
                target.unwrap_or(""),
                record.kind().as_str(),
                &record.reason,
            ])?;
        }
        if let Some(output) = &mut self.yaml {
            let item = ExportItem {
                old: id,
                new: target,
                kind: record.kind(),
                reason: &record.reason,
            };
            let text = serde_yaml_ng::to_string(&[item]).map_err(io::Error::other)?;
            output.write_all(text.as_bytes())?;
        }
        Ok(())
    }

    /// Flushes the output and gives it back.
    ///
    /// # Errors
    ///
    /// Flushing failed.
    pub fn finish(self) -> io::Result<W> {
        match self.format {
            Format::Csv => {
                let writer = self.csv.expect("a CSV exporter has a CSV writer");
                writer.into_inner().map_err(|e| e.into_error())
            }
            Format::Yaml => {
                let mut output = self.yaml.expect("a YAML exporter has an output");
                output.flush()?;
                Ok(output)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Redirect;

    fn record(kind: Kind, target: Option<&str>, reason: &str) -> Record {
        Record {
            redirect: Redirect::new(kind, target).unwrap(),
            changed_at: String::new(),
            changed_by: String::new(),
            reason: reason.into(),
        }
    }

    fn moved(old: &str, new: &str, temporary: bool) -> Edit {
        Edit::Redirect {
            old: old.into(),
            new: new.into(),
            temporary,
        }
    }

    #[test]
    fn csv_rows_with_line_numbers() {
        let text = "old,new,kind,reason\n\
                    a,b,moved,merged\n\
                    c,d,temporary,\n\
                    e,,gone,withdrawn\n\
                    m,f,,\"multi\nline\"\n\
                    g,h\n";
        let parsed = parse_csv(text.as_bytes()).unwrap();
        assert_eq!(parsed.problems, vec![]);
        let rows: Vec<(Option<usize>, &Edit, &str)> = parsed
            .rows
            .iter()
            .map(|r| (r.location.line, &r.edit, r.reason.as_str()))
            .collect();
        assert_eq!(
            rows,
            vec![
                (Some(2), &moved("a", "b", false), "merged"),
                (Some(3), &moved("c", "d", true), ""),
                (Some(4), &Edit::Gone { old: "e".into() }, "withdrawn"),
                (Some(5), &moved("m", "f", false), "multi\nline"),
                (Some(7), &moved("g", "h", false), ""),
            ]
        );
    }

    #[test]
    fn csv_problems_name_their_lines() {
        let text = "kind,old,new\n\
                    moved,a,b\n\
                    sideways,c,d\n\
                    gone,e,f\n\
                    moved,g,\n\
                    ,,x\n\
                    moved,a,a,extra\n\
                    moved, spaced ,ok\n";
        let parsed = parse_csv(text.as_bytes()).unwrap();
        let problems: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        assert_eq!(parsed.rows.len(), 2, "{problems:?}");
        assert_eq!(parsed.rows[1].edit.old(), " spaced ");
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].starts_with("line 3: kind \"sideways\""));
        assert!(problems[1].starts_with("line 4: kind is gone but a target"));
        assert!(problems[2].starts_with("line 5: kind is moved but there is no target"));
        assert!(problems[3].starts_with("line 6: old is missing"));
        assert!(problems[4].starts_with("line 7: 4 fields"));
    }

    #[test]
    fn csv_headers_are_checked() {
        for (text, wanted) in [
            ("a,b\nc,d\n", "unknown column"),
            ("new,kind\nb,moved\n", "no old column"),
            ("old,old\n", "appears twice"),
        ] {
            let error = parse_csv(text.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(wanted), "{error}");
        }
        // A BOM and upper case are tolerated; an empty file has no rows.
        let parsed = parse_csv("\u{feff}OLD,New\na,b\n".as_bytes()).unwrap();
        assert_eq!(parsed.rows.len(), 1);
        assert!(parse_csv("".as_bytes()).is_err());
    }

    #[test]
    fn csv_control_characters_and_long_ids_are_row_problems() {
        let long = "x".repeat(1025);
        let text = format!("old,new\n\"a\tb\",c\nd,{long}\n");
        let parsed = parse_csv(text.as_bytes()).unwrap();
        assert_eq!(parsed.rows.len(), 0);
        assert!(parsed.problems[0].message.contains("control character"));
        assert!(parsed.problems[1].message.contains("1025 bytes"));
    }

    #[test]
    fn yaml_rows_with_items_and_lines() {
        let text = "# redirects\n\
                    - old: a\n  new: b\n  reason: merged\n\
                    - {old: c, new: d, kind: temporary}\n\
                    - old: 42\n  kind: gone\n\
                    - old: e\n  kind: gone\n  new: f\n\
                    - old: g\n  colour: red\n";
        let parsed = parse_yaml(text).unwrap();
        assert_eq!(parsed.rows.len(), 3);
        assert_eq!(parsed.rows[2].edit, Edit::Gone { old: "42".into() });
        assert_eq!(
            parsed.rows[1].location,
            Location {
                line: Some(5),
                item: Some(2)
            }
        );
        let problems: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        assert!(problems[0].starts_with("item 4 (line 8): kind is gone"));
        assert!(problems[1].starts_with("item 5 (line 11): unknown key \"colour\""));
    }

    #[test]
    fn yaml_syntax_errors_name_the_line() {
        let error = parse_yaml("- old: a\n  new: [b\n- old: c\n").unwrap_err();
        assert!(
            matches!(error, FormatError::Yaml { line: Some(_), .. }),
            "{error}"
        );
        assert!(parse_yaml("old: a\n")
            .unwrap_err()
            .to_string()
            .contains("a list"));
        assert!(parse_yaml("").unwrap().rows.is_empty());
        // Flow style: items without lines.
        let parsed = parse_yaml("[{old: a, new: b}, {old: c}]").unwrap();
        assert_eq!(parsed.problems[0].location.to_string(), "item 2");
    }

    #[test]
    fn json_rows_are_items() {
        let body = br#"[{"old": "a", "new": "b"}, {"old": "c", "kind": "gone", "reason": null},
                        {"old": "d", "new": ["x"]}, 7]"#;
        let parsed = parse_json(body).unwrap();
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.problems.len(), 2);
        assert_eq!(parsed.problems[0].location.to_string(), "item 3");
        assert!(parse_json(b"{").is_err());
    }

    #[test]
    fn exports_round_trip_through_import() {
        let records = vec![
            (
                "a,b \"quoted\"".to_string(),
                record(Kind::Moved, Some("ü/1"), "merged, twice"),
            ),
            ("42".to_string(), record(Kind::Temporary, Some("true"), "")),
            (
                "g".to_string(),
                record(Kind::Gone, None, "withdrawn\nfor good"),
            ),
            (
                "- dash: x".to_string(),
                record(Kind::Moved, Some("null"), "~"),
            ),
        ];
        for format in [Format::Csv, Format::Yaml] {
            let mut exporter = Exporter::new(format, Vec::new()).unwrap();
            for (id, r) in &records {
                exporter.write(id, r).unwrap();
            }
            let bytes = exporter.finish().unwrap();
            let parsed = parse(format, bytes.as_slice()).unwrap();
            assert_eq!(
                parsed.problems,
                vec![],
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            let back: Vec<(String, Record)> = parsed
                .rows
                .iter()
                .map(|row| {
                    let (kind, target) = match &row.edit {
                        Edit::Redirect { new, temporary, .. } => (
                            if *temporary {
                                Kind::Temporary
                            } else {
                                Kind::Moved
                            },
                            Some(new.as_str()),
                        ),
                        _ => (Kind::Gone, None),
                    };
                    (row.edit.old().to_owned(), record(kind, target, &row.reason))
                })
                .collect();
            assert_eq!(back, records, "{format:?}");
            if format == Format::Yaml {
                assert!(parsed.rows.iter().all(|r| r.location.line.is_some()));
            }
        }
    }

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(Format::from_path(Path::new("x.YML")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new("x.yaml")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new("x.csv")), Format::Csv);
        assert_eq!(Format::from_path(Path::new("-")), Format::Csv);
    }
}
