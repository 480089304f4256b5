//! Typed identifiers, so a mitra id is never confused with a customer or session id.

use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The id of a mitra (a companion). Wraps the `mitras.id` UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MitraId(Uuid);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a uuid: {0:?}")]
pub struct IdParseError(pub String);

impl MitraId {
    pub const fn new(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn uuid(self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for MitraId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for MitraId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hyphenated lower-case: the form stored in Valkey keys and set members.
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for MitraId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| IdParseError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_through_from_str() {
        let id = MitraId::new(Uuid::new_v4());
        assert_eq!(id.to_string().parse::<MitraId>(), Ok(id));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            "nope".parse::<MitraId>(),
            Err(IdParseError("nope".to_owned()))
        );
    }
}
