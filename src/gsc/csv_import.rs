//! Parsing of the CSV files users export from Google Search Console (and Looker
//! Studio / BigQuery-style exports with similar headers) into rows, with errors
//! that point at the line, column and value at fault.

use chrono::NaiveDate;
use csv::{ReaderBuilder, StringRecord};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct CsvRow {
    pub date: Option<NaiveDate>,
    pub page: Option<String>,
    pub query: String,
    pub clicks: i64,
    pub impressions: i64,
    /// A fraction: "12.5%" in the file becomes 0.125.
    pub ctr: Option<f64>,
    pub position: Option<f64>,
}

#[derive(Debug, Clone, Error, PartialEq)]
pub enum CsvError {
    #[error("the file is empty: expected a header line such as \"Query,Clicks,Impressions\"")]
    Empty,
    #[error(
        "missing required column(s) {}; the header found was: {}",
        missing.join(", "),
        found.join(", ")
    )]
    MissingColumns {
        missing: Vec<&'static str>,
        found: Vec<String>,
    },
    #[error("line {line}, column {column}: cannot read {value:?} as {expected}")]
    BadValue {
        line: u64,
        column: String,
        value: String,
        expected: &'static str,
    },
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
}

#[derive(Clone, Copy)]
enum Field {
    Date,
    Page,
    Query,
    Clicks,
    Impressions,
    Ctr,
    Position,
}

/// Lower-case header names accepted for each field.
const ALIASES: [(Field, &[&str]); 7] = [
    (Field::Date, &["date"]),
    (Field::Page, &["page", "top pages", "landing page", "url"]),
    (
        Field::Query,
        &["query", "top queries", "queries", "search query"],
    ),
    (Field::Clicks, &["clicks"]),
    (Field::Impressions, &["impressions"]),
    (Field::Ctr, &["ctr"]),
    (Field::Position, &["position", "average position"]),
];

const REQUIRED: [(Field, &str); 3] = [
    (Field::Query, "Query"),
    (Field::Clicks, "Clicks"),
    (Field::Impressions, "Impressions"),
];

#[cfg(test)]
pub fn parse_gsc_csv(text: &str) -> Result<Vec<CsvRow>, CsvError> {
    parse_gsc_csv_interruptible(text, &mut || {})
}

/// Records between two calls of the interrupt check.
const CHECK_EVERY: usize = 4096;

/// Parses a Search Console export, calling `check_interrupts` every few thousand records, so that a cancel
/// stops the import of a large export.
pub fn parse_gsc_csv_interruptible(text: &str, check_interrupts: &mut dyn FnMut()) -> Result<Vec<CsvRow>, CsvError> {
    // csv-core strips a leading UTF-8 BOM itself (the BOM test guards that).
    // Flexible so whitespace-only lines can be skipped; field counts are checked below.
    let mut reader = ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader.headers().map_err(malformed)?.clone();
    let layout = Layout::from_header(&header)?;

    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        if index % CHECK_EVERY == 0 {
            check_interrupts();
        }
        let record = record.map_err(malformed)?;
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        let line = record.position().map_or(0, csv::Position::line);
        if record.len() != header.len() {
            return Err(CsvError::Malformed {
                line,
                message: format!(
                    "found {} fields, but the header has {}",
                    record.len(),
                    header.len()
                ),
            });
        }
        rows.push(
            Cells {
                layout: &layout,
                record: &record,
                line,
            }
            .row()?,
        );
    }
    Ok(rows)
}

fn malformed(error: csv::Error) -> CsvError {
    let line = error.position().map_or(0, csv::Position::line);
    CsvError::Malformed {
        line,
        message: error.to_string(),
    }
}

/// Which file column holds each field, and the header as written for error messages.
struct Layout {
    names: Vec<String>,
    /// Indexed by `Field as usize`; ALIASES lists every field exactly once.
    columns: [Option<usize>; ALIASES.len()],
}

impl Layout {
    fn from_header(header: &StringRecord) -> Result<Layout, CsvError> {
        let names: Vec<String> = header.iter().map(|name| name.trim().to_owned()).collect();
        if names.iter().all(String::is_empty) {
            return Err(CsvError::Empty);
        }
        let mut columns = [None; ALIASES.len()];
        for (index, name) in names.iter().enumerate() {
            let name = name.to_lowercase();
            if let Some((field, _)) = ALIASES
                .iter()
                .find(|(_, aliases)| aliases.contains(&&*name))
            {
                // The first matching column wins, e.g. "Page" before a later "URL".
                columns[*field as usize].get_or_insert(index);
            }
        }
        let missing: Vec<&'static str> = REQUIRED
            .iter()
            .filter(|(field, _)| columns[*field as usize].is_none())
            .map(|(_, display)| *display)
            .collect();
        if !missing.is_empty() {
            return Err(CsvError::MissingColumns {
                missing,
                found: names,
            });
        }
        Ok(Layout { names, columns })
    }
}

/// One data record being converted, with what is needed to report a bad cell.
struct Cells<'a> {
    layout: &'a Layout,
    record: &'a StringRecord,
    line: u64,
}

impl Cells<'_> {
    fn row(&self) -> Result<CsvRow, CsvError> {
        Ok(CsvRow {
            date: self.optional(Field::Date, "a date like 2026-11-03", parse_date)?,
            page: self.optional(Field::Page, "text", |s| Some(s.to_owned()))?,
            query: self.text(Field::Query).unwrap_or_default().to_owned(),
            clicks: self.required(Field::Clicks, "a whole number of clicks", parse_count)?,
            impressions: self.required(Field::Impressions, "a whole number", parse_count)?,
            ctr: self.optional(Field::Ctr, "a CTR like 12.5% or 0.125", parse_ctr)?,
            position: self.optional(Field::Position, "an average position", parse_number)?,
        })
    }

    /// The trimmed cell, or `None` if the column is absent.
    fn text(&self, field: Field) -> Option<&str> {
        let index = self.layout.columns[field as usize]?;
        Some(self.record.get(index).unwrap_or_default().trim())
    }

    fn optional<T>(
        &self,
        field: Field,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, CsvError> {
        match self.text(field) {
            None | Some("") => Ok(None),
            Some(value) => parse(value)
                .map(Some)
                .ok_or_else(|| self.bad(field, value, expected)),
        }
    }

    fn required<T>(
        &self,
        field: Field,
        expected: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, CsvError> {
        let value = self.text(field).unwrap_or_default();
        parse(value).ok_or_else(|| self.bad(field, value, expected))
    }

    fn bad(&self, field: Field, value: &str, expected: &'static str) -> CsvError {
        let index = self.layout.columns[field as usize].unwrap_or_default();
        CsvError::BadValue {
            line: self.line,
            column: self.layout.names[index].clone(),
            value: value.to_owned(),
            expected,
        }
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    ["%Y-%m-%d", "%b %d, %Y"]
        .iter()
        .find_map(|format| NaiveDate::parse_from_str(text, format).ok())
}

/// Counts may be written "1,234" or "12.0" but must be whole and not negative.
fn parse_count(text: &str) -> Option<i64> {
    const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer exact below it
    let value = parse_number(text)?;
    (value >= 0.0 && value.fract() == 0.0 && value < EXACT_LIMIT).then_some(value as i64)
}

fn parse_ctr(text: &str) -> Option<f64> {
    match text.trim().strip_suffix('%') {
        // Shifting the exponent in the text keeps "2.7%" exactly 0.027; dividing
        // the parsed 2.7 by 100 would give 0.027000000000000003.
        Some(percent) => finite(&format!("{}e-2", ungrouped(percent)?)),
        None => parse_number(text),
    }
}

fn parse_number(text: &str) -> Option<f64> {
    finite(&ungrouped(text)?)
}

fn finite(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|value| value.is_finite())
}

/// The trimmed number text without thousands separators, which are allowed only in
/// real groups of three so a decimal comma ("3,5") is rejected, not misread as 35.
fn ungrouped(text: &str) -> Option<String> {
    let text = text.trim();
    if text.contains(',') {
        let integer_part = text.split('.').next().unwrap_or_default();
        let mut groups = integer_part.trim_start_matches(['-', '+']).split(',');
        let leading = groups.next().unwrap_or_default();
        let is_digits = |group: &str| group.bytes().all(|b| b.is_ascii_digit());
        let grouped = (1..=3).contains(&leading.len())
            && is_digits(leading)
            && groups.all(|group| group.len() == 3 && is_digits(group))
            && !text[integer_part.len()..].contains(',');
        grouped.then(|| text.replace(',', ""))
    } else {
        Some(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn parses_an_awkward_export() {
        let text = "\u{feff}Date,Top pages,Top queries,Clicks,Impressions,CTR,Position\r\n\
            2026-11-03,https://example.com/a,\"red, blue \"\"shoes\"\"\nfor kids\",\
            \"1,234\",\" 45,678 \",2.7%,3.4\r\n\
            \r\n\
            \"Nov 4, 2026\",https://example.com/b?x=1,plain query, 0 ,12,0%, 10.25\n\
            ,,,,,,\n  \n\
            2026-11-05,,no page,1,2,,\n";
        let rows = parse_gsc_csv(text).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            CsvRow {
                date: date(2026, 11, 3),
                page: Some("https://example.com/a".into()),
                query: "red, blue \"shoes\"\nfor kids".into(),
                clicks: 1234,
                impressions: 45678,
                ctr: Some(0.027),
                position: Some(3.4),
            }
        );
        assert_eq!(rows[1].date, date(2026, 11, 4));
        assert_eq!(rows[1].page.as_deref(), Some("https://example.com/b?x=1"));
        assert_eq!((rows[1].clicks, rows[1].impressions), (0, 12));
        assert_eq!((rows[1].ctr, rows[1].position), (Some(0.0), Some(10.25)));
        assert_eq!(rows[2].page, None);
        assert_eq!((rows[2].ctr, rows[2].position), (None, None));
    }

    #[test]
    fn accepts_header_aliases_in_any_case() {
        for (page, query, position) in [
            ("Landing Page", "Search query", "Average position"),
            ("  URL ", "QUERIES", "position"),
            ("landing page", "Query", "Average Position"),
        ] {
            let text =
                format!("{page},{query},CLICKS, impressions ,ctr,{position}\n/a,q,1,10,0.1,2\n");
            let row = &parse_gsc_csv(&text).unwrap()[0];
            assert_eq!(row.page.as_deref(), Some("/a"), "{text}");
            assert_eq!(
                (row.query.as_str(), row.ctr, row.position),
                ("q", Some(0.1), Some(2.0))
            );
        }
    }

    #[test]
    fn only_required_columns_are_needed() {
        let rows = parse_gsc_csv("Top queries,Clicks,Impressions\nshoes,3,40\n").unwrap();
        let row = &rows[0];
        assert_eq!(
            (row.query.as_str(), row.clicks, row.impressions),
            ("shoes", 3, 40)
        );
        assert_eq!(
            (row.date, &row.page, row.ctr, row.position),
            (None, &None, None, None)
        );
    }

    #[test]
    fn missing_columns_are_named_with_the_header_found() {
        let err = parse_gsc_csv("Date,Page,Clicks,CTR\n2026-11-03,/a,1,10%\n").unwrap_err();
        assert_eq!(
            err,
            CsvError::MissingColumns {
                missing: vec!["Query", "Impressions"],
                found: vec!["Date".into(), "Page".into(), "Clicks".into(), "CTR".into()],
            }
        );
        let message = err.to_string();
        assert!(message.contains("Query, Impressions"), "{message}");
        assert!(message.contains("Date, Page, Clicks, CTR"), "{message}");
    }

    #[test]
    fn empty_files_are_reported() {
        assert_eq!(parse_gsc_csv(""), Err(CsvError::Empty));
        assert_eq!(parse_gsc_csv("\u{feff}\n\n"), Err(CsvError::Empty));
    }

    #[test]
    fn bad_values_name_line_column_and_value() {
        // The quoted newline makes the second record span lines 2-3.
        let text = "Query,Clicks,Impressions,Position\n\"two\nlines\",1,2,3\nq,abc,5,1\n";
        let err = parse_gsc_csv(text).unwrap_err();
        assert_eq!(
            err,
            CsvError::BadValue {
                line: 4,
                column: "Clicks".into(),
                value: "abc".into(),
                expected: "a whole number of clicks",
            }
        );
        assert_eq!(
            err.to_string(),
            "line 4, column Clicks: cannot read \"abc\" as a whole number of clicks"
        );
        let bad = |row: &str| {
            parse_gsc_csv(&format!(
                "Query,Clicks,Impressions,CTR,Position,Date\n{row}\n"
            ))
        };
        for (row, column, value) in [
            ("q,,5,,,", "Clicks", ""),
            ("q,-1,5,,,", "Clicks", "-1"),
            ("q,1.5,5,,,", "Clicks", "1.5"),
            ("q,1,\"3,5\",,,", "Impressions", "3,5"),
            ("q,1,\"1,23\",,,", "Impressions", "1,23"),
            ("q,1,5,abc%,,", "CTR", "abc%"),
            ("q,1,5,,NaN,", "Position", "NaN"),
            ("q,1,5,,,03/11/2026", "Date", "03/11/2026"),
        ] {
            let Err(CsvError::BadValue {
                line,
                column: c,
                value: v,
                ..
            }) = bad(row)
            else {
                panic!("{row}: {:?}", bad(row));
            };
            assert_eq!((line, c.as_str(), v.as_str()), (2, column, value), "{row}");
        }
    }

    #[test]
    fn wrong_field_count_is_malformed() {
        let err = parse_gsc_csv("Query,Clicks,Impressions\na,1,2\nb,1\n").unwrap_err();
        assert_eq!(
            err,
            CsvError::Malformed {
                line: 3,
                message: "found 2 fields, but the header has 3".into()
            }
        );
    }

    #[test]
    fn numbers_with_grouping_and_spaces() {
        assert_eq!(parse_number(" 1,234,567.5 "), Some(1_234_567.5));
        assert_eq!(parse_number("-1,000"), Some(-1000.0));
        assert_eq!(parse_number("1,2345"), None);
        assert_eq!(parse_number("1.234,5"), None);
        assert_eq!(parse_number(",123"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_count("12.0"), Some(12));
        assert_eq!(parse_ctr(" 12.5% "), Some(0.125));
        assert_eq!(parse_ctr("12.5 %"), Some(0.125));
        assert_eq!(parse_ctr("0.125"), Some(0.125));
        assert_eq!(parse_ctr("1,000%"), Some(10.0));
        assert_eq!(parse_ctr("%"), None);
    }

    #[test]
    fn parses_thousands_of_rows() {
        let mut text = String::from("Page,Query,Clicks,Impressions,CTR,Position\n");
        for i in 0..5000 {
            text.push_str(&format!(
                "/p{},\"q {i}, \"\"x\"\"\",{i},\"{}\",1%,{}.5\n",
                i % 7,
                i * 1000,
                i % 40 + 1
            ));
        }
        let rows = parse_gsc_csv(&text).unwrap();
        assert_eq!(rows.len(), 5000);
        assert_eq!(rows.iter().map(|r| r.clicks).sum::<i64>(), 4999 * 5000 / 2);
        assert_eq!(rows[4321].impressions, 4_321_000);
        assert_eq!(rows[4321].query, "q 4321, \"x\"");
        assert_eq!(rows[4321].position, Some(2.5));
        text.push_str("/p,q,1,x,1%,1\n");
        assert!(matches!(
            parse_gsc_csv(&text),
            Err(CsvError::BadValue { line: 5002, .. })
        ));
    }
}
