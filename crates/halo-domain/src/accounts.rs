//! Who is calling: roles, and phone numbers as the apps send them.

use std::fmt;
use std::str::FromStr;

/// The role claim of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Customer,
    Mitra,
    /// Control-centre operator.
    Cc,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Mitra => "mitra",
            Self::Cc => "cc",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Self::Customer),
            "mitra" => Ok(Self::Mitra),
            "cc" => Ok(Self::Cc),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// A phone number in E.164 form: `+` then 8 to 15 digits. Spaces and dashes are dropped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("phone must be in E.164 form, like +6281234567890")]
pub struct InvalidPhone;

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, InvalidPhone> {
        let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let digits = compact.strip_prefix('+').ok_or(InvalidPhone)?;
        let valid = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        if valid {
            Ok(Self(compact))
        } else {
            Err(InvalidPhone)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Option<&str>) {
        assert_eq!(
            Phone::parse(raw).ok().as_ref().map(Phone::as_str),
            expected,
            "{raw:?}"
        );
    }

    #[test]
    fn phones() {
        check("+6281234567890", Some("+6281234567890"));
        check("+62 812-3456-7890", Some("+6281234567890"));
        check("6281234567890", None);
        check("+62812", None);
        check("+6281234567890123", None);
        check("+62abc4567890", None);
        check("", None);
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Customer, Role::Mitra, Role::Cc] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
