//! The lab's delivery-date promise: a pure function of the clock, the prints already
//! booked per day, the lab's capacity calendar (prints per day from its printers'
//! rates and opening hours, open days, holidays) and the courier's timetable per store.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, Timelike, Weekday};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::StoreId;

/// How far ahead the lab looks for room before it refuses a job.
pub const MAX_LOOKAHEAD_DAYS: u64 = 120;

/// When the courier collects from the lab for one store, and how long it takes there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Days the courier collects for this store.
    pub days: Vec<Weekday>,
    /// Local hour of the collection. Prints finished on a collection day go the same
    /// day only if the courier comes at or after the lab closes.
    pub pickup_hour: u8,
    /// Days from collection to the store (0 = delivered the same day).
    pub transit_days: u32,
}

/// A lab's capacity calendar and its courier timetable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityModel {
    /// Prints the lab makes in a full open day (its printers' prints per hour times
    /// its opening hours, or as configured for a lab without printers).
    pub prints_per_day: u32,
    /// Opening hours, local: `[open_hour, close_hour)`.
    pub open_hour: u8,
    pub close_hour: u8,
    /// Days of the week the lab prints.
    pub open_days: Vec<Weekday>,
    /// Dates the lab is closed.
    pub holidays: BTreeSet<NaiveDate>,
    /// Jobs accepted at or after this local hour start printing the next day.
    pub cutoff_hour: u8,
    /// The courier's timetable for stores without their own.
    pub default_route: Route,
    /// Per-store timetables.
    pub routes: BTreeMap<StoreId, Route>,
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
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
    /// Whether the lab prints on `day`.
    pub fn is_open(&self, day: NaiveDate) -> bool {
        self.open_days.contains(&day.weekday()) && !self.holidays.contains(&day)
    }

    /// Prints the lab can make on `day`.
    pub fn capacity_on(&self, day: NaiveDate) -> u32 {
        if self.is_open(day) {
            self.prints_per_day
        } else {
            0
        }
    }

    /// Prints the lab can still make on `now`'s day: the day's capacity for the open
    /// hours left.
    pub fn capacity_left(&self, now_local: NaiveDateTime) -> u32 {
        let open = u32::from(self.open_hour);
        let close = u32::from(self.close_hour);
        let hours = close.saturating_sub(open);
        if hours == 0 {
            return 0;
        }
        let left = close.saturating_sub(now_local.hour().max(open));
        let full = u64::from(self.capacity_on(now_local.date()));
        u32::try_from(full * u64::from(left) / u64::from(hours)).unwrap_or(u32::MAX)
    }

    pub fn route(&self, store: &StoreId) -> &Route {
        self.routes.get(store).unwrap_or(&self.default_route)
    }

    /// Books `prints` for `store` into the earliest open days with room and derives
    /// the dates. `booked(day)` is how many prints are already booked on `day`.
    pub fn promise(
        &self,
        now_local: NaiveDateTime,
        store: &StoreId,
        prints: u32,
        booked: impl Fn(NaiveDate) -> u32,
    ) -> Result<Promise, CapacityError> {
        if prints == 0 {
            return Err(CapacityError::Empty);
        }
        let route = self.route(store);
        if route.days.is_empty() {
            return Err(CapacityError::NoCourierDays);
        }
        if self.prints_per_day == 0 || self.open_days.is_empty() {
            return Err(CapacityError::NoCapacity);
        }
        let full = CapacityError::Full { prints };
        let mut day = now_local.date();
        if now_local.hour() >= u32::from(self.cutoff_hour.min(self.close_hour)) {
            day = day.succ_opt().ok_or(full.clone())?;
        }
        let mut left = prints;
        let mut bookings = Vec::new();
        for _ in 0..MAX_LOOKAHEAD_DAYS {
            let room = if day == now_local.date() {
                self.capacity_left(now_local)
            } else {
                self.capacity_on(day)
            };
            let free = room.saturating_sub(booked(day));
            let take = free.min(left);
            if take > 0 {
                bookings.push((day, take));
                left -= take;
            }
            if left == 0 {
                break;
            }
            day = day.succ_opt().ok_or(full.clone())?;
        }
        let last_print_day = match bookings.last() {
            Some((d, _)) if left == 0 => *d,
            _ => return Err(full),
        };
        let ship_date = self.ship_date(route, last_print_day).ok_or(full.clone())?;
        let delivery_date = ship_date
            .checked_add_days(Days::new(u64::from(route.transit_days)))
            .ok_or(full)?;
        Ok(Promise {
            bookings,
            ship_date,
            delivery_date,
        })
    }

    /// The courier's first collection for `route` of prints finished on `printed`:
    /// that day if the courier comes after closing time, otherwise a later day; never
    /// on a day the lab is closed for a holiday.
    pub fn ship_date(&self, route: &Route, printed: NaiveDate) -> Option<NaiveDate> {
        let mut day = if route.pickup_hour >= self.close_hour {
            printed
        } else {
            printed.succ_opt()?
        };
        for _ in 0..MAX_LOOKAHEAD_DAYS {
            if route.days.contains(&day.weekday()) && !self.holidays.contains(&day) {
                return Some(day);
            }
            day = day.succ_opt()?;
        }
        None
    }

    /// The moment the prints must be ready: the courier's collection on the ship date.
    pub fn deadline(&self, route: &Route, ship_date: NaiveDate) -> NaiveDateTime {
        let hour = u32::from(route.pickup_hour.min(23));
        ship_date
            .and_hms_opt(hour, 0, 0)
            .unwrap_or_else(|| ship_date.and_time(chrono::NaiveTime::MIN))
    }

    /// When `prints` more prints are done if printing starts at `now_local` at
    /// `prints_per_hour` within opening hours. `None` if that is beyond the lookahead
    /// or nothing prints at all.
    pub fn finish_time(
        &self,
        now_local: NaiveDateTime,
        prints: u32,
        prints_per_hour: u32,
    ) -> Option<NaiveDateTime> {
        if prints == 0 {
            return Some(now_local);
        }
        if prints_per_hour == 0 {
            return None;
        }
        let mut left = u64::from(prints);
        let rate = u64::from(prints_per_hour);
        let mut t = now_local;
        for _ in 0..(MAX_LOOKAHEAD_DAYS * 24) {
            let hour_start = t.date().and_hms_opt(t.hour(), 0, 0)?;
            let hour_end = hour_start.checked_add_signed(chrono::TimeDelta::hours(1))?;
            let h = t.hour();
            let open = self.is_open(t.date())
                && h >= u32::from(self.open_hour)
                && h < u32::from(self.close_hour);
            if open {
                let secs_left = u64::try_from((hour_end - t).num_seconds()).unwrap_or(0);
                let can = rate * secs_left / 3600;
                if can >= left {
                    let secs = (left * 3600).div_ceil(rate);
                    return t
                        .checked_add_signed(chrono::TimeDelta::seconds(i64::try_from(secs).ok()?));
                }
                left -= can;
            }
            t = hour_end;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ALL_WEEK: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    fn model() -> CapacityModel {
        CapacityModel {
            prints_per_day: 100,
            open_hour: 0,
            close_hour: 24,
            open_days: ALL_WEEK.to_vec(),
            holidays: BTreeSet::new(),
            cutoff_hour: 15,
            default_route: Route {
                days: vec![Weekday::Mon, Weekday::Wed, Weekday::Fri],
                pickup_hour: 9,
                transit_days: 1,
            },
            routes: BTreeMap::new(),
        }
    }

    fn store() -> StoreId {
        "store-1".parse().unwrap()
    }

    fn at(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
    }

    impl CapacityModel {
        fn promise_for(
            &self,
            now: NaiveDateTime,
            prints: u32,
            booked: impl Fn(NaiveDate) -> u32,
        ) -> Result<Promise, CapacityError> {
            self.promise(now, &store(), prints, booked)
        }
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn before_cutoff_prints_today() {
        // 2026-11-25 is a Wednesday: print today, courier Friday, delivered Saturday.
        let p = model().promise_for(at(2026, 11, 25, 10), 5, |_| 0).unwrap();
        assert_eq!(p.bookings, vec![(date(2026, 11, 25), 5)]);
        assert_eq!(p.ship_date, date(2026, 11, 27));
        assert_eq!(p.delivery_date, date(2026, 11, 28));
    }

    #[test]
    fn after_cutoff_prints_tomorrow() {
        let p = model().promise_for(at(2026, 11, 25, 15), 5, |_| 0).unwrap();
        assert_eq!(p.bookings, vec![(date(2026, 11, 26), 5)]);
        assert_eq!(p.ship_date, date(2026, 11, 27));
    }

    #[test]
    fn full_days_push_the_job_later_and_spill_over() {
        let booked: HashMap<NaiveDate, u32> =
            [(date(2026, 11, 25), 100), (date(2026, 11, 26), 97)].into();
        let p = model()
            .promise_for(at(2026, 11, 25, 9), 10, |d| {
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
            model().promise_for(at(2026, 11, 25, 9), 1, |_| 100),
            Err(CapacityError::Full { prints: 1 })
        );
        assert_eq!(
            model().promise_for(at(2026, 11, 25, 9), 0, |_| 0),
            Err(CapacityError::Empty)
        );
        let mut m = model();
        m.default_route.days.clear();
        assert_eq!(
            m.promise_for(at(2026, 11, 25, 9), 1, |_| 0),
            Err(CapacityError::NoCourierDays)
        );
    }

    #[test]
    fn holidays_and_closed_days_print_nothing_and_the_courier_skips_holidays() {
        let mut m = model();
        // Closed on Thursdays; 2026-11-26 (Thu) anyway, 2026-11-27 (Fri) a holiday.
        m.open_days.retain(|d| *d != Weekday::Thu);
        m.holidays.insert(date(2026, 11, 27));
        m.cutoff_hour = 0; // every job starts tomorrow
        let p = m.promise_for(at(2026, 11, 25, 10), 150, |_| 0).unwrap();
        // Thu closed, Fri holiday: Sat 100, Sun 50. Courier Mon (the next after Sun).
        assert_eq!(
            p.bookings,
            vec![(date(2026, 11, 28), 100), (date(2026, 11, 29), 50)]
        );
        assert_eq!(p.ship_date, date(2026, 11, 30));
        // A courier day that is a holiday is skipped too.
        m.holidays.insert(date(2026, 11, 30));
        let p = m.promise_for(at(2026, 11, 25, 10), 150, |_| 0).unwrap();
        assert_eq!(p.ship_date, date(2026, 12, 2));
        assert_eq!(p.delivery_date, date(2026, 12, 3));
    }

    #[test]
    fn each_store_has_its_own_timetable() {
        let mut m = model();
        m.open_hour = 9;
        m.close_hour = 18;
        let far: StoreId = "store-far".parse().unwrap();
        m.routes.insert(
            far.clone(),
            Route {
                days: vec![Weekday::Tue],
                pickup_hour: 19, // after closing: same-day collection
                transit_days: 2,
            },
        );
        // Wed 10:00, printed today.
        let near = m.promise(at(2026, 11, 25, 10), &store(), 5, |_| 0).unwrap();
        assert_eq!(near.ship_date, date(2026, 11, 27));
        let p = m.promise(at(2026, 11, 25, 10), &far, 5, |_| 0).unwrap();
        assert_eq!(p.ship_date, date(2026, 12, 1));
        assert_eq!(p.delivery_date, date(2026, 12, 3));
        // Printed on a Tuesday, collected that evening.
        let p = m.promise(at(2026, 12, 1, 10), &far, 5, |_| 0).unwrap();
        assert_eq!(p.ship_date, date(2026, 12, 1));
        // Past closing the job starts tomorrow, whatever the cutoff says.
        let p = m.promise(at(2026, 11, 25, 18), &store(), 5, |_| 0).unwrap();
        assert_eq!(p.bookings, vec![(date(2026, 11, 26), 5)]);
    }

    #[test]
    fn today_has_only_the_hours_left() {
        let mut m = model();
        m.open_hour = 9;
        m.close_hour = 18;
        m.prints_per_day = 90; // 10 an hour
                               // At 14:00 four hours are left: 40 prints today, the rest tomorrow.
        let p = m.promise_for(at(2026, 11, 25, 14), 60, |_| 0).unwrap();
        assert_eq!(
            p.bookings,
            vec![(date(2026, 11, 25), 40), (date(2026, 11, 26), 20)]
        );
        assert_eq!(m.capacity_left(at(2026, 11, 25, 8)), 90);
        assert_eq!(m.capacity_left(at(2026, 11, 25, 17)), 10);
    }

    #[test]
    fn finish_time_counts_only_opening_hours() {
        let mut m = model();
        m.open_hour = 9;
        m.close_hour = 18;
        m.holidays.insert(date(2026, 11, 26));
        // 100 prints an hour: 50 prints from 10:00 take half an hour.
        assert_eq!(
            m.finish_time(at(2026, 11, 25, 10), 50, 100),
            Some(at(2026, 11, 25, 10) + chrono::TimeDelta::minutes(30))
        );
        // 900 from 17:00: 100 today, Thursday is a holiday, 800 on Friday by 17:00.
        assert_eq!(
            m.finish_time(at(2026, 11, 25, 17), 900, 100),
            Some(at(2026, 11, 27, 17))
        );
        // Starting at night waits for the morning.
        assert_eq!(
            m.finish_time(at(2026, 11, 25, 22), 100, 100),
            Some(at(2026, 11, 27, 10))
        );
        assert_eq!(m.finish_time(at(2026, 11, 25, 10), 1, 0), None);
        assert_eq!(
            m.deadline(&m.default_route, date(2026, 11, 27)),
            at(2026, 11, 27, 9)
        );
    }
}
