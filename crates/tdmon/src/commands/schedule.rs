//! `tdmon schedule plan [--notices-per-day N] [--check-rate R]`: what the
//! configured schedule costs and how precise it is, so that a monitor owner
//! can trade one against the other before changing it. The figures come from
//! `tdmon_core::plan`, which runs the state machine itself over synthetic
//! histories.

use std::fmt::Write as _;

use chrono::TimeDelta;
use tdmon_core::duration;
use tdmon_core::plan::{self, Fate};

use crate::Exit;
use crate::cli::{PlanArgs, ScheduleCommand};
use crate::config::Config;

pub(crate) fn run(command: ScheduleCommand, config: &Config) -> anyhow::Result<Exit> {
    match command {
        ScheduleCommand::Plan(args) => {
            print!("{}", plan_text(&args, config));
            Ok(Exit::Success)
        }
    }
}

/// The fates whose checks the plan counts, named for people.
fn fates() -> [(&'static str, Fate); 4] {
    let hours = TimeDelta::hours;
    [
        ("served to the end of monitoring", Fate::Online),
        ("removed 2h after the notice (404)", Fate::Removed(hours(2))),
        (
            "removed 30h after the notice (404)",
            Fate::Removed(hours(30)),
        ),
        (
            "host gone 30h after the notice (timeouts only)",
            Fate::HostGone(hours(30)),
        ),
    ]
}

fn plan_text(args: &PlanArgs, config: &Config) -> String {
    let rules = &config.measurement.rules;
    let rate = args
        .check_rate
        .map_or(config.worker.checks_per_second(), |r| r.get());
    let mut out = String::new();
    let counts: Vec<(&str, usize)> = fates()
        .into_iter()
        .map(|(name, fate)| (name, plan::checks(rules, fate).len()))
        .collect();
    let _ = writeln!(out, "checks per URL over its life:");
    for (name, count) in &counts {
        let _ = writeln!(out, "  {name:<48} {count:>6}");
    }
    let most = counts.iter().map(|(_, n)| *n).max().unwrap_or(0) as u64;
    let per_day = args.notices_per_day * most;
    let per_second = per_day as f64 / 86_400.0;
    let _ = writeln!(
        out,
        "\nat {} notices a day, in steady state, at most {} checks a day ({per_second:.2}/s), \
         if every URL fared like the costliest above",
        args.notices_per_day, per_day
    );
    let workers = (per_second / f64::from(rate)).ceil().max(1.0);
    let _ = writeln!(
        out,
        "workers needed at {rate} checks/s each: {workers:.0} (mind per-host politeness: \
         one host's URLs are checked at its own rate)"
    );
    let _ = writeln!(
        out,
        "\nprecision: a takedown in the window leaves the norm undetermined\n  {:<8} {:<28} width",
        "norm", "window (since the notice)"
    );
    for precision in plan::precision(rules, config.measurement.norms.iter()) {
        let window = match precision.after {
            Some(after) => format!("{} .. {}", human(precision.before), human(after)),
            None => format!("{} .. (no check after it)", human(precision.before)),
        };
        let width = precision.width().map_or("-".to_owned(), human);
        let _ = writeln!(
            out,
            "  {:<8} {window:<28} {width}",
            precision.norm.to_string()
        );
    }
    out
}

fn human(delta: TimeDelta) -> String {
    delta
        .to_std()
        .map_or_else(|_| "-".to_owned(), duration::format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_names_every_figure() {
        let config = crate::config::load(None, std::iter::empty(), &[]).unwrap();
        let args = PlanArgs {
            notices_per_day: 1000,
            check_rate: None,
        };
        let text = plan_text(&args, &config);
        let served = plan::checks(&config.measurement.rules, Fate::Online).len();
        assert!(
            text.contains(&format!("served to the end of monitoring {:>23}", served)),
            "{text}"
        );
        assert!(
            text.contains("workers needed at 20 checks/s each: 1"),
            "{text}"
        );
        assert!(text.contains("24h      23h45m .. 24h"), "{text}");
        assert!(text.contains("15m"), "{text}");
    }
}
