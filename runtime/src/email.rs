//! The one definition of a customer e-mail address the shop can mail.
//!
//! The Order Service refuses an order whose address fails here, and the Email Service parses
//! the address with this same function before it sends: an address the API accepts is always
//! one the mailer can deliver to, so no order is accepted, charged and then never told.

use lettre::message::Mailbox;

/// Parses a bare address (`name@example.com`), as the mailer reads it. A display name
/// (`Ada <ada@example.com>`) is refused too: the field holds an address, and what is stored
/// is what is mailed.
pub fn parse_address(value: &str) -> Result<Mailbox, String> {
    let mailbox: Mailbox = value
        .parse()
        .map_err(|_| format!("{value:?} is not an e-mail address a mail server accepts"))?;
    if mailbox.name.is_some() || AsRef::<str>::as_ref(&mailbox.email) != value {
        return Err(format!(
            "{value:?} is not a bare e-mail address like name@example.com"
        ));
    }
    Ok(mailbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_the_mailer_cannot_use_are_refused() {
        for odd in [
            "ada@example..com",
            "ada@-example.com",
            ".ada@example.com",
            "ada.@example.com",
            "ada@[127.0.0.1]",
            "Ada <ada@example.com>",
            "ada@",
            "ada example@example.com",
            "ada@exa mple.com",
        ] {
            assert!(parse_address(odd).is_err(), "{odd} was accepted");
        }
    }

    #[test]
    fn ordinary_addresses_are_accepted_as_written() {
        for good in [
            "ada@example.com",
            "ada+tag@example.com",
            "ada.lovelace@mail.example.co.uk",
            "o'brien@example.ie",
        ] {
            let mailbox = parse_address(good).unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(mailbox.email.to_string(), good);
        }
    }
}
