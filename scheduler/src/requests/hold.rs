//! `graze release` and `graze hold`: the owner (or an admin) lets a held job be scheduled, or
//! holds a queued one. Audited like a cancel.

use crate::audit::Outcome;
use crate::auth::Identity;
use crate::owner::Owner;
use graze_proto::{ClientReply, JobId};

impl Owner {
    /// Hold (`hold`) or release job `id` for `who`, whose ownership was checked; the answer.
    pub(super) fn hold_request(
        &mut self,
        who: &Identity,
        id: JobId,
        hold: bool,
        now: u64,
    ) -> ClientReply {
        let action = if hold { "hold" } else { "release" };
        let done = if hold {
            self.core.hold(id, now)
        } else {
            self.core.release(id, now)
        };
        match done {
            Ok(_) => {
                self.audit(who, action, Outcome::Ok, &[("job", id.to_string())], "");
                match self.core.job_view(id) {
                    Some(v) => ClientReply::Job(Box::new(v)),
                    None => ClientReply::Error {
                        message: format!("no job {id}"),
                    },
                }
            }
            Err(message) => {
                self.audit(
                    who,
                    action,
                    Outcome::Refused,
                    &[("job", id.to_string())],
                    &message,
                );
                ClientReply::Error { message }
            }
        }
    }
}
