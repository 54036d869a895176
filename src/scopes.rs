//! A key's scopes with the spec's hierarchy applied, and the check for one operation.
//!
//! Invariant: no scope rule is written here. Which scopes an operation needs and which scope implies
//! which both come from the spec, through the generated `Scope` and `Operation` tables.

use crate::generated::api::{Operation, Scope};
use std::collections::BTreeSet;

/// The scopes a key holds, expanded by `Scope::implies`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet {
    /// The scopes as granted, for messages ("the key holds …").
    granted: BTreeSet<Scope>,
    /// The granted scopes plus everything they imply: what checks consult.
    effective: BTreeSet<Scope>,
}

impl ScopeSet {
    /// Builds the set from scope names; names outside the catalogue grant nothing.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> ScopeSet {
        let granted: BTreeSet<Scope> = names.into_iter().filter_map(Scope::parse).collect();
        let mut effective = granted.clone();
        let mut pending: Vec<Scope> = granted.iter().copied().collect();
        while let Some(scope) = pending.pop() {
            for implied in scope.implies() {
                if effective.insert(*implied) {
                    pending.push(*implied);
                }
            }
        }
        ScopeSet { granted, effective }
    }

    pub fn all() -> ScopeSet {
        ScopeSet::from_names(Scope::ALL.iter().map(|s| s.as_str()))
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.effective.contains(&scope)
    }

    pub fn granted(&self) -> impl Iterator<Item = Scope> + '_ {
        self.granted.iter().copied()
    }

    /// The scopes `operation` requires that this set lacks; empty when the call is allowed.
    pub fn missing_for(&self, operation: Operation) -> Vec<Scope> {
        operation
            .required_scopes()
            .iter()
            .copied()
            .filter(|s| !self.contains(*s))
            .collect()
    }

    pub fn allows(&self, operation: Operation) -> bool {
        self.missing_for(operation).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_implies_read_of_the_same_resource_only() {
        let set = ScopeSet::from_names(["write:tasks"]);
        assert!(set.allows(Operation::GetTask));
        assert!(set.allows(Operation::CreateTask));
        assert!(!set.contains(Scope::ReadUsers));
        assert_eq!(
            set.missing_for(Operation::ListUsers),
            vec![Scope::ReadUsers]
        );
    }

    #[test]
    fn read_does_not_imply_write() {
        let set = ScopeSet::from_names(["read:tasks", "not:a-scope"]);
        assert!(set.allows(Operation::ListTasks));
        assert_eq!(
            set.missing_for(Operation::CreateTask),
            vec![Scope::WriteTasks]
        );
        assert_eq!(set.granted().count(), 1);
    }

    #[test]
    fn every_tool_requires_a_scope_and_all_scopes_allow_everything() {
        let all = ScopeSet::all();
        for op in Operation::ALL.iter().filter(|op| op.is_tool()) {
            assert!(
                !op.required_scopes().is_empty(),
                "{} has no scope",
                op.name()
            );
            assert!(all.allows(*op));
        }
    }
}
