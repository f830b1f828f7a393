//! Client certificate authentication: the user is the first subject CN of a certificate that
//! rustls has already verified against the authority bundle (and CRLs) at the handshake.

/// Why a verified certificate still names no acceptable user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Unparsable,
    NoCommonName,
    NotUtf8,
    /// The CN is not an acceptable user name ([`crate::identity::check_user_name`]).
    Refused(crate::identity::NameRefusal),
}

impl NameError {
    /// The short reason given to the client.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unparsable => "client certificate cannot be read",
            Self::NoCommonName => "client certificate has no subject common name",
            Self::NotUtf8 => "client certificate common name is not UTF-8",
            Self::Refused(reason) => reason,
        }
    }
}

/// The user named by the first subject CN of a DER certificate, exactly as written there
/// (nothing is trimmed), if it passes [`crate::identity::check_user_name`]. Read once per
/// connection, at the handshake.
pub fn user_from_certificate(der: &[u8], default_user: &str) -> Result<String, NameError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| NameError::Unparsable)?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or(NameError::NoCommonName)?;
    let name = cn.as_str().map_err(|_| NameError::NotUtf8)?;
    crate::identity::check_user_name(name, default_user).map_err(NameError::Refused)?;
    Ok(name.to_owned())
}
