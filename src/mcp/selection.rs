//! Which tools a connection sees: the server's `--toolsets/--tools/--read-only`, narrowed by the
//! connection's query parameters, and always intersected with the key's scopes; and how they
//! are written out (`Presentation`).

use crate::catalogue::{Catalogue, Tool};
use crate::mcp::presentation::Presentation;
use crate::scopes::ScopeSet;
use std::collections::BTreeSet;

/// Serialisable: replicas share it as JSON (`replicas`); fields added later default when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Selection {
    /// Only these categories, when set.
    pub toolsets: Option<BTreeSet<String>>,
    /// Only these tools, when set.
    pub tools: Option<BTreeSet<String>>,
    pub read_only: bool,
    /// How the selected tools are written out; travels with the selection, as it is chosen the
    /// same way (server flags, then the connection's query parameters).
    pub presentation: Presentation,
}

impl Selection {
    /// Parses comma-separated lists, refusing names the catalogue does not have.
    pub fn parse(
        toolsets: Option<&str>,
        tools: Option<&str>,
        read_only: bool,
    ) -> Result<Selection, String> {
        let catalogue = Catalogue::get();
        let split = |list: &str| -> BTreeSet<String> {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        let toolsets = toolsets.map(split);
        if let Some(unknown) = toolsets
            .iter()
            .flatten()
            .find(|t| !catalogue.categories().contains(&t.as_str()))
        {
            return Err(format!(
                "unknown toolset `{unknown}`; known: {}",
                catalogue.categories().join(", ")
            ));
        }
        let tools = tools.map(split);
        if let Some(unknown) = tools.iter().flatten().find(|t| catalogue.find(t).is_none()) {
            return Err(format!(
                "unknown tool `{unknown}`; `trainar-mcp tools list` shows them"
            ));
        }
        Ok(Selection {
            toolsets,
            tools,
            read_only,
            presentation: Presentation::default(),
        })
    }

    /// Both selections at once: a connection can narrow the server's choice, never widen it.
    pub fn intersect(&self, other: &Selection) -> Selection {
        let both = |a: &Option<BTreeSet<String>>, b: &Option<BTreeSet<String>>| match (a, b) {
            (Some(a), Some(b)) => Some(a.intersection(b).cloned().collect()),
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        };
        Selection {
            toolsets: both(&self.toolsets, &other.toolsets),
            tools: both(&self.tools, &other.tools),
            read_only: self.read_only || other.read_only,
            presentation: self.presentation.overridden_by(&other.presentation),
        }
    }

    pub fn admits(&self, tool: &Tool) -> bool {
        self.toolsets
            .as_ref()
            .is_none_or(|sets| sets.contains(tool.category()))
            && self
                .tools
                .as_ref()
                .is_none_or(|names| names.contains(tool.name()))
            && (!self.read_only || tool.is_read_only())
    }

    /// The tools a key with `scopes` is offered: selected, and (unless `all`) allowed.
    pub fn offered<'c>(&self, scopes: &ScopeSet, all: bool) -> Vec<&'c Tool> {
        Catalogue::get()
            .tools()
            .iter()
            .filter(|tool| self.admits(tool) && (all || scopes.allows(tool.operation)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrows_and_never_widens() {
        let server = Selection::parse(Some("tasks,knowledge"), None, false).unwrap();
        let connection = Selection::parse(Some("tasks"), None, true).unwrap();
        let both = server.intersect(&connection);
        let names: Vec<&str> = both
            .offered(&ScopeSet::all(), false)
            .iter()
            .map(|t| t.name())
            .collect();
        assert_eq!(names, ["list_tasks", "get_task"]);
        let only_reads = ScopeSet::from_names(["read:tasks"]);
        let names: Vec<&str> = server
            .offered(&only_reads, false)
            .iter()
            .map(|t| t.name())
            .collect();
        assert_eq!(names, ["list_tasks", "get_task"]);
        assert!(Selection::parse(Some("nope"), None, false).is_err());
        assert!(Selection::parse(None, Some("drop_tables"), false).is_err());
    }
}
