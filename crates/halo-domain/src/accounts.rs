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

    /// For logs: the first three and last two digits, the rest starred (`+628********90`).
    pub fn masked(&self) -> String {
        mask_digits(&self.0[1..])
    }
}

/// `+` and `digits` with all but the first three and last two digits starred.
fn mask_digits(digits: &str) -> String {
    let keep_tail = digits.len().saturating_sub(2);
    let mut masked = String::with_capacity(digits.len() + 1);
    masked.push('+');
    for (i, c) in digits.chars().enumerate() {
        masked.push(if i < 3 || i >= keep_tail { c } else { '*' });
    }
    masked
}

/// `text` with every phone number in E.164 form (`+` and 8 to 15 digits) masked as
/// [`Phone::masked`] does: the last line of defence for logs, whatever field a number is in.
pub fn mask_phone_numbers(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('+') {
        return std::borrow::Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+' {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let preceded_by_digit = i > 0 && bytes[i - 1].is_ascii_digit();
            if (8..=15).contains(&digits) && !preceded_by_digit {
                out.push_str(&text[copied..i]);
                out.push_str(&mask_digits(&text[i + 1..i + 1 + digits]));
                i += 1 + digits;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_masked_for_logs() {
        let phone = Phone::parse("+6281234567890").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(phone.masked(), "+628********90");
        let check = |text: &str, expected: &str| assert_eq!(mask_phone_numbers(text), expected);
        check("no numbers here", "no numbers here");
        check(
            "phone=+6281234567890 role=mitra",
            "phone=+628********90 role=mitra",
        );
        check(
            "\"+12345678\",\"+12345678901\"",
            "\"+123***78\",\"+123******01\"",
        );
        check("a+1234567 is too short", "a+1234567 is too short");
        check(
            "+1234567890123456 is too long",
            "+1234567890123456 is too long",
        );
        check(
            "sum 3+12345678 is arithmetic",
            "sum 3+12345678 is arithmetic",
        );
        check("ends +6281234567890", "ends +628********90");
    }

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
    fn roles_print_and_parse_as_their_token_claim() {
        for (role, claim) in [
            (Role::Customer, "customer"),
            (Role::Mitra, "mitra"),
            (Role::Cc, "cc"),
        ] {
            assert_eq!(role.as_str(), claim);
            assert_eq!(role.to_string(), claim);
            assert_eq!(claim.parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
