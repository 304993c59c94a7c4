use super::duration::{self, DurationError};
use super::*;
use proptest::prelude::*;

#[test]
fn a_duration_past_a_hundred_years_is_refused_naming_the_limit() {
    assert_eq!(duration::parse("100y"), Ok(duration::MAX));
    assert_eq!(duration::parse(" 2h "), Ok(Duration::from_secs(7200)));
    let e = duration::parse("9000y").unwrap_err();
    assert!(matches!(e, DurationError::TooLong { .. }));
    assert_eq!(
        e.to_string(),
        "\"9000y\" is longer than 100y, the longest duration nbwatch accepts"
    );
    let e = duration::parse("soon").unwrap_err().to_string();
    assert!(e.contains("\"soon\"") && e.contains("2h"), "{e}");
    // Too big for humantime itself is still an error, not a panic.
    assert!(duration::parse("99999999999999999999999y").is_err());
}

#[test]
fn times_format_up_to_the_year_9999_and_say_out_of_range_after() {
    assert_eq!(Time::MAX.to_rfc3339(), "9999-12-31T23:59:59.999Z");
    assert_eq!(Time::ZERO.to_rfc3339(), "1970-01-01T00:00:00.000Z");
    let past = Time(Time::MAX.0 + 1);
    assert_eq!(
        past.to_rfc3339(),
        "out of range (253402300800000 ms after 1970)"
    );
    assert_eq!(Time(u64::MAX).to_string(), Time(u64::MAX).to_rfc3339());
    assert_eq!(Time::checked(Time::MAX.0), Ok(Time::MAX));
    let e = Time::checked(past.0).unwrap_err().to_string();
    assert!(e.contains("253402300800000") && e.contains("9999"), "{e}");
}

#[test]
fn adding_a_duration_saturates_instead_of_wrapping() {
    assert_eq!(Time(u64::MAX - 1) + Duration::from_secs(1), Time(u64::MAX));
    assert_eq!(Time(5) + Duration::MAX, Time(u64::MAX));
}

/// Strings that look like durations more often than random ones do.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        (any::<u64>(), "(ns|us|ms|s|m|h|d|w|M|y|years|x|)")
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        (0u64..20_000, "(ms|s|m|h|d|y)").prop_map(|(n, unit)| format!("{n}{unit}")),
    ]
}

proptest! {
    #[test]
    fn any_duration_text_parses_within_the_bound_or_is_refused(text in duration_text()) {
        match duration::parse(&text) {
            Ok(d) => {
                prop_assert!(d <= duration::MAX);
                // What is accepted formats and reads back as itself.
                prop_assert_eq!(duration::parse(&duration::format(d)), Ok(d));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn every_duration_up_to_the_bound_round_trips(ms in 0..=duration::MAX.as_millis() as u64) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(duration::parse(&duration::format(d)), Ok(d));
    }

    #[test]
    fn any_time_formats_without_panicking_and_checked_ones_read_back(ms in any::<u64>()) {
        let text = Time(ms).to_rfc3339();
        match Time::checked(ms) {
            Ok(t) => {
                let back = humantime::parse_rfc3339(&text).expect("RFC 3339");
                let back = back.duration_since(std::time::UNIX_EPOCH).expect("after 1970");
                prop_assert_eq!(back.as_millis() as u64, t.0);
            }
            Err(_) => prop_assert!(text.starts_with("out of range"), "{}", text),
        }
    }

    #[test]
    fn now_plus_any_accepted_duration_is_a_time_that_formats(
        now in 0..=4_102_444_800_000u64, // up to 2100
        text in duration_text(),
    ) {
        if let Ok(d) = duration::parse(&text) {
            let t = Time(now) + d;
            prop_assert!(Time::checked(t.0).is_ok());
            prop_assert!(!t.to_rfc3339().starts_with("out of range"));
        }
    }
}

#[test]
fn a_time_goes_to_the_next_multiple_of_the_grid() {
    let grid = Duration::from_millis(50);
    assert_eq!(Time(100).on_grid(grid), Time(100));
    assert_eq!(Time(101).on_grid(grid), Time(150));
    assert_eq!(Time(149).on_grid(grid), Time(150));
    assert_eq!(Time(7).on_grid(Duration::ZERO), Time(7));
    assert_eq!(Time(u64::MAX).on_grid(grid), Time(u64::MAX));
}
