//! How a connection is shown the catalogue: the dialect of its inputSchemas (`?schema=`), the
//! lean listing without outputSchemas (`?lean=`), and every tool or tool search
//! (`?discovery=`). The server's flags set the defaults; a connection's query parameters override
//! them (unlike the selection, which only narrows).

use crate::catalogue::{Dialect, View};
use crate::mcp::discovery::Discovery;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presentation {
    /// The inputSchema dialect; None leaves the choice to the server (else `full`).
    pub dialect: Option<Dialect>,
    /// Leave out outputSchema; None leaves the choice to the server (else no).
    pub lean: Option<bool>,
    /// Every tool, or tool search; None leaves the choice to the server (else every tool).
    pub discovery: Option<Discovery>,
}

impl Presentation {
    /// Reads `schema`, `lean` and `discovery` from a connection's query parameters (or the server's flags).
    pub fn parse<'q>(parameter: impl Fn(&str) -> Option<&'q str>) -> Result<Presentation, String> {
        let dialect = parameter("schema")
            .map(|name| {
                Dialect::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = Dialect::ALL.iter().map(|d| d.as_str()).collect();
                    format!(
                        "unknown schema dialect `{name}`; known: {}",
                        known.join(", ")
                    )
                })
            })
            .transpose()?;
        let lean = parameter("lean")
            .map(|value| match value {
                "1" | "true" => Ok(true),
                "0" | "false" => Ok(false),
                other => Err(format!("`lean` is true or false, not `{other}`")),
            })
            .transpose()?;
        let discovery = parameter("discovery")
            .map(|name| {
                Discovery::parse(name).ok_or_else(|| {
                    format!("unknown discovery mode `{name}`; known: direct, search")
                })
            })
            .transpose()?;
        Ok(Presentation {
            dialect,
            lean,
            discovery,
        })
    }

    /// This presentation with whatever `connection` chose put in its place.
    pub fn overridden_by(&self, connection: &Presentation) -> Presentation {
        Presentation {
            dialect: connection.dialect.or(self.dialect),
            lean: connection.lean.or(self.lean),
            discovery: connection.discovery.or(self.discovery),
        }
    }

    pub fn discovery(&self) -> Discovery {
        self.discovery.unwrap_or_default()
    }

    /// The view of each tool that tools/list serves.
    pub fn view(&self) -> View {
        View {
            dialect: self.dialect.unwrap_or_default(),
            lean: self.lean.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_overrides_the_server_and_bad_values_are_refused() {
        let server = Presentation::parse(|name| (name == "schema").then_some("openai")).unwrap();
        let connection = Presentation::parse(|name| match name {
            "lean" => Some("1"),
            _ => None,
        })
        .unwrap();
        let both = server.overridden_by(&connection);
        assert_eq!(
            both.view(),
            View {
                dialect: Dialect::Openai,
                lean: true
            }
        );
        let back_to_full =
            Presentation::parse(|name| (name == "schema").then_some("full")).unwrap();
        assert_eq!(
            both.overridden_by(&back_to_full).view().dialect,
            Dialect::Full
        );
        assert!(Presentation::parse(|_| Some("nope")).is_err());
        let search = Presentation::parse(|name| (name == "discovery").then_some("search"));
        assert_eq!(
            both.overridden_by(&search.unwrap()).discovery(),
            Discovery::Search
        );
        assert_eq!(both.discovery(), Discovery::Direct);
    }
}
