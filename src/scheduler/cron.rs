//! Cron schedules as pg_cron (and Vixie cron before it) reads them, as plain Rust.
//!
//! Syntax: five fields (minute hour day-of-month month day-of-week) of comma lists of `*`,
//! numbers, names (`jan`, `mon`, any case) and ranges, each with an optional `/step`; `$` in the
//! day-of-month field is the last day of the month (only as the whole field); the macros
//! `@yearly @annually @monthly @weekly @daily @midnight @hourly`; `@reboot` and `@restart` (once
//! each time the scheduler starts, never by the clock); and `'N seconds'` (1–59) for interval
//! jobs. As in pg_cron 1.6, a step may not exceed its field's largest value (`*/60` in minutes).
//!
//! Semantics are Vixie's: day-of-week 0 and 7 are Sunday; when both day fields are restricted a
//! day matches if EITHER does, and a day field that begins with `*` (so `*/2` too) counts as
//! unrestricted. Fire times are wall-clock times in a time zone: a time skipped by a DST change
//! fires once at the first minute after the gap (as Vixie cron runs them right after the
//! change), and a repeated one fires once (at its first occurrence).

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::fmt;

/// The longest DST gap of any time zone, in minutes, with room to spare (real ones are 30 or 60).
const MAX_GAP_MINUTES: i64 = 3 * 60;

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// `'N seconds'`: fires at every multiple of N seconds since the Unix epoch.
    EverySeconds(u32),
    Cron(CronFields),
    /// `@reboot` / `@restart`: runs once when the scheduler starts; the clock never fires it.
    AtStart,
}

/// The five fields as bit sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronFields {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    last_day_of_month: bool,
    months: u16,
    days_of_week: u8,
    /// The day fields begin with `*`: see the module comment.
    day_of_month_star: bool,
    day_of_week_star: bool,
}

/// Why a schedule was rejected: which field, its text, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError {
    pub schedule: String,
    pub field: &'static str,
    pub text: String,
    pub reason: String,
}

impl ScheduleError {
    /// What is wrong, field by field (pg_cron's message says only which schedule).
    pub fn detail(&self) -> String {
        // The message quotes the whole schedule already; a field of a thousand characters
        // need not be quoted again in full.
        let text = match self.text.char_indices().nth(60) {
            Some((cut, _)) => format!("{}…", &self.text[..cut]),
            None => self.text.clone(),
        };
        format!("{} field \"{text}\": {}", self.field, self.reason)
    }
}

/// pg_cron's message, word for word.
impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid schedule: {}", self.schedule)
    }
}

impl std::error::Error for ScheduleError {}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: FieldSpec = FieldSpec { name: "hour", min: 0, max: 23, names: &[] };
const DAY_OF_MONTH: FieldSpec = FieldSpec { name: "day-of-month", min: 1, max: 31, names: &[] };
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
// 7 is Sunday too; it is folded onto 0 after parsing.
const DAY_OF_WEEK: FieldSpec =
    FieldSpec { name: "day-of-week", min: 0, max: 7, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

/// Years searched for the next fire time: the Gregorian calendar's weekday/leap-year pattern
/// repeats every 28 years inside a century, so a schedule that has not fired by then never will.
const SEARCH_YEARS: i32 = 28;

impl Schedule {
    pub fn parse(schedule: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = schedule.trim();
        let error = |field: &'static str, text: &str, reason: String| ScheduleError {
            schedule: schedule.to_string(),
            field,
            text: text.to_string(),
            reason,
        };
        if let Some(seconds) = parse_seconds(trimmed) {
            let n = seconds.map_err(|reason| error("seconds", trimmed, reason))?;
            return Ok(Schedule::EverySeconds(n));
        }
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@reboot" | "@restart" => return Ok(Schedule::AtStart),
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(error(
                    "macro",
                    trimmed,
                    "unknown macro (use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @reboot or @restart)".into(),
                ))
            }
            _ => trimmed,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(error(
                "schedule",
                trimmed,
                format!("expected 5 fields (minute hour day-of-month month day-of-week), found {}", fields.len()),
            ));
        }
        let parse = |spec: &FieldSpec, text: &str, allow_last: bool| {
            parse_field(spec, text, allow_last).map_err(|reason| error(spec.name, text, reason))
        };
        let (minutes, _) = parse(&MINUTE, fields[0], false)?;
        let (hours, _) = parse(&HOUR, fields[1], false)?;
        let (days_of_month, last_day_of_month) = parse(&DAY_OF_MONTH, fields[2], true)?;
        let (months, _) = parse(&MONTH, fields[3], false)?;
        let (mut days_of_week, _) = parse(&DAY_OF_WEEK, fields[4], false)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & 0x7f;
        }
        Ok(Schedule::Cron(CronFields {
            minutes,
            hours: hours as u32,
            days_of_month: days_of_month as u32,
            last_day_of_month,
            months: months as u16,
            days_of_week: days_of_week as u8,
            day_of_month_star: fields[2].starts_with('*'),
            day_of_week_star: fields[4].starts_with('*'),
        }))
    }

    /// The first fire time strictly after `after`, with wall-clock times read in `zone`; `None`
    /// when the schedule never fires (`0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::EverySeconds(n) => {
                let n = i64::from(*n);
                let next = (after.timestamp().div_euclid(n) + 1) * n;
                DateTime::from_timestamp(next, 0)
            }
            Schedule::Cron(fields) => fields.next_after(after, zone),
            Schedule::AtStart => None,
        }
    }
}

/// `Some` when the text has the `'N seconds'` form (`'5 second'`, `'30 SECONDS'`, `'5seconds'`):
/// the number, or why it is out of range.
fn parse_seconds(text: &str) -> Option<Result<u32, String>> {
    let digits = text.find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+')).unwrap_or(text.len());
    let (number, unit) = (&text[..digits], text[digits..].trim());
    if number.is_empty() || !matches!(unit.to_ascii_lowercase().as_str(), "second" | "seconds") {
        return None;
    }
    Some(match number.parse::<u32>() {
        Ok(n @ 1..=59) => Ok(n),
        _ => Err("the interval must be between 1 and 59 seconds".to_string()),
    })
}

/// One field as a bit set (bit i set when value i matches), and whether `$` appeared.
fn parse_field(spec: &FieldSpec, text: &str, allow_last: bool) -> Result<(u64, bool), String> {
    if text == "$" && allow_last {
        return Ok((0, true));
    }
    let mut bits = 0u64;
    for item in text.split(',') {
        if item == "$" && allow_last {
            return Err("$ (last day of the month) must be the whole day-of-month field".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = step.parse::<u32>().map_err(|_| format!("step \"{step}\" is not a number"))?;
                if step == 0 {
                    return Err("a step must be at least 1".into());
                }
                if step > spec.max {
                    return Err(format!("step {step} is larger than the field's largest value ({})", spec.max));
                }
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range.starts_with('-') {
            return Err(format!("\"{range}\" is not a number"));
        } else if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (low, high) = (value(spec, a)?, value(spec, b)?);
            if low > high {
                return Err(format!("range {a}-{b} runs backwards"));
            }
            (low, high)
        } else {
            if step.is_some() {
                return Err(format!("a step needs a range or * before it, not \"{range}\""));
            }
            let v = value(spec, range)?;
            (v, v)
        };
        for v in (low..=high).step_by(step.unwrap_or(1) as usize) {
            bits |= 1 << v;
        }
    }
    Ok((bits, false))
}

fn value(spec: &FieldSpec, text: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err("empty value".into());
    }
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(spec.min + i as u32);
    }
    match text.parse::<u32>() {
        Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is out of range {}-{}", spec.min, spec.max)),
        Err(_) if text == "$" => Err("$ (last day of the month) is only allowed in the day-of-month field".into()),
        Err(_) => Err(format!("\"{text}\" is not a number{}", if spec.names.is_empty() { "" } else { " or a name" })),
    }
}

/// The lowest set bit at or above `from`.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let masked = bits & (!0u64 << from);
    (masked != 0).then(|| masked.trailing_zeros())
}

fn last_day_of_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    NaiveDate::from_ymd_opt(next_year, next_month, 1).unwrap().pred_opt().unwrap().day()
}

impl CronFields {
    fn day_matches(&self, date: NaiveDate) -> bool {
        let in_month = self.days_of_month & (1 << date.day()) != 0
            || (self.last_day_of_month && date.day() == last_day_of_month(date.year(), date.month()));
        let in_week = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.day_of_month_star || self.day_of_week_star {
            in_month && in_week
        } else {
            in_month || in_week
        }
    }

    /// The first matching wall-clock minute at or after `from`, searching whole months and days
    /// and jumping within a day with bit operations.
    fn next_local(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut date = from.date();
        let mut time = Some((from.hour(), from.minute()));
        let end_year = date.year() + SEARCH_YEARS;
        while date.year() <= end_year {
            if self.months & (1 << date.month()) == 0 {
                // Skip to the first day of the next month.
                let (y, m) = if date.month() == 12 { (date.year() + 1, 1) } else { (date.year(), date.month() + 1) };
                date = NaiveDate::from_ymd_opt(y, m, 1)?;
                time = None;
                continue;
            }
            if self.day_matches(date) {
                let (hour_from, minute_from) = time.unwrap_or((0, 0));
                let mut hour = next_bit(u64::from(self.hours), hour_from);
                let mut minute_start = minute_from;
                while let Some(h) = hour {
                    if h != hour_from {
                        minute_start = 0;
                    }
                    if let Some(m) = next_bit(self.minutes, minute_start) {
                        return Some(date.and_time(NaiveTime::from_hms_opt(h, m, 0)?));
                    }
                    hour = next_bit(u64::from(self.hours), h + 1);
                }
            }
            date = date.succ_opt()?;
            time = None;
        }
        None
    }

    fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&zone).naive_local();
        let mut from = local.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        loop {
            let candidate = self.next_local(from)?;
            // Earliest mapping: a repeated wall-clock time fires once. A skipped one fires at the
            // first minute that exists after the gap; every time in the gap maps there, so it
            // fires once however many of them the schedule names.
            let fire = (0..=MAX_GAP_MINUTES)
                .find_map(|m| zone.from_local_datetime(&(candidate + Duration::minutes(m))).earliest())?
                .with_timezone(&Utc);
            if fire > after {
                return Some(fire);
            }
            from = candidate + Duration::minutes(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn next_n(schedule: &str, after: &str, n: usize, zone: Tz) -> Vec<String> {
        let s = Schedule::parse(schedule).unwrap();
        let mut t = utc(after);
        (0..n)
            .map(|_| {
                t = s.next_after(t, zone).unwrap_or_else(|| panic!("{schedule} never fires after {t}"));
                t.to_rfc3339()
            })
            .collect()
    }

    fn next_utc(schedule: &str, after: &str, n: usize) -> Vec<String> {
        next_n(schedule, after, n, Tz::UTC)
    }

    fn rejects(schedule: &str) -> ScheduleError {
        Schedule::parse(schedule).expect_err(schedule)
    }

    #[test]
    fn every_minute_fires_strictly_after_the_given_time() {
        assert_eq!(
            next_utc("* * * * *", "2026-01-01T10:05:00Z", 2),
            ["2026-01-01T10:06:00+00:00", "2026-01-01T10:07:00+00:00"]
        );
        assert_eq!(next_utc("* * * * *", "2026-01-01T10:05:59.999Z", 1), ["2026-01-01T10:06:00+00:00"]);
    }

    #[test]
    fn lists_ranges_and_steps() {
        assert_eq!(
            next_utc("*/15 9-10 * * *", "2026-03-01T08:59:00Z", 9)[..],
            [
                "2026-03-01T09:00:00+00:00", "2026-03-01T09:15:00+00:00", "2026-03-01T09:30:00+00:00",
                "2026-03-01T09:45:00+00:00", "2026-03-01T10:00:00+00:00", "2026-03-01T10:15:00+00:00",
                "2026-03-01T10:30:00+00:00", "2026-03-01T10:45:00+00:00", "2026-03-02T09:00:00+00:00",
            ]
        );
        assert_eq!(
            next_utc("5,10-20/5 0 * * *", "2026-03-01T00:00:00Z", 4),
            ["2026-03-01T00:05:00+00:00", "2026-03-01T00:10:00+00:00", "2026-03-01T00:15:00+00:00", "2026-03-01T00:20:00+00:00"]
        );
    }

    #[test]
    fn names_in_any_case_and_sunday_as_0_or_7() {
        // 2026-11-23 is a Monday.
        assert_eq!(next_utc("0 12 * * SUN", "2026-11-23T00:00:00Z", 1), ["2026-11-29T12:00:00+00:00"]);
        assert_eq!(next_utc("0 12 * * 7", "2026-11-23T00:00:00Z", 1), ["2026-11-29T12:00:00+00:00"]);
        assert_eq!(next_utc("0 12 * * 0", "2026-11-23T00:00:00Z", 1), ["2026-11-29T12:00:00+00:00"]);
        assert_eq!(next_utc("0 12 * * Mon-Fri", "2026-11-27T13:00:00Z", 1), ["2026-11-30T12:00:00+00:00"]);
        assert_eq!(next_utc("0 0 1 jan,Jul *", "2026-02-01T00:00:00Z", 2), ["2026-07-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]);
        assert_eq!(next_utc("0 0 * * 5-7", "2026-11-23T00:00:00Z", 3), ["2026-11-27T00:00:00+00:00", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00"]);
    }

    #[test]
    fn restricted_day_fields_match_either_day() {
        // The 13th OR any Friday (Vixie), not Friday the 13th.
        assert_eq!(
            next_utc("0 0 13 * 5", "2026-11-01T00:00:00Z", 4),
            ["2026-11-06T00:00:00+00:00", "2026-11-13T00:00:00+00:00", "2026-11-20T00:00:00+00:00", "2026-11-27T00:00:00+00:00"]
        );
        assert_eq!(next_utc("0 0 12 * 5", "2026-11-07T00:00:00Z", 2), ["2026-11-12T00:00:00+00:00", "2026-11-13T00:00:00+00:00"]);
    }

    #[test]
    fn a_day_field_beginning_with_star_is_unrestricted() {
        // "*/2" in day-of-month counts as *, so only the day-of-week restricts: odd days that are Mondays.
        assert_eq!(next_utc("0 0 */2 * 1", "2026-11-01T00:00:00Z", 2), ["2026-11-09T00:00:00+00:00", "2026-11-23T00:00:00+00:00"]);
        // With day-of-week "*", only odd days of the month.
        assert_eq!(next_utc("0 0 */2 * *", "2026-11-28T00:00:00Z", 2), ["2026-11-29T00:00:00+00:00", "2026-12-01T00:00:00+00:00"]);
    }

    #[test]
    fn last_day_of_month_with_dollar() {
        assert_eq!(
            next_utc("0 23 $ * *", "2027-12-15T00:00:00Z", 4),
            ["2027-12-31T23:00:00+00:00", "2028-01-31T23:00:00+00:00", "2028-02-29T23:00:00+00:00", "2028-03-31T23:00:00+00:00"]
        );
        assert_eq!(next_utc("0 0 $ 2 *", "2026-01-01T00:00:00Z", 1), ["2026-02-28T00:00:00+00:00"]);
        // As in pg_cron, `$` is the whole field or nothing.
        assert_eq!(rejects("0 0 15,$ * *").reason, "$ (last day of the month) must be the whole day-of-month field");
        assert_eq!(rejects("0 11 $foo * *").field, "day-of-month");
    }

    #[test]
    fn leap_days_and_month_ends() {
        assert_eq!(next_utc("0 0 29 2 *", "2026-03-01T00:00:00Z", 2), ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]);
        assert_eq!(next_utc("0 0 31 * *", "2026-04-01T00:00:00Z", 2), ["2026-05-31T00:00:00+00:00", "2026-07-31T00:00:00+00:00"]);
        assert_eq!(next_utc("59 23 31 12 *", "2026-12-31T23:59:00Z", 1), ["2027-12-31T23:59:00+00:00"]);
    }

    #[test]
    fn schedules_that_never_fire_terminate() {
        for never in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 *"] {
            let s = Schedule::parse(never).unwrap();
            let started = std::time::Instant::now();
            assert_eq!(s.next_after(utc("2026-01-01T00:00:00Z"), Tz::UTC), None, "{never}");
            assert!(started.elapsed() < std::time::Duration::from_secs(1), "{never} took {:?}", started.elapsed());
        }
    }

    #[test]
    fn macros() {
        let after = "2026-11-23T10:30:00Z";
        assert_eq!(next_utc("@hourly", after, 1), ["2026-11-23T11:00:00+00:00"]);
        assert_eq!(next_utc("@daily", after, 1), ["2026-11-24T00:00:00+00:00"]);
        assert_eq!(next_utc("@midnight", after, 1), ["2026-11-24T00:00:00+00:00"]);
        assert_eq!(next_utc("@weekly", after, 1), ["2026-11-29T00:00:00+00:00"]);
        assert_eq!(next_utc("@monthly", after, 1), ["2026-12-01T00:00:00+00:00"]);
        assert_eq!(next_utc("@yearly", after, 1), ["2027-01-01T00:00:00+00:00"]);
        assert_eq!(next_utc("@ANNUALLY", after, 1), ["2027-01-01T00:00:00+00:00"]);
        // Runs when the scheduler starts, never by the clock.
        for at_start in ["@reboot", "@restart", "@RESTART"] {
            assert_eq!(Schedule::parse(at_start).unwrap(), Schedule::AtStart);
            assert_eq!(Schedule::parse(at_start).unwrap().next_after(utc(after), Tz::UTC), None);
        }
        assert_eq!(rejects("@restar").field, "macro");
    }

    #[test]
    fn seconds_intervals() {
        assert_eq!(Schedule::parse("10 seconds").unwrap(), Schedule::EverySeconds(10));
        assert_eq!(Schedule::parse(" 1 second ").unwrap(), Schedule::EverySeconds(1));
        // pg_cron's forms: any case, spaces around, none between.
        assert_eq!(Schedule::parse(" 30 sEcOnDs ").unwrap(), Schedule::EverySeconds(30));
        assert_eq!(Schedule::parse("17  seconds ").unwrap(), Schedule::EverySeconds(17));
        assert_eq!(Schedule::parse("5seconds").unwrap(), Schedule::EverySeconds(5));
        for bad in ["5 secondc", "50 seconds c", "-1 seconds", "10000000000 seconds", "5 sec", "1.5 seconds", " seconds"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            next_utc("20 seconds", "2026-11-23T10:00:05Z", 3),
            ["2026-11-23T10:00:20+00:00", "2026-11-23T10:00:40+00:00", "2026-11-23T10:01:00+00:00"]
        );
        assert_eq!(next_utc("5 seconds", "2026-11-23T10:00:05Z", 1), ["2026-11-23T10:00:10+00:00"]);
        assert_eq!(rejects("0 seconds").field, "seconds");
        assert_eq!(rejects("60 seconds").reason, "the interval must be between 1 and 59 seconds");
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
        assert_eq!(next_n("0 9 * * *", "2026-01-10T00:00:00Z", 1, ny), ["2026-01-10T14:00:00+00:00"]);
        assert_eq!(next_n("0 9 * * *", "2026-07-10T00:00:00Z", 1, ny), ["2026-07-10T13:00:00+00:00"]);
        // 2026-03-08 02:30 does not exist in New York: it fires once at 03:00 EDT, when the gap ends.
        assert_eq!(
            next_n("30 2 * * *", "2026-03-07T12:00:00Z", 3, ny),
            ["2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00", "2026-03-10T06:30:00+00:00"]
        );
        // Every minute of the gap (02:00-02:59) maps to 03:00, as 03:00 itself does: one run,
        // then on from 03:01.
        assert_eq!(
            next_n("* 2-3 8 3 *", "2026-03-08T06:58:00Z", 3, ny),
            ["2026-03-08T07:00:00+00:00", "2026-03-08T07:01:00+00:00", "2026-03-08T07:02:00+00:00"]
        );
        // The same schedule in Berlin, whose clocks go forward three weeks later (02:00 to 03:00).
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(next_n("30 2 * * *", "2026-03-28T12:00:00Z", 2, berlin), ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]);
        // 2026-11-01 01:30 happens twice in New York: it fires once, at the first.
        assert_eq!(next_n("30 1 * * *", "2026-10-31T12:00:00Z", 2, ny), ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]);
    }

    #[test]
    fn bad_schedules_name_the_field_and_the_text() {
        let e = rejects("61 * * * *");
        assert_eq!((e.field, e.text.as_str(), e.reason.as_str()), ("minute", "61", "61 is out of range 0-59"));
        assert_eq!(e.to_string(), "invalid schedule: 61 * * * *");
        assert_eq!(e.detail(), "minute field \"61\": 61 is out of range 0-59");
        assert_eq!(rejects("* 24 * * *").field, "hour");
        assert_eq!(rejects("* * 0 * *").field, "day-of-month");
        assert_eq!(rejects("* * 32 * *").field, "day-of-month");
        assert_eq!(rejects("* * * 13 *").field, "month");
        assert_eq!(rejects("* * * foo *").reason, "\"foo\" is not a number or a name");
        assert_eq!(rejects("* * * * 8").field, "day-of-week");
        assert_eq!(rejects("* * * * $").reason, "$ (last day of the month) is only allowed in the day-of-month field");
        assert_eq!(rejects("*/0 * * * *").reason, "a step must be at least 1");
        assert_eq!(rejects("5/10 * * * *").reason, "a step needs a range or * before it, not \"5\"");
        assert_eq!(rejects("10-5 * * * *").reason, "range 10-5 runs backwards");
        assert_eq!(rejects("1,,2 * * * *").reason, "empty value");
        assert_eq!(rejects("* * * *").field, "schedule");
        assert_eq!(rejects("* * * * * *").reason, "expected 5 fields (minute hour day-of-month month day-of-week), found 6");
        assert_eq!(rejects("").field, "schedule");
        assert_eq!(rejects("@every").field, "macro");
        // pg_cron 1.6: no step beyond the field's largest value.
        assert_eq!(rejects("*/60 10 * * *").reason, "step 60 is larger than the field's largest value (59)");
        assert_eq!(rejects("0 */24 * * *").field, "hour");
        assert_eq!(rejects("* * */32 * *").field, "day-of-month");
        assert_eq!(rejects("* * * */13 *").field, "month");
        assert_eq!(rejects("* * * * */8").field, "day-of-week");
        assert_eq!(rejects("*/5000000000 10 * * *").field, "minute");
        for fine in ["*/59 * * * *", "0 */23 * * *", "* * */31 * *", "* * * */12 *", "* * * * */7"] {
            assert!(Schedule::parse(fine).is_ok(), "{fine}");
        }
        assert_eq!(rejects("*/x * * * *").reason, "step \"x\" is not a number");
    }
}
