//! `strftime_now(format)` for chat templates (Llama 3.2 writes "Today Date: 03 Dec 2026").
//!
//! Hugging Face calls Python's `datetime.now().strftime(format)`. Without a time-zone database
//! this uses UTC, the zone of the machines training runs on; the codes templates use are
//! supported (`%d %b %Y`, `%B`, `%A`, `%H:%M:%S`, glibc's `%-d`), others are written as they are.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday
    pub weekday: u32,
    /// 1..=366
    pub yday: u32,
}

/// UTC time `secs` after the Unix epoch (Howard Hinnant's days-to-civil algorithm).
pub fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][(month - 1) as usize];
    let yday = before + day + u32::from(leap && month > 2);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
        weekday: (days + 4).rem_euclid(7) as u32,
        yday,
    }
}

/// `format` applied to `t`, as C's strftime does for the codes it knows.
pub fn strftime(format: &str, t: &Civil) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let pad = chars.peek() != Some(&'-');
        if !pad {
            chars.next();
        }
        let num = |n: u32, width: usize| if pad { format!("{n:0width$}") } else { n.to_string() };
        let hour12 = if t.hour % 12 == 0 { 12 } else { t.hour % 12 };
        match chars.next() {
            Some('d') => out.push_str(&num(t.day, 2)),
            Some('e') => out.push_str(&format!("{:2}", t.day)),
            Some('m') => out.push_str(&num(t.month, 2)),
            Some('Y') => out.push_str(&t.year.to_string()),
            Some('y') => out.push_str(&num(t.year.rem_euclid(100) as u32, 2)),
            Some('H') => out.push_str(&num(t.hour, 2)),
            Some('I') => out.push_str(&num(hour12, 2)),
            Some('M') => out.push_str(&num(t.minute, 2)),
            Some('S') => out.push_str(&num(t.second, 2)),
            Some('j') => out.push_str(&num(t.yday, 3)),
            Some('p') => out.push_str(if t.hour < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(MONTHS[(t.month - 1) as usize]),
            Some('b') | Some('h') => out.push_str(&MONTHS[(t.month - 1) as usize][..3]),
            Some('A') => out.push_str(DAYS[t.weekday as usize]),
            Some('a') => out.push_str(&DAYS[t.weekday as usize][..3]),
            Some('w') => out.push_str(&t.weekday.to_string()),
            Some('F') => out.push_str(&format!("{}-{:02}-{:02}", t.year, t.month, t.day)),
            Some('T') => out.push_str(&format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if !pad {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// `strftime(format)` of the current UTC time.
pub fn strftime_now(format: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(format, &civil(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday, day 208 of a leap year.
        let t = civil(1_721_999_109);
        assert_eq!((t.year, t.month, t.day), (2024, 7, 26));
        assert_eq!(strftime("%d %b %Y", &t), "26 Jul 2024");
        assert_eq!(strftime("%A %B %-d, %H:%M:%S %p %j %%", &t), "Friday July 26, 13:05:09 PM 208 %");
        let epoch = civil(0);
        assert_eq!(strftime("%Y-%m-%d %a %j", &epoch), "1970-01-01 Thu 001");
        let before = civil(-1);
        assert_eq!(strftime("%F %T", &before), "1969-12-31 23:59:59");
        let leap = civil(951_782_400); // 2000-02-29
        assert_eq!(strftime("%F %a %j", &leap), "2000-02-29 Tue 060");
    }
}
