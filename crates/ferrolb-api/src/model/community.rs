//! BGP communities as users write them: `65000:100`, `large:64512:1:2`, well-known names, aliases.

use std::collections::BTreeMap;
use std::fmt;

use crate::crd::CommunitySpec;

/// A BGP community (RFC 1997) or large community (RFC 8092).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Community {
    Standard(u32),
    Large {
        global: u32,
        local1: u32,
        local2: u32,
    },
}

impl Community {
    /// RFC 8326: lets the peer lower the route's preference before we withdraw it.
    pub const GRACEFUL_SHUTDOWN: Community = Community::Standard(0xFFFF_0000);
    pub const NO_EXPORT: Community = Community::Standard(0xFFFF_FF01);
    pub const NO_ADVERTISE: Community = Community::Standard(0xFFFF_FF02);
    pub const NO_EXPORT_SUBCONFED: Community = Community::Standard(0xFFFF_FF03);
    pub const NO_PEER: Community = Community::Standard(0xFFFF_FF04);
    pub const BLACKHOLE: Community = Community::Standard(0xFFFF_029A);

    /// The names a community may be written as (any case, `_` for `-`); the CRDs' CEL rules
    /// accept the same list.
    pub const WELL_KNOWN: [(&'static str, Community); 7] = [
        ("graceful-shutdown", Community::GRACEFUL_SHUTDOWN),
        ("no-export", Community::NO_EXPORT),
        ("no-advertise", Community::NO_ADVERTISE),
        ("no-export-subconfed", Community::NO_EXPORT_SUBCONFED),
        ("local-as", Community::NO_EXPORT_SUBCONFED),
        ("no-peer", Community::NO_PEER),
        ("blackhole", Community::BLACKHOLE),
    ];

    fn well_known(name: &str) -> Option<Community> {
        let name = name.to_ascii_lowercase().replace('_', "-");
        Community::WELL_KNOWN
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, c)| *c)
    }

    /// Parses a literal community (not an alias).
    pub fn parse_literal(text: &str) -> Result<Community, CommunityError> {
        let s = text.trim();
        let syntax = || CommunityError::Syntax(text.to_string());
        if let Some(c) = Community::well_known(s) {
            return Ok(c);
        }
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["large", g, l1, l2] => {
                let n = |p: &str| p.parse::<u32>().map_err(|_| syntax());
                Ok(Community::Large {
                    global: n(g)?,
                    local1: n(l1)?,
                    local2: n(l2)?,
                })
            }
            [high, low] => {
                let n = |p: &str| p.parse::<u16>().map_err(|_| syntax());
                Ok(Community::Standard(
                    (u32::from(n(high)?) << 16) | u32::from(n(low)?),
                ))
            }
            _ => Err(syntax()),
        }
    }

    /// Whether `text` looks like a literal rather than an alias name.
    fn looks_literal(text: &str) -> bool {
        text.contains(':') || Community::well_known(text).is_some()
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Community::Standard(v) => write!(f, "{}:{}", v >> 16, v & 0xFFFF),
            Community::Large {
                global,
                local1,
                local2,
            } => write!(f, "large:{global}:{local1}:{local2}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommunityError {
    #[error(
        "{0:?} is not a community (expected 65000:100 with 16-bit halves, large:64512:1:2 with 32-bit parts, or a well-known name such as no-export)"
    )]
    Syntax(String),
    #[error("unknown community alias {0:?}: no Community resource defines it")]
    UnknownAlias(String),
    #[error("community alias {name:?} is defined twice, as {first} and {second}")]
    DuplicateAlias {
        name: String,
        first: String,
        second: String,
    },
    #[error("community alias {name:?}: {source}")]
    BadAlias {
        name: String,
        source: Box<CommunityError>,
    },
}

/// Aliases from all `Community` resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommunityAliases {
    by_name: BTreeMap<String, Community>,
}

impl CommunityAliases {
    /// Collects aliases; a bad or conflicting alias is an error that names it.
    pub fn from_specs<'a>(
        specs: impl IntoIterator<Item = &'a CommunitySpec>,
    ) -> Result<Self, CommunityError> {
        let mut by_name = BTreeMap::new();
        for alias in specs.into_iter().flat_map(|s| &s.communities) {
            let value =
                Community::parse_literal(&alias.value).map_err(|e| CommunityError::BadAlias {
                    name: alias.name.clone(),
                    source: Box::new(e),
                })?;
            if let Some(first) = by_name.insert(alias.name.clone(), value)
                && first != value
            {
                return Err(CommunityError::DuplicateAlias {
                    name: alias.name.clone(),
                    first: first.to_string(),
                    second: value.to_string(),
                });
            }
        }
        Ok(CommunityAliases { by_name })
    }

    /// Resolves a literal or an alias.
    pub fn resolve(&self, text: &str) -> Result<Community, CommunityError> {
        if let Some(c) = self.by_name.get(text.trim()) {
            return Ok(*c);
        }
        if Community::looks_literal(text) {
            Community::parse_literal(text)
        } else {
            Err(CommunityError::UnknownAlias(text.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CommunityAlias;

    #[test]
    fn standard_and_large_communities_parse_and_print_back() {
        assert_eq!(
            Community::parse_literal("65000:100"),
            Ok(Community::Standard((65000 << 16) | 100))
        );
        let large = Community::parse_literal("large:4200000000:1:2").unwrap();
        assert_eq!(large.to_string(), "large:4200000000:1:2");
        assert_eq!(
            Community::parse_literal("no-export"),
            Ok(Community::NO_EXPORT)
        );
    }

    #[test]
    fn bad_community_syntax_is_rejected() {
        for bad in [
            "65536:1",
            "1:65536",
            "65000",
            "large:1:2",
            "large:1:2:x",
            "a:b",
        ] {
            assert!(
                matches!(
                    Community::parse_literal(bad),
                    Err(CommunityError::Syntax(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn aliases_resolve_and_unknown_alias_is_named() {
        let spec = CommunitySpec {
            communities: vec![CommunityAlias {
                name: "vpn-only".into(),
                value: "65000:200".into(),
            }],
        };
        let aliases = CommunityAliases::from_specs([&spec]).unwrap();
        assert_eq!(
            aliases.resolve("vpn-only"),
            Ok(Community::Standard((65000 << 16) | 200))
        );
        assert_eq!(
            aliases.resolve("gold"),
            Err(CommunityError::UnknownAlias("gold".into()))
        );
        assert!(aliases.resolve("65000:1").is_ok());
    }

    #[test]
    fn alias_with_bad_value_is_an_error_that_names_it() {
        let spec = CommunitySpec {
            communities: vec![CommunityAlias {
                name: "broken".into(),
                value: "65000-1".into(),
            }],
        };
        let err = CommunityAliases::from_specs([&spec]).unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
    }
}
