//! The lab's delivery-date promise: a pure function of the clock, the prints already
//! booked per day, and a simple capacity model.

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, Timelike, Weekday};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How far ahead the lab looks for room before it refuses a job.
pub const MAX_LOOKAHEAD_DAYS: u64 = 120;

/// A lab's capacity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityModel {
    /// Prints the lab can make in one day.
    pub prints_per_day: u32,
    /// Jobs accepted at or after this local hour start printing the next day.
    pub cutoff_hour: u8,
    /// Days the courier collects from the lab. Prints made on day D leave on the first
    /// courier day after D.
    pub courier_days: Vec<Weekday>,
    /// Days from collection to the store (0 = delivered the same day).
    pub transit_days: u32,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CapacityError {
    #[error("the job has no prints")]
    Empty,
    #[error("the courier runs on no day of the week")]
    NoCourierDays,
    #[error("the lab prints nothing per day")]
    NoCapacity,
    #[error("no room for {prints} prints in the next {MAX_LOOKAHEAD_DAYS} days")]
    Full { prints: u32 },
}

/// Where a job's prints are booked and when they reach the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// `(day, prints booked that day)`, in date order.
    pub bookings: Vec<(NaiveDate, u32)>,
    pub ship_date: NaiveDate,
    pub delivery_date: NaiveDate,
}

impl CapacityModel {
    /// Books `prints` into the earliest days with room and derives the dates.
    /// `booked(day)` is how many prints are already booked on `day`.
    pub fn promise(
        &self,
        now_local: NaiveDateTime,
        prints: u32,
        booked: impl Fn(NaiveDate) -> u32,
    ) -> Result<Promise, CapacityError> {
        if prints == 0 {
            return Err(CapacityError::Empty);
        }
        if self.courier_days.is_empty() {
            return Err(CapacityError::NoCourierDays);
        }
        if self.prints_per_day == 0 {
            return Err(CapacityError::NoCapacity);
        }
        let mut day = now_local.date();
        if now_local.hour() >= u32::from(self.cutoff_hour) {
            day = day.succ_opt().ok_or(CapacityError::Full { prints })?;
        }
        let mut left = prints;
        let mut bookings = Vec::new();
        for _ in 0..MAX_LOOKAHEAD_DAYS {
            let free = self.prints_per_day.saturating_sub(booked(day));
            let take = free.min(left);
            if take > 0 {
                bookings.push((day, take));
                left -= take;
            }
            if left == 0 {
                break;
            }
            day = day.succ_opt().ok_or(CapacityError::Full { prints })?;
        }
        let last_print_day = match bookings.last() {
            Some((d, _)) if left == 0 => *d,
            _ => return Err(CapacityError::Full { prints }),
        };
        let mut ship = last_print_day
            .succ_opt()
            .ok_or(CapacityError::Full { prints })?;
        // Bounded: some weekday in every 7 consecutive days is a courier day.
        for _ in 0..7 {
            if self.courier_days.contains(&ship.weekday()) {
                break;
            }
            ship = ship.succ_opt().ok_or(CapacityError::Full { prints })?;
        }
        let delivery_date = ship
            .checked_add_days(Days::new(u64::from(self.transit_days)))
            .ok_or(CapacityError::Full { prints })?;
        Ok(Promise {
            bookings,
            ship_date: ship,
            delivery_date,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn model() -> CapacityModel {
        CapacityModel {
            prints_per_day: 100,
            cutoff_hour: 15,
            courier_days: vec![Weekday::Mon, Weekday::Wed, Weekday::Fri],
            transit_days: 1,
        }
    }

    fn at(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn before_cutoff_prints_today() {
        // 2026-11-25 is a Wednesday: print today, courier Friday, delivered Saturday.
        let p = model().promise(at(2026, 11, 25, 10), 5, |_| 0).unwrap();
        assert_eq!(p.bookings, vec![(date(2026, 11, 25), 5)]);
        assert_eq!(p.ship_date, date(2026, 11, 27));
        assert_eq!(p.delivery_date, date(2026, 11, 28));
    }

    #[test]
    fn after_cutoff_prints_tomorrow() {
        let p = model().promise(at(2026, 11, 25, 15), 5, |_| 0).unwrap();
        assert_eq!(p.bookings, vec![(date(2026, 11, 26), 5)]);
        assert_eq!(p.ship_date, date(2026, 11, 27));
    }

    #[test]
    fn full_days_push_the_job_later_and_spill_over() {
        let booked: HashMap<NaiveDate, u32> =
            [(date(2026, 11, 25), 100), (date(2026, 11, 26), 97)].into();
        let p = model()
            .promise(at(2026, 11, 25, 9), 10, |d| {
                booked.get(&d).copied().unwrap_or(0)
            })
            .unwrap();
        assert_eq!(
            p.bookings,
            vec![(date(2026, 11, 26), 3), (date(2026, 11, 27), 7)]
        );
        // Last print day Friday: next courier day Monday, delivered Tuesday.
        assert_eq!(p.ship_date, date(2026, 11, 30));
        assert_eq!(p.delivery_date, date(2026, 12, 1));
    }

    #[test]
    fn refuses_what_cannot_fit() {
        assert_eq!(
            model().promise(at(2026, 11, 25, 9), 1, |_| 100),
            Err(CapacityError::Full { prints: 1 })
        );
        assert_eq!(
            model().promise(at(2026, 11, 25, 9), 0, |_| 0),
            Err(CapacityError::Empty)
        );
        let mut m = model();
        m.courier_days.clear();
        assert_eq!(
            m.promise(at(2026, 11, 25, 9), 1, |_| 0),
            Err(CapacityError::NoCourierDays)
        );
    }
}
