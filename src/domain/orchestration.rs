//! The orchestration rules: given a run's current state and a proposed one, decide. Pure
//! functions, so a table-driven test can cover every rule; the callers hold the run row locked
//! while they decide and write.
use chrono::{DateTime, Duration, Utc};

use super::states::{
    ProposedState, StateRecord, StateType, NAME_AWAITING_RETRY, NAME_LATE, NAME_RETRYING,
    NAME_SCHEDULED,
};

/// What the rules need to know about a run.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub current: StateRecord,
    pub has_deployment: bool,
    pub run_count: i32,
    pub retries: i32,
    pub retry_delay_seconds: i32,
    /// For a task run: its flow run's current state type.
    pub flow_run_state: Option<StateType>,
}

/// The state to write, fully named and timed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewState {
    pub state_type: StateType,
    pub name: String,
    pub message: Option<String>,
    pub scheduled_time: Option<DateTime<Utc>>,
    pub transition_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Write the (possibly renamed) proposed state.
    Accept(NewState),
    /// Write nothing; the current state stands.
    Reject { reason: String },
    /// Refuse the proposal but write another state instead (a failed attempt with retries
    /// left becomes `AwaitingRetry`).
    RejectAndWrite { state: NewState, reason: String },
    /// Not yet: propose again after `delay_seconds`.
    Wait { delay_seconds: i64, reason: String },
    /// Stop this run; nothing written.
    Abort { reason: String },
}

fn accept(proposed: &ProposedState, now: DateTime<Utc>, name: Option<&str>) -> NewState {
    let state_type = proposed.state_type;
    let name = name
        .map(str::to_owned)
        .or_else(|| proposed.name.clone())
        .unwrap_or_else(|| state_type.default_name().to_owned());
    // A scheduled state always knows when; "now" when the client gave no time.
    let scheduled_time = match state_type {
        StateType::Scheduled => Some(proposed.scheduled_time.unwrap_or(now)),
        _ => proposed.scheduled_time,
    };
    NewState {
        state_type,
        name,
        message: proposed.message.clone(),
        scheduled_time,
        transition_id: proposed.transition_id.clone(),
    }
}

/// Decides a proposal. `force` skips every rule.
pub fn decide(
    facts: &RunFacts,
    proposed: &ProposedState,
    force: bool,
    now: DateTime<Utc>,
) -> Decision {
    if force {
        return Decision::Accept(accept(proposed, now, None));
    }
    let current = &facts.current;
    let to = proposed.state_type;
    let from = current.state_type;

    // A client retrying the same transition gets the state it already caused.
    if proposed.transition_id.is_some() && proposed.transition_id == current.transition_id {
        return Decision::Reject {
            reason: "this transition was already applied".into(),
        };
    }

    if from.is_terminal() {
        if to == StateType::Scheduled && facts.has_deployment && facts.flow_run_state.is_none() {
            return Decision::Accept(accept(proposed, now, None));
        }
        return Decision::Abort {
            reason: format!("the run is already in the terminal state {}", from.as_str()),
        };
    }

    if to == StateType::Pending
        && matches!(
            from,
            StateType::Pending | StateType::Running | StateType::Cancelling | StateType::Cancelled
        )
    {
        return Decision::Abort {
            reason: format!("the run is already {}", from.as_str()),
        };
    }

    if from == StateType::Cancelling && !(to == StateType::Cancelled || to.is_terminal()) {
        return Decision::Reject {
            reason:
                "the run is being cancelled; only CANCELLED or another terminal state may follow"
                    .into(),
        };
    }

    if let Some(flow_state) = facts.flow_run_state {
        if to == StateType::Running && flow_state != StateType::Running {
            return Decision::Abort {
                reason: format!(
                    "a task run may only run while its flow run is RUNNING (it is {})",
                    flow_state.as_str()
                ),
            };
        }
    }

    let proposed_name = proposed.name.as_deref();
    if to == StateType::Scheduled && proposed_name == Some(NAME_LATE) {
        let eligible = from == StateType::Scheduled && current.name == NAME_SCHEDULED;
        if !eligible {
            return Decision::Reject {
                reason: "only a SCHEDULED run named Scheduled can become Late".into(),
            };
        }
    }

    if to == StateType::Running {
        if matches!(from, StateType::Scheduled | StateType::Pending) {
            if let Some(at) = current.scheduled_time {
                if at > now {
                    let left = (at - now).num_milliseconds();
                    let delay_seconds = (left + 999) / 1000;
                    return Decision::Wait {
                        delay_seconds,
                        reason: format!("the run is scheduled to start in {delay_seconds} s"),
                    };
                }
            }
        }
        // A new attempt after an earlier one is a retry; a RUNNING reported again or a
        // resumed pause is the same attempt, not a retry.
        if facts.run_count >= 1 && matches!(from, StateType::Scheduled | StateType::Pending) {
            return Decision::Accept(accept(proposed, now, Some(NAME_RETRYING)));
        }
    }

    if to == StateType::Failed
        && from == StateType::Running
        && facts.flow_run_state.is_none()
        && facts.run_count.max(1) <= facts.retries
    {
        let at = now + Duration::seconds(i64::from(facts.retry_delay_seconds.max(0)));
        return Decision::RejectAndWrite {
            state: NewState {
                state_type: StateType::Scheduled,
                name: NAME_AWAITING_RETRY.into(),
                message: proposed.message.clone(),
                scheduled_time: Some(at),
                transition_id: None,
            },
            reason: format!(
                "retrying: attempt {} of {} failed",
                facts.run_count,
                facts.retries + 1
            ),
        };
    }

    Decision::Accept(accept(proposed, now, None))
}

/// The bookkeeping fields a run carries, before and after a state is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Bookkeeping {
    pub run_count: i32,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub total_run_time: f64,
    pub expected_start_time: Option<DateTime<Utc>>,
}

/// Applies the server-kept fields for a move from `current` (None for a new run) to `new` at `now`.
pub fn bookkeep(
    before: &Bookkeeping,
    current: Option<&StateRecord>,
    new: &NewState,
    now: DateTime<Utc>,
) -> Bookkeeping {
    let mut after = before.clone();
    let was_running = current.is_some_and(|c| c.state_type == StateType::Running);
    if let Some(current) = current.filter(|_| was_running) {
        // Also when RUNNING follows RUNNING: the new state's timestamp restarts the clock.
        let ran = (now - current.timestamp).num_microseconds().unwrap_or(0) as f64 / 1e6;
        after.total_run_time += ran.max(0.0);
    }
    if new.state_type == StateType::Running {
        if !was_running {
            after.run_count += 1;
        }
        after.start_time.get_or_insert(now);
    }
    if new.state_type.is_terminal() {
        after.end_time = Some(now);
    } else if new.state_type == StateType::Scheduled {
        // A manual re-run starts a fresh attempt.
        after.end_time = None;
    }
    if after.expected_start_time.is_none() {
        after.expected_start_time = Some(new.scheduled_time.unwrap_or(now));
    }
    after
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use uuid::Uuid;

    fn state(t: StateType, name: &str, scheduled: Option<DateTime<Utc>>) -> StateRecord {
        StateRecord {
            id: Uuid::nil(),
            state_type: t,
            name: name.into(),
            message: None,
            timestamp: Utc::now(),
            scheduled_time: scheduled,
            transition_id: Some("t-1".into()),
        }
    }

    fn facts(current: StateRecord) -> RunFacts {
        RunFacts {
            current,
            has_deployment: false,
            run_count: 0,
            retries: 0,
            retry_delay_seconds: 0,
            flow_run_state: None,
        }
    }

    #[derive(Debug, PartialEq)]
    enum Kind {
        Accept(&'static str),
        Reject,
        RejectAndWrite(&'static str),
        Wait,
        Abort,
    }

    fn kind(d: &Decision) -> Kind {
        match d {
            Decision::Accept(s) => Kind::Accept(Box::leak(s.name.clone().into_boxed_str())),
            Decision::Reject { .. } => Kind::Reject,
            Decision::RejectAndWrite { state, .. } => {
                Kind::RejectAndWrite(Box::leak(state.name.clone().into_boxed_str()))
            }
            Decision::Wait { .. } => Kind::Wait,
            Decision::Abort { .. } => Kind::Abort,
        }
    }

    use StateType::*;

    /// Every current state × every proposed state, with the rule that applies.
    #[test]
    fn every_transition_follows_the_rules() {
        let now = Utc::now();
        for from in StateType::ALL {
            for to in StateType::ALL {
                let f = facts(state(from, from.default_name(), Some(now)));
                let d = decide(&f, &ProposedState::new(to), false, now);
                let leaves_terminal = from.is_terminal();
                let pending_again = to == Pending && matches!(from, Pending | Running | Cancelling);
                let expected = if leaves_terminal || pending_again {
                    Kind::Abort
                } else if from == Cancelling && !to.is_terminal() {
                    Kind::Reject
                } else {
                    Kind::Accept(to.default_name())
                };
                assert_eq!(kind(&d), expected, "{from:?} -> {to:?}: {d:?}");
            }
        }
    }

    #[test]
    fn a_terminal_run_with_a_deployment_may_be_scheduled_again() {
        let now = Utc::now();
        for from in [Completed, Failed, Cancelled, Crashed] {
            let mut f = facts(state(from, from.default_name(), None));
            f.has_deployment = true;
            let d = decide(&f, &ProposedState::new(Scheduled), false, now);
            assert_eq!(kind(&d), Kind::Accept("Scheduled"), "{from:?}");
            let d = decide(&f, &ProposedState::new(Running), false, now);
            assert_eq!(kind(&d), Kind::Abort, "{from:?}");
        }
    }

    #[test]
    fn running_before_the_scheduled_time_waits_the_seconds_left() {
        let now = Utc::now();
        for from in [Scheduled, Pending] {
            let f = facts(state(
                from,
                "Scheduled",
                Some(now + Duration::milliseconds(4_200)),
            ));
            match decide(&f, &ProposedState::new(Running), false, now) {
                Decision::Wait { delay_seconds, .. } => assert_eq!(delay_seconds, 5),
                other => panic!("expected WAIT, got {other:?}"),
            }
        }
    }

    #[test]
    fn failing_with_retries_left_is_rejected_into_awaiting_retry() {
        let now = Utc::now();
        let mut f = facts(state(Running, "Running", None));
        f.run_count = 1;
        f.retries = 2;
        f.retry_delay_seconds = 30;
        let d = decide(&f, &ProposedState::new(Failed), false, now);
        match &d {
            Decision::RejectAndWrite { state, .. } => {
                assert_eq!(state.state_type, Scheduled);
                assert_eq!(state.name, "AwaitingRetry");
                assert_eq!(state.scheduled_time, Some(now + Duration::seconds(30)));
            }
            other => panic!("expected REJECT with AwaitingRetry, got {other:?}"),
        }
        // Out of retries: the failure is accepted.
        f.run_count = 3;
        assert_eq!(
            kind(&decide(&f, &ProposedState::new(Failed), false, now)),
            Kind::Accept("Failed")
        );
        // The next attempt is named Retrying.
        let mut f = facts(state(Scheduled, "AwaitingRetry", Some(now)));
        f.run_count = 1;
        assert_eq!(
            kind(&decide(&f, &ProposedState::new(Running), false, now)),
            Kind::Accept("Retrying")
        );
    }

    #[test]
    fn a_task_run_runs_only_while_its_flow_run_runs() {
        let now = Utc::now();
        for flow_state in StateType::ALL {
            let mut f = facts(state(Pending, "Pending", None));
            f.flow_run_state = Some(flow_state);
            let d = decide(&f, &ProposedState::new(Running), false, now);
            let expected = if flow_state == Running {
                Kind::Accept("Running")
            } else {
                Kind::Abort
            };
            assert_eq!(kind(&d), expected, "flow run {flow_state:?}");
        }
    }

    #[test]
    fn the_same_transition_id_is_rejected_with_the_current_state() {
        let now = Utc::now();
        let f = facts(state(Running, "Running", None));
        let mut p = ProposedState::new(Completed);
        p.transition_id = Some("t-1".into());
        assert_eq!(kind(&decide(&f, &p, false, now)), Kind::Reject);
        p.transition_id = Some("t-2".into());
        assert_eq!(kind(&decide(&f, &p, false, now)), Kind::Accept("Completed"));
    }

    #[test]
    fn late_is_only_given_to_a_scheduled_run_named_scheduled() {
        let now = Utc::now();
        let late = ProposedState::new(Scheduled).named("Late");
        let f = facts(state(Scheduled, "Scheduled", Some(now)));
        assert_eq!(kind(&decide(&f, &late, false, now)), Kind::Accept("Late"));
        for (t, name) in [
            (Scheduled, "AwaitingRetry"),
            (Scheduled, "Late"),
            (Pending, "Pending"),
            (Running, "Running"),
        ] {
            let f = facts(state(t, name, Some(now)));
            assert_eq!(
                kind(&decide(&f, &late, false, now)),
                Kind::Reject,
                "{t:?}/{name}"
            );
        }
    }

    #[test]
    fn force_skips_every_rule() {
        let now = Utc::now();
        let f = facts(state(Completed, "Completed", None));
        assert_eq!(
            kind(&decide(&f, &ProposedState::new(Running), true, now)),
            Kind::Accept("Running")
        );
    }

    #[test]
    fn bookkeeping_tracks_runs_and_time() {
        let t0 = Utc::now();
        let empty = Bookkeeping {
            run_count: 0,
            start_time: None,
            end_time: None,
            total_run_time: 0.0,
            expected_start_time: None,
        };
        let scheduled = NewState {
            state_type: Scheduled,
            name: "Scheduled".into(),
            message: None,
            scheduled_time: Some(t0),
            transition_id: None,
        };
        let b = bookkeep(&empty, None, &scheduled, t0);
        assert_eq!(b.expected_start_time, Some(t0));
        let running = NewState {
            state_type: Running,
            name: "Running".into(),
            scheduled_time: None,
            ..scheduled.clone()
        };
        let t1 = t0 + Duration::seconds(1);
        let b = bookkeep(
            &b,
            Some(&state(Scheduled, "Scheduled", Some(t0))),
            &running,
            t1,
        );
        assert_eq!((b.run_count, b.start_time), (1, Some(t1)));
        let mut running_state = state(Running, "Running", None);
        running_state.timestamp = t1;
        let done = NewState {
            state_type: Completed,
            name: "Completed".into(),
            ..running.clone()
        };
        let t2 = t1 + Duration::milliseconds(2_500);
        let b = bookkeep(&b, Some(&running_state), &done, t2);
        assert_eq!(b.end_time, Some(t2));
        assert!((b.total_run_time - 2.5).abs() < 1e-6);
        assert_eq!(b.expected_start_time, Some(t0));
    }
}
