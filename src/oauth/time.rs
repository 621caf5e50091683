//! The clock, read in one place: now as Unix seconds (token `iat`/`exp`, stored deadlines) and
//! milliseconds (refresh-token families), and a stored Unix time as a deadline on the actors'
//! timer clock. Reading the clock is the one thing here that is not a pure rule; every layer
//! above takes its time from these functions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    since_epoch().as_secs()
}

/// Now, in Unix milliseconds.
pub fn unix_now_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// The timer instant of a stored Unix time in seconds (now, if it is past).
pub fn instant_of(unix: u64) -> tokio::time::Instant {
    let now = unix_now();
    // A time centuries away (a corrupt or hostile value) is capped rather than overflowing.
    let ahead = unix.saturating_sub(now).min(MAX_AHEAD_SECONDS);
    tokio::time::Instant::now() + Duration::from_secs(ahead)
}

/// The farthest ahead a Unix time is taken as a timer instant: a hundred years.
const MAX_AHEAD_SECONDS: u64 = 100 * 365 * 86_400;

/// A Unix time in milliseconds as a timer instant, given one reading of both clocks (`now` and
/// `now_ms`); now, if it is past.
pub fn instant_of_ms(at_ms: u64, now: tokio::time::Instant, now_ms: u64) -> tokio::time::Instant {
    now + Duration::from_millis(at_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_time_far_ahead_is_capped_not_an_overflow() {
        let far = instant_of(u64::MAX);
        assert!(far > tokio::time::Instant::now());
        assert!(instant_of(0) <= tokio::time::Instant::now());
    }

    #[test]
    fn seconds_and_milliseconds_read_one_clock() {
        let (secs, ms) = (unix_now(), unix_now_ms());
        assert!(ms / 1000 >= secs && ms / 1000 <= secs + 1, "{secs} {ms}");
        assert!(secs > 1_700_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_past_time_is_due_now() {
        let now = tokio::time::Instant::now();
        assert_eq!(instant_of(0), now);
        assert_eq!(instant_of_ms(1_000, now, 5_000), now);
        assert_eq!(
            instant_of_ms(5_250, now, 5_000),
            now + Duration::from_millis(250)
        );
        // The wall clock may tick between the two readings.
        let later = instant_of(unix_now() + 60);
        assert!(later >= now + Duration::from_secs(59) && later <= now + Duration::from_secs(60));
    }
}
