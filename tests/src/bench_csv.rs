//! The results file of `make bench`: every benchmark appends its rows to one CSV,
//! `benchmark,case,unit,better,pageperfect,baseline_name,baseline,ratio`, where `better` is `lower`
//! or `higher` and `ratio` is how many times better pageperfect is than the baseline (> 1: ahead).
//! Fields hold no commas, so a line splits on them; scripts/bench.sh writes the same format.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

pub const HEADER: &str = "benchmark,case,unit,better,pageperfect,baseline_name,baseline,ratio";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Better {
    Lower,
    Higher,
}

impl Better {
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub benchmark: String,
    pub case: String,
    pub unit: String,
    pub better: Better,
    pub pageperfect: f64,
    pub baseline_name: String,
    pub baseline: f64,
    pub ratio: f64,
}

impl Row {
    /// A row whose ratio is computed from the two values.
    pub fn new(benchmark: &str, case: &str, unit: &str, better: Better, pageperfect: f64, baseline_name: &str, baseline: f64) -> Row {
        let ratio = match better {
            Better::Lower => baseline / pageperfect,
            Better::Higher => pageperfect / baseline,
        };
        Row {
            benchmark: benchmark.to_string(),
            case: case.to_string(),
            unit: unit.to_string(),
            better,
            pageperfect,
            baseline_name: baseline_name.to_string(),
            baseline,
            ratio,
        }
    }

    fn parse(line: &str) -> Result<Row, String> {
        let fields: Vec<&str> = line.split(',').collect();
        let [benchmark, case, unit, better, pageperfect, baseline_name, baseline, ratio] = fields[..] else {
            return Err(format!("{} fields instead of 8", fields.len()));
        };
        let number = |name: &str, value: &str| value.parse::<f64>().map_err(|_| format!("{name} is not a number: {value:?}"));
        let better = match better {
            "lower" => Better::Lower,
            "higher" => Better::Higher,
            other => return Err(format!("better must be lower or higher, not {other:?}")),
        };
        Ok(Row {
            benchmark: benchmark.to_string(),
            case: case.to_string(),
            unit: unit.to_string(),
            better,
            pageperfect: number("pageperfect", pageperfect)?,
            baseline_name: baseline_name.to_string(),
            baseline: number("baseline", baseline)?,
            ratio: number("ratio", ratio)?,
        })
    }
}

/// The CSV line, without its line break.
impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{},{},{},{},{:.2},{},{:.2},{:.2}",
            self.benchmark,
            self.case,
            self.unit,
            self.better.as_str(),
            self.pageperfect,
            self.baseline_name,
            self.baseline,
            self.ratio
        )
    }
}

/// Appends `rows` to the file at `path`, first writing the header if the file is new or empty.
/// A text field with a comma is refused (InvalidInput): it would split into two fields.
pub fn append(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    for row in rows {
        if let Some(field) = [&row.benchmark, &row.case, &row.unit, &row.baseline_name].into_iter().find(|f| f.contains(',')) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("a field holds a comma: {field:?}")));
        }
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut text = String::new();
    if file.metadata()?.len() == 0 {
        text.push_str(HEADER);
        text.push('\n');
    }
    for row in rows {
        text.push_str(&format!("{row}\n"));
    }
    file.write_all(text.as_bytes())
}

/// The rows of the file at `path`, which must start with the header; blank lines are skipped.
pub fn read(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim_end() == HEADER => {}
        _ => return Err(format!("the first line must be the header {HEADER}")),
    }
    lines
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| Row::parse(line.trim_end()).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_above_one_when_pageperfect_is_ahead() {
        assert_eq!(Row::new("dbscan", "n=10", "ms", Better::Lower, 2.0, "naive", 10.0).ratio, 5.0);
        assert_eq!(Row::new("queue", "batch 1", "msg/s", Better::Higher, 300.0, "SKIP LOCKED", 200.0).ratio, 1.5);
    }

    #[test]
    fn rows_appended_to_a_new_file_read_back() {
        let path = std::env::temp_dir().join(format!("bench-csv-{}.csv", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let first = Row::new("dbscan", "n=2000 x 384", "ms", Better::Lower, 45.991, "naive O(n^2)", 1616.5);
        let second = Row::new("queue", "batch 10 x 4 clients", "msg/s", Better::Higher, 12000.0, "SKIP LOCKED", 8000.0);
        append(&path, std::slice::from_ref(&first)).unwrap();
        append(&path, std::slice::from_ref(&second)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("{HEADER}\ndbscan,n=2000 x 384,ms,lower,45.99,naive O(n^2),1616.50,35.15\nqueue,batch 10 x 4 clients,msg/s,higher,12000.00,SKIP LOCKED,8000.00,1.50\n")
        );
        let read_back = read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read_back.len(), 2);
        assert_eq!((read_back[0].pageperfect, read_back[0].ratio), (45.99, 35.15));
        assert_eq!(read_back[1], second);
    }

    #[test]
    fn a_field_with_a_comma_is_refused() {
        let path = std::env::temp_dir().join(format!("bench-csv-comma-{}.csv", std::process::id()));
        let row = Row::new("dbscan", "n=10", "ms", Better::Lower, 1.0, "brute, 1 thread", 2.0);
        let error = append(&path, &[row]).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert!(!path.exists(), "nothing is written");
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let path = std::env::temp_dir().join(format!("bench-csv-bad-{}.csv", std::process::id()));
        std::fs::write(&path, format!("{HEADER}\nq,c,ms,lower,1,b,2,2.00\n\nq,c,ms,sideways,1,b,2,2.00\n")).unwrap();
        let error = read(&path).unwrap_err();
        std::fs::write(&path, "q,c,ms,lower,1,b,2,2.00\n").unwrap();
        let no_header = read(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(error, "line 4: better must be lower or higher, not \"sideways\"");
        assert!(no_header.starts_with("the first line must be the header"), "{no_header}");
    }
}
