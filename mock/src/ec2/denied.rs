//! A set of EC2 actions refused to every caller: the account-wide one of
//! [`crate::MockAws::deny`], and a scope's, as a service control policy's explicit deny
//! ([`crate::MockAws::deny_in`]).

use std::collections::BTreeSet;
use std::sync::RwLock;

/// EC2 actions (`ModifyInstanceMetadataOptions`, ...) refused from now on.
#[derive(Debug, Default)]
pub(crate) struct DeniedActions(RwLock<BTreeSet<String>>);

impl DeniedActions {
    /// `actions` refused from the start.
    pub(crate) fn new(actions: BTreeSet<String>) -> Self {
        DeniedActions(RwLock::new(actions))
    }

    /// Whether `action` is refused.
    pub(crate) fn contains(&self, action: &str) -> bool {
        self.0.read().expect("denied lock").contains(action)
    }

    /// Refuses (`true`) or allows `action` from now on.
    pub(crate) fn set(&self, action: &str, denied: bool) {
        let mut set = self.0.write().expect("denied lock");
        if denied {
            set.insert(action.to_owned());
        } else {
            set.remove(action);
        }
    }
}
