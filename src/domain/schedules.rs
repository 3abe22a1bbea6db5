//! Deployment schedules: validated on the way in (exactly one of cron with a timezone, a fixed
//! interval with an anchor, or an RRULE), stored as plain columns, and expanded into occurrence
//! times by [`next_occurrences`] — a pure function the scheduler uses.
use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use entity::deployments;
use rrule::RRuleSet;
use sea_orm::Set;

use crate::error::{AppError, AppResult};

pub const CRON_MAX: usize = 200;
pub const RRULE_MAX: usize = 2000;
/// RRULE expansion walks from DTSTART; this bounds the work one call may do.
const RRULE_MAX_STEPS: usize = 200_000;
/// Cron searches that find nothing for this many candidates stop (e.g. `0 0 30 2 *`).
const CRON_MAX_STEPS: usize = 10_000;

/// A schedule as a client sends it: every part optional, checked by [`validate`].
#[derive(Debug, Clone, Default)]
pub struct ScheduleInput {
    pub cron: Option<String>,
    pub interval: Option<i64>,
    pub anchor_date: Option<DateTime<Utc>>,
    pub rrule: Option<String>,
    pub timezone: Option<String>,
}

/// A valid schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// A 5-field cron expression evaluated in `timezone`'s wall-clock time.
    Cron { expression: String, timezone: Tz },
    /// Every `seconds`, counted from `anchor` (absolute time; `timezone` is informational).
    Interval {
        seconds: i64,
        anchor: DateTime<Utc>,
        timezone: Tz,
    },
    /// An iCalendar recurrence, always stored with its DTSTART.
    RRule { rule: String, timezone: Tz },
}

impl Schedule {
    pub fn timezone(&self) -> Tz {
        match self {
            Schedule::Cron { timezone, .. }
            | Schedule::Interval { timezone, .. }
            | Schedule::RRule { timezone, .. } => *timezone,
        }
    }

    pub fn cron(&self) -> Option<&str> {
        match self {
            Schedule::Cron { expression, .. } => Some(expression),
            _ => None,
        }
    }

    pub fn interval_seconds(&self) -> Option<i64> {
        match self {
            Schedule::Interval { seconds, .. } => Some(*seconds),
            _ => None,
        }
    }

    pub fn anchor_date(&self) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval { anchor, .. } => Some(*anchor),
            _ => None,
        }
    }

    pub fn rrule(&self) -> Option<&str> {
        match self {
            Schedule::RRule { rule, .. } => Some(rule),
            _ => None,
        }
    }

    /// Reads the schedule columns of a deployment (`None` when it has no schedule).
    pub fn from_model(model: &deployments::Model) -> AppResult<Option<Schedule>> {
        let timezone = match model.schedule_timezone.as_deref() {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| {
                AppError::internal(format!(
                    "deployment {} has an unknown timezone {name:?}",
                    model.id
                ))
            })?,
        };
        let stored = (
            &model.schedule_cron,
            model.schedule_interval_seconds,
            &model.schedule_rrule,
        );
        Ok(match stored {
            (Some(expression), None, None) => Some(Schedule::Cron {
                expression: expression.clone(),
                timezone,
            }),
            (None, Some(seconds), None) => Some(Schedule::Interval {
                seconds,
                anchor: model.schedule_anchor_date.unwrap_or(model.created_at),
                timezone,
            }),
            (None, None, Some(rule)) => Some(Schedule::RRule {
                rule: rule.clone(),
                timezone,
            }),
            (None, None, None) => None,
            _ => {
                return Err(AppError::internal(format!(
                    "deployment {} has more than one schedule kind stored",
                    model.id
                )))
            }
        })
    }

    /// Writes this schedule (or no schedule) into a deployment's columns.
    pub fn store(schedule: Option<&Schedule>, active: &mut deployments::ActiveModel) {
        active.schedule_cron = Set(schedule.and_then(|s| s.cron().map(str::to_owned)));
        active.schedule_interval_seconds = Set(schedule.and_then(Schedule::interval_seconds));
        active.schedule_anchor_date = Set(schedule.and_then(Schedule::anchor_date));
        active.schedule_rrule = Set(schedule.and_then(|s| s.rrule().map(str::to_owned)));
        active.schedule_timezone = Set(schedule.map(|s| s.timezone().name().to_owned()));
    }
}

/// Checks a schedule as sent by a client. `field` prefixes the field names in errors
/// (`schedule` → `schedule.cron`, `schedule.timezone`, …); `now` is the default anchor.
pub fn validate(field: &str, input: ScheduleInput, now: DateTime<Utc>) -> AppResult<Schedule> {
    let sub = |name: &str| format!("{field}.{name}");
    let cron = input.cron.as_deref().map(str::trim);
    let rrule = input.rrule.as_deref().map(str::trim);
    let kinds = [cron.is_some(), input.interval.is_some(), rrule.is_some()]
        .iter()
        .filter(|given| **given)
        .count();
    if kinds != 1 {
        return Err(AppError::bad_input(
            field,
            "give exactly one of cron, interval or rrule",
        ));
    }
    let timezone = match input.timezone.as_deref().map(str::trim) {
        None => None,
        Some(name) => Some(
            Tz::from_str(name)
                .map_err(|_| AppError::bad_input(&sub("timezone"), "unknown IANA time zone"))?,
        ),
    };
    if let Some(expression) = cron {
        if input.anchor_date.is_some() {
            return Err(AppError::bad_input(
                &sub("anchorDate"),
                "only an interval schedule takes an anchor date",
            ));
        }
        return Ok(Schedule::Cron {
            expression: parse_cron(&sub("cron"), expression)?.0,
            timezone: timezone.unwrap_or(Tz::UTC),
        });
    }
    if let Some(seconds) = input.interval {
        if seconds < 1 {
            return Err(AppError::bad_input(
                &sub("interval"),
                "must be at least 1 second",
            ));
        }
        return Ok(Schedule::Interval {
            seconds,
            anchor: input.anchor_date.unwrap_or(now).trunc_subsecs(0),
            timezone: timezone.unwrap_or(Tz::UTC),
        });
    }
    let rule = rrule.unwrap_or_default();
    let (rule, timezone) = normalize_rrule(&sub("rrule"), rule, timezone, input.anchor_date, now)
        .map_err(|e| match e {
        RRuleProblem::Field(err) => err,
        RRuleProblem::Timezone(message) => AppError::bad_input(&sub("timezone"), message),
        RRuleProblem::Anchor(message) => AppError::bad_input(&sub("anchorDate"), message),
    })?;
    Ok(Schedule::RRule { rule, timezone })
}

/// Parses a cron expression that must have exactly five fields (minute, hour, day of month,
/// month, day of week).
fn parse_cron(field: &str, expression: &str) -> AppResult<(String, Cron)> {
    if expression.len() > CRON_MAX {
        return Err(AppError::bad_input(
            field,
            format!("must be at most {CRON_MAX} characters"),
        ));
    }
    let parts: Vec<&str> = expression.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(AppError::bad_input(
            field,
            "must have exactly 5 fields: minute hour day-of-month month day-of-week",
        ));
    }
    let normalized = parts.join(" ");
    let cron = Cron::new(&normalized)
        .parse()
        .map_err(|e| AppError::bad_input(field, format!("not a valid cron expression: {e}")))?;
    Ok((normalized, cron))
}

enum RRuleProblem {
    Field(AppError),
    Timezone(String),
    Anchor(String),
}

/// Gives the rule a DTSTART when it has none (the anchor date, default now, in the schedule's
/// timezone) so its occurrences never depend on when they are asked for, and checks it parses.
fn normalize_rrule(
    field: &str,
    rule: &str,
    timezone: Option<Tz>,
    anchor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(String, Tz), RRuleProblem> {
    let bad = |message: String| RRuleProblem::Field(AppError::bad_input(field, message));
    if rule.is_empty() {
        return Err(bad("must not be empty".into()));
    }
    if rule.len() > RRULE_MAX {
        return Err(bad(format!("must be at most {RRULE_MAX} characters")));
    }
    let has_dtstart = rule.lines().any(|line| {
        line.trim_start()
            .to_ascii_uppercase()
            .starts_with("DTSTART")
    });
    let text = if has_dtstart {
        if anchor.is_some() {
            return Err(RRuleProblem::Anchor(
                "the RRULE already has a DTSTART; leave anchorDate out".into(),
            ));
        }
        rule.to_owned()
    } else {
        let tz = timezone.unwrap_or(Tz::UTC);
        let start = anchor.unwrap_or(now).trunc_subsecs(0).with_timezone(&tz);
        let dtstart = if tz == Tz::UTC {
            format!("DTSTART:{}", start.format("%Y%m%dT%H%M%SZ"))
        } else {
            format!(
                "DTSTART;TZID={}:{}",
                tz.name(),
                start.format("%Y%m%dT%H%M%S")
            )
        };
        let body = rule.trim();
        let body = if body.to_ascii_uppercase().starts_with("FREQ=") {
            format!("RRULE:{body}")
        } else {
            body.to_owned()
        };
        format!("{dtstart}\n{body}")
    };
    let set = RRuleSet::from_str(&text).map_err(|e| bad(format!("not a valid RRULE: {e}")))?;
    if set.get_rrule().is_empty() && set.get_rdate().is_empty() {
        return Err(bad("must contain an RRULE or RDATE line".into()));
    }
    let start_tz = match set.get_dt_start().timezone() {
        rrule::Tz::Tz(tz) => tz,
        rrule::Tz::Local(_) => {
            return Err(bad(
                "DTSTART must be in UTC (ending in Z) or name its TZID".into()
            ))
        }
    };
    if let Some(tz) = timezone {
        if tz != start_tz {
            return Err(RRuleProblem::Timezone(format!(
                "does not match the RRULE's DTSTART time zone ({})",
                start_tz.name()
            )));
        }
    }
    Ok((text, start_tz))
}

/// The first `n` occurrences strictly after `after` (and not after `until`, if given), in order.
/// Pure: the same schedule and arguments always give the same times.
pub fn next_occurrences(
    schedule: &Schedule,
    after: DateTime<Utc>,
    n: usize,
    until: Option<DateTime<Utc>>,
) -> Vec<DateTime<Utc>> {
    if n == 0 || until.is_some_and(|u| u <= after) {
        return Vec::new();
    }
    let within = |t: &DateTime<Utc>| until.is_none_or(|u| *t <= u);
    let times = match schedule {
        Schedule::Interval {
            seconds, anchor, ..
        } => interval_occurrences(*seconds, *anchor, after, n),
        Schedule::Cron {
            expression,
            timezone,
        } => cron_occurrences(expression, *timezone, after, n, until),
        Schedule::RRule { rule, .. } => rrule_occurrences(rule, after, n, until),
    };
    times.into_iter().take_while(within).take(n).collect()
}

fn interval_occurrences(
    seconds: i64,
    anchor: DateTime<Utc>,
    after: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    if seconds < 1 {
        return Vec::new();
    }
    // The first k with anchor + k·step > after (k may be negative: anchors in the future count
    // backwards too, so the series is the same whichever `after` is asked for).
    let elapsed_ms = (after - anchor).num_milliseconds();
    let mut k = elapsed_ms.div_euclid(seconds.saturating_mul(1000));
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let Some(t) = k
            .checked_mul(seconds)
            .and_then(Duration::try_seconds)
            .and_then(|offset| anchor.checked_add_signed(offset))
        else {
            break;
        };
        if t > after {
            out.push(t);
        }
        k += 1;
    }
    out
}

fn cron_occurrences(
    expression: &str,
    tz: Tz,
    after: DateTime<Utc>,
    n: usize,
    until: Option<DateTime<Utc>>,
) -> Vec<DateTime<Utc>> {
    let Ok(cron) = Cron::new(expression).parse() else {
        return Vec::new();
    };
    // Search in wall-clock time: croner on a naive time treated as UTC finds the next matching
    // wall-clock time; we then place it in the zone ourselves so DST is handled in one place:
    // a time that repeats (autumn) fires once, at its first instant after `after`; a time that
    // does not exist (spring) fires at the first instant after the gap.
    let mut cursor: NaiveDateTime = after.with_timezone(&tz).naive_local();
    let mut last = after;
    let mut out = Vec::with_capacity(n);
    for _ in 0..CRON_MAX_STEPS {
        if out.len() >= n {
            break;
        }
        let Ok(next) = cron.find_next_occurrence(&cursor.and_utc(), false) else {
            break;
        };
        cursor = next.naive_utc();
        let instant = match tz.from_local_datetime(&cursor) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, second) => [first, second]
                .into_iter()
                .map(|t| t.with_timezone(&Utc))
                .find(|t| *t > last),
            LocalResult::None => after_gap(tz, cursor),
        };
        let Some(instant) = instant else { continue };
        if instant <= last {
            continue;
        }
        if until.is_some_and(|u| instant > u) {
            break;
        }
        out.push(instant);
        last = instant;
    }
    out
}

/// The first instant after a DST gap that swallowed the wall-clock time `naive` (cron times
/// are whole minutes, so stepping by minutes lands exactly on the gap's end, e.g. 03:00).
fn after_gap(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    (1..=24 * 60).find_map(|minutes| {
        let probe = naive.checked_add_signed(Duration::minutes(minutes))?;
        tz.from_local_datetime(&probe)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

fn rrule_occurrences(
    rule: &str,
    after: DateTime<Utc>,
    n: usize,
    until: Option<DateTime<Utc>>,
) -> Vec<DateTime<Utc>> {
    let Ok(set) = RRuleSet::from_str(rule) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(n);
    for t in set.limit().into_iter().take(RRULE_MAX_STEPS) {
        let t = t.with_timezone(&Utc);
        if until.is_some_and(|u| t > u) {
            break;
        }
        if t > after {
            out.push(t);
            if out.len() >= n {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn input() -> ScheduleInput {
        ScheduleInput::default()
    }

    fn field_of(err: AppError) -> String {
        match err {
            AppError::BadInput { field, .. } => field,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    fn now() -> DateTime<Utc> {
        utc("2025-01-01T00:00:00Z")
    }

    #[test]
    fn a_cron_schedule_defaults_to_utc() {
        let s = validate(
            "schedule",
            ScheduleInput {
                cron: Some(" 0  9 * * 1-5 ".into()),
                ..input()
            },
            now(),
        )
        .unwrap();
        assert_eq!(
            s,
            Schedule::Cron {
                expression: "0 9 * * 1-5".into(),
                timezone: Tz::UTC
            }
        );
    }

    #[test]
    fn cron_must_have_exactly_five_fields() {
        for bad in [
            "* * * *",
            "0 * * * * *",
            "@daily",
            "",
            "61 * * * *",
            "a b c d e",
        ] {
            let err = validate(
                "schedule",
                ScheduleInput {
                    cron: Some(bad.into()),
                    ..input()
                },
                now(),
            )
            .unwrap_err();
            assert_eq!(field_of(err), "schedule.cron", "{bad:?}");
        }
    }

    #[test]
    fn an_unknown_timezone_is_rejected_by_name() {
        let err = validate(
            "schedule",
            ScheduleInput {
                cron: Some("0 9 * * *".into()),
                timezone: Some("Mars/Olympus".into()),
                ..input()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(field_of(err), "schedule.timezone");
    }

    #[test]
    fn exactly_one_kind_is_required() {
        let none = validate("schedule", input(), now()).unwrap_err();
        assert_eq!(field_of(none), "schedule");
        let two = validate(
            "schedule",
            ScheduleInput {
                cron: Some("0 9 * * *".into()),
                interval: Some(60),
                ..input()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(field_of(two), "schedule");
    }

    #[test]
    fn interval_must_be_positive_and_anchors_default_to_now() {
        let err = validate(
            "schedule",
            ScheduleInput {
                interval: Some(0),
                ..input()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(field_of(err), "schedule.interval");
        let s = validate(
            "schedule",
            ScheduleInput {
                interval: Some(60),
                ..input()
            },
            now(),
        )
        .unwrap();
        assert_eq!(s.anchor_date(), Some(now()));
    }

    #[test]
    fn an_anchor_date_is_rejected_on_cron() {
        let err = validate(
            "schedule",
            ScheduleInput {
                cron: Some("0 9 * * *".into()),
                anchor_date: Some(now()),
                ..input()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(field_of(err), "schedule.anchorDate");
    }

    #[test]
    fn an_rrule_without_dtstart_is_anchored() {
        let s = validate(
            "schedule",
            ScheduleInput {
                rrule: Some("FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0".into()),
                timezone: Some("Europe/Berlin".into()),
                ..input()
            },
            now(),
        )
        .unwrap();
        assert_eq!(
            s.rrule(),
            Some("DTSTART;TZID=Europe/Berlin:20250101T010000\nRRULE:FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0")
        );
        let times = next_occurrences(&s, now(), 2, None);
        assert_eq!(
            times,
            vec![utc("2025-01-01T08:00:00Z"), utc("2025-01-02T08:00:00Z")]
        );
    }

    #[test]
    fn an_rrule_keeps_its_own_dtstart_and_timezone() {
        let s = validate(
            "schedule",
            ScheduleInput {
                rrule: Some(
                    "DTSTART;TZID=America/New_York:20250101T120000\nRRULE:FREQ=WEEKLY".into(),
                ),
                ..input()
            },
            now(),
        )
        .unwrap();
        assert_eq!(s.timezone(), chrono_tz::America::New_York);
        let err = validate(
            "schedule",
            ScheduleInput {
                rrule: Some("DTSTART:20250101T120000Z\nRRULE:FREQ=WEEKLY".into()),
                timezone: Some("Europe/Berlin".into()),
                ..input()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(field_of(err), "schedule.timezone");
    }

    #[test]
    fn a_broken_rrule_names_its_field() {
        for bad in ["FREQ=SOMETIMES", "hello", "RRULE:FREQ=DAILY;BYHOUR=99"] {
            let err = validate(
                "schedule",
                ScheduleInput {
                    rrule: Some(bad.into()),
                    ..input()
                },
                now(),
            )
            .unwrap_err();
            assert_eq!(field_of(err), "schedule.rrule", "{bad:?}");
        }
    }

    #[test]
    fn interval_occurrences_follow_the_anchor() {
        let s = Schedule::Interval {
            seconds: 3600,
            anchor: utc("2025-01-01T00:30:00Z"),
            timezone: Tz::UTC,
        };
        assert_eq!(
            next_occurrences(&s, utc("2025-01-01T02:00:00Z"), 3, None),
            vec![
                utc("2025-01-01T02:30:00Z"),
                utc("2025-01-01T03:30:00Z"),
                utc("2025-01-01T04:30:00Z"),
            ]
        );
        // Strictly after: an occurrence exactly at `after` is not repeated.
        assert_eq!(
            next_occurrences(&s, utc("2025-01-01T02:30:00Z"), 1, None),
            vec![utc("2025-01-01T03:30:00Z")]
        );
        // A future anchor still defines the series before it.
        assert_eq!(
            next_occurrences(&s, utc("2024-12-31T22:00:00Z"), 1, None),
            vec![utc("2024-12-31T22:30:00Z")]
        );
        // `until` bounds the result.
        assert_eq!(
            next_occurrences(
                &s,
                utc("2025-01-01T02:00:00Z"),
                10,
                Some(utc("2025-01-01T03:30:00Z"))
            ),
            vec![utc("2025-01-01T02:30:00Z"), utc("2025-01-01T03:30:00Z")]
        );
    }

    #[test]
    fn a_berlin_cron_keeps_wall_clock_time_across_spring_forward() {
        let s = Schedule::Cron {
            expression: "0 9 * * *".into(),
            timezone: chrono_tz::Europe::Berlin,
        };
        // DST starts in Berlin on 2025-03-30 (02:00 CET → 03:00 CEST).
        assert_eq!(
            next_occurrences(&s, utc("2025-03-28T12:00:00Z"), 3, None),
            vec![
                utc("2025-03-29T08:00:00Z"), // 09:00 CET
                utc("2025-03-30T07:00:00Z"), // 09:00 CEST
                utc("2025-03-31T07:00:00Z"),
            ]
        );
    }

    #[test]
    fn a_berlin_cron_in_the_skipped_hour_fires_after_the_gap() {
        let s = Schedule::Cron {
            expression: "30 2 * * *".into(),
            timezone: chrono_tz::Europe::Berlin,
        };
        assert_eq!(
            next_occurrences(&s, utc("2025-03-28T12:00:00Z"), 3, None),
            vec![
                utc("2025-03-29T01:30:00Z"), // 02:30 CET
                utc("2025-03-30T01:00:00Z"), // 02:30 does not exist: 03:00 CEST
                utc("2025-03-31T00:30:00Z"), // 02:30 CEST
            ]
        );
    }

    #[test]
    fn a_berlin_cron_in_the_repeated_hour_fires_once() {
        // DST ends in Berlin on 2025-10-26 (03:00 CEST → 02:00 CET): 02:30 happens twice.
        let s = Schedule::Cron {
            expression: "30 2 * * *".into(),
            timezone: chrono_tz::Europe::Berlin,
        };
        assert_eq!(
            next_occurrences(&s, utc("2025-10-25T12:00:00Z"), 2, None),
            vec![
                utc("2025-10-26T00:30:00Z"), // 02:30 CEST, the first of the two
                utc("2025-10-27T01:30:00Z"), // 02:30 CET
            ]
        );
        // Every 15 minutes through the repeated hour: strictly increasing, no duplicates.
        let s = Schedule::Cron {
            expression: "*/15 * * * *".into(),
            timezone: chrono_tz::Europe::Berlin,
        };
        let times = next_occurrences(&s, utc("2025-10-25T23:50:00Z"), 12, None);
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        assert_eq!(times[0], utc("2025-10-26T00:00:00Z"));
    }

    #[test]
    fn a_cron_that_never_matches_gives_nothing() {
        let s = Schedule::Cron {
            expression: "0 0 30 2 *".into(),
            timezone: Tz::UTC,
        };
        assert!(next_occurrences(&s, now(), 3, None).is_empty());
    }

    #[test]
    fn rrule_occurrences_stop_at_count_and_until() {
        let s = Schedule::RRule {
            rule: "DTSTART:20250101T090000Z\nRRULE:FREQ=DAILY;COUNT=3".into(),
            timezone: Tz::UTC,
        };
        assert_eq!(
            next_occurrences(&s, now(), 10, None),
            vec![
                utc("2025-01-01T09:00:00Z"),
                utc("2025-01-02T09:00:00Z"),
                utc("2025-01-03T09:00:00Z"),
            ]
        );
        assert_eq!(
            next_occurrences(&s, now(), 10, Some(utc("2025-01-02T09:00:00Z"))).len(),
            2
        );
        assert!(next_occurrences(&s, now(), 0, None).is_empty());
    }
}
